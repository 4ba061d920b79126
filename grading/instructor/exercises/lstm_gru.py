"""Hidden checks of the ``lstm_gru`` assignment: LSTMCellScratch (``lstm_cell``) and GRUCellScratch (``gru_cell``).

Each cell has four test cells: shapes, values, gradients, training. The values, gradients and
training cells start with the same *diagnosis* case: probes that force single gates open or
shut through their bias block, switch one input path off, or zero the state. When the cell is
wrong, the judge names the gate or term at fault in two ways:

* a **known bug** (gate blocks permuted, an activation changed, the cell memory dropped, the reset
  applied before the matmul, z and 1 - z swapped, the seed's shared weights, ...) is recognised
  exactly: the judge recomputes the probes with that bug and finds the same numbers;
* otherwise each probe that fails adds the property it checks ("forget gate: with f forced to 1
  and i to 0, c must carry over unchanged", ...), so even a cell with several bugs is located.

The probe runs where the student's code lives and returns plain data only; every reference,
including the retrained model's loss, is recomputed here with torch's own nn.LSTMCell / nn.GRUCell.
The probe never calls torch's cells (the verifier traps them).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.rnn import GRUCell as TorchGRUCell  # not torch.nn.GRUCell: a submission may rebind that name
from torch.nn.modules.rnn import LSTMCell as TorchLSTMCell

from grading.student.lstm_gru import (
    CHARS,
    EMBEDDING_SIZE,
    HIDDEN_SIZE,
    LOSS_THRESHOLD,
    LR,
    NUM_EPOCHS,
    CharModel,
    decode,
    encode,
    initial_state,
    train_char_model,
)

from .base import Case, Exercise, ProbeError, is_packed_tensor, max_diff, pack, randn, tolerance, unpack

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

SAT = 80.0  # split over bias_ih and bias_hh: sigmoid(+-40) is 1.0 or ~4e-18 in float64, a gate forced open or shut
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
DIAG_BATCH, DIAG_SIZE = 4, 3  # input_size == hidden_size, so a weight shared by x and h does not crash
PROBE_TOL = 1e-9
GRAD_TOL = {"float64": 1e-9, "float32": 1e-4}

_sig, _tanh = torch.sigmoid, torch.tanh


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


# ----------------------------------------------------------------------------- known bugs

def _pre(x, h, p, wx="weight_ih", wh="weight_hh", bx="bias_ih", bh="bias_hh"):
    """The input term and the hidden term of every gate, before splitting into blocks."""
    a = x @ p[wx].T + (p[bx] if bx else 0)
    b = h @ p[wh].T + (p[bh] if bh else 0)
    return a, b


PRE_VARIANTS = {
    "shared": lambda x, h, p: _pre(x, h, p, wh="weight_ih"),
    "swapped_xh": lambda x, h, p: (x @ p["weight_hh"].T + p["bias_ih"], h @ p["weight_ih"].T + p["bias_hh"]),
    "no_bias_hh": lambda x, h, p: _pre(x, h, p, bh=None),
    "no_bias_ih": lambda x, h, p: _pre(x, h, p, bx=None),
    "double_bias_ih": lambda x, h, p: _pre(x, h, p, bh="bias_ih"),
    "no_bias": lambda x, h, p: _pre(x, h, p, bx=None, bh=None),
    "seed": lambda x, h, p: _pre(x, h, p, wh="weight_ih", bh="bias_ih"),
}


def _lstm(x, h, c, p, order=(0, 1, 2, 3), act=(_sig, _sig, _tanh, _sig), pre=_pre, cell=None, out=None):
    a, b = pre(x, h, p)
    blocks = (a + b).chunk(4, 1)
    i, f, g, o = (fn(blocks[k]) for fn, k in zip(act, order, strict=True))
    c2 = cell(i, f, g, c) if cell else f * c + i * g
    h2 = out(o, c2, c) if out else o * torch.tanh(c2)
    return h2, c2


def _gru(x, h, p, order=(0, 1, 2), act=(_sig, _sig, _tanh), pre=_pre, n_pre=None, out=None):
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
    roles = ("i", "f", "g", "o") if kind == "lstm" else ("r", "z", "n")
    read_as = [roles[order.index(b)] for b in range(len(roles))]
    if kind == "lstm":
        layout = "i, f, g, o (rows 0:H input gate i, H:2H forget gate f, 2H:3H candidate g, 3H:4H output gate o)"
        what = "weight_ih, weight_hh, bias_ih and bias_hh"
    else:
        layout = "r, z, n (rows 0:H reset gate r, H:2H update gate z, 2H:3H candidate n)"
        what = "weight_ih, weight_hh, bias_ih and bias_hh"
    return (f"gate order wrong: torch stacks the blocks of {what} as {layout}; "
            f"your cell reads them as {', '.join(read_as)}")


LSTM_BUGS: list[tuple[str, str, Callable]] = [
    ("seed", "this is the seed's LSTM: one weight per gate shared by x and h (h must go through weight_hh), "
             "bias_ih added twice instead of bias_ih + bias_hh, and a sigmoid candidate (g uses tanh)",
     lambda x, h, c, p: _lstm(x, h, c, p, act=(_sig, _sig, _sig, _sig), pre=PRE_VARIANTS["seed"])),
    ("g_sigmoid", "input gate / candidate: with zero state, c' = i*g, and g uses tanh; yours uses sigmoid, "
                  "so g is never negative and c can only grow",
     lambda x, h, c, p: _lstm(x, h, c, p, act=(_sig, _sig, _sig, _sig))),
    ("i_tanh", "input gate: i = sigmoid(...), a gate between 0 and 1; yours uses tanh",
     lambda x, h, c, p: _lstm(x, h, c, p, act=(_tanh, _sig, _tanh, _sig))),
    ("f_tanh", "forget gate: f = sigmoid(...), a gate between 0 and 1; yours uses tanh",
     lambda x, h, c, p: _lstm(x, h, c, p, act=(_sig, _tanh, _tanh, _sig))),
    ("o_tanh", "output gate: h' = o * tanh(c') with o = sigmoid(...); yours uses tanh for o",
     lambda x, h, c, p: _lstm(x, h, c, p, act=(_sig, _sig, _tanh, _tanh))),
    ("all_sigmoid_tanh_swapped", "activations swapped: i, f, o use sigmoid and the candidate g uses tanh; "
                                 "yours does the opposite",
     lambda x, h, c, p: _lstm(x, h, c, p, act=(_tanh, _tanh, _sig, _tanh))),
    ("memory", "cell memory dropped: c' = f * c + i * g; with f forced to 1 and i to 0, c must carry over unchanged, "
               "but your c' does not depend on c",
     lambda x, h, c, p: _lstm(x, h, c, p, cell=lambda i, f, g, c: i * g)),
    ("one_minus_f", "forget gate: c' = f * c + i * g, f is the fraction of c that is KEPT; yours uses (1 - f) * c",
     lambda x, h, c, p: _lstm(x, h, c, p, cell=lambda i, f, g, c: (1 - f) * c + i * g)),
    ("no_input_gate", "input gate: c' = f * c + i * g; yours adds the candidate without i",
     lambda x, h, c, p: _lstm(x, h, c, p, cell=lambda i, f, g, c: f * c + g)),
    ("no_tanh_c", "output gate: h' = o * tanh(c'); yours leaves out the tanh (h' = o * c')",
     lambda x, h, c, p: _lstm(x, h, c, p, out=lambda o, c2, c: o * c2)),
    ("old_c", "output gate: h' = o * tanh(c') uses the NEW cell state c'; yours uses the old c",
     lambda x, h, c, p: _lstm(x, h, c, p, out=lambda o, c2, c: o * torch.tanh(c))),
    ("tanh_outside", "output gate: h' = o * tanh(c'); yours computes tanh(o * c')",
     lambda x, h, c, p: _lstm(x, h, c, p, out=lambda o, c2, c: torch.tanh(o * c2))),
    ("state_swapped", "state order: forward receives state = (h, c), h first; yours unpacks it as (c, h)",
     lambda x, h, c, p: _lstm(x, c, h, p)),
    ("return_swapped", "state order: forward returns (h', c'), h first; yours returns (c', h')",
     lambda x, h, c, p: _lstm(x, h, c, p)[::-1]),
    ("shared", "shared weights: x must go through weight_ih and h through weight_hh; yours puts h through weight_ih, "
               "one weight shared by x and h (the seed's bug, which only fits when input_size == hidden_size)",
     lambda x, h, c, p: _lstm(x, h, c, p, pre=PRE_VARIANTS["shared"])),
    ("swapped_xh", "x must go through weight_ih and h through weight_hh; yours swaps them",
     lambda x, h, c, p: _lstm(x, h, c, p, pre=PRE_VARIANTS["swapped_xh"])),
    ("no_bias_hh", "biases: every pre-activation is x W_ih^T + b_ih + h W_hh^T + b_hh; yours leaves out bias_hh",
     lambda x, h, c, p: _lstm(x, h, c, p, pre=PRE_VARIANTS["no_bias_hh"])),
    ("no_bias_ih", "biases: every pre-activation is x W_ih^T + b_ih + h W_hh^T + b_hh; yours leaves out bias_ih",
     lambda x, h, c, p: _lstm(x, h, c, p, pre=PRE_VARIANTS["no_bias_ih"])),
    ("no_bias", "biases: every pre-activation is x W_ih^T + b_ih + h W_hh^T + b_hh; yours leaves out both biases",
     lambda x, h, c, p: _lstm(x, h, c, p, pre=PRE_VARIANTS["no_bias"])),
    ("double_bias_ih", "biases: every pre-activation is x W_ih^T + b_ih + h W_hh^T + b_hh; yours adds bias_ih twice "
                       "and leaves out bias_hh",
     lambda x, h, c, p: _lstm(x, h, c, p, pre=PRE_VARIANTS["double_bias_ih"])),
]
LSTM_BUGS += [
    (f"order_{''.join(map(str, perm))}", _order_message("lstm", perm),
     (lambda order: lambda x, h, c, p: _lstm(x, h, c, p, order=order))(perm))
    for perm in itertools.permutations(range(4)) if perm != (0, 1, 2, 3)
]

RESET_RULE = "GRU: n must use r * (W_hn h + b_hn), torch's convention (reset applied after the matmul)"
GRU_BUGS: list[tuple[str, str, Callable]] = [
    ("reset_before", f"{RESET_RULE}; yours computes W_hn (r * h) + b_hn, the reset applied to h before the matmul "
                     "(the original GRU paper; Keras' reset_after=False)",
     lambda x, h, c, p: _gru(x, h, p, n_pre=lambda an, bn, r, h, w, b: an + (r * h) @ w.T + b)),
    ("bhn_outside", f"{RESET_RULE}; yours adds b_hn outside the reset gate (r * (W_hn h) + b_hn)",
     lambda x, h, c, p: _gru(x, h, p, n_pre=lambda an, bn, r, h, w, b: an + r * (h @ w.T) + b)),
    ("no_reset", f"{RESET_RULE}; your cell never uses the reset gate r",
     lambda x, h, c, p: _gru(x, h, p, n_pre=lambda an, bn, r, h, w, b: an + bn)),
    ("z_swapped", "update gate: h' = (1 - z) * n + z * h, not the other way: with z forced to 1, h must carry over "
                  "unchanged; yours computes z * n + (1 - z) * h",
     lambda x, h, c, p: _gru(x, h, p, out=lambda z, n, h: z * n + (1 - z) * h)),
    ("no_zh", "update gate: h' = (1 - z) * n + z * h; yours leaves out z * h, so h is never carried over",
     lambda x, h, c, p: _gru(x, h, p, out=lambda z, n, h: (1 - z) * n)),
    ("no_one_minus_z", "update gate: h' = (1 - z) * n + z * h; yours uses n + z * h (the 1 - z is missing)",
     lambda x, h, c, p: _gru(x, h, p, out=lambda z, n, h: n + z * h)),
    ("n_sigmoid", "candidate: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); yours uses sigmoid",
     lambda x, h, c, p: _gru(x, h, p, act=(_sig, _sig, _sig))),
    ("r_tanh", "reset gate: r = sigmoid(...), a gate between 0 and 1; yours uses tanh",
     lambda x, h, c, p: _gru(x, h, p, act=(_tanh, _sig, _tanh))),
    ("z_tanh", "update gate: z = sigmoid(...), a gate between 0 and 1; yours uses tanh",
     lambda x, h, c, p: _gru(x, h, p, act=(_sig, _tanh, _tanh))),
    ("shared", "shared weights: x must go through weight_ih and h through weight_hh; yours puts h through weight_ih, "
               "one weight shared by x and h (the seed's bug, which only fits when input_size == hidden_size)",
     lambda x, h, c, p: _gru(x, h, p, pre=PRE_VARIANTS["shared"])),
    ("swapped_xh", "x must go through weight_ih and h through weight_hh; yours swaps them",
     lambda x, h, c, p: _gru(x, h, p, pre=PRE_VARIANTS["swapped_xh"])),
    ("no_bias_hh", "biases: the gates use b_ih + b_hh, and n uses b_in + r * (W_hn h + b_hn); yours leaves out bias_hh",
     lambda x, h, c, p: _gru(x, h, p, pre=PRE_VARIANTS["no_bias_hh"])),
    ("no_bias_ih", "biases: the gates use b_ih + b_hh, and n uses b_in + r * (W_hn h + b_hn); yours leaves out bias_ih",
     lambda x, h, c, p: _gru(x, h, p, pre=PRE_VARIANTS["no_bias_ih"])),
    ("no_bias", "biases: the gates use b_ih + b_hh, and n uses b_in + r * (W_hn h + b_hn); "
                "yours leaves out both biases",
     lambda x, h, c, p: _gru(x, h, p, pre=PRE_VARIANTS["no_bias"])),
]
GRU_BUGS += [
    (f"order_{''.join(map(str, perm))}", _order_message("gru", perm),
     (lambda order: lambda x, h, c, p: _gru(x, h, p, order=order))(perm))
    for perm in itertools.permutations(range(3)) if perm != (0, 1, 2)
]

# ----------------------------------------------------------------------------- gate probes

X_PATH = ("x must go through weight_ih only: with weight_ih = 0 your output still changes with x "
          "(x W_ih^T + b_ih is the input term, h W_hh^T + b_hh the hidden term)")
H_PATH = ("h must go through weight_hh only: with weight_hh = 0, changing unit 0 of h changed other units of your "
          "output, so h goes through another weight (one weight shared by x and h, as in the seed, only fits when "
          "input_size == hidden_size)")

# Each probe: which outputs a rule compares with nn.LSTMCell / nn.GRUCell, and the rule's message.
LSTM_RULES = [
    ("forget", "c", "forget gate: with f forced to 1 and i to 0, c must carry over unchanged (c' = f * c + i * g)"),
    ("input_shut", "c", "input gate: with i and f forced to 0, c' must be 0: the candidate reaches c' only as i * g"),
    ("candidate", "c", "input gate / candidate: with zero state and i forced to 1, c' = i*g = g, and g uses tanh"),
]
GRU_RULES = [
    ("update", "h", "update gate: with z forced to 1, h must carry over unchanged: h' = (1 - z) * n + z * h, "
                    "not the other way"),
    ("candidate", "h", "candidate: with r forced to 1 (and z = 0.5, so h' = (n + h) / 2), "
                       "n = tanh(W_in x + b_in + W_hn h + b_hn)"),
    ("reset_mid", "h",
     f"{RESET_RULE}: r multiplies W_hn h + b_hn element by element, W_hn (r * h) is another function"),
]
# Checked only when no rule above points at a gate: they fail for almost any bug.
LSTM_GENERAL = [("zero_state", "c", "input gate / candidate: with zero state, c' = i*g (i = sigmoid, g = tanh of the "
                                    "gate's pre-activation)")]
GRU_GENERAL = [("zero_state", "h", "with h = 0, h' = (1 - z) * n with n = tanh(W_in x + b_in + r * b_hn)")]
OUTPUT_RULE = "output gate: h' = o * tanh(c') with o = sigmoid(...), where c' is the cell state your forward returns"
RESET_SHUT = (f"{RESET_RULE}: with r forced to 0, changing b_hn changed your output, so b_hn is not inside "
              "r * (W_hn h + b_hn)")
BIAS_MOVED = ("biases: every pre-activation is x W_ih^T + b_ih + h W_hh^T + b_hh, so moving a gate's bias from bias_ih "
              "to bias_hh must not change anything, but yours changes: use each bias once")


def _bias(k: int, size: int, values: dict[int, Any]) -> torch.Tensor:
    """A bias vector of k blocks: values[block] is a number or a (size,) tensor; missing blocks are 0."""
    parts = []
    for block in range(k):
        v = values.get(block, 0.0)
        parts.append(v.clone() if isinstance(v, torch.Tensor) else torch.full((size,), float(v), dtype=torch.float64))
    return torch.cat(parts)


def _diagnosis_probes(kind: str, gen: torch.Generator) -> list[dict]:
    """Named float64 probes with input_size == hidden_size == 3 and batch 4 (plain data)."""
    k = 4 if kind == "lstm" else 3
    n, s = DIAG_BATCH, DIAG_SIZE

    def rnd(*shape, scale=1.0):
        return randn(gen, *shape) * scale

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
    probes += [("bias_ih", params(zeros_w, w_hh, bias_ih=gate_bias, bias_hh=torch.zeros(k * s, dtype=torch.float64)),
                x, h, c),
               ("bias_hh", params(zeros_w, w_hh, bias_ih=torch.zeros(k * s, dtype=torch.float64), bias_hh=gate_bias),
                x, h, c)]
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
    return [{"label": label, "params": {k_: pack(v) for k_, v in p.items()},
             "x": pack(x_), "h": pack(h_), "c": pack(c_)}
            for label, p, x_, h_, c_ in probes]


# ----------------------------------------------------------------------------- the exercise

class CellExercise(Exercise):
    """Shared machinery of LSTMCellScratch and GRUCellScratch."""

    kind = ""
    torch_cell: type = nn.Module
    bugs: list = []
    rules: list = []
    assignment = "lstm_gru"
    forbidden_names = FORBIDDEN
    forbidden_reason = REASON

    SHAPE_CASES = [(3, 5, 6, "float32"), (1, 4, 2, "float64"), (2, 3, 3, "float32")]
    VALUE_CASES = [(3, 5, 6, "float32"), (4, 2, 7, "float64"), (1, 6, 3, "float64"), (5, 4, 4, "float32")]
    GRAD_CASES = [(3, 5, 4, "float64"), (2, 3, 6, "float64"), (4, 2, 3, "float32")]

    @property
    def k(self) -> int:
        return 4 if self.kind == "lstm" else 3

    @property
    def lstm(self) -> bool:
        return self.kind == "lstm"

    # -- cases ------------------------------------------------------------------------------
    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        t_shapes, t_values, t_grads, t_train = self.test_ids
        out = [Case(t_shapes, "parameters", {"input_size": 5, "hidden_size": 6})]
        extra = (rng.randint(1, 5), rng.randint(1, 7), rng.randint(1, 7), rng.choice(["float32", "float64"]))
        for shape in self.SHAPE_CASES + [extra]:
            out.append(Case(t_shapes, "forward", self._random_case(gen, *shape)))
        diagnosis = {"probes": _diagnosis_probes(self.kind, gen)}
        out.append(Case(t_values, "diagnosis", diagnosis))
        for shape in self.VALUE_CASES + [extra]:
            out.append(Case(t_values, "values", self._random_case(gen, *shape)))
        out.append(Case(t_grads, "diagnosis", diagnosis))
        for shape in self.GRAD_CASES:
            out.append(Case(t_grads, "gradients", self._random_case(gen, *shape, upstream=True)))
        out.append(Case(t_train, "diagnosis", diagnosis))
        for target in ("ohlol", "".join(rng.choice(CHARS) for _ in range(5))):
            out.append(Case(t_train, "training", self.training_case(target, rng.randrange(2**31))))
        return out

    def training_case(self, target: str, init_seed: int, embedding_size: int = EMBEDDING_SIZE) -> dict:
        init = initial_state(self.kind, init_seed, embedding_size=embedding_size)
        return {"source": "hello", "target": target, "init_seed": init_seed,
                "init": {k: pack(v) for k, v in init.items()},
                "embedding_size": embedding_size, "hidden_size": HIDDEN_SIZE, "num_epochs": NUM_EPOCHS, "lr": LR}

    def _random_case(self, gen, batch, input_size, hidden_size, dtype, upstream=False) -> dict:
        dt = getattr(torch, dtype)
        rows = self.k * hidden_size
        params = {"weight_ih": randn(gen, rows, input_size, dtype=dt) * 0.7,
                  "weight_hh": randn(gen, rows, hidden_size, dtype=dt) * 0.7,
                  "bias_ih": randn(gen, rows, dtype=dt) * 0.5, "bias_hh": randn(gen, rows, dtype=dt) * 0.5}
        data = {"params": {k: pack(v) for k, v in params.items()}, "x": pack(randn(gen, batch, input_size, dtype=dt)),
                "h": pack(randn(gen, batch, hidden_size, dtype=dt)),
                "c": pack(randn(gen, batch, hidden_size, dtype=dt))}
        if upstream:
            data["up_h"] = pack(randn(gen, batch, hidden_size, dtype=dt))
            data["up_c"] = pack(randn(gen, batch, hidden_size, dtype=dt))
        return data

    # -- probe (runs next to the student's code: plain data out, never torch's cells) ----------
    def probe(self, cls: Any, case: Case) -> Any:
        if case.label == "parameters":
            return self._probe_parameters(cls, case.data)
        if case.label == "diagnosis":
            return {"outputs": [self._run(cls, p) for p in case.data["probes"]]}
        if case.label == "training":
            return self._probe_training(cls, case.data)
        return self._run(cls, case.data, grad=case.label == "gradients")

    def _probe_parameters(self, cls, data) -> dict:
        cell = cls(data["input_size"], data["hidden_size"])
        if not isinstance(cell, nn.Module):
            raise ProbeError(f"returned a {type(cell).__name__} instance: {self.name} must subclass nn.Module")
        return {"parameters": {n: list(p.shape) for n, p in cell.named_parameters()},
                "state_dict": {n: list(t.shape) for n, t in cell.state_dict().items()},
                "attributes": {n: type(getattr(cell, n, None)).__name__ for n in PARAMS}}

    def _run(self, cls, data, grad=False) -> dict:
        params = {k: unpack(v) for k, v in data["params"].items()}
        x, h, c = unpack(data["x"]), unpack(data["h"]), unpack(data["c"])
        where = {"batch": x.shape[0], "input_size": x.shape[1], "hidden_size": h.shape[1], "dtype": data["x"]["dtype"]}
        try:
            cell = cls(x.shape[1], h.shape[1])
            if x.dtype == torch.float64:
                cell = cell.double() or cell
            cell.load_state_dict(params)
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the student
            return {"error": "build", "message": _first_line(exc), "where": where}
        if grad:
            x, h, c = (t.requires_grad_(True) for t in (x, h, c))
        try:
            out = cell(x, (h, c)) if self.lstm else cell(x, h)
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - a crash of student code is reported, not raised
            return {"error": "forward", "message": _first_line(exc), "where": where}
        if self.lstm:
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                return {"error": "return", "message": f"returned {type(out).__name__}", "where": where}
            out_h, out_c = out
        else:
            out_h, out_c = out, None
        for value in (out_h, out_c) if self.lstm else (out_h,):
            if not isinstance(value, torch.Tensor):
                return {"error": "return", "message": f"returned a {type(value).__name__} where a tensor belongs",
                        "where": where}
        result = {"h": pack(out_h), "c": pack(out_c) if self.lstm else None, "where": where}
        if not grad:
            return result
        if not out_h.requires_grad or (self.lstm and not out_c.requires_grad):
            result["grads"] = None
            return result
        loss = (out_h * unpack(data["up_h"])).sum()
        if self.lstm:
            loss = loss + (out_c * unpack(data["up_c"])).sum()
        try:
            loss.backward()
        except Exception as exc:  # noqa: BLE001 - reported to the student
            result["backward_error"] = _first_line(exc)
            return result
        named = dict(cell.named_parameters())
        grads = {"x": x.grad, "h": h.grad, "c": c.grad if self.lstm else None}
        grads.update({n: named[n].grad if n in named else None for n in PARAMS})
        result["grads"] = {k: pack(v) if v is not None else None for k, v in grads.items()}
        return result

    def _probe_training(self, cls, data) -> dict:
        model = CharModel(cls, self.kind, embedding_size=data["embedding_size"], hidden_size=data["hidden_size"])
        init = {k: unpack(v) for k, v in data["init"].items()}
        try:
            model.load_state_dict(init)
        except Exception as exc:  # noqa: BLE001 - student code: any exception is a failed probe
            raise ProbeError(f"could not take the course model's initial weights ({_first_line(exc)})") from None
        losses = train_char_model(model, data["source"], data["target"], data["num_epochs"], data["lr"])
        with torch.no_grad():
            logits = model(encode(data["source"]).unsqueeze(0))[0]
        return {"state": {k: pack(v) for k, v in model.state_dict().items()}, "logits": pack(logits),
                "losses": [float(v) for v in losses]}

    # -- judge (the grader's process: genuine torch only) -------------------------------------
    def judge(self, case: Case, observed: Any) -> str | None:
        try:
            if case.label == "parameters":
                return self._judge_parameters(case, observed)
            if case.label == "diagnosis":
                return self._judge_diagnosis(case, observed, case.test_id)
            if case.label == "training":
                return self._judge_training(case, observed)
            return self._judge_random(case, observed)
        except Exception as exc:  # noqa: BLE001 - unreadable data is a failure, never a crash of the grader
            return f"{self.name}: the check could not read the results ({type(exc).__name__}: {exc})."

    def layout(self) -> str:
        k = self.k
        return (f"weight_ih ({k}*hidden_size, input_size), weight_hh ({k}*hidden_size, hidden_size), "
                f"bias_ih ({k}*hidden_size,), bias_hh ({k}*hidden_size,)")

    def reference(self, params: dict[str, torch.Tensor], x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                  grad: bool = False, up_h: torch.Tensor | None = None, up_c: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor | None] | None]:
        rows, input_size = params["weight_ih"].shape
        cell = self.torch_cell(input_size, rows // self.k, dtype=x.dtype)
        cell.load_state_dict(params)
        if grad:
            x, h, c = (t.clone().requires_grad_(True) for t in (x, h, c))
        if self.lstm:
            out_h, out_c = cell(x, (h, c))
        else:
            out_h, out_c = cell(x, h), None
        if not grad:
            return out_h.detach(), (out_c.detach() if out_c is not None else None), None
        loss = (out_h * up_h).sum() + ((out_c * up_c).sum() if self.lstm else 0)
        loss.backward()
        named = dict(cell.named_parameters())
        grads = {"x": x.grad, "h": h.grad, "c": c.grad if self.lstm else None}
        grads.update({n: named[n].grad for n in PARAMS})
        return out_h.detach(), (out_c.detach() if out_c is not None else None), grads

    def _judge_parameters(self, case, observed) -> str | None:
        i, h, k = case.data["input_size"], case.data["hidden_size"], self.k
        expected = {"weight_ih": [k * h, i], "weight_hh": [k * h, h], "bias_ih": [k * h], "bias_hh": [k * h]}
        labels = {"weight_ih": f"({k}*hidden_size, input_size)", "weight_hh": f"({k}*hidden_size, hidden_size)",
                  "bias_ih": f"({k}*hidden_size,)", "bias_hh": f"({k}*hidden_size,)"}
        params, state = observed["parameters"], observed["state_dict"]
        for name, shape in expected.items():
            if name not in params:
                if name in state:
                    how = "a buffer"
                elif observed["attributes"].get(name) not in (None, "NoneType"):
                    how = f"a plain {observed['attributes'][name]}"
                else:
                    how = "missing"
                return (f"{self.name}({i}, {h}) has no parameter {name} ({how}): create it with nn.Parameter so the "
                        f"optimizer trains it and load_state_dict copies it; expected {self.layout()}.")
            if params[name] != shape:
                return (f"{self.name}({i}, {h}).{name} has shape {tuple(params[name])}, expected {labels[name]} = "
                        f"{tuple(shape)}: the {k} gate blocks are stacked along dim 0, "
                        f"as in nn.{self.torch_cell.__name__}.")
        extra = sorted(set(state) - set(expected))
        if extra:
            return (f"{self.name} has more than the four parameters: {', '.join(extra)}. nn.{self.torch_cell.__name__} "
                    f"holds exactly {self.layout()}, and the tests copy weights in with load_state_dict.")
        return None

    def _error_message(self, result: dict) -> str:
        w = result.get("where", {})
        at = (f"batch={w.get('batch')}, input_size={w.get('input_size')}, hidden_size={w.get('hidden_size')}, "
              f"{w.get('dtype')}")
        msg = result.get("message", "")
        if result["error"] == "build":
            return (f"{self.name}({w.get('input_size')}, {w.get('hidden_size')}) "
                    f"could not take nn.{self.torch_cell.__name__}'s weights with load_state_dict ({msg}). "
                    f"It must hold exactly four nn.Parameters: {self.layout()}.")
        if result["error"] == "return":
            want = "a pair (h', c')" if self.lstm else "the new hidden state h' (one tensor)"
            return f"{self.name}.forward must return {want}; it {msg} ({at})."
        hint = ""
        low = msg.lower()
        if any(s in low for s in ("mat1", "mat2", "shapes cannot", "size of tensor", "must match the size", "shape")):
            hint = (" x (batch, input_size) multiplies weight_ih.T and h (batch, hidden_size) multiplies weight_hh.T; "
                    "one weight shared by x and h only fits when input_size == hidden_size.")
        elif "dtype" in low or "double" in low or "float" in low:
            hint = (" Keep x's dtype: tensors created inside forward with torch.zeros(...) default to float32 "
                    "(use torch.zeros_like or x.new_zeros).")
        return f"{self.name}.forward raised {msg} ({at}).{hint}"

    def _judge_random(self, case, observed) -> str | None:
        if "error" in observed:
            return self._error_message(observed)
        d = case.data
        params = {k: unpack(v) for k, v in d["params"].items()}
        x, h, c = unpack(d["x"]), unpack(d["h"]), unpack(d["c"])
        dtype = d["x"]["dtype"]
        at = f"batch={x.shape[0]}, input_size={x.shape[1]}, hidden_size={h.shape[1]}, {dtype}"
        grad = case.label == "gradients"
        ref = self.reference(params, x, h, c, grad=grad,
                             up_h=unpack(d["up_h"]) if grad else None, up_c=unpack(d["up_c"]) if grad else None)
        outputs = [("h'", observed["h"], ref[0])] + ([("c'", observed["c"], ref[1])] if self.lstm else [])
        for label, got, want in outputs:
            if not is_packed_tensor(got):
                return f"{self.name}.forward must return tensors ({at})."
            if got["dtype"] != dtype:
                return (f"{label} has dtype {got['dtype']} for {dtype} inputs: keep x's dtype (no torch.tensor(...), "
                        f".float() or float32 tensors created inside forward) ({at}).")
            if tuple(got["shape"]) != tuple(want.shape):
                return (f"{label} has shape {tuple(got['shape'])}, "
                        f"expected (batch, hidden_size) = {tuple(want.shape)} ({at}). "
                        f"x @ weight_ih.T is (batch, {self.k}*hidden_size): split it into {self.k} blocks along dim 1.")
            if case.label == "forward":
                continue
            diff = max_diff(unpack(got), want)
            if diff > tolerance(dtype):
                return (f"{label} differs from nn.{self.torch_cell.__name__} with the same weights "
                        f"by {diff:.3g} ({at}), although the gate probes (input_size == hidden_size, float64) pass: "
                        "look at what changes with the shape or the dtype.")
        if not grad:
            return None
        if observed.get("backward_error"):
            return (f"backward through {self.name} raised {observed['backward_error']} ({at}): an in-place operation "
                    "(+=, x[...] = ...) on a tensor autograd still needs is the usual cause.")
        if observed.get("grads") is None:
            return (f"the outputs of {self.name} do not require grad: forward must use differentiable torch operations "
                    "only (no .detach(), .data, .item(), torch.tensor(...) or torch.no_grad()).")
        tol = GRAD_TOL[dtype]
        hidden = h.shape[1]
        names = ("x", "h", "c") + PARAMS if self.lstm else ("x", "h") + PARAMS
        for name in names:
            got, want = observed["grads"].get(name), ref[2][name]
            if got is None:
                if name in PARAMS:
                    return (f"{name} gets no gradient: it must be an nn.Parameter of {self.name} "
                            "and be used in forward (a plain tensor or a buffer is never trained).")
                return (f"the gradient with respect to {name} is missing: {name} must reach the outputs through torch "
                        "operations (no .detach(), .data or torch.tensor(...) on the way).")
            got = unpack(got)
            scale = max(1.0, float(want.abs().max()))
            if max_diff(got, want) > tol * scale:
                if name in PARAMS:
                    gates = ("i", "f", "g", "o") if self.lstm else ("r", "z", "n")
                    worst = max(range(self.k), key=lambda b: max_diff(got[b * hidden:(b + 1) * hidden],
                                                                     want[b * hidden:(b + 1) * hidden]))
                    where = f" (worst in the block of gate {gates[worst]}, rows {worst}H:{worst + 1}H)"
                else:
                    where = ""
                return (f"the gradient with respect to {name} differs from nn.{self.torch_cell.__name__}'s by "
                        f"{max_diff(got, want):.3g}{where} ({at}), while the forward values are right: "
                        "something cuts or bends the graph (.detach(), .data, torch.no_grad(), "
                        "or a value copied out of the graph).")
        return None

    def _judge_diagnosis(self, case, observed, test_id) -> str | None:
        results = observed["outputs"]
        probes = case.data["probes"]
        if len(results) != len(probes):
            return f"{self.name}: the gate probes returned {len(results)} results for {len(probes)} probes."
        for result in results:
            if "error" in result:
                return self._error_message(result)
        got, want, inputs = {}, {}, {}
        for probe, result in zip(probes, results, strict=True):
            label = probe["label"]
            params = {k: unpack(v) for k, v in probe["params"].items()}
            x, h, c = unpack(probe["x"]), unpack(probe["h"]), unpack(probe["c"])
            inputs[label] = (x, h, c, params)
            for key in ("h", "c") if self.lstm else ("h",):
                value = result[key]
                if (not is_packed_tensor(value) or value["dtype"] != "float64"
                        or value["shape"] != [DIAG_BATCH, DIAG_SIZE]):
                    shape = tuple(value["shape"]) if is_packed_tensor(value) else type(value).__name__
                    return (f"{self.name}: in float64 with batch={DIAG_BATCH}, input_size=hidden_size={DIAG_SIZE}, "
                            f"{key}' should be a float64 tensor of shape ({DIAG_BATCH}, {DIAG_SIZE}); got "
                            f"{value['dtype'] + ' ' if is_packed_tensor(value) else ''}{shape}.")
            ref_h, ref_c, _ = self.reference(params, x, h, c)
            got[label] = (unpack(result["h"]), unpack(result["c"]) if self.lstm else None)
            want[label] = (ref_h, ref_c)

        def off(label, which="both"):
            keys = {"h": [0], "c": [1], "both": [0, 1] if self.lstm else [0]}[which]
            return any(max_diff(got[label][k], want[label][k]) > PROBE_TOL for k in keys)

        if not any(off(label) for label in got):
            return None
        for _key, message, bug in self.bugs:
            try:
                matches = all(
                    all(max_diff(o, w) <= PROBE_TOL
                        for o, w in zip(got[label], bug(*inputs[label][:3], inputs[label][3]), strict=True)
                        if o is not None)
                    for label in got)
            except RuntimeError:  # the bug's shapes do not fit these probes
                matches = False
            if matches:
                return self._verdict(test_id, [message])
        failures = []
        same = lambda a, b: all(max_diff(p, q) <= PROBE_TOL
                                for p, q in zip(got[a], got[b], strict=True) if p is not None)
        if not same("x_off_a", "x_off_b"):
            failures.append(X_PATH)
        if not all(max_diff(p[:, 1:], q[:, 1:]) <= PROBE_TOL
                   for p, q in zip(got["h_off_a"], got["h_off_b"], strict=True) if p is not None):
            failures.append(H_PATH)
        if not same("bias_ih", "bias_hh"):
            failures.append(BIAS_MOVED)
        if self.lstm and same("memory", "memory_b"):
            failures.append("cell memory dropped: c' = f * c + i * g; with f forced to 1 and i to 0, c must carry over "
                            "unchanged, but your c' does not depend on c")
        elif self.lstm and off("memory", "c"):
            failures.append("cell state: with every gate forced open (i = f = o = 1, g = 1), "
                            "c' = f * c + i * g must be c + 1")
        if not self.lstm and not same("reset_shut", "reset_shut_b"):
            failures.append(RESET_SHUT)
        for label, which, message in self.rules:
            if label == "reset_mid" and off("candidate", "h"):
                continue  # n is already wrong with r = 1: the reset gate cannot be judged
            if off(label, which):
                failures.append(message + self._activation_detail(label, got[label], inputs[label]))
        if self.lstm:  # h' = o * tanh(c') checked against the c' the cell itself returns
            x, h, c, p = inputs["output"]
            o = torch.sigmoid(p["bias_ih"][3 * DIAG_SIZE:] + p["bias_hh"][3 * DIAG_SIZE:])
            if max_diff(got["output"][0], o * torch.tanh(got["output"][1])) > PROBE_TOL:
                failures.append(OUTPUT_RULE)
        if not failures:
            for label, which, message in (LSTM_GENERAL if self.lstm else GRU_GENERAL):
                if off(label, which):
                    failures.append(message)
        if not failures:
            failures.append(f"with random weights and state, h'{' and c' if self.lstm else ''} differ from "
                            f"nn.{self.torch_cell.__name__}, although every gate probe passes: check how x, h and the "
                            "weights combine")
        return self._verdict(test_id, list(dict.fromkeys(failures)))

    def _activation_detail(self, label, outputs, inputs) -> str:
        """Name the activation when a forced-gate probe shows sigmoid where tanh belongs."""
        x, h, c, p = inputs
        s = DIAG_SIZE
        if self.lstm and label == "candidate":
            pre = p["bias_ih"][2 * s:3 * s] + p["bias_hh"][2 * s:3 * s]
            if max_diff(outputs[1], torch.sigmoid(pre).expand_as(outputs[1])) <= PROBE_TOL:
                return " (yours uses sigmoid for g)"
        if not self.lstm and label == "candidate":
            pre = (x @ p["weight_ih"][2 * s:].T + p["bias_ih"][2 * s:]
                   + h @ p["weight_hh"][2 * s:].T + p["bias_hh"][2 * s:])
            if max_diff(outputs[0], (torch.sigmoid(pre) + h) / 2) <= PROBE_TOL:  # z = 0.5 in this probe
                return " (yours uses sigmoid for n)"
        return ""

    def _verdict(self, test_id, failures) -> str:
        lead = {self.test_ids[1]: "", self.test_ids[2]: "gradients cannot match while the forward pass is wrong: ",
                self.test_ids[3]: "the retrained model is judged with torch's cell, "
                                  "so the forward pass must be right first: "}.get(test_id, "")
        if len(failures) == 1:
            return f"{self.name}: {lead}{failures[0]}."
        listed = "; ".join(f"({n}) {f}" for n, f in enumerate(failures, 1))
        return f"{self.name}: {lead}{len(failures)} problems found by forcing gates open or shut: {listed}."

    def _judge_training(self, case, observed) -> str | None:
        d = case.data
        init = {k: unpack(v) for k, v in d["init"].items()}
        state = {k: unpack(v) for k, v in observed["state"].items()}
        if set(state) != set(init):
            return f"after training, the course model's state_dict has keys {sorted(state)}, expected {sorted(init)}."
        model = CharModel(self.torch_cell, self.kind, embedding_size=d["embedding_size"], hidden_size=d["hidden_size"])
        model.load_state_dict(state)
        with torch.no_grad():
            logits = model(encode(d["source"]).unsqueeze(0))[0]
            loss = float(F.cross_entropy(logits, encode(d["target"]), reduction="sum"))
        theirs = unpack(observed["logits"])
        scale = max(1.0, float(logits.abs().max()))
        if max_diff(theirs, logits) > 1e-4 * scale:
            return (f"after training, your cell's outputs differ from nn.{self.torch_cell.__name__}'s "
                    f"on the same trained weights by {max_diff(theirs, logits):.3g}: in float32 within CharModel "
                    f"(input_size={d['embedding_size']}, hidden_size={d['hidden_size']}, batch 1) "
                    "your cell computes something else.")
        cell_keys = [k for k in init if k.startswith("cell.")]
        if all(max_diff(state[k], init[k]) == 0 for k in cell_keys):
            return (f"training did not change any parameter of {self.name}: create weight_ih, weight_hh, bias_ih and "
                    "bias_hh with nn.Parameter (and use them in forward) "
                    "so that model.parameters() hands them to the optimizer.")
        unchanged = [k.removeprefix("cell.") for k in cell_keys if max_diff(state[k], init[k]) == 0]
        if unchanged:
            return (f"training did not change {', '.join(unchanged)}: they must be nn.Parameters used in forward, "
                    "so that they get gradients and the optimizer trains them.")
        if not math.isfinite(loss) or loss > LOSS_THRESHOLD:
            prediction = decode(logits.argmax(dim=1))
            return (f"retrained from a fixed start on {d['source']!r} -> {d['target']!r} "
                    f"({d['num_epochs']} epochs, Adam lr {d['lr']}), "
                    f"the course model with your cell ends at a summed loss of {loss:.3f} (predicting "
                    f"{prediction!r}); a correct cell ends below {LOSS_THRESHOLD} from every start we tried.")
        return None


class LstmCell(CellExercise):
    grade_id = "lstm_cell"
    name = "LSTMCellScratch"
    notebook = "lstm"
    test_ids = ("test_lstm_shapes", "test_lstm_values", "test_lstm_gradients", "test_lstm_training")
    kind = "lstm"
    torch_cell = TorchLSTMCell
    bugs = LSTM_BUGS
    rules = LSTM_RULES


class GruCell(CellExercise):
    grade_id = "gru_cell"
    name = "GRUCellScratch"
    notebook = "gru"
    test_ids = ("test_gru_shapes", "test_gru_values", "test_gru_gradients", "test_gru_training")
    kind = "gru"
    torch_cell = TorchGRUCell
    bugs = GRU_BUGS
    rules = GRU_RULES


EXERCISES = [LstmCell(), GruCell()]
