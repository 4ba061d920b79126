"""Visible checks of the ``char_lm`` assignment's BPTT notebook (shipped to students).

:func:`check_rnn_bptt_shapes` and :func:`check_rnn_bptt_values` compare your ``rnn_bptt`` with the gradients
PyTorch's autograd computes for the same forward pass (``nn.RNN`` with the same weights) in float64.
:func:`check_clip_grad_norm` compares your ``clip_grad_norm`` with ``torch.nn.utils.clip_grad_norm_``.

Both exercises are written **by hand**: while your function runs, the checks switch off what would do the work
for you (autograd's backward of tanh, ``aten::tanh_backward``, for ``rnn_bptt``; torch's fused norm for
``clip_grad_norm``), and code that names autograd or torch's clipping functions earns nothing.

When the gradients are wrong, the message names the fault where it can: the known bugs (the tanh derivative
left out, the gradient from step t+1 left out, ...) are recognised by recomputing autograd's gradients with that
bug built into the forward pass, and comparing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .checks import CheckFailed, check_type, compare_table, describe_shape, quiet, refused_ops

# Captured at import time: the setup cell imports the checks before any solution cell runs.
_TENSOR = torch.Tensor

ARGS = ("inputs", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
DIMS = {
    "inputs": ("seq_len", "batch", "input_size"),
    "h0": ("batch", "hidden_size"),
    "weight_ih": ("hidden_size", "input_size"),
    "weight_hh": ("hidden_size", "hidden_size"),
    "bias_ih": ("hidden_size",),
    "bias_hh": ("hidden_size",),
}

# Names whose use in the solution cell means autograd did the work (exact names only: ``grad_outputs`` is fine).
AUTOGRAD_NAMES = ("backward", "autograd", "grad", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "grad_and_value",
                  "linearize", "functional_call", "func", "run_backward", "_execution_engine", "_engine_run_backward",
                  "enable_grad", "set_grad_enabled", "requires_grad", "requires_grad_", "forward_ad", "make_dual",
                  "_make_dual", "_ImperativeEngine", "grad_fn", "next_functions")
AUTOGRAD_REASON = ("rnn_bptt must compute the gradients by hand, step by step backwards through time; "
                   "autograd (backward, torch.autograd, torch.func) earns no points in this exercise.")
# aten operators refused while rnn_bptt runs (at the CPU dispatch key, where their kernels live) -> message label.
AUTOGRAD_OPS = {"tanh_backward": "autograd (aten::tanh_backward, which every backward through tanh runs)"}

CLIP_NAMES = ("clip_grad_norm_", "clip_grad_norm", "get_total_norm", "clip_grads_with_norm_", "_get_total_norm",
              "_clip_grads_with_norm_", "_foreach_norm", "clip_grad")
CLIP_REASON = ("clip_grad_norm must compute the norm and scale the gradients itself, with plain tensor operations; "
               "torch's clipping functions (torch.nn.utils.clip_grad_norm_, get_total_norm, ...) earn no points.")
CLIP_OPS = {"_foreach_norm.Scalar": "torch._foreach_norm"}

EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ scales by max_norm / (total_norm + 1e-6)

TANH_MISSING = ("rnn_bptt is missing the tanh derivative (1 - h_t^2): the gradient flowing into h_t must be "
                "multiplied by (1 - h_t**2) before it reaches the pre-activation, the weights and h_{t-1}.")
RECURRENT_MISSING = ("rnn_bptt is missing the gradient that flows into h_t from step t+1: the gradient reaching h_t "
                     "is grad_outputs[t-1] plus what comes back from the next step, (da_{t+1}) @ weight_hh. Carry it "
                     "from one iteration of the backward loop to the next.")
TANH_OF_H = ("rnn_bptt uses 1 - tanh(h_t)^2 as the tanh derivative: h_t already is tanh(a_t), so the derivative "
             "is 1 - h_t**2.")
PREACTIVATION = ("rnn_bptt uses 1 - a_t^2 (the pre-activation) as the tanh derivative: it is 1 - tanh(a_t)^2 "
                 "= 1 - h_t**2, with h_t the step's output.")
KNOWN_BUGS = {"tanh_missing": TANH_MISSING, "recurrent_missing": RECURRENT_MISSING, "tanh_of_h": TANH_OF_H,
              "preactivation": PREACTIVATION}

# Sizes of the visible checks: seq_len, batch_size, input_size, hidden_size all different, so a swap shows.
SHAPE_SIZES = (4, 3, 5, 2)
VALUE_SIZES = ((5, 3, 4, 6), (1, 2, 3, 3), (6, 1, 2, 5))
SEED = 0


# --------------------------------------------------------------------------- refusing operators


def call_refusing(fn: Callable, args: tuple, ops: Mapping[str, str]) -> tuple[Any, list[str], BaseException | None]:
    """(result, refused calls, exception) of ``fn(*args)`` with ``ops`` refused; the stub's NotImplementedError
    propagates."""
    result, error = None, None
    with refused_ops(ops, key="CPU") as calls:
        try:
            with quiet():
                result = fn(*args)
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - any crash is reported
            error = exc
    return result, list(calls), error


# --------------------------------------------------------------------------- rnn_bptt


def bptt_inputs(gen: torch.Generator, seq_len: int, batch_size: int, input_size: int, hidden_size: int,
                dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """Random arguments of ``rnn_bptt`` (weights scaled by 0.5, so tanh is not saturated); none requires grad."""
    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    return {
        "inputs": randn(seq_len, batch_size, input_size),
        "h0": randn(batch_size, hidden_size, scale=0.5),
        "weight_ih": randn(hidden_size, input_size, scale=0.5),
        "weight_hh": randn(hidden_size, hidden_size, scale=0.5),
        "bias_ih": randn(hidden_size, scale=0.5),
        "bias_hh": randn(hidden_size, scale=0.5),
        "grad_outputs": randn(seq_len, batch_size, hidden_size),
    }


def bptt_reference(args: Mapping[str, torch.Tensor], bug: str | None = None) -> dict[str, torch.Tensor]:
    """Autograd's gradients of ``(outputs * grad_outputs).sum()`` for the tanh RNN (float64, genuine torch).

    ``bug`` builds a known mistake into the forward pass so that autograd's gradients are the buggy ones:
    the value of h_t stays tanh(a_t), but its derivative becomes 1 ("tanh_missing"), 1 - tanh(h_t)^2
    ("tanh_of_h") or 1 - a_t^2 ("preactivation"); "recurrent_missing" cuts the path from h_{t-1} to step t
    (except from h_0), so only grad_outputs reaches each h_t.
    """
    leaves = {k: args[k].detach().clone().requires_grad_(True) for k in ARGS}
    grad_outputs = args["grad_outputs"].detach()
    h = leaves["h0"]
    total = grad_outputs.new_zeros(())
    with torch.enable_grad():
        for t in range(leaves["inputs"].shape[0]):
            prev = h.detach() if bug == "recurrent_missing" and t > 0 else h
            a = (leaves["inputs"][t] @ leaves["weight_ih"].T + leaves["bias_ih"]
                 + prev @ leaves["weight_hh"].T + leaves["bias_hh"])
            value = torch.tanh(a)
            slope = {"tanh_missing": torch.ones_like(a), "tanh_of_h": 1 - torch.tanh(value) ** 2,
                     "preactivation": 1 - a ** 2}.get(bug or "")
            h = value if slope is None else value.detach() + (a - a.detach()) * slope.detach()
            total = total + (h * grad_outputs[t]).sum()
        grads = torch.autograd.grad(total, [leaves[k] for k in ARGS], allow_unused=True)
    return {k: (g if g is not None else torch.zeros_like(leaves[k])).detach() for k, g in zip(ARGS, grads, strict=True)}


def bptt_structure_problem(result: Any, args: Mapping[str, Any]) -> str | None:
    """Type, keys, dtype and shape of ``rnn_bptt``'s result (tensors in ``result``; shapes and dtypes from
    ``args``, whose values are tensors or ``(shape, dtype name)`` pairs)."""
    if not isinstance(result, dict):
        return (f"rnn_bptt should return a dict of gradients keyed {', '.join(ARGS)}, "
                f"got {type(result).__name__}.")
    missing = [k for k in ARGS if k not in result]
    extra = sorted(str(k) for k in result if k not in ARGS)
    if missing:
        return (f"rnn_bptt's dict lacks the key(s) {', '.join(missing)}: return the gradient of every argument "
                f"but grad_outputs, keyed {', '.join(ARGS)}." + (f" Unexpected keys: {', '.join(extra)}." if extra
                                                                  else ""))
    for key in ARGS:
        value = result[key]
        shape, dtype = _shape_dtype(args[key])
        if not _is_tensor(value):
            return f"rnn_bptt's gradient {key!r} should be a torch.Tensor, got {_type_name(value)}."
        got_dtype = str(value.dtype).removeprefix("torch.") if isinstance(value, _TENSOR) else value["dtype"]
        got_shape = tuple(value.shape) if isinstance(value, _TENSOR) else tuple(value["shape"])
        if got_dtype != dtype:
            return (f"rnn_bptt's gradient {key!r} has dtype {got_dtype}, expected {dtype} (the dtype of {key}): "
                    f"create accumulators with torch.zeros_like({key}), not torch.zeros(...).")
        if got_shape != shape:
            why = " A parameter's gradient has the parameter's shape." if key.startswith(("weight", "bias")) else ""
            if key == "weight_ih" and got_shape == shape[::-1]:
                why += " You computed x^T @ da: the gradient of x W^T with respect to W is da^T @ x."
            return (f"rnn_bptt's gradient {key!r} has shape {got_shape}, expected "
                    f"{describe_shape(shape, DIMS[key])}.{why}")
    return None


def _type_name(value: Any) -> str:
    """A value's type name; a value the grader's probe reported as ``{"type": name}`` gives that name."""
    if isinstance(value, dict) and isinstance(value.get("type"), str) and value["type"].isidentifier():
        return value["type"][:60]
    return type(value).__name__


def _is_tensor(value: Any) -> bool:
    return isinstance(value, _TENSOR) or (isinstance(value, dict) and "tensor" in value and "shape" in value)


def _shape_dtype(value: Any) -> tuple[tuple[int, ...], str]:
    if isinstance(value, _TENSOR):
        return tuple(value.shape), str(value.dtype).removeprefix("torch.")
    shape, dtype = value
    return tuple(shape), dtype


def _within(got: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], tol: float) -> list[str]:
    """The keys whose gradient is off by more than ``tol`` times its scale."""
    wrong = []
    for key in ARGS:
        a, e = got[key].detach().double(), expected[key].double()
        scale = max(1.0, float(e.abs().max())) if e.numel() else 1.0
        diff = (a - e).abs()
        if tuple(a.shape) != tuple(e.shape) or torch.isnan(diff).any() or (diff.numel() and diff.max() > tol * scale):
            wrong.append(key)
    return wrong


def bptt_values_problem(result: Mapping[str, torch.Tensor], args: Mapping[str, torch.Tensor],
                        tol: float = 1e-9) -> str | None:
    """None when every gradient matches autograd's; else the known bug it matches, or which gradients are wrong."""
    expected = bptt_reference(args)
    wrong = _within(result, expected, tol)
    if not wrong:
        return None
    for bug, message in KNOWN_BUGS.items():
        if bug == "recurrent_missing" and args["inputs"].shape[0] < 2:
            continue
        if not _within(result, bptt_reference(args, bug), tol):
            return message
    sizes = "seq_len={}, batch={}, input_size={}, hidden_size={}".format(*args["inputs"].shape,
                                                                          args["weight_hh"].shape[0])
    worst = {k: float((result[k].detach().double() - expected[k].double()).abs().max()) for k in wrong}
    right = [k for k in ARGS if k not in wrong]
    text = (f"rnn_bptt's gradients differ from autograd's ({sizes}, float64): "
            + ", ".join(f"{k} (max difference {worst[k]:.3g})" for k in wrong) + " wrong"
            + (f"; {', '.join(right)} right." if right else "."))
    return f"{text} {_hint(wrong)}".strip()


def _hint(wrong: list[str]) -> str:
    if wrong == ["h0"]:
        return "The gradient of h_0 is what flows back out of step 1: (da_1) @ weight_hh."
    if wrong == ["inputs"]:
        return "The gradient of x_t is (da_t) @ weight_ih, for every step t."
    if set(wrong) <= {"bias_ih", "bias_hh"}:
        return "Both bias gradients are da_t summed over the batch (dim 0) and over the steps."
    if "weight_hh" in wrong and len(wrong) == 1:
        return "weight_hh's gradient sums (da_t)^T @ h_{t-1} over the steps, with h_0 at step 1."
    return ""


def run_rnn_bptt(fn: Callable, args: Mapping[str, torch.Tensor]) -> tuple[Any, list[str], BaseException | None]:
    """Call ``fn`` on copies of ``args`` (none requires grad) with autograd's tanh backward refused."""
    copies = tuple(args[k].detach().clone() for k in (*ARGS, "grad_outputs"))
    return call_refusing(fn, copies, AUTOGRAD_OPS)


def _call_rnn_bptt(fn: Callable, args: Mapping[str, torch.Tensor]) -> dict:
    try:
        result, calls, error = run_rnn_bptt(fn, args)
    except NotImplementedError:
        raise CheckFailed("rnn_bptt is not implemented yet: replace `raise NotImplementedError()`.") from None
    if calls:
        raise CheckFailed(f"rnn_bptt calls {', '.join(sorted(set(calls)))}: {AUTOGRAD_REASON}")
    if error is not None:
        raise CheckFailed(f"rnn_bptt raised {type(error).__name__}: {error}")
    problem = bptt_structure_problem(result, args)
    if problem:
        raise CheckFailed(problem)
    return result


def _static_problem(fn: Callable, forbidden: tuple[str, ...], reason: str, name: str) -> None:
    from .checks import names_used, scratch_problem

    problem = scratch_problem(name, names_used(fn), forbidden, reason)
    if problem:
        raise CheckFailed(problem)


def check_rnn_bptt_shapes(rnn_bptt) -> None:
    """rnn_bptt returns a dict with the six gradients, each with its argument's dtype and shape."""
    check_type(rnn_bptt, type(check_rnn_bptt_shapes), "rnn_bptt", "Define it with def rnn_bptt(...).")
    _static_problem(rnn_bptt, AUTOGRAD_NAMES, AUTOGRAD_REASON, "rnn_bptt")
    gen = torch.Generator().manual_seed(SEED)
    args = bptt_inputs(gen, *SHAPE_SIZES)
    _call_rnn_bptt(rnn_bptt, args)
    print("rnn_bptt returns the six gradients with the right dtypes and shapes "
          "(seq_len={}, batch={}, input_size={}, hidden_size={}).".format(*SHAPE_SIZES))


def check_rnn_bptt_values(rnn_bptt) -> None:
    """rnn_bptt's gradients match autograd's (float64, max difference below 1e-9) for several shapes."""
    _static_problem(rnn_bptt, AUTOGRAD_NAMES, AUTOGRAD_REASON, "rnn_bptt")
    gen = torch.Generator().manual_seed(SEED + 1)
    for sizes in VALUE_SIZES:
        args = bptt_inputs(gen, *sizes)
        result = _call_rnn_bptt(rnn_bptt, args)
        problem = bptt_values_problem(result, args)
        if problem:
            raise CheckFailed(problem)
    expected = bptt_reference(args)
    print(compare_table({k: (result[k], expected[k]) for k in ARGS}, atol=1e-9))
    print(f"rnn_bptt matches autograd for {len(VALUE_SIZES)} shapes (seq_len 1 included).")


# --------------------------------------------------------------------------- clip_grad_norm


def clip_case(gen: torch.Generator, shapes: list[tuple[int, ...]], none: list[bool], scale: float, max_norm: float,
              kind: str, dtype: torch.dtype = torch.float64) -> dict:
    """One clipping case: a gradient per parameter (None where ``none`` says), ``max_norm`` and how the parameters
    are passed (``kind``: "list" or "generator")."""
    grads = [None if skip else (torch.randn(*s, generator=gen, dtype=torch.float64) * scale).to(dtype)
             for s, skip in zip(shapes, none, strict=True)]
    return {"shapes": [list(s) for s in shapes], "grads": grads, "max_norm": max_norm, "kind": kind,
            "dtype": str(dtype).removeprefix("torch.")}


def make_parameters(case: Mapping) -> list[torch.nn.Parameter]:
    """Fresh parameters (zeros) whose ``.grad`` are copies of the case's gradients (None stays None)."""
    params = []
    for shape, grad in zip(case["shapes"], case["grads"], strict=True):
        p = torch.nn.Parameter(torch.zeros(*shape, dtype=getattr(torch, case["dtype"])))
        p.grad = None if grad is None else grad.clone()
        params.append(p)
    return params


def run_clip(fn: Callable, case: Mapping) -> dict:
    """Call ``fn`` as the case says, with torch's fused norm refused; what it returned and did, as plain values.

    Keys: ``norm`` (the returned value, or None with ``returned`` naming its type), ``grads`` (after the call),
    ``same`` (each ``.grad`` is still the tensor it was), ``pulled`` (parameters taken from the generator),
    ``calls`` (refused operators), ``error`` (the exception's type name).
    """
    params = make_parameters(case)
    before = [p.grad for p in params]
    pulled = [0]

    def generate():
        for p in params:
            pulled[0] += 1
            yield p

    parameters = generate() if case["kind"] == "generator" else list(params)
    result, calls, error = call_refusing(fn, (parameters, case["max_norm"]), CLIP_OPS)
    observed: dict = {"calls": calls, "pulled": pulled[0], "error": None, "returned": type(result).__name__}
    if error is not None:
        name = type(error).__name__
        observed["error"] = name if name.isidentifier() and len(name) <= 60 else "an exception"
        return observed
    observed["norm"] = float(result) if type(result) in (float, int) else None
    observed["grads"] = [p.grad.detach().clone() if isinstance(p.grad, _TENSOR) else None for p in params]
    observed["same"] = [p.grad is b for p, b in zip(params, before, strict=True)]
    return observed


def clip_reference(case: Mapping) -> tuple[float, list[torch.Tensor | None]]:
    """torch.nn.utils.clip_grad_norm_'s total norm and clipped gradients for the case (genuine torch)."""
    params = make_parameters(case)
    norm = torch.nn.utils.clip_grad_norm_(params, case["max_norm"])
    return float(norm), [p.grad for p in params]


def _per_parameter(case: Mapping) -> list[torch.Tensor | None]:
    out = []
    for g in case["grads"]:
        if g is None:
            out.append(None)
            continue
        coef = case["max_norm"] / (float(g.double().norm()) + EPS)
        out.append(g * coef if coef < 1 else g.clone())
    return out


def _grads_close(got: list, expected: list, tol: float) -> bool:
    if len(got) != len(expected):
        return False
    for a, e in zip(got, expected, strict=True):
        if (a is None) != (e is None):
            return False
        if a is not None and (tuple(a.shape) != tuple(e.shape)
                              or not torch.allclose(a.double(), e.double(), rtol=tol, atol=tol)):
            return False
    return True


def clip_problem(case: Mapping, observed: Mapping) -> str | None:
    """None when clip_grad_norm did what torch.nn.utils.clip_grad_norm_ does on the case; else what went wrong."""
    has_none = any(g is None for g in case["grads"])
    kind = "a generator" if case["kind"] == "generator" else "a list"
    if observed.get("calls"):
        return f"clip_grad_norm calls {', '.join(sorted(set(observed['calls'])))}: {CLIP_REASON}"
    if observed.get("error"):
        if has_none and observed["error"] in ("AttributeError", "TypeError", "RuntimeError"):
            return (f"clip_grad_norm raised {observed['error']} on parameters some of whose .grad is None: skip "
                    "those parameters (if p.grad is None: continue), as torch.nn.utils.clip_grad_norm_ does.")
        return f"clip_grad_norm raised {observed['error']} (parameters given as {kind})."
    tol = 1e-10 if case["dtype"] == "float64" else 1e-5
    norm, expected = clip_reference(case)
    got_norm, grads = observed.get("norm"), observed.get("grads") or []
    clipped = case["max_norm"] / (norm + EPS) < 1
    if got_norm is None:
        return (f"clip_grad_norm should return the total norm as a Python float, got {observed.get('returned')}: "
                "return total_norm.item() or float(total_norm).")
    unchanged = _grads_close(grads, [g.clone() if g is not None else None for g in case["grads"]], tol)
    if case["kind"] == "generator" and clipped and (unchanged or got_norm == 0.0):
        return ("clip_grad_norm iterates `parameters` twice: a generator such as model.parameters() is empty the "
                "second time, so nothing was clipped" + (" and the norm came out 0" if got_norm == 0.0 else "")
                + ". Turn it into a list once, at the start: params = list(parameters).")
    if len(grads) != len(expected) or any((a is None) != (e is None) for a, e in zip(grads, expected, strict=False)):
        return "clip_grad_norm must leave a .grad that is None as None."
    close_norm = math.isclose(got_norm, norm, rel_tol=tol, abs_tol=tol)
    if clipped and not close_norm and math.isclose(got_norm, case["max_norm"] * norm / (norm + EPS), rel_tol=1e-6):
        return (f"clip_grad_norm returned {got_norm:.6g}, the norm *after* clipping (about max_norm); return the "
                f"total norm computed before scaling ({norm:.6g}).")
    if clipped and _grads_close(grads, _per_parameter(case), tol) and not _grads_close(grads, expected, tol):
        return ("clip_grad_norm clips each parameter's gradient by its own norm: the norm is global, the L2 norm of "
                "all gradients together (as if concatenated into one vector), and every gradient is scaled by the "
                "same factor max_norm / (total_norm + 1e-6).")
    if not close_norm:
        return (f"clip_grad_norm returned {got_norm:.6g}, expected {norm:.6g}: the total norm is the L2 norm of all "
                "gradients together, sqrt(sum of every gradient's squared entries), parameters whose .grad is None "
                "skipped.")
    if not _grads_close(grads, expected, tol):
        if not clipped:
            return (f"clip_grad_norm changed gradients whose total norm ({norm:.4g}) is below max_norm "
                    f"({case['max_norm']:g}): scale only when max_norm / (total_norm + 1e-6) < 1.")
        return ("clip_grad_norm's clipped gradients are wrong: multiply every gradient by the same factor "
                "max_norm / (total_norm + 1e-6).")
    if clipped and not all(observed.get("same") or []):
        return ("clip_grad_norm replaced .grad with new tensors: scale the gradients in place "
                "(p.grad.mul_(factor)), so that an optimizer holding them sees the change.")
    return None


def clip_cases(gen: torch.Generator, dtype: torch.dtype = torch.float64) -> list[tuple[str, dict]]:
    """The visible check's cases: (description, case)."""
    shapes = [(3, 4), (5,), (2, 2, 2), (6,)]
    return [
        ("a list, total norm above max_norm", clip_case(gen, shapes, [False] * 4, 1.0, 1.0, "list", dtype)),
        ("a generator, total norm above max_norm", clip_case(gen, shapes, [False] * 4, 1.0, 0.5, "generator", dtype)),
        ("some .grad None", clip_case(gen, shapes, [False, True, False, True], 2.0, 1.0, "list", dtype)),
        ("a generator, total norm below max_norm", clip_case(gen, shapes, [False] * 4, 0.1, 5.0, "generator", dtype)),
    ]


def check_clip_grad_norm(clip_grad_norm) -> None:
    """clip_grad_norm against torch.nn.utils.clip_grad_norm_: the norm returned, the gradients scaled in place."""
    check_type(clip_grad_norm, type(check_clip_grad_norm), "clip_grad_norm", "Define it with def clip_grad_norm(...).")
    _static_problem(clip_grad_norm, CLIP_NAMES, CLIP_REASON, "clip_grad_norm")
    gen = torch.Generator().manual_seed(SEED)
    for description, case in clip_cases(gen):
        try:
            observed = run_clip(clip_grad_norm, case)
        except NotImplementedError:
            raise CheckFailed("clip_grad_norm is not implemented yet: replace `raise NotImplementedError()`.") from None
        problem = clip_problem(case, observed)
        if problem:
            raise CheckFailed(f"{problem} (case: {description})")
        norm, _ = clip_reference(case)
        print(f"{description:40s} norm {observed['norm']:.6f} (torch {norm:.6f})  ok")
