"""Every number the ``lstm_gru`` source notebooks quote is the number the code computes.

Each test computes a value (or reads the module constant) and requires the notebook's markdown, or the
docstring of a test cell, to quote it: when the code changes, the prose has to follow, and the other way round.
The 20-seed run of the LSTM homework of Liu Er's notes is marked slow.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
from fractions import Fraction

import nbformat
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from prose import REPO, assert_quoted, prose

from grading.instructor.exercises import EXERCISES
from grading.student import lstm_gru
from grading.student.lstm_gru import (
    EMBEDDING_SIZE,
    HIDDEN_SIZE,
    LOSS_THRESHOLD,
    LR,
    NUM_CLASS,
    NUM_EPOCHS,
    CharModel,
    gradient_norms_over_time,
    initial_state,
    train_char_model,
)

LSTM = "source/lstm_gru/lstm.ipynb"
GRU = "source/lstm_gru/gru.ipynb"
NOTEBOOK = {"lstm_cell": LSTM, "gru_cell": GRU}
WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth"}


def cells(path: str) -> dict[str, nbformat.NotebookNode]:
    """grade_id -> cell of the notebook at ``path``."""
    nb = nbformat.read(REPO / path, as_version=4)
    return {cell.metadata["nbgrader"]["grade_id"]: cell for cell in nb.cells}


def docstring(path: str, grade_id: str) -> str:
    """The first line of a test cell: its docstring."""
    return cells(path)[grade_id].source.splitlines()[0]


def prose_lines(path: str) -> list[str]:
    """Markdown lines, not whitespace-collapsed (table rows stay rows)."""
    return [line for cell in cells(path).values() if cell.cell_type == "markdown" for line in cell.source.splitlines()]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- points


@pytest.mark.parametrize("grade_id", sorted(NOTEBOOK))
def test_part_a_heading_counts_every_point_of_the_cell(grade_id):
    exercise, path = EXERCISES[grade_id], NOTEBOOK[grade_id]
    by_id = cells(path)
    points = [by_id[test_id].metadata["nbgrader"]["points"] for test_id in exercise.test_ids]
    checks, training = points[:3], points[3]
    total = sum(points)
    assert exercise.test_ids[3].endswith("_training")
    assert_quoted(path,
                  f"## Part A ({total} points): `{exercise.name}`",
                  f"One exercise, {WORDS[total]} points, all earned by this cell: {WORDS[sum(checks)]} from the shape, "
                  f"value and gradient checks just below ({' + '.join(map(str, checks))} points) and "
                  f"{WORDS[training]} from training",
                  f"Part A's first {WORDS[sum(checks)]} points: {' + '.join(map(str, checks))}",
                  f"**Part A, {ORDINALS[total]} point ({training} point).**")
    assert "Part B" not in prose(path), "the training section is part of Part A"


# ----------------------------------------------------------------------------- the course model and its test


@pytest.mark.parametrize("grade_id", sorted(NOTEBOOK))
def test_training_recipe_and_threshold_are_the_module_constants(grade_id):
    path, name = NOTEBOOK[grade_id], EXERCISES[grade_id].name
    assert_quoted(path,
                  f"`nn.Embedding({NUM_CLASS}, {EMBEDDING_SIZE})`",
                  f"(hidden size {HIDDEN_SIZE})",
                  f"Adam (lr {LR}) for {NUM_EPOCHS} epochs",
                  f"summed over the {WORDS[len('hello')]} steps",
                  f"requires a summed loss below {LOSS_THRESHOLD} after {NUM_EPOCHS} epochs",
                  f"`nn.Embedding({NUM_CLASS}, {EMBEDDING_SIZE})` maps {NUM_CLASS} characters to "
                  f"{EMBEDDING_SIZE} dimensions",
                  f"here {NUM_CLASS} → {EMBEDDING_SIZE} expands")
    assert EMBEDDING_SIZE > NUM_CLASS, "the notebooks say the embedding expands its input"
    training = EXERCISES[grade_id].test_ids[3]
    assert f"below the calibrated loss ({LOSS_THRESHOLD})" in docstring(path, training)
    assert f"CharModel with {name}" in docstring(path, training)


def test_lstm_model_sizes_are_the_module_constants():
    assert_quoted(LSTM, f"turns each of the {NUM_CLASS} characters into a vector of size {EMBEDDING_SIZE}",
                  f"into {NUM_CLASS} logits", f"{NUM_CLASS} characters (one-hot vectors of size {NUM_CLASS}) become "
                  f"vectors of {EMBEDDING_SIZE} dimensions")
    assert_quoted(GRU, f"*expands* the {NUM_CLASS} characters to {EMBEDDING_SIZE} dimensions")


def value_tolerance() -> str:
    """The float64 tolerance of the visible value checks, as the docstrings write it."""
    if hasattr(lstm_gru, "VALUE_TOL"):
        return f"{lstm_gru.VALUE_TOL['float64']:.0e}"
    source = inspect.getsource(lstm_gru._check_values)  # the checks before VALUE_TOL existed
    assert "atol=1e-10" in source and "> 1e-10" in source
    return "1e-10"


@pytest.mark.parametrize("grade_id", sorted(NOTEBOOK))
def test_value_tolerance_in_the_docstring_is_the_checks(grade_id):
    values = EXERCISES[grade_id].test_ids[1]
    assert f"float64, max difference below {value_tolerance()}" in docstring(NOTEBOOK[grade_id], values)


def demo_epochs(path: str, grade_id: str) -> int:
    """The epochs the notebook's demonstration trains for (fewer than the graded check's: the curves need no more)."""
    found = re.findall(r'train_char_model\(model, "hello", "ohlol", num_epochs=(\d+)\)', cells(path)[grade_id].source)
    assert len(found) == 1, found
    return int(found[0])


def test_losses_of_torchs_cells_from_the_fixed_start():
    epochs = demo_epochs(LSTM, "lstm_code_23")
    assert epochs == demo_epochs(GRU, "gru_code_23") < NUM_EPOCHS
    losses = {}
    for kind, cell_class in (("lstm", nn.LSTMCell), ("gru", nn.GRUCell)):
        model = CharModel(cell_class, kind)
        model.load_state_dict(initial_state(kind, seed=0))
        losses[kind] = train_char_model(model, "hello", "ohlol", num_epochs=epochs)
    lstm, gru = losses["lstm"], losses["gru"]
    assert_quoted(LSTM, "`initial_state(\"lstm\", seed=0)`",
                  f"They train for {epochs} epochs, enough to see the curves (the graded check below trains for "
                  f"{NUM_EPOCHS}).", f"With `nn.LSTMCell` the summed loss falls from {lstm[0]:.2f} to {lstm[-1]:.4f}.")
    assert_quoted(GRU, f"trained for {epochs} epochs (the graded check below trains for {NUM_EPOCHS})",
                  f"From `initial_state(kind, seed=0)` the summed loss of `nn.GRUCell` falls from {gru[0]:.2f} "
                  f"to {gru[-1]:.4f}, that of `nn.LSTMCell` from {lstm[0]:.2f} to {lstm[-1]:.4f}.")
    assert max(lstm[-1], gru[-1]) < LOSS_THRESHOLD / 10, "the demonstration still shows a trained model"


# ----------------------------------------------------------------------------- the gradient experiment


def _curves(path: str, grade_id: str) -> dict[str, torch.Tensor]:
    """Run the notebook's own gradient experiment (the code before the plot): label -> gradient norm per step back."""
    source = cells(path)[grade_id].source
    assert "gradient_norms_over_time(make, seq_len=50)" in source
    namespace = {"nn": nn, "torch": torch}
    exec(source.split("plt.figure(")[0], namespace)  # the course's own notebook cell, up to the plot
    return {label: gradient_norms_over_time(make, seq_len=50) for label, make in namespace["curves"].items()}


def _exponent(norms: torch.Tensor, steps_back: int = 30) -> int:
    """The power of ten of the gradient ``steps_back`` steps back, relative to the last step's."""
    return round(math.log10(float(norms[steps_back] / norms[0])))


def test_gradient_experiment_numbers_lstm():
    curves = _curves(LSTM, "lstm_code_06")
    seq_len = len(curves["nn.RNN (tanh)"])
    num_seeds = inspect.signature(gradient_norms_over_time).parameters["num_seeds"].default
    assert_quoted(LSTM, rf"$T = {seq_len}$ inputs $x_1, \dots, x_{{{seq_len}}}$",
                  f"random seed ({num_seeds} seeds)")
    rnn = curves["nn.RNN (tanh)"]
    assert all(rnn[t + 10] / rnn[t] < 0.01 for t in range(0, 31, 10)), "orders of magnitude every ten steps"
    gates = {_exponent(curves["nn.LSTM"]), _exponent(curves["nn.GRU"])}
    assert len(gates) == 1, gates
    assert_quoted(LSTM,
                  f"30 steps back it is about $10^{{{_exponent(rnn)}}}$ of the last step's",
                  f"(about $10^{{{gates.pop()}}}$ 30 steps back)",
                  rf"$f \approx \sigma(1) \approx {torch.sigmoid(torch.tensor(1.0)).item():.2f}$",
                  f"about $10^{{{_exponent(curves['nn.LSTM, forget-gate bias +1'])}}}$ 30 steps back")
    assert "bias_ih_l0[hidden_size:2 * hidden_size] += value  # rows H:2H = forget gate f" in \
        cells(LSTM)["lstm_code_06"].source


def test_gradient_experiment_numbers_gru():
    curves = _curves(GRU, "gru_code_10")
    assert_quoted(GRU,
                  f"30 steps back the gradient is about $10^{{{_exponent(curves['nn.GRU'])}}}$ of the last step's",
                  rf"$z \approx \sigma(1) \approx {torch.sigmoid(torch.tensor(1.0)).item():.2f}$",
                  f"it is about $10^{{{_exponent(curves['nn.GRU, update-gate bias +1'])}}}$ 30 steps back",
                  "(bias +1 on the z block, rows `H:2H` of `bias_ih_l0`)")
    assert "bias_ih_l0[hidden_size:2 * hidden_size] += value  # rows H:2H = update gate z" in \
        cells(GRU)["gru_code_10"].source


# ----------------------------------------------------------------------------- the LSTM homework of the notes

NOTES_RECIPE = {"lr": 0.03, "num_epochs": 100, "hidden_size": 4, "seed": 0}


def test_loss_floor_of_the_notes_lstm():
    floor = 5 * math.log(1 + 3 / math.e)
    tanh_floor = 5 * math.log(1 + 3 * math.exp(-2))
    # h in (0, 1): the best logits put 1 on the target and 0 elsewhere; check it on a grid of [0, 1]^4
    grid = torch.tensor(list(itertools.product(torch.linspace(0, 1, 11).tolist(), repeat=4)))
    per_step = F.cross_entropy(grid, torch.zeros(len(grid), dtype=torch.long), reduction="none")
    assert torch.allclose(per_step.min(), torch.tensor(floor / 5))
    assert tuple(grid[per_step.argmin()].tolist()) == (1.0, 0.0, 0.0, 0.0)
    best_tanh = F.cross_entropy(torch.tensor([[1.0, -1.0, -1.0, -1.0]]), torch.tensor([0])).item()
    assert math.isclose(5 * best_tanh, tanh_floor, rel_tol=1e-6)
    assert_quoted(LSTM,
                  r"$h = o \odot \tanh(C) \in (0, 1)$",
                  rf"$5 \ln(1 + 3/e) \approx {floor:.2f}$",
                  rf"$5 \ln(1 + 3e^{{-2}}) \approx {tanh_floor:.2f}$",
                  f"(a loss floor of {floor:.2f})")
    assert "1.70" not in prose(LSTM).split("With a tanh candidate")[0], "1.70 is the tanh floor only"


def test_recipe_of_the_notes_lstm_is_the_code():
    source = cells(LSTM)["lstm_code_26"].source
    r = NOTES_RECIPE
    assert f"lr={r['lr']}" in source and f"range({r['num_epochs']})" in source
    assert f"nn.Linear({r['hidden_size']}, {r['hidden_size']})" in source
    assert source.count(f"torch.manual_seed({r['seed']})") == 1
    assert_quoted(LSTM, f"(one-hot input, hidden size {r['hidden_size']}, Adam lr {r['lr']}, {r['num_epochs']} "
                        f"epochs, random seed {r['seed']})")


@pytest.mark.slow
def test_notes_lstm_over_20_seeds():
    """The notebook's own cell, run for random seeds 0 to 19 (~5 s)."""
    source = cells(LSTM)["lstm_code_26"].source
    seed_line = f"torch.manual_seed({NOTES_RECIPE['seed']})"
    runs = {}
    for seed in range(20):
        namespace = {"torch": torch, "nn": nn, "F": F, "print": lambda *args, **kwargs: None}
        exec(source.replace(seed_line, f"torch.manual_seed({seed})"), namespace)  # the notebook's cell, reseeded
        runs[seed] = (namespace["predicted"], namespace["loss"].item(), namespace["hidden"])
    strings = [p for p, _, _ in runs.values()]
    losses = [loss for _, loss, _ in runs.values()]
    others = [s for s, (p, _, _) in runs.items() if p != "ohlll"]
    floor = 5 * math.log(1 + 3 / math.e)
    assert len(others) == 1 and runs[others[0]][0] == "ohlol", runs
    assert all(h.min() > 0 for _, _, h in runs.values()), "h = o * tanh(C) > 0 with a sigmoid candidate"
    assert all(floor < loss and abs(loss - 4.5) < 0.2 for loss in losses), "the runs stall near 4.5"
    low, high = math.floor(min(losses) * 100) / 100, math.ceil(max(losses) * 100) / 100
    assert_quoted(LSTM,
                  f"It ends on \"ohlll\" with a summed loss of {runs[NOTES_RECIPE['seed']][1]:.2f}.",
                  f"over random seeds 0 to 19, {strings.count('ohlll')} of {len(strings)} runs end on \"ohlll\" "
                  f"(seed {others[0]} reaches \"ohlol\"), all with a loss between {low:.2f} and {high:.2f}",
                  "the runs stall near 4.5")


# ----------------------------------------------------------------------------- self-check questions


def test_self_check_answers_lstm():
    lstm = nn.LSTM(10, 8, num_layers=2)
    per_layer = [sum(p.numel() for n, p in lstm.named_parameters() if n.endswith(f"_l{k}")) for k in (0, 1)]
    assert per_layer == [4 * 8 * (10 + 8 + 2), 4 * 8 * (8 + 8 + 2)]
    with torch.no_grad():
        output, (h_n, c_n) = lstm(torch.zeros(5, 3, 10))
    assert h_n.shape == c_n.shape
    cell = nn.LSTMCell(1, 1)
    cell.load_state_dict({"weight_ih": torch.zeros(4, 1), "weight_hh": torch.zeros(4, 1),
                          "bias_ih": torch.tensor([0.0, 0.0, 1.0, 0.0]), "bias_hh": torch.zeros(4)})
    with torch.no_grad():
        h, c = cell(torch.ones(1, 1), (torch.zeros(1, 1), torch.zeros(1, 1)))
    try:
        nn.Linear(4, 4)(torch.zeros(1, 8))
    except RuntimeError as exc:
        message = str(exc)
    assert_quoted(LSTM,
                  f"`weight_ih_l0` is `{tuple(lstm.weight_ih_l0.shape)}` and `weight_ih_l1` is "
                  f"`{tuple(lstm.weight_ih_l1.shape)}`",
                  rf"$4 \cdot 8 \cdot (10 + 8 + 2) = {per_layer[0]}$",
                  rf"$4 \cdot 8 \cdot (8 + 8 + 2) = {per_layer[1]}$",
                  f"{sum(p.numel() for p in lstm.parameters())} in all",
                  f"`output` is `{tuple(output.shape)}`",
                  f"`h_n` and `c_n` are `{tuple(h_n.shape)}`",
                  rf"$g = \tanh(1) \approx {math.tanh(1):.4f}$",
                  rf"$c' = f c + i g = 0.5 \cdot {math.tanh(1):.4f} \approx {c.item():.4f}$",
                  rf"$h' = o \tanh(c') \approx {h.item():.4f}$",
                  f'"{message}"')
    assert "lstm2 = nn.LSTM(10, 8, num_layers=2)" in cells(LSTM)["lstm_code_30"].source


def test_self_check_answers_gru():
    gru_cell, lstm_cell = (sum(p.numel() for p in cell.parameters()) for cell in (nn.GRUCell(10, 8),
                                                                                  nn.LSTMCell(10, 8)))
    gru = nn.GRU(10, 8, num_layers=2)
    with torch.no_grad():
        _, h_n = gru(torch.zeros(5, 3, 10))
    assert_quoted(GRU,
                  rf"$3 \cdot 8 \cdot (10 + 8 + 2) = {gru_cell}$",
                  rf"$4 \cdot 8 \cdot (10 + 8 + 2) = {lstm_cell}$",
                  f"the GRU has {Fraction(gru_cell, lstm_cell)} of the LSTM's parameters",
                  f"`weight_ih_l0` is `{tuple(gru.weight_ih_l0.shape)}` and `weight_ih_l1` is "
                  f"`{tuple(gru.weight_ih_l1.shape)}`",
                  f"`h_n` is `{tuple(h_n.shape)}`")
    assert "gru2 = nn.GRU(10, 8, num_layers=2)" in cells(GRU)["gru_code_27"].source


# ----------------------------------------------------------------------------- names and terms


@pytest.mark.parametrize("path", [LSTM, GRU])
def test_notes_are_named_and_credited_and_seed_means_a_random_seed(path):
    text = prose(path)
    assert_quoted(path, "*Source:* Liu Er's notes (lecture 12)", "quoted here for teaching")
    assert not re.search(r"seed lecture|the seed's|seed's (?:LSTM|homework|claim)", text, re.IGNORECASE)
    code = " ".join(c.source for c in cells(path).values() if c.cell_type == "code"
                    and not c.metadata["nbgrader"].get("grade"))
    assert "SeedLSTM" not in code


@pytest.mark.parametrize("path", [LSTM, GRU])
def test_glossary_keeps_hidden_layer_apart_from_hidden_state(path):
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in prose_lines(path) if line.startswith("| ") and line.count("|") >= 4}
    assert rows.get("隐藏层") == "hidden layer", "隐藏层 is the hidden layer, a row of its own"
    state = [english for chinese, english in rows.items() if chinese.startswith("隐状态")]
    assert state == ["hidden state $h$"], "隐状态 is the hidden state h"

