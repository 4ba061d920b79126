"""Visible checks of the ``hello_ohlol`` assignment (shipped to students).

Each check stops at the first problem, in the order type -> dtype -> shape -> values ->
training, and says which dimension or which part of the model is at fault. The model checks
look at what your model *does* (which inputs a logit depends on, what the head computes), so
any attribute names work. The training checks retrain your class from a fixed seed with the
course's own loop: Adam, mean cross-entropy, hello -> ohlol.
"""

from __future__ import annotations

import copy
import math

import torch

# The first torch.optim optimizer imports torch._dynamo (1.5-5 s). Importing it here moves that cost to
# the setup cell, out of the timed training checks.
import torch._dynamo
from torch import nn

from .checks import CheckFailed, call, check_dtype, check_shape, check_type, quiet

IDX2CHAR = ("e", "h", "l", "o")
HELLO = (1, 0, 2, 2, 3)
OHLOL = (3, 1, 2, 3, 2)
# Smallest mean cross-entropy when every logit lies in [-1, 1] (tanh hidden state as logits).
TANH_FLOOR = math.log(1 + 3 * math.exp(-2))
# The training checks' setting and threshold (the hidden tests use the same ones).
LR = 0.1
NUM_EPOCHS = 30
THRESHOLD = 0.1


# --------------------------------------------------------------------------- one_hot


def check_one_hot(one_hot) -> None:
    """one_hot([1, 0, 2, 2, 3], 4) ("hello") and one_hot(torch.tensor([3, 1]), 6): type, dtype, shape, values."""
    try:
        out = call(one_hot, list(HELLO), 4, name="one_hot")
    except CheckFailed as exc:
        if "not implemented" in str(exc):
            raise
        raise CheckFailed(f"one_hot([1, 0, 2, 2, 3], 4) with a Python list: {exc} It must accept a list of ints: "
                          "convert first with torch.as_tensor(indices).") from None
    check_type(out, torch.Tensor, "one_hot([1, 0, 2, 2, 3], 4)", "Return a torch.Tensor.")
    check_dtype(out, torch.float32, "one_hot([1, 0, 2, 2, 3], 4)",
                "nn.RNN multiplies its input by float weights: convert the result with .float().")
    check_shape(out, (5, 4), "one_hot([1, 0, 2, 2, 3], 4)", ("len(indices)", "num_classes"),
                "One row per index (time step), one column per class.")
    _check_rows(out, HELLO, "one_hot([1, 0, 2, 2, 3], 4)")
    second = call(one_hot, torch.tensor([3, 1]), 6, name="one_hot")
    check_type(second, torch.Tensor, "one_hot(torch.tensor([3, 1]), 6)", "It must accept a 1-D LongTensor too.")
    check_dtype(second, torch.float32, "one_hot(torch.tensor([3, 1]), 6)", "Convert the result with .float().")
    check_shape(second, (2, 6), "one_hot(torch.tensor([3, 1]), 6)", ("len(indices)", "num_classes"),
                "num_classes sets the width, whatever the largest index is.")
    _check_rows(second, (3, 1), "one_hot(torch.tensor([3, 1]), 6)")
    print("      " + "  ".join(IDX2CHAR))
    for char, row in zip("hello", out.tolist(), strict=True):
        print(f"  {char}   " + "  ".join(str(int(v)) for v in row))
    print("one_hot: visible checks passed.")


def _check_rows(out: torch.Tensor, indices, name: str) -> None:
    for i, k in enumerate(indices):
        row = out[i]
        if row[k].item() != 1 or int((row != 0).sum()) != 1:
            raise CheckFailed(f"{name}: row {i} is {row.tolist()}; it should be all zeros except a 1 in column {k} "
                              f"(row i has its 1 in column indices[i], counting from 0).")


# --------------------------------------------------------------------------- shared model helpers


def _typed(model: nn.Module, cls: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, cls)]


def _reinit(model: nn.Module, seed: int) -> None:
    """Torch's default initialisation of the Embedding, RNN and Linear submodules, from ``seed``:
    the training checks do not depend on how (or in which order) you create them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for cls in (nn.Embedding, nn.RNN, nn.Linear):
            modules = _typed(model, cls)
            if len(modules) != 1:
                continue
            module = modules[0]
            for p in module.parameters():
                if cls is nn.Embedding:
                    p.copy_(torch.randn(p.shape, generator=gen))
                else:
                    bound = 1.0 / math.sqrt(module.hidden_size if cls is nn.RNN else module.in_features)
                    p.copy_(torch.rand(p.shape, generator=gen) * 2 * bound - bound)


def _build(cls, args: tuple, label: str, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = call(cls, *args, name=label)
    check_type(model, nn.Module, label, "Subclass nn.Module and call super().__init__() first.")
    return model


def _logits(model, x, label: str, expected: tuple[int, int], first_dim: str) -> torch.Tensor:
    out = call(model, x, name=label)
    check_type(out, torch.Tensor, label, "forward must return one tensor of logits.")
    check_dtype(out, torch.float32, label, "Keep the model's float32 (no .double(), no argmax in forward).")
    check_shape(out, expected, label, (first_dim, "num_class"),
                "Flatten the RNN's output through the head to one row per prediction: .reshape(-1, num_class).")
    return out


def _require_head(model: nn.Module, name: str) -> nn.Linear:
    heads = _typed(model, nn.Linear)
    if not heads:
        raise CheckFailed(f"{name} has no nn.Linear head: the RNN's hidden state would be the logits, "
                          f"and tanh keeps it in [-1, 1], "
                          f"so the mean loss could never go below ln(1 + 3e^-2) = {TANH_FLOOR:.3f}. "
                          "Add self.fc = nn.Linear(hidden_size, num_class) in __init__.")
    if len(heads) > 1:
        raise CheckFailed(f"{name} has {len(heads)} nn.Linear modules; "
                          "the head is one nn.Linear(hidden_size, num_class).")
    if not _typed(model, nn.RNN):
        raise CheckFailed(f"{name} has no nn.RNN submodule: create it in __init__ (self.rnn = nn.RNN(...)).")
    return heads[0]


def _check_head_is_last(model: nn.Module, x, name: str, rows: int) -> None:
    """With the head's weight zeroed and its bias set, every row of logits must be that bias."""
    probe = copy.deepcopy(model)
    head = _typed(probe, nn.Linear)[0]
    if head.bias is None:
        raise CheckFailed(f"{name}'s nn.Linear head has no bias; keep the default bias=True.")
    bias = torch.tensor([3.0, -3.0, 2.0, -2.0])[: head.out_features]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(bias)
        out = call(probe, x, name=name)
    if out.shape != (rows, len(bias)) or not torch.allclose(out, bias.expand(rows, -1)):
        raise CheckFailed(f"{name}: the logits must be the head's output, computed last: "
                          f"with the Linear's weight set to 0 and its bias to {bias.tolist()}, "
                          f"every row should be {bias.tolist()} (logits are not limited to [-1, 1]). "
                          "Return self.fc(rnn_output), flattened, with nothing after it.")


def _check_time_and_batch(model, x, perturbed, alone, rows_of_alone, name: str, batch_first: bool) -> None:
    """Logits at later steps depend on earlier inputs; one sequence's logits don't depend on the others."""
    with torch.no_grad():
        base = call(model, x, name=name)
        changed = call(model, perturbed, name=name)
        single = call(model, alone, name=name)
    layout = "(batch, seq_len)" if batch_first else "(seq_len, batch, input_size)"
    hint = ""
    rnns = _typed(model, nn.RNN)
    if rnns and rnns[0].batch_first != batch_first:
        hint = f" Your nn.RNN has batch_first={rnns[0].batch_first}, but x is {layout}."
    later = [r for r in range(base.shape[0]) if r not in rows_of_alone["first_step_rows"]]
    if torch.allclose(base[later], changed[later]):
        raise CheckFailed(f"{name}: changing only the first time step changed no later logit, "
                          "so the hidden state does not carry the past: don't reset it at every step. "
                          f"Run the RNN over the whole sequence.{hint}")
    picked = base[rows_of_alone["rows"]]
    if single.shape != picked.shape or not torch.allclose(single, picked, atol=1e-5):
        order = "b*seq_len + t" if batch_first else "t*batch + b"
        raise CheckFailed(f"{name}: the logits of one sequence run alone differ from its rows in the batch. Rows must "
                          f"be in the order {order} (sequence b, step t), and sequences must not mix.{hint}")


def _train(model: nn.Module, x, labels, seed: int) -> list[float]:
    """The course's training loop; returns the loss of every epoch (before that epoch's step)."""
    _reinit(model, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise CheckFailed("The model has no trainable parameters.")
    optimizer = torch.optim.Adam(params, lr=LR)
    criterion = nn.CrossEntropyLoss()
    losses = []
    with quiet(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(NUM_EPOCHS):
            optimizer.zero_grad()
            loss = criterion(model(x), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            final = model(x)
    losses.append(criterion(final, labels).item())
    word = "".join(IDX2CHAR[i] for i in final.argmax(dim=1).tolist())
    print(f"mean loss {losses[0]:.3f} -> {losses[-1]:.4f} after {NUM_EPOCHS} epochs (Adam, lr {LR}); predicted: {word}")
    return losses


def _check_learns(losses: list[float], name: str) -> None:
    final = losses[-1]
    if not math.isfinite(final) or final > THRESHOLD:
        why = ""
        if final >= TANH_FLOOR - 1e-3:
            why = (f" That is above {TANH_FLOOR:.3f}, the floor of logits bounded in [-1, 1]: "
                   "is the Linear head the last step?")
        raise CheckFailed(f"{name} does not learn hello -> ohlol: mean loss {final:.3f} after {NUM_EPOCHS} epochs; "
                          f"a correct model gets below {THRESHOLD}.{why}")


# --------------------------------------------------------------------------- OneHotRNN


def _hello_one_hot() -> torch.Tensor:
    """"hello" as the seed types it: (seq_len=5, batch=1, input_size=4)."""
    return torch.tensor([[[0.0, 1, 0, 0]], [[1, 0, 0, 0]], [[0, 0, 1, 0]], [[0, 0, 1, 0]], [[0, 0, 0, 1]]])


def check_one_hot_rnn(OneHotRNN) -> None:
    """OneHotRNN(4, 8, 4): logits (seq_len*batch, num_class), a Linear head computed last,
    a hidden state carried over time, rows in the order t*batch + b."""
    label = "OneHotRNN(input_size=4, hidden_size=8, num_class=4)"
    model = _build(OneHotRNN, (4, 8, 4), label)
    _require_head(model, "OneHotRNN")
    _logits(model, _hello_one_hot(), "model(x) with x of shape (5, 1, 4)", (5, 4), "seq_len*batch")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 4, generator=gen)
    _logits(model, x, "model(x) with x of shape (4, 3, 4)", (12, 4), "seq_len*batch")
    perturbed = x.clone()
    perturbed[0] += 1.0
    rows = {"first_step_rows": [0, 1, 2], "rows": [t * 3 + 1 for t in range(4)]}
    _check_time_and_batch(model, x, perturbed, x[:, 1:2], rows, "OneHotRNN", batch_first=False)
    _check_head_is_last(model, x, "OneHotRNN", 12)
    print("OneHotRNN: visible checks passed (shapes, head, hidden state carried over time, row order).")


def check_one_hot_rnn_training(OneHotRNN) -> None:
    """Retrain OneHotRNN(4, 8, 4) from seed 0 on hello -> ohlol; the mean loss must end below THRESHOLD."""
    model = _build(OneHotRNN, (4, 8, 4), "OneHotRNN(4, 8, 4)")
    _require_head(model, "OneHotRNN")
    _logits(model, _hello_one_hot(), "model(x) with x of shape (5, 1, 4)", (5, 4), "seq_len*batch")
    losses = _train(model, _hello_one_hot(), torch.tensor(OHLOL), seed=0)
    _check_learns(losses, "OneHotRNN")
    print(f"OneHotRNN: visible training check passed "
          f"(below {THRESHOLD}; the seed's model cannot go below {TANH_FLOOR:.3f}).")


# --------------------------------------------------------------------------- EmbeddingRNN


def _require_embedding(model: nn.Module, num_class: int, embedding_size: int) -> nn.Embedding:
    embeddings = _typed(model, nn.Embedding)
    if not embeddings:
        raise CheckFailed("EmbeddingRNN has no registered nn.Embedding submodule. An embedding kept outside the model "
                          "(a global, a plain list, or one built inside forward) is not in model.parameters(), so the "
                          "optimizer never trains it. "
                          "Create it in __init__: self.emb = nn.Embedding(num_class, embedding_size).")
    emb = embeddings[0]
    if (emb.num_embeddings, emb.embedding_dim) != (num_class, embedding_size):
        raise CheckFailed(f"The embedding is nn.Embedding({emb.num_embeddings}, {emb.embedding_dim}); expected "
                          f"nn.Embedding(num_class={num_class}, embedding_size={embedding_size}): one row of size "
                          "embedding_size per character.")
    return emb


def check_embedding_rnn_shape(EmbeddingRNN) -> None:
    """EmbeddingRNN(4, 10, 8, 2) on (1, 5) and (3, 7), EmbeddingRNN(4, 3, 5, 1) on (2, 6).

    The logits must have shape (batch*seq_len, num_class).
    """
    model = _build(EmbeddingRNN, (4, 10, 8, 2),
                   "EmbeddingRNN(num_class=4, embedding_size=10, hidden_size=8, num_layers=2)")
    _logits(model, torch.tensor([HELLO]), "model(x) with x = torch.tensor([[1, 0, 2, 2, 3]])", (5, 4), "batch*seq_len")
    gen = torch.Generator().manual_seed(2)
    _logits(model, torch.randint(0, 4, (3, 7), generator=gen), "model(x) with x of shape (3, 7)", (21, 4),
            "batch*seq_len")
    small = _build(EmbeddingRNN, (4, 3, 5, 1),
                   "EmbeddingRNN(num_class=4, embedding_size=3, hidden_size=5, num_layers=1)")
    _logits(small, torch.randint(0, 4, (2, 6), generator=gen),
            "EmbeddingRNN(4, 3, 5, 1) on x of shape (2, 6)", (12, 4), "batch*seq_len")
    print("EmbeddingRNN: visible shape checks passed.")


def check_embedding_rnn_structure(EmbeddingRNN) -> None:
    """A registered nn.Embedding, an nn.RNN and a Linear head computed last; the hidden state carried
    over time; rows in the order b*seq_len + t."""
    model = _build(EmbeddingRNN, (4, 10, 8, 2), "EmbeddingRNN(4, 10, 8, 2)")
    _require_embedding(model, 4, 10)
    _require_head(model, "EmbeddingRNN")
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 4, (3, 5), generator=gen)
    _logits(model, x, "model(x) with x of shape (3, 5)", (15, 4), "batch*seq_len")
    perturbed = x.clone()
    perturbed[:, 0] = (perturbed[:, 0] + 1) % 4
    rows = {"first_step_rows": [0, 5, 10], "rows": list(range(5, 10))}
    _check_time_and_batch(model, x, perturbed, x[1:2], rows, "EmbeddingRNN", batch_first=True)
    _check_head_is_last(model, x, "EmbeddingRNN", 15)
    print("EmbeddingRNN: visible structure checks passed "
          "(embedding registered, head last, hidden state carried, row order).")


def check_embedding_rnn_training(EmbeddingRNN) -> None:
    """Retrain EmbeddingRNN(4, 10, 8, 2) from seed 0 on hello -> ohlol: the loss must end below
    THRESHOLD and the embedding's weight must change (it is trained with the rest)."""
    model = _build(EmbeddingRNN, (4, 10, 8, 2), "EmbeddingRNN(4, 10, 8, 2)")
    emb = _require_embedding(model, 4, 10)
    _require_head(model, "EmbeddingRNN")
    x = torch.tensor([HELLO])
    _logits(model, x, "model(x) with x = torch.tensor([[1, 0, 2, 2, 3]])", (5, 4), "batch*seq_len")
    _reinit(model, 0)
    before = emb.weight.detach().clone()
    losses = _train(model, x, torch.tensor(OHLOL), seed=0)
    _check_learns(losses, "EmbeddingRNN")
    change = (emb.weight.detach() - before).abs().max().item()
    if change <= 1e-3:
        raise CheckFailed(f"The embedding's weight did not change during training (max change {change:.2g}): "
                          "it is frozen or not used in forward. "
                          "Keep it trainable: nn.Embedding(num_class, embedding_size).")
    print(f"EmbeddingRNN: visible training check passed; the embedding's weight moved by up to {change:.3f}.")
