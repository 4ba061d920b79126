"""What is wrong with an LSTM or GRU cell: the diagnosis shared by the visible checks and the hidden tests.

A wrong cell is not just rejected. Probes force single gates open or shut through their bias block
(a pre-activation of +-80 puts sigmoid at 1 or ~2e-35 in float64), switch one input path off, move a
bias from ``bias_ih`` to ``bias_hh`` or zero the state, and the cell's outputs on them are matched

* against **known bugs** (the LSTM of Liu Er's notes, each activation swapped, the cell memory dropped, the
  gate blocks permuted, the GRU's reset applied before the matmul, ...): outputs that are exactly
  those of one bug get that bug's name;
* otherwise against the **rules** the probes check, one message per rule the cell breaks, so even
  a cell with several bugs is located.

Every reference number is torch's own: outputs come from ``nn.LSTMCell`` / ``nn.GRUCell``, and the
known bugs start from the terms ``x W_ih^T + b_ih`` and ``h W_hh^T + b_hh`` read off ``nn.LSTMCell``
(:func:`torch_linear`). Nothing here computes a recurrent step from the weights by itself.

Two halves. :func:`run_cell` calls the student's cell and returns what it gave back; it runs next
to the student's code and never calls torch's cells (the grader's sandbox refuses them there).
Everything else judges those results, in the grader's own process for the hidden tests and in the
notebook's kernel for the visible checks.
"""

from __future__ import annotations

import itertools
import math
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.rnn import GRUCell as _TorchGRUCell  # not nn.GRUCell: a submission may rebind that name
from torch.nn.modules.rnn import LSTMCell as _TorchLSTMCell

from .checks import max_abs_diff, quiet

GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
GATE_NAMES = {"i": "input gate i", "f": "forget gate f", "g": "candidate g", "o": "output gate o",
              "r": "reset gate r", "z": "update gate z", "n": "candidate n"}
CLASS_NAME = {"lstm": "LSTMCellScratch", "gru": "GRUCellScratch"}
TORCH_CELL = {"lstm": _TorchLSTMCell, "gru": _TorchGRUCell}
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

SAT = 80.0  # a gate's pre-activation that forces it open (+SAT) or shut (-SAT), split over bias_ih and bias_hh
PROBE_TOL = 1e-9
VALUE_TOL = {"float64": 1e-10, "float32": 2e-5}
GRAD_TOL = {"float64": 1e-9, "float32": 1e-4}  # times max(1, largest gradient)

# Names whose use means the cell is not written from scratch (the visible and the hidden checks apply the same rule).
FORBIDDEN = (
    "LSTMCell", "GRUCell", "RNNCell", "RNNCellBase", "RNNBase", "LSTM", "GRU", "RNN",
    "lstm_cell", "gru_cell", "lstm", "gru", "_VF", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell",
    "rnn_tanh_cell", "rnn_relu_cell",
)
REASON = (
    "this exercise asks for the gate equations written by hand (matrix products, sigmoid, tanh); "
    "subclassing or wrapping torch's cells (nn.LSTMCell, nn.GRUCell) or calling their fused functions "
    "(torch.lstm_cell, torch.gru_cell, torch._VF...) lets PyTorch do the work, so it earns no points for the cell."
)

# What a failed diagnosis says first, by the test it stops.
LEAD = {
    "values": "",
    "gradients": "gradients cannot match while the forward pass is wrong: ",
    "training": "the retrained model is judged with torch's cell, so the forward pass must be right first: ",
}


def first_line(exc: BaseException) -> str:
    """``"RuntimeError: <first line of the message>"``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def layout(kind: str) -> str:
    """The four parameters and their shapes, in words."""
    k = len(GATES[kind])
    return (f"weight_ih ({k}*hidden_size, input_size), weight_hh ({k}*hidden_size, hidden_size), "
            f"bias_ih ({k}*hidden_size,), bias_hh ({k}*hidden_size,)")


def block_layout(kind: str) -> str:
    """``"rows 0:H input gate i, H:2H forget gate f, ..."``."""
    rows = [f"{b}H:{b + 1}H" for b in range(len(GATES[kind]))]
    rows[0], rows[1] = "0:H", "H:2H"
    return "rows " + ", ".join(f"{r} {GATE_NAMES[g]}" for r, g in zip(rows, GATES[kind], strict=True))


def max_diff(actual: Any, expected: torch.Tensor) -> float:
    """Largest absolute difference; inf when ``actual`` is no tensor of ``expected``'s shape, or NaNs differ."""
    if not isinstance(actual, torch.Tensor) or tuple(actual.shape) != tuple(expected.shape):
        return math.inf
    return max_abs_diff(actual, expected)


# ----------------------------------------------------------------------------- from scratch

def scratch_violation(cls: Any, kind: str) -> str | None:
    """The names of ``FORBIDDEN`` that the class uses (its bases, and the names its methods refer to), or None."""
    used: set[str] = set()
    members = []
    if isinstance(cls, type):
        used.update(base.__name__ for base in cls.__mro__[1:])
        members = [getattr(m, "__func__", m) for m in vars(cls).values()]
    else:
        members = [cls]
    for member in members:
        code = getattr(member, "__code__", None)
        stack = [code] if isinstance(code, types.CodeType) else []
        while stack:
            co = stack.pop()
            used.update(co.co_names)
            used.update(c for c in co.co_consts if isinstance(c, str))
            stack.extend(c for c in co.co_consts if isinstance(c, types.CodeType))
    hits = sorted(set(FORBIDDEN) & used)
    return f"{CLASS_NAME[kind]} uses {', '.join(hits)}: {REASON}" if hits else None


# ----------------------------------------------------------------------------- running the student's cell

def parameter_shapes(cell: Any) -> dict[str, dict]:
    """The cell's parameters and state_dict entries as name -> shape, and the type of each contract attribute."""
    return {"parameters": {n: list(p.shape) for n, p in cell.named_parameters()},
            "state_dict": {n: list(t.shape) for n, t in cell.state_dict().items()},
            "attributes": {n: type(getattr(cell, n, None)).__name__ for n in PARAMS}}


def run_cell(cls: Any, kind: str, params: dict[str, torch.Tensor], x: torch.Tensor, h: torch.Tensor,
             c: torch.Tensor, up_h: torch.Tensor | None = None, up_c: torch.Tensor | None = None) -> dict:
    """Build ``cls(input_size, hidden_size)`` for x's and h's sizes, load ``params`` and take one step.

    x: (batch, input_size); h, c: (batch, hidden_size) (c is not passed to a GRU). Returns
    ``{"h": h', "c": c' (None for the GRU), "where": sizes and dtype}``, or
    ``{"error": "build" | "forward" | "return", "message", "where"}`` (a build error also carries
    ``"shapes"``, see :func:`parameter_shapes`, when the cell could be made). With ``up_h`` (and
    ``up_c``): ``"grads"`` of ``(h' * up_h).sum() + (c' * up_c).sum()`` with respect to x, h, c and
    the four parameters (None when the outputs do not require grad), or ``"backward_error"``.
    NotImplementedError (the unanswered stub) propagates.
    """
    lstm = kind == "lstm"
    where = {"batch": x.shape[0], "input_size": x.shape[1], "hidden_size": h.shape[1],
             "dtype": str(x.dtype).removeprefix("torch.")}
    cell = None
    with quiet():
        try:
            cell = cls(x.shape[1], h.shape[1])
            if x.dtype == torch.float64:
                cell = cell.double() or cell
            cell.load_state_dict(params)
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - any error of the student's cell becomes a message
            result = {"error": "build", "message": first_line(exc), "where": where}
            if isinstance(cell, nn.Module):
                try:
                    result["shapes"] = parameter_shapes(cell)
                except Exception:  # noqa: BLE001 - the generic message still applies
                    pass
            return result
        if up_h is not None:
            x, h, c = (t.clone().requires_grad_(True) for t in (x, h, c))
        try:
            out = cell(x, (h, c)) if lstm else cell(x, h)
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - a crash of student code is reported, not raised
            return {"error": "forward", "message": first_line(exc), "where": where}
        if lstm:
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                return {"error": "return", "message": f"returned {type(out).__name__}", "where": where}
            out_h, out_c = out
        else:
            out_h, out_c = out, None
        for value in (out_h, out_c) if lstm else (out_h,):
            if not isinstance(value, torch.Tensor):
                return {"error": "return", "message": f"returned a {type(value).__name__} where a tensor belongs",
                        "where": where}
        result = {"h": out_h.detach(), "c": out_c.detach() if lstm else None, "where": where}
        if up_h is None:
            return result
        if not out_h.requires_grad or (lstm and not out_c.requires_grad):
            result["grads"] = None
            return result
        try:
            loss = (out_h * up_h).sum() + ((out_c * up_c).sum() if lstm else 0)
            loss.backward()
        except Exception as exc:  # noqa: BLE001 - reported to the student
            result["backward_error"] = first_line(exc)
            return result
        named = dict(cell.named_parameters())
        grads = {"x": x.grad, "h": h.grad, "c": c.grad if lstm else None}
        grads.update({n: named[n].grad if n in named else None for n in PARAMS})
        result["grads"] = grads
        return result


# ----------------------------------------------------------------------------- torch's numbers

_CELLS: dict[tuple, nn.Module] = {}


def _torch_step(kind: str, params: dict[str, torch.Tensor], x: torch.Tensor, h: torch.Tensor,
                c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step of torch's own cell with ``params`` (no autograd): (h', c') for the LSTM, (h', None) for the GRU."""
    rows, input_size = params["weight_ih"].shape
    key = (kind, input_size, rows // len(GATES[kind]), params["weight_ih"].dtype)
    if key not in _CELLS:
        _CELLS[key] = TORCH_CELL[kind](key[1], key[2], dtype=key[3])
    with torch.no_grad():
        if kind == "lstm":
            return torch.func.functional_call(_CELLS[key], params, (x, (h, c)))
        return torch.func.functional_call(_CELLS[key], params, (x, h)), None


def reference(kind: str, params: dict[str, torch.Tensor], x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
              up_h: torch.Tensor | None = None, up_c: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor | None] | None]:
    """torch's own cell on the same weights: (h', c' or None, gradients or None).

    With ``up_h``: the gradients of ``(h' * up_h).sum() + (c' * up_c).sum()`` with respect to x, h,
    c (None for the GRU) and the four parameters.
    """
    if up_h is None:
        out_h, out_c = _torch_step(kind, params, x, h, c)
        return out_h, out_c, None
    rows, input_size = params["weight_ih"].shape
    cell = TORCH_CELL[kind](input_size, rows // len(GATES[kind]), dtype=x.dtype)
    cell.load_state_dict(params)
    x, h, c = (t.clone().requires_grad_(True) for t in (x, h, c))
    if kind == "lstm":
        out_h, out_c = cell(x, (h, c))
        loss = (out_h * up_h).sum() + (out_c * up_c).sum()
    else:
        out_h, out_c = cell(x, h), None
        loss = (out_h * up_h).sum()
    loss.backward()
    named = dict(cell.named_parameters())
    grads = {"x": x.grad, "h": h.grad, "c": c.grad if kind == "lstm" else None}
    grads.update({n: named[n].grad for n in PARAMS})
    return out_h.detach(), (out_c.detach() if out_c is not None else None), grads


LINEAR_SCALE = 2.0 ** -20


def torch_linear(v: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``v @ weight.T + bias`` as torch's own nn.LSTMCell computes it, read off its cell state.

    v: (batch, n); weight: (rows, n); bias: (rows,) -> (batch, rows). The cell gets hidden_size = rows,
    weight and bias scaled by 2**-20 in the candidate block, the input gate forced open and everything
    else 0: from a zero state, c' = i * g = tanh(2**-20 * (v @ weight.T + bias)) exactly, and atanh
    undoes the tanh (measured: within 3e-16 of ``v @ weight.T + bias``, relative to max(1, |value|)).
    Raises RuntimeError when the shapes do not fit.
    """
    rows = weight.shape[0]
    zeros = weight.new_zeros(weight.shape)
    params = {"weight_ih": torch.cat([zeros, zeros, weight * LINEAR_SCALE, zeros]),
              "weight_hh": weight.new_zeros(4 * rows, rows),
              "bias_ih": torch.cat([bias.new_full((rows,), SAT), bias.new_zeros(rows), bias * LINEAR_SCALE,
                                    bias.new_zeros(rows)]),
              "bias_hh": bias.new_zeros(4 * rows)}
    state = v.new_zeros(v.shape[0], rows)
    _, c = _torch_step("lstm", params, v, state, state)
    return torch.atanh(c) / LINEAR_SCALE


# ----------------------------------------------------------------------------- known bugs

_sig, _tanh = torch.sigmoid, torch.tanh


def _pre(x, h, p, wx="weight_ih", wh="weight_hh", bx="bias_ih", bh="bias_hh"):
    """The input term and the hidden term of every gate block, with the weights and biases a bug uses."""
    zero = p["bias_ih"].new_zeros(p["bias_ih"].shape)
    return torch_linear(x, p[wx], p[bx] if bx else zero), torch_linear(h, p[wh], p[bh] if bh else zero)


PRE_VARIANTS = {
    "shared": lambda x, h, p: _pre(x, h, p, wh="weight_ih"),
    "swapped_xh": lambda x, h, p: _pre(x, h, p, wx="weight_hh", wh="weight_ih"),
    "no_bias_hh": lambda x, h, p: _pre(x, h, p, bh=None),
    "no_bias_ih": lambda x, h, p: _pre(x, h, p, bx=None),
    "double_bias_ih": lambda x, h, p: _pre(x, h, p, bh="bias_ih"),
    "no_bias": lambda x, h, p: _pre(x, h, p, bx=None, bh=None),
    "seed": lambda x, h, p: _pre(x, h, p, wh="weight_ih", bh="bias_ih"),
}


def _lstm_bug(x, h, c, p, order=(0, 1, 2, 3), act=(_sig, _sig, _tanh, _sig), pre=_pre, cell=None, out=None):
    """An LSTM step changed by a bug: the blocks read in ``order``, activations ``act``, ``cell`` / ``out`` rules."""
    a, b = pre(x, h, p)
    blocks = (a + b).chunk(4, 1)
    i, f, g, o = (fn(blocks[k]) for fn, k in zip(act, order, strict=True))
    c2 = cell(i, f, g, c) if cell else f * c + i * g
    h2 = out(o, c2, c) if out else o * torch.tanh(c2)
    return h2, c2


def _gru_bug(x, h, p, order=(0, 1, 2), act=(_sig, _sig, _tanh), pre=_pre, n_pre=None, out=None):
    """A GRU step changed by a bug: the blocks read in ``order``, activations ``act``, ``n_pre`` / ``out`` rules."""
    a, b = pre(x, h, p)
    a_blocks, b_blocks = a.chunk(3, 1), b.chunk(3, 1)
    (ar, az, an), (br, bz, bn) = ([blocks[k] for k in order] for blocks in (a_blocks, b_blocks))
    r, z = act[0](ar + br), act[1](az + bz)
    hidden = p["weight_hh"].shape[0] // 3
    rows = slice(order[2] * hidden, (order[2] + 1) * hidden)
    w_hn, b_hn = p["weight_hh"][rows], p["bias_hh"][rows]
    n = act[2](n_pre(an, bn, r, h, w_hn, b_hn) if n_pre else an + r * bn)
    return (out(z, n, h) if out else (1 - z) * n + z * h), None


def _order_message(kind: str, order: tuple[int, ...]) -> str:
    roles = GATES[kind]
    read_as = [roles[order.index(b)] for b in range(len(roles))]
    return (f"gate order wrong: torch stacks the blocks of weight_ih, weight_hh, bias_ih and bias_hh as "
            f"{', '.join(roles)} ({block_layout(kind)}); your cell reads them as {', '.join(read_as)}")


Bug = tuple[str, str, Callable]

LSTM_BUGS: list[Bug] = [
    ("seed", "this is the LSTM of Liu Er's notes: one weight per gate shared by x and h (h must go through weight_hh), "
             "bias_ih added twice instead of bias_ih + bias_hh, and a sigmoid candidate (g uses tanh)",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, act=(_sig, _sig, _sig, _sig), pre=PRE_VARIANTS["seed"])),
    ("g_sigmoid", "input gate / candidate: with zero state, c' = i*g, and g uses tanh; yours uses sigmoid, "
                  "so g is never negative and c can only grow",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, act=(_sig, _sig, _sig, _sig))),
    ("i_tanh", "input gate: i = sigmoid(...), a gate between 0 and 1; yours uses tanh",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, act=(_tanh, _sig, _tanh, _sig))),
    ("f_tanh", "forget gate: f = sigmoid(...), a gate between 0 and 1; yours uses tanh",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, act=(_sig, _tanh, _tanh, _sig))),
    ("o_tanh", "output gate: h' = o * tanh(c') with o = sigmoid(...); yours uses tanh for o",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, act=(_sig, _sig, _tanh, _tanh))),
    ("all_sigmoid_tanh_swapped", "activations swapped: i, f, o use sigmoid and the candidate g uses tanh; "
                                 "yours does the opposite",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, act=(_tanh, _tanh, _sig, _tanh))),
    ("memory", "cell memory dropped: c' = f * c + i * g; with f forced to 1 and i to 0, c must carry over unchanged, "
               "but your c' does not depend on c",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, cell=lambda i, f, g, c: i * g)),
    ("one_minus_f", "forget gate: c' = f * c + i * g, f is the fraction of c that is KEPT; yours uses (1 - f) * c",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, cell=lambda i, f, g, c: (1 - f) * c + i * g)),
    ("no_input_gate", "input gate: c' = f * c + i * g; yours adds the candidate without i",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, cell=lambda i, f, g, c: f * c + g)),
    ("no_tanh_c", "output gate: h' = o * tanh(c'); yours leaves out the tanh (h' = o * c')",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, out=lambda o, c2, c: o * c2)),
    ("old_c", "output gate: h' = o * tanh(c') uses the NEW cell state c'; yours uses the old c",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, out=lambda o, c2, c: o * torch.tanh(c))),
    ("tanh_outside", "output gate: h' = o * tanh(c'); yours computes tanh(o * c')",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, out=lambda o, c2, c: torch.tanh(o * c2))),
    ("state_swapped", "state order: forward receives state = (h, c), h first; yours unpacks it as (c, h)",
     lambda x, h, c, p: _lstm_bug(x, c, h, p)),
    ("return_swapped", "state order: forward returns (h', c'), h first; yours returns (c', h')",
     lambda x, h, c, p: _lstm_bug(x, h, c, p)[::-1]),
    ("shared", "shared weights: x must go through weight_ih and h through weight_hh; yours puts h through weight_ih, "
               "one weight shared by x and h (the notes' bug, which only fits when input_size == hidden_size)",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, pre=PRE_VARIANTS["shared"])),
    ("swapped_xh", "x must go through weight_ih and h through weight_hh; yours swaps them",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, pre=PRE_VARIANTS["swapped_xh"])),
    ("no_bias_hh", "biases: every pre-activation is x W_ih^T + b_ih + h W_hh^T + b_hh; yours leaves out bias_hh",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, pre=PRE_VARIANTS["no_bias_hh"])),
    ("no_bias_ih", "biases: every pre-activation is x W_ih^T + b_ih + h W_hh^T + b_hh; yours leaves out bias_ih",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, pre=PRE_VARIANTS["no_bias_ih"])),
    ("no_bias", "biases: every pre-activation is x W_ih^T + b_ih + h W_hh^T + b_hh; yours leaves out both biases",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, pre=PRE_VARIANTS["no_bias"])),
    ("double_bias_ih", "biases: every pre-activation is x W_ih^T + b_ih + h W_hh^T + b_hh; yours adds bias_ih twice "
                       "and leaves out bias_hh",
     lambda x, h, c, p: _lstm_bug(x, h, c, p, pre=PRE_VARIANTS["double_bias_ih"])),
]
LSTM_BUGS += [
    (f"order_{''.join(map(str, perm))}", _order_message("lstm", perm),
     (lambda order: lambda x, h, c, p: _lstm_bug(x, h, c, p, order=order))(perm))
    for perm in itertools.permutations(range(4)) if perm != (0, 1, 2, 3)
]

RESET_RULE = "GRU: n must use r * (W_hn h + b_hn), torch's convention (reset applied after the matmul)"
GRU_BUGS: list[Bug] = [
    ("reset_before", f"{RESET_RULE}; yours computes W_hn (r * h) + b_hn, the reset applied to h before the matmul "
                     "(the original GRU paper; Keras' reset_after=False)",
     lambda x, h, c, p: _gru_bug(x, h, p, n_pre=lambda an, bn, r, h, w, b: an + torch_linear(r * h, w, b))),
    ("bhn_outside", f"{RESET_RULE}; yours adds b_hn outside the reset gate (r * (W_hn h) + b_hn)",
     lambda x, h, c, p: _gru_bug(x, h, p, n_pre=lambda an, bn, r, h, w, b: an + r * torch_linear(h, w, 0 * b) + b)),
    ("no_reset", f"{RESET_RULE}; your cell never uses the reset gate r",
     lambda x, h, c, p: _gru_bug(x, h, p, n_pre=lambda an, bn, r, h, w, b: an + bn)),
    ("z_swapped", "update gate: h' = (1 - z) * n + z * h, not the other way: with z forced to 1, h must carry over "
                  "unchanged; yours computes z * n + (1 - z) * h",
     lambda x, h, c, p: _gru_bug(x, h, p, out=lambda z, n, h: z * n + (1 - z) * h)),
    ("no_zh", "update gate: h' = (1 - z) * n + z * h; yours leaves out z * h, so h is never carried over",
     lambda x, h, c, p: _gru_bug(x, h, p, out=lambda z, n, h: (1 - z) * n)),
    ("no_one_minus_z", "update gate: h' = (1 - z) * n + z * h; yours uses n + z * h (the 1 - z is missing)",
     lambda x, h, c, p: _gru_bug(x, h, p, out=lambda z, n, h: n + z * h)),
    ("n_sigmoid", "candidate: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); yours uses sigmoid",
     lambda x, h, c, p: _gru_bug(x, h, p, act=(_sig, _sig, _sig))),
    ("r_tanh", "reset gate: r = sigmoid(...), a gate between 0 and 1; yours uses tanh",
     lambda x, h, c, p: _gru_bug(x, h, p, act=(_tanh, _sig, _tanh))),
    ("z_tanh", "update gate: z = sigmoid(...), a gate between 0 and 1; yours uses tanh",
     lambda x, h, c, p: _gru_bug(x, h, p, act=(_sig, _tanh, _tanh))),
    ("shared", "shared weights: x must go through weight_ih and h through weight_hh; yours puts h through weight_ih, "
               "one weight shared by x and h (the notes' bug, which only fits when input_size == hidden_size)",
     lambda x, h, c, p: _gru_bug(x, h, p, pre=PRE_VARIANTS["shared"])),
    ("swapped_xh", "x must go through weight_ih and h through weight_hh; yours swaps them",
     lambda x, h, c, p: _gru_bug(x, h, p, pre=PRE_VARIANTS["swapped_xh"])),
    ("no_bias_hh", "biases: the gates use b_ih + b_hh, and n uses b_in + r * (W_hn h + b_hn); yours leaves out bias_hh",
     lambda x, h, c, p: _gru_bug(x, h, p, pre=PRE_VARIANTS["no_bias_hh"])),
    ("no_bias_ih", "biases: the gates use b_ih + b_hh, and n uses b_in + r * (W_hn h + b_hn); yours leaves out bias_ih",
     lambda x, h, c, p: _gru_bug(x, h, p, pre=PRE_VARIANTS["no_bias_ih"])),
    ("no_bias", "biases: the gates use b_ih + b_hh, and n uses b_in + r * (W_hn h + b_hn); "
                "yours leaves out both biases",
     lambda x, h, c, p: _gru_bug(x, h, p, pre=PRE_VARIANTS["no_bias"])),
]
GRU_BUGS += [
    (f"order_{''.join(map(str, perm))}", _order_message("gru", perm),
     (lambda order: lambda x, h, c, p: _gru_bug(x, h, p, order=order))(perm))
    for perm in itertools.permutations(range(3)) if perm != (0, 1, 2)
]
BUGS = {"lstm": LSTM_BUGS, "gru": GRU_BUGS}

# ----------------------------------------------------------------------------- gate probes

X_PATH = ("x must go through weight_ih only: with weight_ih = 0 your output still changes with x "
          "(x W_ih^T + b_ih is the input term, h W_hh^T + b_hh the hidden term)")
H_PATH = ("h must go through weight_hh only: with weight_hh = 0, changing unit 0 of h changed other units of your "
          "output, so h goes through another weight (one weight shared by x and h, as in Liu Er's notes, only fits "
          "when input_size == hidden_size)")

# Each probe: which outputs a rule compares with nn.LSTMCell / nn.GRUCell, and the rule's message.
RULES = {
    "lstm": [
        ("forget", "c", "forget gate: with f forced to 1 and i to 0, c must carry over unchanged (c' = f * c + i * g)"),
        ("input_shut", "c", "input gate: with i and f forced to 0, c' must be 0: the candidate reaches c' only as "
                            "i * g"),
        ("candidate", "c", "input gate / candidate: with zero state and i forced to 1, c' = i*g = g, and g uses tanh"),
    ],
    "gru": [
        ("update", "h", "update gate: with z forced to 1, h must carry over unchanged: h' = (1 - z) * n + z * h, "
                        "not the other way"),
        ("candidate", "h", "candidate: with r forced to 1 (and z = 0.5, so h' = (n + h) / 2), "
                           "n = tanh(W_in x + b_in + W_hn h + b_hn)"),
        ("reset_mid", "h",
         f"{RESET_RULE}: r multiplies W_hn h + b_hn element by element, W_hn (r * h) is another function"),
    ],
}
# Checked only when no rule above points at a gate: they fail for almost any bug.
GENERAL = {
    "lstm": [("zero_state", "c", "input gate / candidate: with zero state, c' = i*g (i = sigmoid, g = tanh of the "
                                 "gate's pre-activation)")],
    "gru": [("zero_state", "h", "with h = 0, h' = (1 - z) * n with n = tanh(W_in x + b_in + r * b_hn)")],
}
OUTPUT_RULE = "output gate: h' = o * tanh(c') with o = sigmoid(...), where c' is the cell state your forward returns"
RESET_SHUT = (f"{RESET_RULE}: with r forced to 0, changing b_hn changed your output, so b_hn is not inside "
              "r * (W_hn h + b_hn)")
BIAS_MOVED = ("biases: every pre-activation is x W_ih^T + b_ih + h W_hh^T + b_hh, so moving a gate's bias from bias_ih "
              "to bias_hh must not change anything, but yours changes: use each bias once")
MEMORY = ("cell memory dropped: c' = f * c + i * g; with f forced to 1 and i to 0, c must carry over unchanged, "
          "but your c' does not depend on c")
MEMORY_OPEN = "cell state: with every gate forced open (i = f = o = 1, g = 1), c' = f * c + i * g must be c + 1"


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def _bias(k: int, size: int, values: dict[int, Any]) -> torch.Tensor:
    """A bias vector of k blocks: values[block] is a number or a (size,) tensor; missing blocks are 0."""
    parts = []
    for block in range(k):
        v = values.get(block, 0.0)
        parts.append(v.clone() if isinstance(v, torch.Tensor) else torch.full((size,), float(v), dtype=torch.float64))
    return torch.cat(parts)


def diagnosis_probes(kind: str, gen: torch.Generator, batch_size: int, size: int) -> list[dict]:
    """Named float64 probes with input_size == hidden_size == ``size``: dicts label, params, x, h, c.

    input_size == hidden_size, so that the notes' weight shared by x and h runs and can be named.
    """
    k = len(GATES[kind])
    n, s = batch_size, size

    def rnd(*shape, scale=1.0):
        return _randn(gen, *shape) * scale

    def params(w_ih=None, w_hh=None, bias=None, bias_ih=None, bias_hh=None):
        p = {"weight_ih": rnd(k * s, s, scale=0.7) if w_ih is None else w_ih,
             "weight_hh": rnd(k * s, s, scale=0.7) if w_hh is None else w_hh}
        if bias is not None:  # split evenly, so a cell that handles only one bias still sees a forced gate
            p["bias_ih"], p["bias_hh"] = bias / 2, bias / 2
        else:
            p["bias_ih"] = rnd(k * s, scale=0.5) if bias_ih is None else bias_ih
            p["bias_hh"] = rnd(k * s, scale=0.5) if bias_hh is None else bias_hh
        return p

    zeros_w = torch.zeros(k * s, s, dtype=torch.float64)
    x, h, c = rnd(n, s), rnd(n, s), rnd(n, s)
    zero = torch.zeros(n, s, dtype=torch.float64)
    probes: list[tuple[str, dict, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    base = params(w_ih=torch.zeros_like(zeros_w))
    probes += [("x_off_a", base, x, h, c), ("x_off_b", base, rnd(n, s), h, c)]
    base = params(w_hh=torch.zeros_like(zeros_w))
    nudged = h.clone()
    nudged[:, 0] += 1.0  # with weight_hh = 0, unit 0 of h may reach unit 0 of h' (GRU: z * h), no other unit
    probes += [("h_off_a", base, x, h, c), ("h_off_b", base, x, nudged, c)]
    gate_bias = rnd(k * s)
    if kind == "gru":
        gate_bias[2 * s:] = 0  # b_in and b_hn are not interchangeable: move only the r and z biases
    w_hh = zeros_w if kind == "lstm" else torch.cat([torch.zeros(2 * s, s, dtype=torch.float64), rnd(s, s)])
    no_bias = torch.zeros(k * s, dtype=torch.float64)
    probes += [("bias_ih", params(zeros_w, w_hh, bias_ih=gate_bias, bias_hh=no_bias), x, h, c),
               ("bias_hh", params(zeros_w, w_hh, bias_ih=no_bias, bias_hh=gate_bias), x, h, c)]
    if kind == "lstm":
        on_all = params(zeros_w, zeros_w, bias=_bias(4, s, {0: SAT, 1: SAT, 2: SAT, 3: SAT}))
        probes += [("memory", on_all, x, h, c), ("memory_b", on_all, x, h, rnd(n, s))]
        probes.append(("forget", params(zeros_w, zeros_w, bias=_bias(4, s, {0: -SAT, 1: SAT, 3: SAT})), x, h, c))
        probes.append(("input_shut", params(zeros_w, zeros_w, bias=_bias(4, s, {0: -SAT, 1: -SAT, 2: rnd(s), 3: SAT})),
                       x, h, c))
        probes.append(("candidate", params(zeros_w, zeros_w, bias=_bias(4, s, {0: SAT, 1: -SAT, 2: rnd(s), 3: SAT})),
                       x, zero, zero))
        probes.append(("zero_state", params(), x, zero, zero))
        probes.append(("output", params(zeros_w, zeros_w, bias=_bias(4, s, {0: -SAT, 1: SAT, 3: rnd(s)})), x, h, c))
    else:
        only_n = torch.zeros(3 * s, s, dtype=torch.float64)
        w_in, w_hn = only_n.clone(), only_n.clone()
        w_in[2 * s:], w_hn[2 * s:] = rnd(s, s), rnd(s, s)
        # z's pre-activation is 0 in the probes below: z = 0.5, so h' = (n + h) / 2 whichever way z and 1 - z go
        probes.append(("update", params(zeros_w, zeros_w, bias=_bias(3, s, {1: SAT, 2: rnd(s)})), x, h, c))
        probes.append(("candidate", params(w_in, w_hn, bias=_bias(3, s, {0: SAT, 2: rnd(s)})), x, h, c))
        shut = _bias(3, s, {0: -SAT})
        probes.append(("reset_shut", params(zeros_w, w_hn, bias_ih=shut, bias_hh=_bias(3, s, {2: rnd(s)})), x, h, c))
        probes.append(("reset_shut_b", params(zeros_w, w_hn, bias_ih=shut, bias_hh=_bias(3, s, {2: rnd(s)})), x, h, c))
        mid = _bias(3, s, {0: rnd(s)})
        probes.append(("reset_mid", params(zeros_w, w_hn, bias_ih=mid, bias_hh=_bias(3, s, {2: rnd(s)})), x, h, c))
        probes.append(("zero_state", params(), x, zero, zero))
    probes.append(("random", params(), x, h, c))
    return [{"label": label, "params": p, "x": x_, "h": h_, "c": c_} for label, p, x_, h_, c_ in probes]


# ----------------------------------------------------------------------------- judging

def parameter_problem(kind: str, input_size: int, hidden_size: int, shapes: dict) -> str | None:
    """What is wrong with the parameters of ``cls(input_size, hidden_size)``, from :func:`parameter_shapes`."""
    name, k, torch_name = CLASS_NAME[kind], len(GATES[kind]), TORCH_CELL[kind].__name__
    i, h = input_size, hidden_size
    expected = {"weight_ih": [k * h, i], "weight_hh": [k * h, h], "bias_ih": [k * h], "bias_hh": [k * h]}
    labels = {"weight_ih": f"({k}*hidden_size, input_size)", "weight_hh": f"({k}*hidden_size, hidden_size)",
              "bias_ih": f"({k}*hidden_size,)", "bias_hh": f"({k}*hidden_size,)"}
    params, state, attributes = shapes["parameters"], shapes["state_dict"], shapes["attributes"]
    for param, shape in expected.items():
        if param not in params:
            if param in state:
                how = "a buffer"
            elif attributes.get(param) not in (None, "NoneType"):
                how = f"a plain {attributes[param]}"
            else:
                how = "missing"
            return (f"{name}({i}, {h}) has no parameter {param} ({how}): create it with nn.Parameter so the "
                    f"optimizer trains it and load_state_dict copies it; expected {layout(kind)}.")
        if list(params[param]) != shape:
            return (f"{name}({i}, {h}).{param} has shape {tuple(params[param])}, expected {labels[param]} = "
                    f"{tuple(shape)}: the {k} gate blocks are stacked along dim 0 ({block_layout(kind)}), "
                    f"as in nn.{torch_name}.")
    extra = sorted(set(state) - set(expected))
    if extra:
        return (f"{name} has more than the four parameters: {', '.join(extra)}. nn.{torch_name} "
                f"holds exactly {layout(kind)}, and the tests copy weights in with load_state_dict.")
    return None


def error_message(kind: str, result: dict) -> str:
    """The message for a result of :func:`run_cell` that carries an ``"error"``."""
    name, torch_name = CLASS_NAME[kind], TORCH_CELL[kind].__name__
    w = result.get("where", {})
    at = (f"batch={w.get('batch')}, input_size={w.get('input_size')}, hidden_size={w.get('hidden_size')}, "
          f"{w.get('dtype')}")
    msg = result.get("message", "")
    if result["error"] == "build":
        shapes = result.get("shapes")
        problem = parameter_problem(kind, w.get("input_size"), w.get("hidden_size"), shapes) if shapes else None
        return problem or (f"{name}({w.get('input_size')}, {w.get('hidden_size')}) "
                           f"could not take nn.{torch_name}'s weights with load_state_dict ({msg}). "
                           f"It must hold exactly four nn.Parameters: {layout(kind)}.")
    if result["error"] == "return":
        want = "a pair (h', c')" if kind == "lstm" else "the new hidden state h' (one tensor)"
        return f"{name}.forward must return {want}; it {msg} ({at})."
    hint = ""
    low = msg.lower()
    if any(s in low for s in ("mat1", "mat2", "shapes cannot", "size of tensor", "must match the size", "shape")):
        hint = (" x (batch, input_size) multiplies weight_ih.T and h (batch, hidden_size) multiplies weight_hh.T; "
                "one weight shared by x and h only fits when input_size == hidden_size.")
    elif "dtype" in low or "double" in low or "float" in low:
        hint = (" Keep x's dtype: tensors created inside forward with torch.zeros(...) default to float32 "
                "(use torch.zeros_like or x.new_zeros).")
    return f"{name}.forward raised {msg} ({at}).{hint}"


def verdict(kind: str, failures: list[str], lead: str = "") -> str:
    """One message from the diagnosis's findings."""
    name = CLASS_NAME[kind]
    if len(failures) == 1:
        return f"{name}: {lead}{failures[0]}."
    listed = "; ".join(f"({n}) {f}" for n, f in enumerate(failures, 1))
    return f"{name}: {lead}{len(failures)} problems found by forcing gates open or shut: {listed}."


def diagnose(kind: str, probes: list[dict], results: list[dict], lead: str = "") -> str | None:
    """None when the cell gives torch's outputs on every probe, else the message naming the fault.

    probes: from :func:`diagnosis_probes`; results: :func:`run_cell` on each of them.
    """
    lstm = kind == "lstm"
    name, torch_name = CLASS_NAME[kind], TORCH_CELL[kind].__name__
    if len(results) != len(probes):
        return f"{name}: the gate probes returned {len(results)} results for {len(probes)} probes."
    for result in results:
        if "error" in result:
            return error_message(kind, result)
    batch, size = probes[0]["x"].shape
    got, want, inputs = {}, {}, {}
    for probe, result in zip(probes, results, strict=True):
        label = probe["label"]
        for key in ("h", "c") if lstm else ("h",):
            value = result[key]
            if (not isinstance(value, torch.Tensor) or value.dtype != torch.float64
                    or tuple(value.shape) != (batch, size)):
                found = (f"{str(value.dtype).removeprefix('torch.')} {tuple(value.shape)}"
                         if isinstance(value, torch.Tensor) else type(value).__name__)
                return (f"{name}: in float64 with batch={batch}, input_size=hidden_size={size}, "
                        f"{key}' should be a float64 tensor of shape ({batch}, {size}); got {found}.")
        ref_h, ref_c, _ = reference(kind, probe["params"], probe["x"], probe["h"], probe["c"])
        got[label] = (result["h"], result["c"] if lstm else None)
        want[label] = (ref_h, ref_c)
        inputs[label] = (probe["x"], probe["h"], probe["c"], probe["params"])

    def off(label, which="both"):
        keys = {"h": [0], "c": [1], "both": [0, 1] if lstm else [0]}[which]
        return any(max_diff(got[label][k], want[label][k]) > PROBE_TOL for k in keys)

    if not any(off(label) for label in got):
        return None
    for _key, message, bug in BUGS[kind]:
        try:
            matches = all(
                all(max_diff(o, w) <= PROBE_TOL for o, w in zip(got[label], bug(*inputs[label]), strict=True)
                    if o is not None)
                for label in got)
        except (RuntimeError, ValueError):  # the bug's shapes do not fit these probes
            matches = False
        if matches:
            return verdict(kind, [message], lead)
    failures = []
    same = lambda a, b: all(max_diff(p, q) <= PROBE_TOL for p, q in zip(got[a], got[b], strict=True) if p is not None)
    if not same("x_off_a", "x_off_b"):
        failures.append(X_PATH)
    if not all(max_diff(p[:, 1:], q[:, 1:]) <= PROBE_TOL
               for p, q in zip(got["h_off_a"], got["h_off_b"], strict=True) if p is not None):
        failures.append(H_PATH)
    if not same("bias_ih", "bias_hh"):
        failures.append(BIAS_MOVED)
    if lstm and same("memory", "memory_b"):
        failures.append(MEMORY)
    elif lstm and off("memory", "c"):
        failures.append(MEMORY_OPEN)
    if not lstm and not same("reset_shut", "reset_shut_b"):
        failures.append(RESET_SHUT)
    for label, which, message in RULES[kind]:
        if label == "reset_mid" and off("candidate", "h"):
            continue  # n is already wrong with r = 1: the reset gate cannot be judged
        if off(label, which):
            failures.append(message + _activation_detail(kind, label, got[label], inputs[label]))
    if lstm:  # h' = o * tanh(c') checked against the c' the cell itself returns
        p = inputs["output"][3]
        o = torch.sigmoid(p["bias_ih"][3 * size:] + p["bias_hh"][3 * size:])
        if max_diff(got["output"][0], o * torch.tanh(got["output"][1])) > PROBE_TOL:
            failures.append(OUTPUT_RULE)
    if not failures:
        for label, which, message in GENERAL[kind]:
            if off(label, which):
                failures.append(message)
    if not failures:
        failures.append(f"with random weights and state, h'{' and c' if lstm else ''} differ from "
                        f"nn.{torch_name}, although every gate probe passes: check how x, h and the "
                        "weights combine")
    return verdict(kind, list(dict.fromkeys(failures)), lead)


def _activation_detail(kind: str, label: str, outputs: tuple, inputs: tuple) -> str:
    """Name the activation when a forced-gate probe shows sigmoid where tanh belongs."""
    x, h, c, p = inputs
    s = h.shape[1]
    if kind == "lstm" and label == "candidate":
        pre = p["bias_ih"][2 * s:3 * s] + p["bias_hh"][2 * s:3 * s]
        if max_diff(outputs[1], torch.sigmoid(pre).expand_as(outputs[1])) <= PROBE_TOL:
            return " (yours uses sigmoid for g)"
    if kind == "gru" and label == "candidate":
        rows = slice(2 * s, 3 * s)
        pre = (torch_linear(x, p["weight_ih"][rows], p["bias_ih"][rows])
               + torch_linear(h, p["weight_hh"][rows], p["bias_hh"][rows]))
        if max_diff(outputs[0], (torch.sigmoid(pre) + h) / 2) <= PROBE_TOL:  # z = 0.5 in this probe
            return " (yours uses sigmoid for n)"
    return ""


PROBE_TEXT = {
    "x_off_a": "weight_ih = 0", "x_off_b": "weight_ih = 0, another x",
    "h_off_a": "weight_hh = 0", "h_off_b": "weight_hh = 0, unit 0 of h moved",
    "bias_ih": "gate biases in bias_ih", "bias_hh": "the same biases in bias_hh",
    "memory": "every gate open", "memory_b": "every gate open, another c",
    "forget": "f = 1, i = 0", "input_shut": "i = 0, f = 0", "zero_state": "zero state",
    "output": "f = 1, i = 0, o varies", "update": "z = 1", "reset_shut": "r = 0, z = 0",
    "reset_shut_b": "r = 0, z = 0, another b_hn", "reset_mid": "r varies by unit", "random": "random weights and state",
}
CANDIDATE_TEXT = {"lstm": "zero state, i = 1, f = 0", "gru": "r = 1, z = 0.5"}


def probe_rows(kind: str, probes: list[dict], results: list[dict]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"<what the probe forces>: h'": (yours, torch's), ...}`` for a compare table (failed runs left out)."""
    rows = {}
    for probe, result in zip(probes, results, strict=False):
        if "error" in result:
            continue
        label = probe["label"]
        text = CANDIDATE_TEXT[kind] if label == "candidate" else PROBE_TEXT.get(label, label)
        want = reference(kind, probe["params"], probe["x"], probe["h"], probe["c"])
        for key, out, wanted in (("h", "h'", want[0]), ("c", "c'", want[1])):
            if wanted is not None and isinstance(result.get(key), torch.Tensor):
                rows[f"{text}: {out}"] = (result[key], wanted)
    return rows


def random_case(kind: str, gen: torch.Generator, batch_size: int, input_size: int, hidden_size: int,
                dtype: torch.dtype, upstream: bool = False) -> dict[str, Any]:
    """Random weights (like torch's, a little wider) and inputs: params, x, h, c (and up_h, up_c with ``upstream``).

    Drawn in float64 from ``gen`` and cast, so every dtype sees the same draws.
    """
    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

    rows = len(GATES[kind]) * hidden_size
    params = {"weight_ih": rnd(rows, input_size) * 0.7, "weight_hh": rnd(rows, hidden_size) * 0.7,
              "bias_ih": rnd(rows) * 0.5, "bias_hh": rnd(rows) * 0.5}
    data = {"params": params, "x": rnd(batch_size, input_size), "h": rnd(batch_size, hidden_size),
            "c": rnd(batch_size, hidden_size)}
    if upstream:
        data["up_h"] = rnd(batch_size, hidden_size)
        data["up_c"] = rnd(batch_size, hidden_size)
    return data


def case_problem(kind: str, params: dict[str, torch.Tensor], x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                 result: dict, compare: bool = True, up_h: torch.Tensor | None = None,
                 up_c: torch.Tensor | None = None) -> str | None:
    """What is wrong with one :func:`run_cell` result on random weights and state, or None.

    In order: errors, dtype and shape of h' (and c'), then (``compare``) their values against torch's
    cell, then (``up_h``) the gradients.
    """
    if "error" in result:
        return error_message(kind, result)
    lstm = kind == "lstm"
    name, torch_name, k = CLASS_NAME[kind], TORCH_CELL[kind].__name__, len(GATES[kind])
    dtype = str(x.dtype).removeprefix("torch.")
    at = f"batch={x.shape[0]}, input_size={x.shape[1]}, hidden_size={h.shape[1]}, {dtype}"
    grad = up_h is not None
    ref = reference(kind, params, x, h, c, up_h=up_h, up_c=up_c)
    outputs = [("h'", result.get("h"), ref[0])] + ([("c'", result.get("c"), ref[1])] if lstm else [])
    for label, got, want in outputs:
        if not isinstance(got, torch.Tensor):
            return f"{name}.forward must return tensors ({at})."
        if got.dtype != x.dtype:
            return (f"{label} has dtype {str(got.dtype).removeprefix('torch.')} for {dtype} inputs: keep x's dtype "
                    f"(no torch.tensor(...), .float() or float32 tensors created inside forward) ({at}).")
        if tuple(got.shape) != tuple(want.shape):
            return (f"{label} has shape {tuple(got.shape)}, "
                    f"expected (batch, hidden_size) = {tuple(want.shape)} ({at}). "
                    f"x @ weight_ih.T is (batch, {k}*hidden_size): split it into {k} blocks along dim 1.")
        if not compare:
            continue
        diff = max_diff(got, want)
        if diff > VALUE_TOL[dtype]:
            return (f"{label} differs from nn.{torch_name} with the same weights "
                    f"by {diff:.3g} ({at}), although the gate probes (input_size == hidden_size, float64) pass: "
                    "look at what changes with the shape or the dtype.")
    if not grad:
        return None
    if result.get("backward_error"):
        return (f"backward through {name} raised {result['backward_error']} ({at}): an in-place operation "
                "(+=, x[...] = ...) on a tensor autograd still needs is the usual cause.")
    if result.get("grads") is None:
        return (f"the outputs of {name} do not require grad: forward must use differentiable torch operations "
                "only (no .detach(), .data, .item(), torch.tensor(...) or torch.no_grad()).")
    tol, hidden = GRAD_TOL[dtype], h.shape[1]
    for gname in ("x", "h", "c") + PARAMS if lstm else ("x", "h") + PARAMS:
        got, want = result["grads"].get(gname), ref[2][gname]
        if got is None:
            if gname in PARAMS:
                return (f"{gname} gets no gradient: it must be an nn.Parameter of {name} "
                        "and be used in forward (a plain tensor or a buffer is never trained).")
            return (f"the gradient with respect to {gname} is missing: {gname} must reach the outputs through torch "
                    "operations (no .detach(), .data or torch.tensor(...) on the way).")
        scale = max(1.0, float(want.abs().max()))
        if max_diff(got, want) > tol * scale:
            where = ""
            if gname in PARAMS and isinstance(got, torch.Tensor) and got.shape == want.shape:
                worst = max(range(k), key=lambda b: max_diff(got[b * hidden:(b + 1) * hidden],
                                                          want[b * hidden:(b + 1) * hidden]))
                where = f" (worst in the block of gate {GATES[kind][worst]}, rows {worst}H:{worst + 1}H)"
            return (f"the gradient with respect to {gname} differs from nn.{torch_name}'s by "
                    f"{max_diff(got, want):.3g}{where} ({at}), while the forward values are right: "
                    "something cuts or bends the graph (.detach(), .data, torch.no_grad(), "
                    "or a value copied out of the graph).")
    return None
