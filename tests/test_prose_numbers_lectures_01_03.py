"""Every number the prose of lectures 01-03 quotes is the number the code computes.

Each test computes a value (with PyTorch, or by retraining the notes' hello -> ohlol recipes exactly as
``notebooks/03_hello_ohlol.ipynb`` does) and checks that the markdown quotes it (``assert_quoted``) and,
where the notebook prints it, that the committed output shows it (``code_outputs``).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import nbformat
import pytest
import torch
from prose import REPO, assert_quoted, code_outputs
from torch import nn

from grading.student import widgets as W

NB01 = "notebooks/01_rnn_basics.ipynb"
NB02 = "notebooks/02_nn_rnn_batch_first.ipynb"
NB03 = "notebooks/03_hello_ohlol.ipynb"
# Liu Er's notes (lecture 12), beside the repository where the course is developed; not shipped with it.
NOTES = REPO.parent / "shared" / "seed" / "000_cc87633be3113176.txt"

LR, NUM_EPOCHS, NUM_SEEDS, WIDE_SEEDS = 0.1, 15, 20, 200
NUM_CLASS, SEQ_LEN = len(W.IDX2CHAR), len(W.X_DATA)  # 4 characters, "hello"


def _code(path: str) -> str:
    nb = nbformat.read(REPO / path, as_version=4)
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _train_cell(seed: int, num_epochs: int) -> tuple[str, list[float]]:
    """The notes' RNNCell recipe (section 2.3) as notebook 03 runs it: hidden state as logits, summed loss,
    Adam lr 0.1. Returns the string predicted in the last epoch and the summed loss of every epoch."""
    inputs = torch.nn.functional.one_hot(torch.tensor(W.X_DATA), NUM_CLASS).float().view(SEQ_LEN, 1, NUM_CLASS)
    labels = torch.tensor(W.Y_DATA).view(SEQ_LEN, 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cell = nn.RNNCell(NUM_CLASS, NUM_CLASS)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(cell.parameters(), lr=LR)
    losses, predicted = [], ""
    for _ in range(num_epochs):
        optimizer.zero_grad()
        hidden = torch.zeros(1, NUM_CLASS)
        loss, predicted = 0, ""
        for x, label in zip(inputs, labels, strict=True):
            hidden = cell(x, hidden)
            loss = loss + criterion(hidden, label)
            predicted += W.IDX2CHAR[hidden.argmax(dim=1).item()]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return predicted, losses


@pytest.fixture(scope="module")
def one_thread():
    """The notebooks run on one thread; so do these retrainings."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sweeps(one_thread):
    """Final strings of both recipes over the sweep's seeds, and of the nn.RNN recipe over 200 seeds."""
    cell = {seed: _train_cell(seed, NUM_EPOCHS) for seed in range(NUM_SEEDS)}
    rnn = {seed: W.train_notes_rnn(lr=LR, num_epochs=NUM_EPOCHS, seed=seed) for seed in range(WIDE_SEEDS)}
    return cell, rnn


# --------------------------------------------------------------------------- 01


def test_01_weather_and_saturation():
    seq_len, batch_size, input_size = 3, 1, 3  # three days of (temperature, pressure, rain)
    assert f"torch.Size([{seq_len}, {batch_size}, {input_size}])" in code_outputs(NB01)
    assert_quoted(NB01, f"glue the {seq_len * input_size} numbers into one vector",
                  f"`input_size = {input_size}` and `seq_len = {seq_len}`")
    assert "1012.0" in _code(NB01)
    assert_quoted(NB01, "a pressure of 1012")
    # "every entry of h_1 is pushed to exactly +-1": the committed 1 - h1**2 is exactly zero.
    assert "1 - h1**2 = tensor([[0., 0., 0., 0., 0., 0., 0., 0.]])" in code_outputs(NB01)


def test_01_self_check_numbers():
    cell = nn.RNNCell(input_size=10, hidden_size=20)
    shapes = {name: p.numel() for name, p in cell.named_parameters()}
    total = _num_params(cell)
    assert_quoted(NB01, f"{total}: $W_{{ih}}$ has 20 × 10 = {shapes['weight_ih']} entries, "
                        f"$W_{{hh}}$ 20 × 20 = {shapes['weight_hh']}, the two biases {shapes['bias_ih']} each",
                  f"Still {total} for longer sequences")
    dataset = torch.randn(7, 5, 10)
    hidden = cell(dataset[0], torch.zeros(5, 20))
    assert_quoted(NB01, f"`(batch_size, input_size) = {tuple(dataset[0].shape)}`",
                  f"`(batch_size, hidden_size) = {tuple(hidden.shape)}`",
                  f"`(seq_len, batch_size, input_size) = {tuple(dataset.shape)}`")
    assert f"parameters: {total}" in code_outputs(NB01)
    assert f"x: {tuple(dataset[0].shape)}   hidden: {tuple(hidden.shape)}" in code_outputs(NB01)


# --------------------------------------------------------------------------- 02


def test_02_self_check_numbers():
    rnn = nn.RNN(4, 8, num_layers=2, batch_first=True)
    params = dict(rnn.named_parameters())
    layer0 = sum(p.numel() for name, p in params.items() if name.endswith("_l0"))
    layer1 = sum(p.numel() for name, p in params.items() if name.endswith("_l1"))
    total = _num_params(rnn)
    assert total == layer0 + layer1
    assert_quoted(NB02, f"{total}. Layer 0: `weight_ih_l0` 8 × 4 = {params['weight_ih_l0'].numel()}, "
                        f"`weight_hh_l0` 8 × 8 = {params['weight_hh_l0'].numel()}, two biases of 8: {layer0}.",
                  f"8 × 8 + 8 × 8 + 8 + 8 = {layer1}.")
    output, h_n = rnn(torch.randn(5, 7, 4))
    assert_quoted(NB02, f"`(batch_size, seq_len, hidden_size) = {tuple(output.shape)}`",
                  f"`(num_layers, batch_size, hidden_size) = {tuple(h_n.shape)}`",
                  f"`{tuple(rnn.weight_ih_l1.shape)}`: layer 1 reads the hidden state of layer 0",
                  f"not `{tuple(rnn.weight_ih_l0.shape)}` like `weight_ih_l0`")
    outputs = code_outputs(NB02)
    assert f"parameters: {total}" in outputs
    assert f"output: {tuple(output.shape)}   h_n: {tuple(h_n.shape)}" in outputs


# --------------------------------------------------------------------------- 03


def test_03_the_floor_of_bounded_logits():
    labels = torch.tensor(W.Y_DATA)
    best = torch.full((SEQ_LEN, NUM_CLASS), -1.0)
    best[torch.arange(SEQ_LEN), labels] = 1.0
    summed = nn.CrossEntropyLoss(reduction="sum")(best, labels).item()
    per_step = summed / SEQ_LEN
    probability = torch.softmax(best, dim=1)[0, labels[0]].item()
    assert summed == pytest.approx(SEQ_LEN * math.log(1 + (NUM_CLASS - 1) * math.exp(-2)), rel=1e-6)
    assert_quoted(NB03, f"$5\\ln(1 + 3e^{{-2}}) \\approx {summed:.2f}$",
                  f"$\\ln(1 + 3e^{{-2}}) \\approx {per_step:.3f}$ per step, "
                  f"$5 \\ln(1 + 3e^{{-2}}) \\approx {summed:.2f}$ per sequence",
                  f"\\approx {probability:.3f}$, so a mean loss of at least "
                  f"$\\ln(1 + 3e^{{-2}}) \\approx {per_step:.3f}$",
                  f"({summed:.2f} summed over the 5 steps)")
    outputs = code_outputs(NB03)
    assert f"floor 5 ln(1 + 3e^-2) = {summed:.4f}" in outputs
    assert f"largest probability: {probability:.4f}" in outputs
    assert f"smallest mean loss:  {per_step:.4f}" in outputs


def test_03_steps_three_and_four_read_the_same_character():
    x = [W.IDX2CHAR[i] for i in W.X_DATA]
    y = [W.IDX2CHAR[i] for i in W.Y_DATA]
    assert x[2] == x[3] == "l" and (y[2], y[3]) == ("l", "o")
    assert_quoted(NB03, "Look at steps 3 and 4: the same input `l` must give `l`, then `o`.",
                  f"1. Through the hidden state: at step 4 it has also read the first \"{x[2]}\"")


def test_03_shapes_of_the_nn_rnn_model():
    rnn = nn.RNN(NUM_CLASS, NUM_CLASS)
    inputs = torch.zeros(SEQ_LEN, 1, NUM_CLASS)
    out, _ = rnn(inputs)
    logits = out.view(-1, NUM_CLASS)
    labels = torch.tensor(W.Y_DATA).view(-1)
    assert_quoted(NB03, f"3. `{tuple(logits.shape)}`: one row of 4 logits per step",
                  f"`labels.view(-1)` is `{tuple(labels.shape)}`")
    assert f"outputs: {tuple(logits.shape)}   labels.view(-1): {tuple(labels.shape)}" in code_outputs(NB03)


def test_03_rnncell_and_nn_rnn_train_alike(one_thread):
    _, cell_losses = _train_cell(7, NUM_EPOCHS)
    rnn_losses = W.train_notes_rnn(lr=LR, num_epochs=NUM_EPOCHS, seed=7)["losses"]
    assert max(abs(c / SEQ_LEN - r) for c, r in zip(cell_losses, rnn_losses, strict=True)) < 5e-5
    assert_quoted(NB03, "the two runs match")


def test_03_training_longer_stops_above_the_floor(one_thread):
    floor = W.logit_bound_loss(NUM_CLASS, SEQ_LEN)
    epochs = 300
    assert epochs // NUM_EPOCHS == 20
    assert "num_epochs=300" in _code(NB03)
    lucky, lucky_losses = _train_cell(7, epochs)
    stuck, stuck_losses = _train_cell(0, epochs)
    assert lucky == "ohlol" and floor < min(lucky_losses) < floor + 0.01
    assert_quoted(NB03, f"Train {epochs // NUM_EPOCHS} times longer ({epochs} epochs).",
                  f"Seed 7's lowest summed loss, {min(lucky_losses):.3f}, sits just above the floor {floor:.3f}.",
                  f"Seed 0 bottoms out at {min(stuck_losses):.2f} and still says \"{stuck}\"")
    outputs = code_outputs(NB03)
    assert f"seed 7: lowest loss {min(lucky_losses):.4f}, final string '{lucky}'" in outputs
    assert f"seed 0: lowest loss {min(stuck_losses):.4f}, final string '{stuck}'" in outputs


def test_03_pass_rates_of_the_notes_recipes(sweeps):
    cell, rnn = sweeps
    cell_hits = sum(predicted == "ohlol" for predicted, _ in cell.values())
    rnn_final = {seed: history["predictions"][-1] for seed, history in rnn.items()}
    rnn_hits = sum(rnn_final[seed] == "ohlol" for seed in range(NUM_SEEDS))
    assert all(rnn_final[seed] == cell[seed][0] for seed in range(NUM_SEEDS)), "one model, one string per seed"
    wide = Counter(rnn_final.values())
    failures = [s for s, _ in wide.most_common() if s != "ohlol"]

    assert_quoted(NB03, f"from {NUM_SEEDS} random initialisations, seeds 0 to {NUM_SEEDS - 1}",
                  f"from the same {NUM_SEEDS} seeds, then from {WIDE_SEEDS}",
                  f"{cell_hits} of {NUM_SEEDS} seeds ({cell_hits / NUM_SEEDS:.0%}), "
                  f"{wide['ohlol']} of {WIDE_SEEDS} ({wide['ohlol'] / WIDE_SEEDS:.0%})",
                  f"{wide['oholl']} of the {WIDE_SEEDS} seeds end there too",
                  f"mostly \"{failures[0]}\" or \"{failures[1]}\"")
    assert rnn_hits == cell_hits
    outputs = code_outputs(NB03)
    assert f"{cell_hits}/{NUM_SEEDS} seeds end on 'ohlol' ({cell_hits / NUM_SEEDS:.0%})" in outputs
    assert f"nn.RNN recipe: {rnn_hits}/{NUM_SEEDS} seeds end on 'ohlol' ({rnn_hits / NUM_SEEDS:.0%})" in outputs
    assert "same final string as the RNNCell recipe, seed by seed: True" in outputs
    assert f"over {WIDE_SEEDS} seeds: {wide['ohlol']}/{WIDE_SEEDS} end on 'ohlol'" in outputs


def test_03_quotes_the_notes_runs():
    final_mean = 0.588
    assert_quoted(NB03, "ended on \"ohlol\", summed loss 2.0881 after 15 epochs",
                  f"\"oholl\", with a mean loss of {final_mean} ({final_mean * SEQ_LEN:.2f} summed)",
                  "Predicted: oholl, Epoch [15/15] loss=0.588")


def test_the_quoted_runs_are_the_notes_own():
    """Cross-check against the notes themselves, where they are (beside the checkout); they are not part of it."""
    if not NOTES.is_file():
        pytest.skip(f"Liu Er's notes are not at {NOTES}")
    notes = NOTES.read_text(encoding="utf-8")
    assert "Predicted string: ohlol, Epoch [15/15] loss=2.0881" in notes
    assert "Predicted: oholl, Epoch [14/15] loss=0.599" in notes
    assert "Predicted: oholl, Epoch [15/15] loss=0.588" in notes


@pytest.mark.parametrize("path", [NB01, NB02, NB03])
def test_credit_and_names(path):
    assert_quoted(path, "Source: Liu Er (刘二大人), *PyTorch 深度学习实践*, lecture 12, 循环神经网络(基础篇); "
                        "quoted and corrected for teaching.")
    text = Path(REPO / path).read_text(encoding="utf-8").lower()
    for wrong in ("seed lecture", "the seed's", "seed §", "(seed §", "the seed writes", "the seed also"):
        assert wrong not in text, f"{path}: 'seed' means a random seed only; the notes are Liu Er's notes"
