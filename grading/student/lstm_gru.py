"""The course's helpers and visible checks of the ``lstm_gru`` assignment (shipped to students).

The helpers are part of the course, not answers: :class:`CharModel` (Embedding -> your cell ->
Linear head), :func:`train_char_model` (the hello -> ohlol training loop) and
:func:`gradient_norms_over_time` (the vanishing-gradient experiment).

The checks compare your cell with PyTorch's own ``nn.LSTMCell`` / ``nn.GRUCell`` on the same
weights (copied in with ``load_state_dict``) and stop at the first problem, in the order
type -> dtype -> shape -> values -> gradients. The value checks force single gates open or
shut through their bias block, so the message names the gate that is off.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.rnn import GRUCell as _TorchGRUCell
from torch.nn.modules.rnn import LSTMCell as _TorchLSTMCell

from .checks import CheckFailed, call, check_dtype, check_shape, check_type, compare_table, max_abs_diff, quiet

CHARS = "ehlo"  # idx2char of the seed: e=0, h=1, l=2, o=3
NUM_CLASS = len(CHARS)
EMBEDDING_SIZE = 10
HIDDEN_SIZE = 8
LR = 0.05
NUM_EPOCHS = 150
# Summed cross-entropy over the 5 steps after training. Below ln 2 ~= 0.69 every character is
# predicted right; correct cells stay far below (see the calibration figures in the notebook).
LOSS_THRESHOLD = 0.25

GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
GATE_NAMES = {"i": "input gate i", "f": "forget gate f", "g": "candidate g", "o": "output gate o",
              "r": "reset gate r", "z": "update gate z", "n": "candidate n"}
PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
TORCH_CELL = {"lstm": _TorchLSTMCell, "gru": _TorchGRUCell}  # PyTorch's own cells, whatever nn.LSTMCell is rebound to
CLASS_NAME = {"lstm": "LSTMCellScratch", "gru": "GRUCellScratch"}
SATURATE = 80.0  # split over bias_ih and bias_hh: sigmoid(+-40) is 1.0 or ~4e-18 in float64, a gate forced open or shut
# Names whose use means the cell is not written from scratch (the hidden tests apply the same rule).
NOT_FROM_SCRATCH = ("LSTMCell", "GRUCell", "RNNCellBase", "lstm_cell", "gru_cell", "_VF", "LSTM", "GRU", "lstm", "gru")


def encode(text: str) -> torch.Tensor:
    """Characters -> LongTensor of indices into CHARS, e.g. encode("hello") = tensor([1, 0, 2, 2, 3])."""
    return torch.tensor([CHARS.index(ch) for ch in text], dtype=torch.long)


def decode(indices) -> str:
    """Indices -> characters, e.g. decode([3, 1, 2, 3, 2]) = "ohlol"."""
    return "".join(CHARS[int(i)] for i in indices)


class CharModel(nn.Module):
    """Embedding -> recurrent cell -> Linear head: one logit vector per character.

    cell_class: any class called as ``cell_class(embedding_size, hidden_size)``: your
    LSTMCellScratch / GRUCellScratch, or nn.LSTMCell / nn.GRUCell.
    kind: "lstm" (the cell takes and returns the pair (h, c)) or "gru" (it takes and returns h).
    """

    def __init__(self, cell_class, kind: str, num_class: int = NUM_CLASS,
                 embedding_size: int = EMBEDDING_SIZE, hidden_size: int = HIDDEN_SIZE):
        super().__init__()
        if kind not in GATES:
            raise ValueError(f'kind must be "lstm" or "gru", got {kind!r}')
        self.kind = kind
        self.hidden_size = hidden_size
        self.emb = nn.Embedding(num_class, embedding_size)
        self.cell = cell_class(embedding_size, hidden_size)
        self.fc = nn.Linear(hidden_size, num_class)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor (batch_size, seq_len) of character indices -> logits (batch_size, seq_len, num_class)."""
        inputs = self.emb(x)  # (batch_size, seq_len, embedding_size)
        h = inputs.new_zeros(x.shape[0], self.hidden_size)
        c = inputs.new_zeros(x.shape[0], self.hidden_size)
        hs = []
        for t in range(x.shape[1]):
            if self.kind == "lstm":
                h, c = self.cell(inputs[:, t], (h, c))
            else:
                h = self.cell(inputs[:, t], h)
            hs.append(h)
        return self.fc(torch.stack(hs, dim=1))


def initial_state(kind: str, seed: int, num_class: int = NUM_CLASS, embedding_size: int = EMBEDDING_SIZE,
                  hidden_size: int = HIDDEN_SIZE, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """A fresh CharModel state_dict drawn from ``seed`` like PyTorch's default initialisation.

    Embedding ~ N(0, 1); cell and head ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)). Tests load it,
    so they never depend on how your cell initialises itself.
    """
    gen = torch.Generator().manual_seed(seed)
    rows = len(GATES[kind]) * hidden_size
    bound = hidden_size ** -0.5

    def uniform(*shape):
        return ((torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dtype)

    return {
        "emb.weight": torch.randn(num_class, embedding_size, generator=gen, dtype=torch.float64).to(dtype),
        "cell.weight_ih": uniform(rows, embedding_size),
        "cell.weight_hh": uniform(rows, hidden_size),
        "cell.bias_ih": uniform(rows),
        "cell.bias_hh": uniform(rows),
        "fc.weight": uniform(num_class, hidden_size),
        "fc.bias": uniform(num_class),
    }


def summed_loss(logits: torch.Tensor, target: str) -> torch.Tensor:
    """Cross-entropy summed over the time steps, as in the seed (loss += criterion(...) per step).

    logits: (seq_len, num_class) for one sequence.
    """
    return F.cross_entropy(logits, encode(target), reduction="sum")


def train_char_model(model: CharModel, source: str = "hello", target: str = "ohlol",
                     num_epochs: int = NUM_EPOCHS, lr: float = LR) -> list[float]:
    """Train ``model`` to map ``source`` to ``target`` with Adam; returns the summed loss of every epoch."""
    x = encode(source).unsqueeze(0)  # (batch_size=1, seq_len)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(num_epochs):
        optimizer.zero_grad()
        loss = summed_loss(model(x)[0], target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def predict(model: CharModel, source: str = "hello") -> str:
    """The model's most likely character at every step."""
    with torch.no_grad():
        return decode(model(encode(source).unsqueeze(0))[0].argmax(dim=1))


def gradient_norms_over_time(make_rnn, seq_len: int = 50, num_seeds: int = 10, input_size: int = 8) -> torch.Tensor:
    """How strongly the last output depends on each earlier input, averaged over ``num_seeds`` networks.

    make_rnn: a function returning a fresh nn.RNN / nn.LSTM / nn.GRU (batch_first=False, this input_size).
    For every seed: build the network, feed a random sequence x_1..x_T (batch 1), and take
    ||d(sum of the output at step T) / d x_t|| for every t. Returns a tensor of shape (seq_len,) whose
    entry k belongs to the input k steps before the last one (entry 0: the last input itself).
    """
    norms = []
    for seed in range(num_seeds):
        torch.manual_seed(seed)
        rnn = make_rnn()
        x = torch.randn(seq_len, 1, input_size).requires_grad_(True)
        output, _ = rnn(x)
        output[-1].sum().backward()
        norms.append(x.grad.norm(dim=(1, 2)).flip(0))
    return torch.stack(norms).mean(dim=0)


# ----------------------------------------------------------------------------- visible checks

def _layout(kind: str, input_size: str = "input_size", hidden_size: str = "hidden_size") -> str:
    k = len(GATES[kind])
    return (f"weight_ih ({k}*{hidden_size}, {input_size}), weight_hh ({k}*{hidden_size}, {hidden_size}), "
            f"bias_ih ({k}*{hidden_size},), bias_hh ({k}*{hidden_size},)")


def _blocks(kind: str) -> str:
    names = GATES[kind]
    return ", ".join(f"rows {i}H:{i + 1}H = {GATE_NAMES[g]}".replace("0H:", "0:").replace(":1H", ":H")
                     for i, g in enumerate(names))


def _random_params(kind: str, input_size: int, hidden_size: int, dtype, gen) -> dict[str, torch.Tensor]:
    rows = len(GATES[kind]) * hidden_size
    shapes = {"weight_ih": (rows, input_size), "weight_hh": (rows, hidden_size), "bias_ih": (rows,), "bias_hh": (rows,)}
    return {k: (torch.randn(*s, generator=gen, dtype=torch.float64) * 0.5).to(dtype) for k, s in shapes.items()}


def _reference_cell(kind: str, params: dict[str, torch.Tensor]) -> nn.Module:
    rows, input_size = params["weight_ih"].shape
    cell = TORCH_CELL[kind](input_size, rows // len(GATES[kind]), dtype=params["weight_ih"].dtype)
    cell.load_state_dict(params)
    return cell


def _make_cell(cls, kind: str, input_size: int, hidden_size: int, dtype=torch.float32) -> nn.Module:
    label = f"{CLASS_NAME[kind]}({input_size}, {hidden_size})"
    cell = call(cls, input_size, hidden_size, name=label)
    check_type(cell, nn.Module, label,
               f"{CLASS_NAME[kind]} must subclass nn.Module (class {CLASS_NAME[kind]}(nn.Module)).")
    used = _names_used(cls)
    if isinstance(cell, nn.RNNCellBase) or used:
        what = "subclasses PyTorch's own cell" if isinstance(cell, nn.RNNCellBase) else f"uses {', '.join(used)}"
        raise CheckFailed(f"{CLASS_NAME[kind]} {what}: write the gate equations yourself. A subclass or wrapper of "
                          "nn.LSTMCell / nn.GRUCell, or a call to torch.lstm_cell / torch.gru_cell / torch._VF, "
                          "earns no points.")
    if dtype == torch.float64:
        cell = call(cell.double, name=f"{label}.double()") or cell
    return cell


def _names_used(cls) -> list[str]:
    """Names from NOT_FROM_SCRATCH that the class's methods refer to."""
    used: set[str] = set()
    for member in vars(cls).values() if isinstance(cls, type) else ():
        code = getattr(getattr(member, "__func__", member), "__code__", None)
        stack = [code] if code is not None else []
        while stack:
            co = stack.pop()
            used.update(co.co_names)
            used.update(c for c in co.co_consts if isinstance(c, str))
            stack.extend(c for c in co.co_consts if hasattr(c, "co_names"))
    return sorted(used & set(NOT_FROM_SCRATCH))


def _load(cell, kind: str, params: dict[str, torch.Tensor]) -> None:
    try:
        with quiet():
            cell.load_state_dict(params)
    except NotImplementedError:
        raise CheckFailed(f"{CLASS_NAME[kind]} is not implemented yet: "
                          "replace `raise NotImplementedError()`.") from None
    except Exception as exc:  # noqa: BLE001 - any error of the student's cell becomes a message
        first = str(exc).strip().splitlines()
        raise CheckFailed(f"{CLASS_NAME[kind]}.load_state_dict(...) failed "
                          f"({first[0] if first else type(exc).__name__} ...). "
                          f"The cell must hold exactly four nn.Parameters: {_layout(kind)}.") from None


def _step(cell, kind: str, x, h, c):
    """Call the student's cell; returns (h', c') for the LSTM and (h', None) for the GRU."""
    name = f"{CLASS_NAME[kind]}.forward"
    try:
        out = call(cell, x, (h, c) if kind == "lstm" else h, name=name)
    except CheckFailed as exc:
        if "mat1 and mat2" in str(exc) or "shapes cannot be multiplied" in str(exc):
            raise CheckFailed(f"{exc} (input_size={x.shape[1]}, hidden_size={h.shape[1]}). "
                              "x (batch, input_size) multiplies weight_ih.T and h (batch, hidden_size) multiplies "
                              "weight_hh.T: one weight shared by x and h only fits when "
                              "input_size == hidden_size.") from None
        raise
    if kind == "lstm":
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise CheckFailed(f"{name}(x, (h, c)) must return a pair (h', c'), got {type(out).__name__}.")
        for value, label in zip(out, ("h'", "c'"), strict=True):
            check_type(value, torch.Tensor, label)
        return out[0], out[1]
    check_type(out, torch.Tensor, f"{name}(x, h)", "The GRU cell returns the new hidden state h' only.")
    return out, None


def _reference_step(cell, kind: str, x, h, c):
    if kind == "lstm":
        return cell(x, (h, c))
    return cell(x, h), None


def _check_shapes(cls, kind: str) -> None:
    input_size, hidden_size, batch_size = 3, 4, 2
    k = len(GATES[kind])
    cell = _make_cell(cls, kind, input_size, hidden_size)
    params = dict(cell.named_parameters())
    expected = {"weight_ih": (k * hidden_size, input_size), "weight_hh": (k * hidden_size, hidden_size),
                "bias_ih": (k * hidden_size,), "bias_hh": (k * hidden_size,)}
    dims = {"weight_ih": (f"{k}*hidden_size", "input_size"), "weight_hh": (f"{k}*hidden_size", "hidden_size"),
            "bias_ih": (f"{k}*hidden_size",), "bias_hh": (f"{k}*hidden_size",)}
    for name, shape in expected.items():
        if name not in params:
            where = "a plain tensor or buffer" if hasattr(cell, name) else "missing"
            raise CheckFailed(f"{CLASS_NAME[kind]}(3, 4) has no parameter {name!r} ({where}): create it with "
                              "nn.Parameter(...) so it is trained and copied by load_state_dict. "
                              f"Expected {_layout(kind)}.")
        check_shape(params[name], shape, f"{CLASS_NAME[kind]}(3, 4).{name}", dims[name],
                    f"The {k} gate blocks are stacked along dim 0 ({_blocks(kind)}).")
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        cell = _make_cell(cls, kind, input_size, hidden_size, dtype)
        _load(cell, kind, _random_params(kind, input_size, hidden_size, dtype, gen))
        x = torch.randn(batch_size, input_size, generator=gen, dtype=torch.float64).to(dtype)
        h = torch.randn(batch_size, hidden_size, generator=gen, dtype=torch.float64).to(dtype)
        c = torch.randn(batch_size, hidden_size, generator=gen, dtype=torch.float64).to(dtype)
        outs = _step(cell, kind, x, h, c)
        for value, label in zip(outs, ("h'", "c'"), strict=True):
            if value is None:
                continue
            check_dtype(value, dtype, label,
                        "Keep the dtype of x: no torch.tensor(...), .float() or new float32 tensors inside forward.")
            check_shape(value, (batch_size, hidden_size), label, ("batch", "hidden_size"),
                        "x @ weight_ih.T is (batch, k*hidden_size): split it into the gate blocks along dim 1.")
    print(f"{CLASS_NAME[kind]}: parameters " + ", ".join(f"{n} {tuple(params[n].shape)}" for n in expected))
    print(f"{CLASS_NAME[kind]}: shape checks passed (float32 and float64, input_size=3, hidden_size=4, batch=2).")


def _bias(kind: str, hidden_size: int, values: dict[str, torch.Tensor | float]) -> torch.Tensor:
    blocks = []
    for gate in GATES[kind]:
        v = values.get(gate, 0.0)
        blocks.append(v if isinstance(v, torch.Tensor) else torch.full((hidden_size,), float(v), dtype=torch.float64))
    return torch.cat(blocks)


def _probes(kind: str):
    """Named float64 probes (label, params, x, h, c, which output, what it shows), input_size == hidden_size == 3.

    Most force gates open or shut through their bias block (split evenly over bias_ih and bias_hh).
    """
    gen = torch.Generator().manual_seed(1)
    batch_size, size = 3, 3
    k = len(GATES[kind])

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    zeros_w = torch.zeros(k * size, size, dtype=torch.float64)
    x, h, c = randn(batch_size, size), randn(batch_size, size), randn(batch_size, size)
    zero = torch.zeros(batch_size, size, dtype=torch.float64)
    on, off = SATURATE, -SATURATE
    probes = []

    def add(label, bias, what, out, x=x, h=h, c=c, weight_ih=zeros_w, weight_hh=zeros_w):
        params = {"weight_ih": weight_ih, "weight_hh": weight_hh, "bias_ih": bias / 2, "bias_hh": bias / 2}
        probes.append((label, params, x, h, c, out, what))

    if kind == "lstm":
        add("i*g  zero state", _bias(kind, size, {"i": on, "f": off, "g": randn(size), "o": on}),
            "input gate / candidate: with zero state and i forced to 1, c' = i*g = g, and g uses tanh", "c",
            h=zero, c=zero)
        add("f    c carried", _bias(kind, size, {"i": off, "f": on, "o": on}),
            "forget gate: with f forced to 1 and i to 0, c must carry over unchanged (c' = f*c + i*g)", "c")
        add("i    shut", _bias(kind, size, {"i": off, "f": off, "g": randn(size), "o": on}),
            "input gate: with i and f forced to 0, c' must be 0: the candidate reaches c' only as i*g", "c")
        add("o    output", _bias(kind, size, {"i": off, "f": on, "o": randn(size)}),
            "output gate: with c' = c, h' = o * tanh(c') with o = sigmoid(...)", "h")
    else:
        add("z    h carried", _bias(kind, size, {"z": on, "n": randn(size)}),
            "update gate: with z forced to 1, h must carry over unchanged: h' = (1 - z) * n + z * h, "
            "not the other way", "h")
        w_n = torch.cat([torch.zeros(2 * size, size, dtype=torch.float64), randn(size, size)])
        add("n    candidate", _bias(kind, size, {"r": on, "z": off, "n": randn(size)}),
            "candidate: with r forced to 1 and z to 0, h' = n = tanh(W_in x + b_in + W_hn h + b_hn)", "h",
            weight_ih=torch.cat([torch.zeros(2 * size, size, dtype=torch.float64), randn(size, size)]), weight_hh=w_n)
        shut = _bias(kind, size, {"r": off, "z": off})
        probes.append(("r    reset shut", {"weight_ih": zeros_w, "weight_hh": w_n, "bias_ih": shut,
                                            "bias_hh": torch.cat([torch.zeros(2 * size, dtype=torch.float64),
                                                                  randn(size)])},
                       x, h, c, "h", "reset gate: with r forced to 0 (and z to 0), n must ignore h and b_hn: n uses "
                                     "r * (W_hn h + b_hn), torch's convention (reset applied after the matmul)"))
    params = _random_params(kind, size, size, torch.float64, gen)
    probes.append(("all  random", params, x, h, c, "both",
                   "with random weights and state: check how x, h, the weights and both biases combine"))
    return probes


def _paths(kind: str):
    """Invariance probes: with weight_hh = 0 the output must not depend on h; with weight_ih = 0, not on x."""
    gen = torch.Generator().manual_seed(3)
    size, k = 3, len(GATES[kind])
    params = _random_params(kind, size, size, torch.float64, gen)
    zeros_w = torch.zeros(k * size, size, dtype=torch.float64)
    x, h, c, other = (torch.randn(3, size, generator=gen, dtype=torch.float64) for _ in range(4))
    nudged = h.clone()
    nudged[:, 0] += 1.0  # only unit 0 of h changes
    return [
        ("h only through weight_hh", dict(params, weight_hh=zeros_w), (x, h, c), (x, nudged, c),
         "h must go through weight_hh only: with weight_hh = 0, changing unit 0 of h changed other units of your "
         "output, so h goes through another weight (one weight shared by x and h, as in the seed's LSTM, only fits "
         "when input_size == hidden_size)"),
        ("x only through weight_ih", dict(params, weight_ih=zeros_w), (x, h, c), (other, h, c),
         "x must go through weight_ih only: with weight_ih = 0 your output still changes with x"),
    ]


def _check_values(cls, kind: str) -> None:
    rows, failures = {}, []
    for label, params, first, second, what in _paths(kind):
        cell = _make_cell(cls, kind, 3, 3, torch.float64)
        _load(cell, kind, params)
        with torch.no_grad(), quiet():
            one, two = _step(cell, kind, *first), _step(cell, kind, *second)
        for out_name, a, b in zip(("h'", "c'"), one, two, strict=True):
            if a is None:
                continue
            if label.startswith("h"):  # unit 0 may move through z * h (GRU); the other units may not
                a, b = a[:, 1:], b[:, 1:]
            rows[f"{label}: {out_name} stays put"] = (a.detach(), b.detach())
            if tuple(a.shape) == tuple(b.shape) and max_abs_diff(a, b) > 1e-10:
                failures.append(f"{what} ({out_name} moved by {max_abs_diff(a, b):.3g})")
    for label, params, x, h, c, which, what in _probes(kind):
        cell = _make_cell(cls, kind, x.shape[1], h.shape[1], torch.float64)
        _load(cell, kind, params)
        with torch.no_grad(), quiet():
            got_h, got_c = _step(cell, kind, x, h, c)
            want_h, want_c = _reference_step(_reference_cell(kind, params), kind, x, h, c)
        pairs = [("h'", got_h, want_h)] if which in ("h", "both") else []
        if which in ("c", "both") and kind == "lstm":
            pairs.append(("c'", got_c, want_c))
        for out_name, got, want in pairs:
            rows[f"{label}: {out_name}"] = (got.detach(), want.detach())
            if tuple(got.shape) != tuple(want.shape):
                failures.append(f"{out_name} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
            elif max_abs_diff(got, want) > 1e-10:
                failures.append(f"{what} ({out_name} off by {max_abs_diff(got, want):.3g})")
    print(f"{CLASS_NAME[kind]} vs nn.{TORCH_CELL[kind].__name__}, float64, same weights (one probe per line):")
    print(compare_table(rows, atol=1e-10))
    if failures:
        more = f" ({len(failures) - 1} more line(s) of the table differ.)" if len(failures) > 1 else ""
        raise CheckFailed(f"{CLASS_NAME[kind]} differs from nn.{TORCH_CELL[kind].__name__}: {failures[0]}.{more}")
    print(f"{CLASS_NAME[kind]}: value checks passed (max difference below 1e-10 in float64).")


def _check_gradients(cls, kind: str) -> None:
    gen = torch.Generator().manual_seed(2)
    batch_size, input_size, hidden_size = 3, 4, 5
    params = _random_params(kind, input_size, hidden_size, torch.float64, gen)
    x, h, c = (torch.randn(batch_size, n, generator=gen, dtype=torch.float64)
               for n in (input_size, hidden_size, hidden_size))
    up_h, up_c = (torch.randn(batch_size, hidden_size, generator=gen, dtype=torch.float64) for _ in range(2))
    results = {}
    for who in ("yours", "torch"):
        cell = (_make_cell(cls, kind, input_size, hidden_size, torch.float64) if who == "yours"
                else _reference_cell(kind, params))
        if who == "yours":
            _load(cell, kind, params)
        inputs = [t.clone().requires_grad_(True) for t in (x, h, c)]
        with quiet():
            out_h, out_c = (_step if who == "yours" else _reference_step)(cell, kind, *inputs)
        if not out_h.requires_grad:
            raise CheckFailed("h' does not require grad: forward must use differentiable torch operations only "
                              "(no .detach(), .data, .item(), torch.tensor(...) or torch.no_grad()).")
        loss = (out_h * up_h).sum() + ((out_c * up_c).sum() if out_c is not None else 0)
        try:
            with quiet():
                loss.backward()
        except Exception as exc:  # noqa: BLE001 - any error of the student's cell becomes a message
            raise CheckFailed(f"backward through {CLASS_NAME[kind]} raised {type(exc).__name__}: {exc}. "
                              "An in-place operation (+=, [...] =) on a tensor autograd needs "
                              "is the usual cause.") from None
        grads = {"x": inputs[0].grad, "h": inputs[1].grad}
        if kind == "lstm":
            grads["c"] = inputs[2].grad
        named = dict(cell.named_parameters())
        for name in PARAMETERS:
            if name not in named or named[name].grad is None:
                raise CheckFailed(f"{name}.grad is None after backward: "
                                  f"{name} must be an nn.Parameter used in forward.")
            grads[name] = named[name].grad
        results[who] = grads
    rows, failures = {}, []
    for name in ("x", "h", "c"):
        if name in results["torch"]:
            got, want = results["yours"][name], results["torch"][name]
            if got is None:
                failures.append(f"d/d{name} is None: {name} must reach h' through torch operations")
                got = torch.full_like(want, float("nan"))
            rows[f"d/d{name}"] = (got, want)
    for b, gate in enumerate(GATES[kind]):
        part = slice(b * hidden_size, (b + 1) * hidden_size)
        got = torch.cat([results["yours"][p][part].flatten() for p in PARAMETERS])
        want = torch.cat([results["torch"][p][part].flatten() for p in PARAMETERS])
        rows[f"d/d(weights, biases) of {GATE_NAMES[gate]}"] = (got, want)
    print(f"Gradients of {CLASS_NAME[kind]} vs nn.{TORCH_CELL[kind].__name__} "
          "(float64, batch=3, input_size=4, hidden_size=5):")
    print(compare_table(rows, atol=1e-10))
    for key, (got, want) in rows.items():
        if max_abs_diff(got, want) > 1e-10:
            failures.append(f"{key} is off by {max_abs_diff(got, want):.3g}")
    if failures:
        raise CheckFailed(f"Gradients of {CLASS_NAME[kind]} differ from nn.{TORCH_CELL[kind].__name__}: {failures[0]}. "
                          "If the value checks pass, something cuts the graph (.detach(), .data, torch.tensor(...)).")
    print(f"{CLASS_NAME[kind]}: gradient checks passed.")


def _check_training(cls, kind: str, seed: int = 0) -> None:
    model = call(CharModel, cls, kind, name=CLASS_NAME[kind])
    _load(model, kind, initial_state(kind, seed))
    losses = call(train_char_model, model, name=f"training with {CLASS_NAME[kind]}")
    with torch.no_grad():
        final = summed_loss(model(encode("hello").unsqueeze(0))[0], "ohlol").item()
    prediction = predict(model)
    print(f"{CLASS_NAME[kind]} in CharModel: summed loss {losses[0]:.3f} -> {final:.4f} after {len(losses)} epochs, "
          f"predicts {prediction!r} for 'hello'.")
    if not final <= LOSS_THRESHOLD:
        raise CheckFailed(f"After training, the summed loss is {final:.3f}; "
                          f"a correct cell reaches below {LOSS_THRESHOLD} from this start. "
                          "Pass the value and gradient checks first.")
    if prediction != "ohlol":
        raise CheckFailed(f"After training the model predicts {prediction!r}, not 'ohlol'.")
    print(f"{CLASS_NAME[kind]}: training check passed.")


def check_lstm_shapes(cls) -> None:
    """LSTMCellScratch: it builds and has the four parameters with nn.LSTMCell's shapes.

    It returns (h', c') of the right dtype and shape.
    """
    _check_shapes(cls, "lstm")


def check_lstm_values(cls) -> None:
    """LSTMCellScratch vs nn.LSTMCell, gate by gate (each gate forced open or shut), then random weights and state."""
    _check_values(cls, "lstm")


def check_lstm_gradients(cls) -> None:
    """Gradients w.r.t. x, h, c and every gate's block of the parameters, against nn.LSTMCell."""
    _check_gradients(cls, "lstm")


def check_lstm_training(cls) -> None:
    """CharModel(LSTMCellScratch) trained on hello -> ohlol from a fixed start.

    It must reach the loss a correct cell reaches.
    """
    _check_training(cls, "lstm")


def check_gru_shapes(cls) -> None:
    """GRUCellScratch: it builds and has the four parameters with nn.GRUCell's shapes.

    It returns h' of the right dtype and shape.
    """
    _check_shapes(cls, "gru")


def check_gru_values(cls) -> None:
    """GRUCellScratch vs nn.GRUCell, gate by gate (each gate forced open or shut), then random weights and state."""
    _check_values(cls, "gru")


def check_gru_gradients(cls) -> None:
    """Gradients w.r.t. x, h and every gate's block of the parameters, against nn.GRUCell."""
    _check_gradients(cls, "gru")


def check_gru_training(cls) -> None:
    """CharModel(GRUCellScratch) trained on hello -> ohlol from a fixed start.

    It must reach the loss a correct cell reaches.
    """
    _check_training(cls, "gru")
