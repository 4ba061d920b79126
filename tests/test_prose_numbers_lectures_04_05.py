"""Numbers quoted in the prose of lectures 04 (embedding) and 05 (LSTM and GRU), tied to what the code computes.

Each test computes a number (or reads what the committed notebook printed) and checks that the markdown quotes
it, so the prose and the code cannot drift apart. The models of Liu Er's notes that are graded exercises
(the embedding model of section 2.5) live here, never in the lectures.
"""

from __future__ import annotations

import math
import re
import statistics

import matplotlib
import nbformat
import pytest
import torch
from prose import REPO, assert_quoted, code_outputs
from torch import nn

matplotlib.use("Agg")

NB04 = "notebooks/04_embedding.ipynb"
NB05 = "notebooks/05_lstm_gru.ipynb"
IDX2CHAR = ["e", "h", "l", "o"]


def _code_cell(path: str, marker: str) -> str:
    """The source of the one code cell of ``path`` that contains ``marker``."""
    nb = nbformat.read(REPO / path, as_version=4)
    found = [c.source for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(found) == 1, f"{path}: {len(found)} code cells contain {marker!r}"
    return found[0]


def _run_cells(path: str, *markers: str) -> dict:
    """Execute the code cells holding ``markers``, in order, in one namespace, one thread; return it."""
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)
    namespace = {"torch": torch, "nn": nn, "math": math, "plt": plt, "F": torch.nn.functional}
    with torch.random.fork_rng(devices=[]):
        for marker in markers:
            exec(compile(_code_cell(path, marker), f"{path}:{marker}", "exec"), namespace)
    plt.close("all")
    return namespace


# --------------------------------------------------------------------------- 04: embedding


def test_04_one_hot_vectors_are_sqrt_2_apart():
    assert_quoted(NB04, r"at the same distance $\sqrt 2$")
    assert f"{math.sqrt(2):.4f}" in code_outputs(NB04)


def test_04_embedding_reduces_or_expands_the_dimension():
    big, small = nn.Embedding(5000, 128), nn.Embedding(4, 10)
    big_count = sum(p.numel() for p in big.parameters())
    small_count = sum(p.numel() for p in small.parameters())
    assert_quoted(
        NB04,
        "the one-hot vectors of a 5,000-character vocabulary (5,000 numbers each) become 128 numbers "
        "with `nn.Embedding(5000, 128)`",
        "map 4 characters to 10 dimensions",
        f"5000 × 128 = {big_count:,}",
        f"`nn.Embedding(4, 10)` expands it, 4 → 10 ({small_count} parameters)",
    )
    shape = tuple(small(torch.zeros(1, 5, dtype=torch.long)).shape)
    assert_quoted(NB04, f"`{shape}`: the embedding appends one dimension")
    outputs = code_outputs(NB04)
    assert f"emb(x).shape: {shape}" in outputs
    assert f"nn.Embedding(5000, 128): {big_count:,}" in outputs
    assert re.search(rf"nn\.Embedding\(4, 10\):\s+{small_count}\b", outputs)


def test_04_repeated_rows_get_repeated_gradients():
    assert_quoted(NB04, "`l` appears twice in \"hello\", so its row gets twice the gradient")
    assert "l tensor([2., 2., 2.])" in code_outputs(NB04)


class NotesEmbeddingModel(nn.Module):
    """Liu Er's notes, section 2.5: Embedding(4, 10) -> 2-layer RNN(hidden 8, batch_first) -> Linear(8, 4).

    x: indices (batch_size, seq_len) -> logits (batch_size * seq_len, 4). The layers are created in the notes' order,
    so a seed gives the notes' initial weights.
    """

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(4, 10)
        self.rnn = nn.RNN(input_size=10, hidden_size=8, num_layers=2, batch_first=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        out, _ = self.rnn(self.emb(x))
        return self.fc(out).view(-1, 4)


@pytest.fixture(scope="module")
def lr_sweep():
    """The notebook's own lr_sweep and summarize, run on the notes' model (about 2.5 s of CPU): (namespace, runs)."""
    namespace = _run_cells(NB04, "def lr_sweep(")
    namespace["idx2char"] = IDX2CHAR
    with torch.random.fork_rng(devices=[]):
        runs = namespace["lr_sweep"](NotesEmbeddingModel)
    return namespace, runs


def test_04_lr_sweep_table_is_what_the_notebooks_function_computes(lr_sweep):
    namespace, runs = lr_sweep
    assert list(runs) == [0.05, 0.1, 0.2]
    assert_quoted(NB04, namespace["summarize"](runs))


def test_04_lr_005_never_rises_and_ends_above_lr_01(lr_sweep):
    _, runs = lr_sweep
    slow_losses, slow_predictions = runs[0.05]
    fast_losses, fast_predictions = runs[0.1]
    seeds = len(slow_losses)
    assert seeds == 50
    assert not any(b > a for run in slow_losses for a, b in zip(run, run[1:], strict=False))
    above = sum(s[-1] > f[-1] for s, f in zip(slow_losses, fast_losses, strict=True))
    assert above == seeds
    ratio = statistics.median(s[-1] / f[-1] for s, f in zip(slow_losses, fast_losses, strict=True))
    risers = sum(any(b > a for a, b in zip(run, run[1:], strict=False)) for run in runs[0.2][0])
    assert_quoted(
        NB04,
        f"with lr = 0.1 for every one of the {seeds} seeds, by a median factor of {ratio:.1f}",
        f"at lr = 0.2 the loss goes up at some epoch for {risers} of {seeds} seeds",
        f"(median {statistics.median(r[-1] for r in slow_losses):.4f} vs "
        f"{statistics.median(r[-1] for r in fast_losses):.4f})",
    )
    assert all(p[-1] == "ohlol" for p in slow_predictions + fast_predictions)
    assert_quoted(NB04, "both learning rates end on \"ohlol\" for every seed", f"{seeds} random seeds")


# --------------------------------------------------------------------------- 05: LSTM and GRU


def test_05_gate_blocks_are_4_and_3_times_hidden_size():
    hidden_size = 4
    lstm_rows = nn.LSTMCell(3, hidden_size).weight_ih.shape[0] // hidden_size
    gru_rows = nn.GRUCell(3, hidden_size).weight_ih.shape[0] // hidden_size
    assert_quoted(NB05, f"(${lstm_rows} \\times$ and ${gru_rows} \\times$ `hidden_size` rows)")
    outputs = code_outputs(NB05)
    assert f"weight_ih  ({lstm_rows * hidden_size}, 3)" in outputs
    assert f"weight_ih  ({gru_rows * hidden_size}, 3)" in outputs


def test_05_forget_gate_probe_carries_the_cell_state_unchanged():
    assert_quoted(NB05, "the cell state passes through unchanged")
    assert "max |c_t - c_(t-1)| = 0.0e+00" in code_outputs(NB05)


def test_05_loss_floors_of_bounded_logits():
    per_step = math.log(1 + 3 / math.e)
    lstm_floor = 5 * per_step
    rnn_floor = 5 * math.log(1 + 3 * math.exp(-2))
    assert_quoted(
        NB05,
        f"a loss of $\\ln(1 + 3/e) \\approx {per_step:.3f}$",
        f"$5 \\ln(1 + 3/e) \\approx {lstm_floor:.2f}$, even higher than the RNN's "
        f"$5 \\ln(1 + 3e^{{-2}}) \\approx {rnn_floor:.2f}$",
        f"its floor is the RNN's {rnn_floor:.2f}",
        f"bring its summed loss below {lstm_floor:.2f}",
        f"at best each step loses $\\ln(1 + 3/e) \\approx {per_step:.3f}$",
    )
    # The floor is the infimum of the cross-entropy over logits in (0, 1): no sample goes below it.
    gen = torch.Generator().manual_seed(0)
    logits = torch.rand(100_000, 4, generator=gen, dtype=torch.float64)
    labels = torch.randint(4, (100_000,), generator=gen)
    losses = nn.functional.cross_entropy(logits, labels, reduction="none")
    assert losses.min().item() > per_step
    best = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert nn.functional.cross_entropy(best, torch.tensor([0])).item() == pytest.approx(per_step)


def test_05_notes_lstm_seed_0_stays_above_the_floor_with_h_in_0_1():
    namespace = _run_cells(NB05, "class NotesLSTM(", "def train_notes_lstm(")
    with torch.random.fork_rng(devices=[]):
        predicted, losses = namespace["train_notes_lstm"](seed=0, lr=0.03, num_epochs=100)
        net = namespace["NotesLSTM"]()
        hidden, c = torch.zeros(1, 4), torch.zeros(1, 4)
        for x_t in namespace["inputs"]:
            hidden, c = net(x_t, hidden, c)
            assert (c > 0).all() and (hidden > 0).all() and (hidden < 1).all()
    floor = 5 * math.log(1 + 3 / math.e)
    assert predicted == "ohlll" and min(losses) > floor
    assert_quoted(NB05, f"After 100 epochs the summed loss of seed 0 is {losses[-1]:.4f}, "
                        f"well above the floor {floor:.2f}")
    assert f"Predicted string: ohlll, Epoch [100/100] loss={losses[-1]:.4f}" in code_outputs(NB05)


def test_05_twenty_seed_sweep_as_printed():
    match = re.search(r"(\d+)/20 seeds end on 'ohlll'", code_outputs(NB05))
    assert match, "the 20-seed sweep's output is missing"
    assert_quoted(NB05, f"{match.group(1)} of the 20 seeds end on \"ohlll\"")


@pytest.mark.slow
def test_05_twenty_seed_sweep_recomputed():
    namespace = _run_cells(NB05, "class NotesLSTM(", "def train_notes_lstm(")
    with torch.random.fork_rng(devices=[]):
        finals = [namespace["train_notes_lstm"](seed, lr=0.03, num_epochs=100)[0] for seed in range(20)]
    assert_quoted(NB05, f"{finals.count('ohlll')} of the 20 seeds end on \"ohlll\"")


@pytest.fixture(scope="module")
def gradient_norms():
    """Part 5 of lecture 05, run from its own cells (it seeds itself): the namespace."""
    return _run_cells(NB05, "def gradient_norms_per_step(", "norms_open = {")


def _per_step(norms) -> float:
    return (norms[0] / norms[-1]).item() ** (1 / (len(norms) - 1))


def test_05_gradient_norms_per_step(gradient_norms):
    norms, norms_open = gradient_norms["norms"], gradient_norms["norms_open"]
    assert gradient_norms["seq_len"] == 100 and gradient_norms["gate_bias"] == 2.0
    assert_quoted(
        NB05,
        "Run `seq_len = 100` random steps $x_1, \\dots, x_{100}$",
        "Open the gates by adding 2 to the bias of $f$ (block 1, counting from 0, of $i, f, g, o$)",
        f"on average ×{_per_step(norms['LSTM']):.2f} per step for the LSTM, ×{_per_step(norms['GRU']):.2f} for the GRU "
        f"(whose $z_t$ is in the same place) and ×{_per_step(norms['RNN']):.2f} for the RNN",
        f"the gradient shrinks by only ×{_per_step(norms_open['LSTM']):.2f} (LSTM) and "
        f"×{_per_step(norms_open['GRU']):.2f} (GRU) per step",
        f"the LSTM still gets {norms_open['LSTM'][0]:.1e} and the GRU {norms_open['GRU'][0]:.1e}, "
        f"against {norms_open['RNN'][0]:.1e} for the plain RNN",
        f"(×{_per_step(norms['LSTM']):.2f} in Part 5)",
    )
    assert norms_open["RNN"][0] == norms["RNN"][0]
    outputs = code_outputs(NB05)
    for name in ("RNN", "LSTM", "GRU"):
        assert f"{name:<5} |grad| at t=1: {norms_open[name][0]:.1e}" in outputs


def test_05_float32_rnn_gradient_is_exactly_zero_at_the_first_steps(gradient_norms):
    rnn64 = gradient_norms["models"]["RNN"]
    rnn32 = nn.RNN(input_size=rnn64.input_size, hidden_size=rnn64.hidden_size)
    rnn32.load_state_dict({k: v.float() for k, v in rnn64.state_dict().items()})
    norms32 = gradient_norms["gradient_norms_per_step"](rnn32, gradient_norms["inputs"].float())
    assert norms32[0].item() == 0.0 and gradient_norms["norms"]["RNN"][0].item() > 0
    assert_quoted(NB05, "in float32 the plain RNN's gradient at the first steps comes out as exactly 0")


def test_05_self_check_parameter_counts_and_shapes():
    lstm_count = sum(p.numel() for p in nn.LSTM(10, 8).parameters())
    gru_count = sum(p.numel() for p in nn.GRU(10, 8).parameters())
    assert_quoted(NB05, f"32 × 10 + 32 × 8 + 32 + 32 = {lstm_count}", f"24 × 10 + 24 × 8 + 24 + 24 = {gru_count}")
    output, (h_n, c_n) = nn.LSTM(input_size=3, hidden_size=4, num_layers=2)(torch.randn(5, 2, 3))
    assert_quoted(NB05, f"`output` `{tuple(output.shape)}`", f"`h_n` and `c_n` `{tuple(h_n.shape)}`")
    outputs = code_outputs(NB05)
    assert f"LSTM(10, 8): {lstm_count} parameters" in outputs and f"GRU(10, 8): {gru_count} parameters" in outputs
    assert f"output: {tuple(output.shape)}   h_n: {tuple(h_n.shape)}   c_n: {tuple(c_n.shape)}" in outputs


def test_04_embedding_explorer_says_when_the_dimension_shrinks_or_grows():
    from grading.student import widgets as W

    assert "4 numbers per character; embedding: 3, fewer numbers" in W.embedding_lookup_html(1, embedding_size=3)
    assert "embedding: 10, more numbers: the dimension grows" in W.embedding_lookup_html(1, embedding_size=10)
    assert_quoted(NB04, "when the embedding reduces the dimension (below 4) and when it expands it")
