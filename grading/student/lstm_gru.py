"""The course's helpers and visible checks of the ``lstm_gru`` assignment (shipped to students).

The helpers are part of the course, not answers: :class:`CharModel` (Embedding -> your cell ->
Linear head), :func:`train_char_model` (the hello -> ohlol training loop) and
:func:`gradient_norms_over_time` (the vanishing-gradient experiment).

The checks compare your cell with PyTorch's own ``nn.LSTMCell`` / ``nn.GRUCell`` on the same
weights (copied in with ``load_state_dict``) and stop at the first problem, in the order
type -> dtype -> shape -> values -> gradients. The values, gradients and training checks start
with the diagnosis of :mod:`grading.student.cell_diagnosis` (the hidden tests run the same one):
probes force single gates open or shut through their bias block, so a message names the gate,
the term or the known bug at fault.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cell_diagnosis import (
    CLASS_NAME,
    GATE_NAMES,
    GATES,
    LEAD,
    PARAMS,
    PROBE_TOL,
    TORCH_CELL,
    VALUE_TOL,
    case_problem,
    diagnose,
    diagnosis_probes,
    error_message,
    first_line,
    max_diff,
    parameter_problem,
    parameter_shapes,
    probe_rows,
    random_case,
    reference,
    run_cell,
    scratch_violation,
)
from .checks import CheckFailed, call, check_type, compare_table, grader_trains, quiet

CHARS = "ehlo"  # idx2char of Liu Er's notes: e=0, h=1, l=2, o=3
NUM_CLASS = len(CHARS)
EMBEDDING_SIZE = 10
HIDDEN_SIZE = 8
LR = 0.05
NUM_EPOCHS = 150
# Summed cross-entropy over the 5 steps after training. Below ln 2 ~= 0.69 every character is
# predicted right; correct cells stay far below (see the calibration figures in the notebook).
LOSS_THRESHOLD = 0.25

# Sizes of the visible checks: batch_size, input_size and hidden_size differ pairwise and from 3 and 4 (the GRU's
# and the LSTM's number of gate blocks), so a swapped dimension fails. The diagnosis needs input_size ==
# hidden_size (the notes' weight shared by x and h must run to be named); every other stage has all sizes apart.
SHAPE_SIZES = (2, 5, 7)  # batch_size, input_size, hidden_size
DIAGNOSIS_SIZES = (6, 5)  # batch_size, input_size == hidden_size
VALUE_CASES = ((6, 7, 5, torch.float64), (2, 5, 6, torch.float32))  # batch_size, input_size, hidden_size, dtype
GRADIENT_SIZES = (5, 2, 6)  # batch_size, input_size, hidden_size (float64)
SEED = 0  # every visible check draws its inputs from torch.Generator().manual_seed(SEED)

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
    """Cross-entropy summed over the time steps, as in Liu Er's notes (loss += criterion(...) per step).

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


# ----------------------------------------------------------------------------- the training test

def training_case(kind: str, target: str, init_seed: int, embedding_size: int = EMBEDDING_SIZE) -> dict:
    """One retraining of the course model on hello -> ``target`` from the initial weights drawn from ``init_seed``."""
    return {"source": "hello", "target": target, "init_seed": init_seed,
            "init": initial_state(kind, init_seed, embedding_size=embedding_size),
            "embedding_size": embedding_size, "hidden_size": HIDDEN_SIZE, "num_epochs": NUM_EPOCHS, "lr": LR}


def train_cell(cls, kind: str, case: dict) -> dict:
    """Train ``CharModel(cls)`` as ``case`` (:func:`training_case`) says.

    Returns the trained state_dict, the logits (seq_len, num_class) for the source and the loss of every
    epoch, or ``{"error": "build", ...}`` (as :func:`~grading.student.cell_diagnosis.run_cell`) when the
    model cannot take the initial weights. Runs next to the student's code: never calls torch's cells.
    """
    model = CharModel(cls, kind, embedding_size=case["embedding_size"], hidden_size=case["hidden_size"])
    try:
        with quiet():
            model.load_state_dict(case["init"])
    except Exception as exc:  # noqa: BLE001 - any error of the student's cell becomes a message
        result = {"error": "build", "message": first_line(exc), "where": {
            "batch": 1, "input_size": case["embedding_size"], "hidden_size": case["hidden_size"], "dtype": "float32"}}
        try:
            result["shapes"] = parameter_shapes(model.cell)
        except Exception:  # noqa: BLE001 - the generic message still applies
            pass
        return result
    losses = train_char_model(model, case["source"], case["target"], case["num_epochs"], case["lr"])
    with torch.no_grad():
        logits = model(encode(case["source"]).unsqueeze(0))[0]
    return {"state": dict(model.state_dict()), "logits": logits, "losses": [float(v) for v in losses]}


def training_problem(kind: str, case: dict, observed: dict) -> str | None:
    """What is wrong with a :func:`train_cell` result, or None.

    The reported loss is never trusted: the trained weights go into the course model built with torch's own
    cell, which must give the same logits (1e-4); the cell's parameters must have changed; and the loss
    recomputed from torch's logits must be at most LOSS_THRESHOLD.
    """
    if "error" in observed:
        return error_message(kind, observed)
    name, torch_name = CLASS_NAME[kind], TORCH_CELL[kind].__name__
    init, state = case["init"], observed["state"]
    if set(state) != set(init):
        return f"after training, the course model's state_dict has keys {sorted(state)}, expected {sorted(init)}."
    model = CharModel(TORCH_CELL[kind], kind, embedding_size=case["embedding_size"], hidden_size=case["hidden_size"])
    model.load_state_dict(state)
    with torch.no_grad():
        logits = model(encode(case["source"]).unsqueeze(0))[0]
        loss = float(F.cross_entropy(logits, encode(case["target"]), reduction="sum"))
    theirs = observed["logits"]
    scale = max(1.0, float(logits.abs().max()))
    if max_diff(theirs, logits) > 1e-4 * scale:
        return (f"after training, your cell's outputs differ from nn.{torch_name}'s "
                f"on the same trained weights by {max_diff(theirs, logits):.3g}: in float32 within CharModel "
                f"(input_size={case['embedding_size']}, hidden_size={case['hidden_size']}, batch 1) "
                "your cell computes something else.")
    cell_keys = [k for k in init if k.startswith("cell.")]
    if all(max_diff(state[k], init[k]) == 0 for k in cell_keys):
        return (f"training did not change any parameter of {name}: create weight_ih, weight_hh, bias_ih and "
                "bias_hh with nn.Parameter (and use them in forward) "
                "so that model.parameters() hands them to the optimizer.")
    unchanged = [k.removeprefix("cell.") for k in cell_keys if max_diff(state[k], init[k]) == 0]
    if unchanged:
        return (f"training did not change {', '.join(unchanged)}: they must be nn.Parameters used in forward, "
                "so that they get gradients and the optimizer trains them.")
    if not math.isfinite(loss) or loss > LOSS_THRESHOLD:
        prediction = decode(logits.argmax(dim=1))
        return (f"retrained from a fixed start on {case['source']!r} -> {case['target']!r} "
                f"({case['num_epochs']} epochs, Adam lr {case['lr']}), "
                f"the course model with your cell ends at a summed loss of {loss:.3f} (predicting "
                f"{prediction!r}); a correct cell ends below {LOSS_THRESHOLD} from every start we tried.")
    return None


# ----------------------------------------------------------------------------- visible checks

def _new_cell(cls, kind: str, input_size: int, hidden_size: int) -> nn.Module:
    """``cls(input_size, hidden_size)``, after the from-scratch rule; fails on the stub and on a non-Module."""
    violation = scratch_violation(cls, kind)
    if violation:
        raise CheckFailed(violation)
    label = f"{CLASS_NAME[kind]}({input_size}, {hidden_size})"
    cell = call(cls, input_size, hidden_size, name=label)
    check_type(cell, nn.Module, label,
               f"{CLASS_NAME[kind]} must subclass nn.Module (class {CLASS_NAME[kind]}(nn.Module)).")
    return cell


def _not_implemented(kind: str) -> CheckFailed:
    return CheckFailed(f"{CLASS_NAME[kind]} is not implemented yet: replace `raise NotImplementedError()`.")


def _run(cls, kind: str, params, x, h, c, up_h=None, up_c=None) -> dict:
    try:
        return run_cell(cls, kind, params, x, h, c, up_h, up_c)
    except NotImplementedError:
        raise _not_implemented(kind) from None


def _diagnosis(cls, kind: str, lead: str, show: bool = False) -> None:
    """The gate probes (the hidden tests' diagnosis, on other inputs); raises CheckFailed naming the fault."""
    batch_size, size = DIAGNOSIS_SIZES
    probes = diagnosis_probes(kind, torch.Generator().manual_seed(SEED), batch_size, size)
    results = [_run(cls, kind, p["params"], p["x"], p["h"], p["c"]) for p in probes]
    message = diagnose(kind, probes, results, lead)
    if show or message:
        print(f"{CLASS_NAME[kind]} vs nn.{TORCH_CELL[kind].__name__} on the gate probes (float64, "
              f"batch={batch_size}, input_size = hidden_size = {size}; one line per probe and output):")
        print(compare_table(probe_rows(kind, probes, results), atol=PROBE_TOL))
    if message:
        raise CheckFailed(message)


def _check_shapes(cls, kind: str) -> None:
    batch_size, input_size, hidden_size = SHAPE_SIZES
    cell = _new_cell(cls, kind, input_size, hidden_size)
    shapes = call(parameter_shapes, cell, name=f"{CLASS_NAME[kind]}.named_parameters()")
    problem = parameter_problem(kind, input_size, hidden_size, shapes)
    if problem:
        raise CheckFailed(problem)
    gen = torch.Generator().manual_seed(SEED)
    for dtype in (torch.float32, torch.float64):
        case = random_case(kind, gen, batch_size, input_size, hidden_size, dtype)
        problem = case_problem(kind, **case, result=_run(cls, kind, **case), compare=False)
        if problem:
            raise CheckFailed(problem)
    print(f"{CLASS_NAME[kind]}({input_size}, {hidden_size}): parameters "
          + ", ".join(f"{n} {tuple(shapes['parameters'][n])}" for n in PARAMS))
    print(f"{CLASS_NAME[kind]}: shape checks passed (float32 and float64, batch_size={batch_size}, "
          f"input_size={input_size}, hidden_size={hidden_size}).")


def _check_values(cls, kind: str) -> None:
    _new_cell(cls, kind, *SHAPE_SIZES[1:])
    _diagnosis(cls, kind, LEAD["values"], show=True)
    gen = torch.Generator().manual_seed(SEED)
    for batch_size, input_size, hidden_size, dtype in VALUE_CASES:
        case = random_case(kind, gen, batch_size, input_size, hidden_size, dtype)
        result = _run(cls, kind, **case)
        problem = case_problem(kind, **case, result=result)
        want = reference(kind, **case)
        rows = {out: (result[key], wanted) for key, out, wanted in (("h", "h'", want[0]), ("c", "c'", want[1]))
                if wanted is not None and isinstance(result.get(key), torch.Tensor)}
        name = str(dtype).removeprefix("torch.")
        if rows:
            print(f"Random weights and state ({name}, batch_size={batch_size}, input_size={input_size}, "
                  f"hidden_size={hidden_size}):")
            print(compare_table(rows, atol=VALUE_TOL[name]))
        if problem:
            raise CheckFailed(problem)
    print(f"{CLASS_NAME[kind]}: value checks passed (every gate probe and random case equals "
          f"nn.{TORCH_CELL[kind].__name__}: below 1e-10 in float64, 2e-5 in float32).")


def _gradient_rows(kind: str, result: dict, want: dict, hidden_size: int) -> dict:
    got = result.get("grads") or {}

    def pick(name, like):
        value = got.get(name)
        ok = isinstance(value, torch.Tensor) and value.shape == like.shape
        return value if ok else torch.full_like(like, float("nan"))

    rows = {f"d/d{n}": (pick(n, want[n]), want[n]) for n in ("x", "h", "c") if want.get(n) is not None}
    for b, gate in enumerate(GATES[kind]):
        part = slice(b * hidden_size, (b + 1) * hidden_size)
        rows[f"d/d(weights, biases) of {GATE_NAMES[gate]}"] = (
            torch.cat([pick(p, want[p])[part].flatten() for p in PARAMS]),
            torch.cat([want[p][part].flatten() for p in PARAMS]))
    return rows


def _check_gradients(cls, kind: str) -> None:
    batch_size, input_size, hidden_size = GRADIENT_SIZES
    _new_cell(cls, kind, input_size, hidden_size)
    _diagnosis(cls, kind, LEAD["gradients"])
    case = random_case(kind, torch.Generator().manual_seed(SEED), batch_size, input_size, hidden_size,
                       torch.float64, upstream=True)
    result = _run(cls, kind, **case)
    problem = case_problem(kind, **case, result=result)
    if "error" not in result and result.get("grads") is not None:
        want = reference(kind, **case)[2]
        print(f"Gradients of {CLASS_NAME[kind]} vs nn.{TORCH_CELL[kind].__name__} "
              f"(float64, batch_size={batch_size}, input_size={input_size}, hidden_size={hidden_size}):")
        print(compare_table(_gradient_rows(kind, result, want, hidden_size), atol=1e-9))
    if problem:
        raise CheckFailed(problem)
    print(f"{CLASS_NAME[kind]}: gradient checks passed.")


def _check_training(cls, kind: str) -> None:
    _new_cell(cls, kind, EMBEDDING_SIZE, HIDDEN_SIZE)
    _diagnosis(cls, kind, LEAD["training"])
    if grader_trains(f"CharModel with {CLASS_NAME[kind]}"):
        return
    case = training_case(kind, "ohlol", SEED)
    observed = call(train_cell, cls, kind, case, name=f"training with {CLASS_NAME[kind]}")
    if "error" not in observed:
        losses, logits = observed["losses"], observed["logits"]
        final = summed_loss(logits, case["target"]).item()
        print(f"{CLASS_NAME[kind]} in CharModel: summed loss {losses[0]:.3f} -> {final:.4f} after {len(losses)} "
              f"epochs, predicts {decode(logits.argmax(dim=1))!r} for {case['source']!r}.")
    problem = training_problem(kind, case, observed)
    if problem:
        raise CheckFailed(problem)
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
