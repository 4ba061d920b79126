"""Visible checks of the ``rnn_basics`` assignment (shipped to students).

Each check compares your code with PyTorch's own modules on small examples and stops at the
first problem, in the order type -> dtype -> shape -> values -> gradients. Every size differs
from every other (seq_len, batch, input_size, hidden_size, num_layers), so swapping two of them
shows. The diagnoses (``*_problem`` functions) are the ones the grader uses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .checks import (
    CheckFailed,
    call,
    call_by_hand,
    check_type,
    compare_table,
    keeps_rng,
    max_abs_diff,
    names_used,
    scratch_problem,
    shape_problem,
    swapped_dims,
)

# --------------------------------------------------------------------------- rnn_cell_step

STEP_ARGS = ("x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
# Probes that isolate one term of h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh), then the whole step.
STEP_PROBES = ("bias_only", "input_term", "hidden_term", "values")
FUSED_NAMES = ("rnn_tanh_cell", "rnn_relu_cell", "RNNCell", "RNN", "_VF", "RNNCellBase", "RNNBase", "rnn_tanh")
FUSED_OPS = {"rnn_tanh_cell": "torch.rnn_tanh_cell", "rnn_relu_cell": "torch.rnn_relu_cell"}
FUSED_REASON = (
    "this exercise asks for the equation written by hand (matrix products, biases, tanh); "
    "torch's fused RNN cell does the work for you, so it earns no points."
)
STEP_EQUATION = "h' = tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)"
NOT_CONNECTED = ("h' does not require grad: the result must stay connected to the inputs "
                 "(no .detach(), .data, .item() or torch.tensor(...)).")


def rnn_cell_step_inputs(gen: torch.Generator, label: str, batch_size: int, input_size: int, hidden_size: int,
                         dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """The six arguments (and ``upstream``, a gradient for h') of one probe, drawn from ``gen``.

    ``bias_only`` zeroes both weights; ``input_term`` zeroes h and the biases; ``hidden_term`` zeroes x
    and the biases; ``values`` and ``gradients`` keep everything. Values are drawn in float64, then cast.
    """
    def draw(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    t = {"x": draw(batch_size, input_size), "h": draw(batch_size, hidden_size),
         "weight_ih": draw(hidden_size, input_size, scale=0.5), "weight_hh": draw(hidden_size, hidden_size, scale=0.5),
         "bias_ih": draw(hidden_size, scale=0.5), "bias_hh": draw(hidden_size, scale=0.5)}
    zero = {"bias_only": ("weight_ih", "weight_hh"), "input_term": ("h", "bias_ih", "bias_hh"),
            "hidden_term": ("x", "bias_ih", "bias_hh")}.get(label, ())
    for key in zero:
        t[key].zero_()
    t["upstream"] = draw(batch_size, hidden_size)
    return t


def rnn_cell_step_error_kind(exc: BaseException, input_size: int, hidden_size: int) -> str:
    """Which product a crash of rnn_cell_step comes from: "x", "h", "matmul" (unknown which) or ""."""
    text = str(exc)
    found = re.search(r"\((\d+)x(\d+) and (\d+)x(\d+)\)", text)
    if found and input_size != hidden_size:
        cols = int(found.group(2))
        if cols == input_size:
            return "x"
        if cols == hidden_size:
            return "h"
    if "cannot be multiplied" in text or "size of tensor" in text or "mismatch" in text:
        return "matmul"
    return ""


ERROR_HINTS = {
    "x": ("x is (batch, input_size) and weight_ih is (hidden_size, input_size): multiply by the transpose, "
          "x @ weight_ih.T."),
    "h": ("Check the hidden term: h is (batch, hidden_size), so it is multiplied by weight_hh (hidden_size, "
          "hidden_size), transposed: h @ weight_hh.T. weight_ih belongs to x."),
    "matmul": ("The weights are (hidden_size, input_size) and (hidden_size, hidden_size): multiply x and h by their "
               "transposes, x @ weight_ih.T and h @ weight_hh.T, and add the biases (hidden_size,)."),
}


def rnn_cell_step_problem(label: str, out: torch.Tensor, expected: torch.Tensor, tol: float) -> str | None:
    """What is wrong with h' = ``out`` on the probe ``label`` (None if it matches ``expected``)."""
    if out.dtype != expected.dtype:
        return (f"rnn_cell_step returned dtype {out.dtype} for {expected.dtype} inputs: "
                "keep the inputs' dtype (no torch.tensor(...) or .float() inside).")
    batch, hidden = expected.shape
    if tuple(out.shape) != (batch, hidden):
        return shape_problem("h'", out.shape, (batch, hidden), ("batch", "hidden_size"),
                             "x @ weight_ih.T is (batch, hidden_size): weight_ih is (hidden_size, input_size), "
                             "so transpose it.")
    diff = max_abs_diff(out, expected)
    if diff <= tol:
        return None
    pre = torch.atanh(expected.detach().double().clamp(-1 + 1e-12, 1 - 1e-12))
    if max_abs_diff(out, pre) <= 1e-4:
        return "h' is missing the activation: apply torch.tanh to the sum (tanh keeps h in [-1, 1])."
    for name, fn in (("sigmoid", torch.sigmoid), ("relu", torch.relu)):
        if max_abs_diff(out, fn(pre)) <= 1e-4:
            return f"h' uses {name}; the RNN cell uses tanh: {STEP_EQUATION}."
    return {
        "bias_only": f"With zero weights h' must be tanh(bias_ih + bias_hh); yours differs by {diff:.3g}. "
                     "Add both biases and apply tanh.",
        "input_term": f"With h = 0 and zero biases h' must be tanh(x @ weight_ih.T); "
                      f"yours differs by {diff:.3g}. Check the input term.",
        "hidden_term": f"With x = 0 and zero biases h' must be tanh(h @ weight_hh.T); "
                       f"yours differs by {diff:.3g}. Check the hidden term (weight_hh, transposed, not weight_ih).",
    }.get(label, f"h' differs from torch.nn.RNNCell with the same weights by {diff:.3g} "
                 f"(batch={batch}, hidden_size={hidden}, {str(expected.dtype).removeprefix('torch.')}): "
                 f"{STEP_EQUATION}.")


def rnn_cell_step_grad_problem(grads: Mapping[str, torch.Tensor | None] | None,
                               expected: Mapping[str, torch.Tensor], tol: float) -> str | None:
    """``grads`` of (h' * upstream).sum() by argument name, or None when h' did not require grad."""
    if grads is None:
        return NOT_CONNECTED
    for name in STEP_ARGS:
        got = grads.get(name)
        if got is None or tuple(got.shape) != tuple(expected[name].shape) or max_abs_diff(got, expected[name]) > tol:
            return (f"The gradient with respect to {name} is wrong: "
                    "h' must be computed with differentiable torch operations only.")
    return None


def _torch_cell(args: Mapping[str, torch.Tensor], grad: bool = False):
    """h' of ``torch.nn.RNNCell`` with the probe's weights; with ``grad``, also the gradients of (h' * upstream)."""
    hidden_size, input_size = args["weight_ih"].shape
    dtype = args["x"].dtype
    cell = torch.nn.RNNCell(input_size, hidden_size).to(dtype)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(args[name])
    x, h = args["x"].clone().requires_grad_(grad), args["h"].clone().requires_grad_(grad)
    out = cell(x, h)
    if not grad:
        return out.detach(), None
    (out * args["upstream"]).sum().backward()
    grads = {"x": x.grad, "h": h.grad, **{n: getattr(cell, n).grad for n in STEP_ARGS[2:]}}
    return out.detach(), grads


def _run_step(rnn_cell_step, args: Mapping[str, torch.Tensor]) -> torch.Tensor:
    hidden_size, input_size = args["weight_ih"].shape

    def hint(exc: BaseException) -> str:
        return ERROR_HINTS.get(rnn_cell_step_error_kind(exc, input_size, hidden_size), "")

    out = call_by_hand(rnn_cell_step, *(args[k] for k in STEP_ARGS), name="rnn_cell_step", ops=FUSED_OPS,
                       reason=FUSED_REASON, error_hint=hint)
    check_type(out, torch.Tensor, "rnn_cell_step(...)", "Return the new hidden state h' as a tensor.")
    return out


@keeps_rng
def check_rnn_cell_step(rnn_cell_step) -> None:
    """Compare ``rnn_cell_step`` with ``torch.nn.RNNCell`` (batch 2, input_size 3, hidden_size 4).

    Probes with zero weights (biases only), h = 0 (input term only) and x = 0 (hidden term only)
    come first, then all terms together in float32 (max difference below 1e-6), then the
    gradients of all six inputs in float64.
    """
    problem = scratch_problem("rnn_cell_step", names_used(rnn_cell_step), FUSED_NAMES, FUSED_REASON)
    if problem:
        raise CheckFailed(problem)
    gen = torch.Generator().manual_seed(0)
    for label in STEP_PROBES:
        args = rnn_cell_step_inputs(gen, label, 2, 3, 4, torch.float32)
        out = _run_step(rnn_cell_step, args)
        expected, _ = _torch_cell(args)
        problem = rnn_cell_step_problem(label, out, expected, tol=1e-6)
        if problem:
            raise CheckFailed(problem)
    args = rnn_cell_step_inputs(gen, "gradients", 2, 3, 4, torch.float64)
    inputs = {k: v.clone().requires_grad_(k != "upstream") for k, v in args.items()}
    out = _run_step(rnn_cell_step, inputs)
    expected, expected_grads = _torch_cell(args, grad=True)
    problem = rnn_cell_step_problem("values", out, expected, tol=1e-10)
    if problem:
        raise CheckFailed(problem)
    grads = None
    if out.requires_grad:
        (out * args["upstream"]).sum().backward()
        grads = {k: inputs[k].grad for k in STEP_ARGS}
    problem = rnn_cell_step_grad_problem(grads, expected_grads, tol=1e-8)
    if problem:
        raise CheckFailed(problem)
    print(compare_table({"h' vs nn.RNNCell (float64)": (out.detach(), expected),
                         **{f"d/d {k}": (grads[k], expected_grads[k]) for k in STEP_ARGS}}, atol=1e-8))
    print("rnn_cell_step: visible checks passed (biases, input term, hidden term, values, gradients).")


# --------------------------------------------------------------------------- run_cell

RUN_DIMS = ("seq_len", "batch", "hidden_size")


def run_cell_problem(h0: torch.Tensor, seen: Sequence[Any], outputs: Any, h_n: Any, expected: torch.Tensor,
                     expected_h_n: torch.Tensor, tol: float) -> str | None:
    """What is wrong with one run of ``run_cell`` (None if nothing).

    ``seen``: the hidden state the cell received at each call (None when it was not a tensor);
    ``outputs``, ``h_n``: what run_cell returned; ``expected`` (seq_len, batch, hidden_size) and
    ``expected_h_n`` (batch, hidden_size): what nn.RNN computes with the same weights.
    """
    seq, batch, hidden = expected.shape
    if len(seen) != seq:
        return (f"run_cell called the cell {len(seen)} times for seq_len={seq}: "
                "call it once per time step (for x_t in inputs).")
    previous = [h0] + [expected[t] for t in range(seq - 1)]
    for t, (got, want) in enumerate(zip(seen, previous, strict=True)):
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape) or max_abs_diff(got, want) > tol:
            if t == 0:
                return "The first step must receive h0 as its hidden state."
            if isinstance(got, torch.Tensor) and got.shape == h0.shape and max_abs_diff(got, h0) <= tol:
                return (f"Step {t} received h0 again: carry the hidden state over (h = cell(x_t, h)), "
                        "don't reset it every step.")
            return f"Step {t} received the wrong hidden state: pass the h returned by step {t - 1}."
    if isinstance(outputs, (list, tuple)):
        return ("run_cell returned outputs as a Python list: "
                "stack the per-step hidden states with torch.stack(..., dim=0).")
    if not isinstance(outputs, torch.Tensor):
        return "outputs must be a torch.Tensor of shape (seq_len, batch, hidden_size)."
    if tuple(outputs.shape) != (seq, batch, hidden):
        return shape_problem("outputs", outputs.shape, (seq, batch, hidden), RUN_DIMS,
                             "Stack one hidden state per time step along a new first dimension (dim=0).")
    if max_abs_diff(outputs, expected) > tol:
        if max_abs_diff(outputs[1:], expected[:-1]) <= tol:
            return ("outputs[t-1] must be h_t, the hidden state AFTER step t (once the cell has read inputs[t-1]): "
                    "you stored h before calling the cell.")
        return "outputs differ from nn.RNN with the same weights: outputs[t-1] is h_t, the hidden state after step t."
    if not isinstance(h_n, torch.Tensor):
        return "h_n must be a torch.Tensor of shape (batch, hidden_size)."
    if tuple(h_n.shape) != (batch, hidden):
        return shape_problem("h_n", h_n.shape, (batch, hidden), ("batch", "hidden_size"),
                             "For a single cell h_n is the last hidden state, without a num_layers dimension.")
    if max_abs_diff(h_n, expected_h_n) > tol:
        return "h_n must be the hidden state after the last step (it equals outputs[-1])."
    return None


@keeps_rng
def check_run_cell(run_cell) -> None:
    """Run ``run_cell`` with an ``nn.RNNCell`` over a (seq_len=5, batch=2, input_size=3) sequence, hidden_size=4.

    The cell records the hidden state it receives at every step; the outputs and h_n are
    compared with ``nn.RNN``'s with the same weights.
    """
    gen = torch.Generator().manual_seed(1)
    seq_len, batch_size, input_size, hidden_size = 5, 2, 3, 4
    rnn_cell = torch.nn.RNNCell(input_size, hidden_size)
    with torch.no_grad():
        for p in rnn_cell.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    inputs = torch.randn(seq_len, batch_size, input_size, generator=gen)
    h0 = torch.randn(batch_size, hidden_size, generator=gen)
    seen: list[torch.Tensor | None] = []

    def cell(x_t, h):
        seen.append(h.detach().clone() if isinstance(h, torch.Tensor) else None)
        return rnn_cell(x_t, h)

    result = call(run_cell, cell, inputs, h0)
    check_type(result, tuple, "run_cell(...)", "Return a pair: (outputs, h_n).")
    if len(result) != 2:
        raise CheckFailed(f"run_cell should return 2 values (outputs, h_n), got {len(result)}.")
    outputs, h_n = result
    rnn = torch.nn.RNN(input_size, hidden_size)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(rnn, f"{name}_l0").copy_(getattr(rnn_cell, name))
        expected, expected_h_n = rnn(inputs, h0.unsqueeze(0))
    problem = run_cell_problem(h0, seen, outputs, h_n, expected, expected_h_n[0], tol=1e-6)
    if problem:
        raise CheckFailed(problem)
    print(compare_table({"outputs vs nn.RNN": (outputs.detach(), expected),
                         "h_n vs nn.RNN": (h_n.detach(), expected_h_n[0])}))
    print("run_cell: visible checks passed.")


# --------------------------------------------------------------------------- rnn_shapes

SHAPE_KEYS = ("input", "h0", "output", "h_n")
ARG_NAMES = ("seq_len", "batch_size", "input_size", "hidden_size", "num_layers")


def shape_dims(batch_first: bool) -> dict[str, tuple[str, ...]]:
    """The named dimensions of each tensor nn.RNN reads or returns."""
    first = ("batch", "seq_len") if batch_first else ("seq_len", "batch")
    hidden = ("num_layers", "batch", "hidden_size")
    return {"input": (*first, "input_size"), "h0": hidden, "output": (*first, "hidden_size"), "h_n": hidden}


def plain_shapes(result: Any) -> Any:
    """``rnn_shapes``'s result as plain data: {key: [ints]} (a value that is no sequence of ints: its repr)."""
    if not isinstance(result, dict):
        return result
    out = {}
    for key, value in result.items():
        try:
            out[str(key)] = ([int(d) for d in value] if isinstance(value, (tuple, list, torch.Size))
                             else repr(value)[:200])
        except (TypeError, ValueError):
            out[str(key)] = repr(value)[:200]
    return out


def torch_shapes(seq_len: int, batch_size: int, input_size: int, hidden_size: int, num_layers: int,
                 batch_first: bool = False) -> dict[str, tuple[int, ...]]:
    """The shapes a real ``nn.RNN`` reads and returns for these sizes."""
    rnn = torch.nn.RNN(input_size, hidden_size, num_layers, batch_first=batch_first)
    x = torch.zeros((batch_size, seq_len, input_size) if batch_first else (seq_len, batch_size, input_size))
    h0 = torch.zeros(num_layers, batch_size, hidden_size)
    with torch.no_grad():
        output, h_n = rnn(x, h0)
    return {"input": tuple(x.shape), "h0": tuple(h0.shape), "output": tuple(output.shape), "h_n": tuple(h_n.shape)}


def rnn_shapes_problem(args: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], shapes: Any) -> str | None:
    """What is wrong with ``shapes`` (as :func:`plain_shapes` gives it) for the arguments ``args``."""
    if not isinstance(shapes, dict):
        return f'rnn_shapes(...) must return a dict with keys "input", "h0", "output", "h_n", got {shapes!r:.80}.'
    missing = [k for k in SHAPE_KEYS if k not in shapes]
    if missing:
        return f"rnn_shapes must return a dict with the keys {list(SHAPE_KEYS)}; missing {missing}."
    batch_first = bool(args.get("batch_first", False))
    dims = shape_dims(batch_first)
    shown = ", ".join(f"{k}={v}" for k, v in args.items())
    for key in SHAPE_KEYS:
        got = shapes[key]
        if not isinstance(got, list):
            return f"rnn_shapes(...)[{key!r}] must be a tuple of ints, got {got}."
        if tuple(got) == tuple(expected[key]):
            continue
        moved_batch = "batch" in swapped_dims(got, expected[key], dims[key]).split(" and ")
        if key in ("h0", "h_n") and batch_first and moved_batch:
            why = "batch_first only changes input and output: h0 and h_n stay (num_layers, batch, hidden_size)."
        elif key in ("input", "output") and batch_first:
            why = "With batch_first=True the batch dimension comes first: (batch, seq_len, ...)."
        elif key in ("h0", "h_n"):
            why = ("There is one hidden state per layer: h0 and h_n are (num_layers, batch, hidden_size), "
                   "with or without batch_first.")
        elif key == "input":
            why = "Without batch_first, nn.RNN reads (seq_len, batch, input_size)."
        else:
            why = "output holds the top layer's hidden state at every time step: (seq_len, batch, hidden_size)."
        return f"For {shown}: {shape_problem(key, got, expected[key], dims[key], why)}"
    return None


@keeps_rng
def check_rnn_shapes(rnn_shapes, batch_first: bool = False) -> None:
    """Compare ``rnn_shapes`` with the shapes of a real ``nn.RNN``.

    The RNN has seq_len=5, batch_size=3, input_size=4, hidden_size=6, num_layers=2: all different,
    so two swapped sizes show.
    """
    args = dict(seq_len=5, batch_size=3, input_size=4, hidden_size=6, num_layers=2, batch_first=batch_first)
    shapes = call(rnn_shapes, **args)
    check_type(shapes, dict, "rnn_shapes(...)", 'Return a dict with keys "input", "h0", "output", "h_n".')
    problem = rnn_shapes_problem(args, torch_shapes(**args), plain_shapes(shapes))
    if problem:
        raise CheckFailed(problem)
    print(f"rnn_shapes (batch_first={batch_first}): visible checks passed.")


# --------------------------------------------------------------------------- last_time_step


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return tuple(a.shape) == tuple(b.shape) and max_abs_diff(a, b) == 0


def last_time_step_problem(output: torch.Tensor, batch_first: bool, got: Any, expected: torch.Tensor,
                           tol: float = 0.0) -> str | None:
    """What is wrong with ``got`` = last_time_step(output, batch_first); ``expected`` is (batch, hidden_size)."""
    if not isinstance(got, torch.Tensor):
        return "last_time_step must return a torch.Tensor of shape (batch, hidden_size)."
    if batch_first and _same(got, output[-1]) and not _same(got, expected):
        return ("With batch_first=True, output[-1] is the last sequence of the batch, not the last time step: "
                "use output[:, -1].")
    if not batch_first and _same(got, output[:, -1]) and not _same(got, expected):
        return ("With batch_first=False the time dimension is dim 0: output[:, -1] is every step of the last "
                "sequence; use output[-1].")
    if tuple(got.shape) != tuple(expected.shape):
        return shape_problem("last_time_step(output)", got.shape, expected.shape, ("batch", "hidden_size"),
                             f"With batch_first={batch_first} the time dimension is dim {1 if batch_first else 0}.")
    if max_abs_diff(got, expected) > tol:
        return (f"last_time_step must return the output at the last time step (batch_first={batch_first}): "
                "it equals h_n[-1], the top layer's last hidden state.")
    return None


@keeps_rng
def check_last_time_step(last_time_step) -> None:
    """Check ``last_time_step`` against the top layer of h_n of a real ``nn.RNN``, both layouts.

    seq_len=7, batch=3, input_size=5, hidden_size=4, num_layers=2.
    """
    for batch_first in (False, True):
        torch.manual_seed(0)
        rnn = torch.nn.RNN(5, 4, num_layers=2, batch_first=batch_first)
        x = torch.randn((3, 7, 5) if batch_first else (7, 3, 5))
        with torch.no_grad():
            output, h_n = rnn(x)
        last = call(last_time_step, output, batch_first=batch_first)
        problem = last_time_step_problem(output, batch_first, last, h_n[-1], tol=1e-6)
        if problem:
            raise CheckFailed(f"last_time_step(output, batch_first={batch_first}): {problem}")
    print("last_time_step: visible checks passed (equals h_n[-1] in both layouts).")
