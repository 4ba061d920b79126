"""The course's helpers for the ``char_lm`` assignment's poems notebook (shipped to students).

The data: :data:`DATA_FILE` (300 Tang poems, bodies only, one poem per paragraph; see
``source/char_lm/tang300-PROVENANCE.md``), read by :func:`load_poems` and split **by poem** by
:func:`split_poems`: every tenth poem (index 9, 19, ...) is validation text, the rest training text. A split by
character would put the two halves of one couplet on both sides, and the model would be validated on lines it
has half seen.

Each part's text is its poems joined and ended by :data:`POEM_END` (an empty line), so a model also learns where
a poem ends.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import CheckFailed, call, check_type, grader_trains, quiet

DATA_FILE = "tang300.txt"
POEM_END = "\n\n"
VALIDATION_EVERY = 10  # poem i is validation text when i % 10 == 9
UNKNOWN = "\ufffd"  # itos[0]: any character not in the vocabulary


# Where the course keeps the data, beside this package: the student bundle's assignments/, the repository's release/
# and source/.
_COURSE = Path(__file__).resolve().parents[2]
_FOLDERS = ("assignments/char_lm", "release/char_lm", "source/char_lm")


def data_path(folder: str | Path = ".") -> Path:
    """Where the poems are: ``folder/tang300.txt`` (the notebook's own folder by default)."""
    return Path(folder) / DATA_FILE


def find_data() -> Path:
    """``tang300.txt`` in the working directory (a notebook's folder), else where the course keeps it."""
    for path in (data_path(), *(data_path(_COURSE / folder) for folder in _FOLDERS)):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{DATA_FILE} is not in this folder: open the notebook from its assignment folder")


def load_poems(path: str | Path | None = None) -> list[str]:
    """The poems of ``path`` (default :func:`find_data`): one string per poem, its lines joined by newlines."""
    return poems_of(Path(path or find_data()).read_text(encoding="utf-8"))


def poems_of(text: str) -> list[str]:
    """The poems of the data file's text: paragraphs separated by an empty line."""
    return [poem.strip("\n") for poem in text.split(POEM_END) if poem.strip()]


def split_poems(poems: list[str]) -> tuple[str, str]:
    """(training text, validation text): every tenth poem validates; each poem ends with :data:`POEM_END`."""
    train = [p for i, p in enumerate(poems) if i % VALIDATION_EVERY != VALIDATION_EVERY - 1]
    validation = [p for i, p in enumerate(poems) if i % VALIDATION_EVERY == VALIDATION_EVERY - 1]
    return "".join(p + POEM_END for p in train), "".join(p + POEM_END for p in validation)


LINE_ENDS = "，。？！；：、\n"


def five_or_seven(text: str) -> float:
    """The share of the lines of ``text`` (runs between punctuation or newlines) that have 5 or 7 characters."""
    lines, current = [], ""
    for ch in text:
        if ch in LINE_ENDS:
            if current:
                lines.append(current)
            current = ""
        else:
            current += ch
    lines += [current] if current else []
    return sum(len(line) in (5, 7) for line in lines) / len(lines) if lines else 0.0


# --------------------------------------------------------------------------- the graded training run
# The recipe of the notebook's training cell and of the graded training check (the grader re-trains CharLM with it,
# from its own seed). Two epochs: this corpus is small (22,394 training characters, 2,413 distinct) and a model this
# size starts to learn the training poems by heart in the third epoch, when the validation perplexity turns up.
EMBEDDING_SIZE = 32
HIDDEN_SIZE = 128
NUM_LAYERS = 1
BATCH_SIZE = 8
SEQ_LEN = 32
EPOCHS = 2
LR = 0.005
CLIP = 1.0
# Validation perplexity / the unigram model's perplexity (estimated on the training text, add-one smoothing): a
# model that ignores context cannot go below 1. Calibrated by ``make calibrate`` (the figures are in README.md).
PERPLEXITY_RATIO = 0.75


def unigram_perplexity(train_ids: list[int], val_ids: list[int], vocab_size: int) -> float:
    """Perplexity on ``val_ids[1:]`` of the unigram model of ``train_ids`` with add-one smoothing (natural log).

    The best a model that ignores context can learn from the training text; positions 1.. because a language model
    predicts every character but the first.
    """
    counts = [1] * vocab_size
    for i in train_ids:
        counts[i] += 1
    total = sum(counts)
    targets = val_ids[1:]
    nll = -sum(math.log(counts[i] / total) for i in targets) / len(targets)
    return math.exp(nll)


# --------------------------------------------------------------------------- visible checks: CharLM, train_tbptt
def state_problem(calls: Any, windows_per_epoch: int, epochs: int) -> str | None:
    """What a recording model's calls say about the state handling of truncated BPTT (None: as the contract says).

    ``calls`` holds one dict per call: ``none`` (the state was None), ``attached`` (it still had a grad_fn),
    ``continues`` (it equals the state the previous call returned).
    """
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        return "the check could not read the model's calls."
    for i, call_ in enumerate(calls[:windows_per_epoch * epochs]):
        window = i % windows_per_epoch
        if window == 0 and not call_.get("none"):
            return "each epoch must start from state None (the first window has nothing to continue)."
        if window > 0 and call_.get("none"):
            return ("the hidden state is reset every window: pass the state window k returned into window k+1, "
                    "whose rows continue the same streams.")
        if window > 0 and call_.get("attached"):
            return ("the carried state is not detached: pass tuple(s.detach() for s in state), or backward() reaches "
                    "into the previous window's graph (freed: 'Trying to backward through the graph a second time').")
        if window > 0 and not call_.get("continues"):
            return "the state passed into window k+1 is not the one window k returned."
    if len(calls) != windows_per_epoch * epochs:
        return (f"the model was called {len(calls)} times; expected once per window per epoch "
                f"({windows_per_epoch} x {epochs}).")
    return None


class _GRURecorder(nn.Module):
    """A tiny language model for checking ``train_tbptt``: Embedding -> GRU -> Linear, state (h, h), and a log of
    every call (the state it received)."""

    def __init__(self, vocab_size: int = 5, embedding_size: int = 3, hidden_size: int = 4):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, embedding_size)
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, vocab_size)
        self.calls: list[dict] = []
        self.snapshots: list[torch.Tensor] = []  # the parameters at every call
        self._last: tuple | None = None

    def forward(self, x, state=None):
        record = {"none": state is None}
        if state is not None:
            record["attached"] = any(getattr(s, "grad_fn", None) is not None for s in state)
            record["continues"] = self._last is not None and all(
                isinstance(s, torch.Tensor) and torch.equal(s.detach(), last)
                for s, last in zip(state, self._last, strict=False))
        self.calls.append(record)
        self.snapshots.append(torch.cat([p.detach().reshape(-1) for p in self.parameters()]).clone())
        y, h = self.gru(self.emb(x), None if state is None else state[0])
        self._last = (h.detach().clone(), h.detach().clone())
        return self.out(y), (h, h)


def check_train_tbptt(train_tbptt) -> None:
    """Visible check: the state starts as None each epoch, is carried and detached; one finite loss per epoch."""
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _GRURecorder()
    inputs = torch.randint(0, 5, (3, 2, 4), generator=gen)
    targets = torch.randint(0, 5, (3, 2, 4), generator=gen)
    before = [p.detach().clone() for p in model.parameters()]
    try:
        with quiet():
            losses = train_tbptt(model, inputs, targets, 2, 0.05, 1.0)
    except NotImplementedError:
        raise CheckFailed("train_tbptt is not implemented yet.") from None
    except Exception as exc:  # noqa: BLE001 - the state log says why, when it can
        problem = state_problem(model.calls, 3, 2) if model.calls else None
        raise CheckFailed(f"train_tbptt raised {type(exc).__name__}: {exc}" + (f"\nLikely: {problem}" if problem
                                                                                 else "")) from None
    problem = state_problem(model.calls, 3, 2)
    if problem:
        raise CheckFailed(f"train_tbptt: {problem}")
    check_type(losses, list, "train_tbptt's result", "return a list with the mean window loss of each epoch.")
    if len(losses) != 2 or not all(isinstance(v, float) and math.isfinite(v) for v in losses):
        raise CheckFailed(f"train_tbptt(..., epochs=2, ...) returned {losses!r}: expected 2 finite floats "
                          "(loss.item() of each window, averaged per epoch).")
    if all(torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True)):
        raise CheckFailed("train_tbptt did not change the model's parameters: call optimizer.step() after backward().")
    step = (model.snapshots[1] - model.snapshots[0]).abs()
    moved = step[step > 0]
    if moved.numel() and not 0.9 * 0.05 <= moved.median().item() <= 1.01 * 0.05:
        raise CheckFailed("train_tbptt's first update is not Adam's (Adam's first step moves every parameter by about "
                          "lr, whatever the gradient's size): is the optimiser SGD? The contract is "
                          "torch.optim.Adam(model.parameters(), lr=lr).")
    print(f"train_tbptt: state None at each epoch's start, carried and detached between windows; losses {losses}. "
          "train_tbptt: visible checks passed.")


def check_char_lm(CharLM) -> None:
    """Visible check: (logits, (h, c)) shapes, the LSTM's batch_first, logits (not probabilities), the state carried."""
    vocab, emb, hidden, layers, batch, seq = 11, 3, 5, 2, 4, 7
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = call(CharLM, vocab, emb, hidden, layers, name="CharLM")
    check_type(model, nn.Module, "CharLM(...)", "CharLM must subclass nn.Module.")
    lstms = [m for m in model.modules() if isinstance(m, nn.LSTM)]
    if len(lstms) != 1:
        raise CheckFailed(f"CharLM should hold one nn.LSTM (found {len(lstms)}).")
    if not lstms[0].batch_first:
        raise CheckFailed("CharLM's nn.LSTM needs batch_first=True: x is (batch, seq_len), and without it the LSTM "
                          "reads the batch as time.")
    x = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = call(model, x, name="CharLM.forward")
        if not isinstance(out, tuple) or len(out) != 2:
            raise CheckFailed(f"CharLM.forward should return (logits, state); it returned a {type(out).__name__}.")
        logits, state = out
        check_type(logits, torch.Tensor, "logits")
        expected = (batch, seq, vocab)
        if tuple(logits.shape) != expected:
            raise CheckFailed(f"logits have shape {tuple(logits.shape)}, expected (batch={batch}, seq_len={seq}, "
                              f"vocab_size={vocab}).")
        if not isinstance(state, tuple) or len(state) != 2:
            raise CheckFailed("the state should be the LSTM's (h, c) tuple.")
        for part, tensor in zip("hc", state, strict=True):
            if tuple(tensor.shape) != (layers, batch, hidden):
                raise CheckFailed(f"{part} has shape {tuple(tensor.shape)}, expected (num_layers={layers}, "
                                  f"batch={batch}, hidden_size={hidden}), even with batch_first=True.")
        if probabilities(logits):
            raise CheckFailed("CharLM returns probabilities: return the Linear layer's raw scores (logits); "
                              "cross_entropy and softmax(logits / T) apply the softmax themselves.")
        layers = {label: [m for m in model.modules() if isinstance(m, cls)]
                  for label, cls in (("Embedding", nn.Embedding), ("Linear", nn.Linear))}
        if len(layers["Embedding"]) != 1 or len(layers["Linear"]) != 1:
            raise CheckFailed("CharLM should hold one nn.Embedding, one nn.LSTM and one nn.Linear.")
        composed = layers["Linear"][0](lstms[0](layers["Embedding"][0](x))[0])
        diff = (composed - logits).abs().max().item()
        if diff > 1e-5:
            raise CheckFailed(f"CharLM's logits differ from Embedding -> LSTM -> Linear applied to x in turn (by "
                              f"{diff:.3g}): embed x, run the LSTM from the given state, apply the head.")
        first, state1 = model(x[:, :3])
        second, _ = model(x[:, 3:], state1)
        diff = (torch.cat([first, second], dim=1) - logits).abs().max().item()
    if diff > 1e-5:
        raise CheckFailed(f"CharLM ignores the state it is given: forward(x[:, 3:], state) after forward(x[:, :3]) "
                          f"differs from forward(x) by {diff:.3g}. Pass state to the LSTM.")
    print(f"CharLM: logits {tuple(logits.shape)}, h and c {tuple(state[0].shape)}, the state carries over. "
          "CharLM: visible checks passed.")


def probabilities(logits: torch.Tensor) -> bool:
    """Whether a model's output looks like probabilities (non-negative, each row summing to 1), not logits."""
    sums = logits.sum(-1)
    return bool((logits >= 0).all()) and torch.allclose(sums, torch.ones_like(sums), atol=1e-4)


def _train(CharLM, seed: int = 0) -> tuple[float, float]:
    """Train a CharLM of the course's sizes on the training poems, each window from a zero state (not truncated
    BPTT: the check needs no answer of yours), with Adam and clipping; (validation perplexity, unigram's)."""
    train, val = split_poems(load_poems())
    itos = [UNKNOWN] + sorted(set(train))
    index = {ch: i for i, ch in enumerate(itos)}
    train_ids = torch.tensor([index[ch] for ch in train])
    val_ids = torch.tensor([index.get(ch, 0) for ch in val])
    n = (len(train_ids) - 1) // BATCH_SIZE
    xs, ys = train_ids[:n * BATCH_SIZE].view(BATCH_SIZE, n), train_ids[1:n * BATCH_SIZE + 1].view(BATCH_SIZE, n)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CharLM(len(itos), EMBEDDING_SIZE, HIDDEN_SIZE, NUM_LAYERS)
        for cls in (nn.Embedding, nn.LSTM, nn.Linear):  # the same start whatever order CharLM creates its layers in
            for module in (m for m in model.modules() if isinstance(m, cls)):
                module.reset_parameters()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(EPOCHS):
        for start in range(0, n - SEQ_LEN + 1, SEQ_LEN):
            logits, _ = model(xs[:, start:start + SEQ_LEN])
            loss = F.cross_entropy(logits.reshape(-1, len(itos)), ys[:, start:start + SEQ_LEN].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            optimizer.step()
    with torch.no_grad():
        logits, _ = model(val_ids[:-1].unsqueeze(0))
        ppl = math.exp(F.cross_entropy(logits[0], val_ids[1:]).item())
    return ppl, unigram_perplexity(train_ids.tolist(), val_ids.tolist(), len(itos))


def check_char_lm_training(CharLM) -> None:
    """Visible check of the training test: CharLM's layers and forward pass, then (outside grading) a training run
    on the poems of the course's size, whose validation perplexity must be below the threshold."""
    check_char_lm(CharLM)
    if grader_trains("CharLM on the poems"):
        return
    with quiet():
        ppl, baseline = call(_train, CharLM, name="training CharLM")
    limit = PERPLEXITY_RATIO * baseline
    if not ppl < limit:
        raise CheckFailed(f"CharLM trained on the poems reaches a validation perplexity of {ppl:.0f}; it should be "
                          f"below {PERPLEXITY_RATIO} x {baseline:.0f} (the unigram model's) = {limit:.0f}.")
    print(f"CharLM trained on the poems: validation perplexity {ppl:.0f} < {limit:.0f}. Training check passed.")
