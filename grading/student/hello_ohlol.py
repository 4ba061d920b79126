"""Visible checks of the ``hello_ohlol`` assignment (shipped to students).

Each check stops at the first problem, in the order type -> dtype -> shape -> values ->
training, and says which dimension or which part of the model is at fault. The model checks
look at what your model *does* (which inputs a logit depends on, what the head computes), so
any attribute names work. The training checks retrain your class from a fixed seed with the
course's own loop: Adam, mean cross-entropy, hello -> ohlol. Every size of a check differs from
every other where the task allows it, so swapping two of them shows. The ``*_problem`` and
``*_message`` functions are the diagnoses the grader uses too.
"""

from __future__ import annotations

import copy
import importlib
import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

from .checks import CheckFailed, call, call_by_hand, check_type, describe_shape, grader_trains, keeps_rng, quiet

if "ipykernel" in sys.modules:
    # The first torch.optim optimizer imports torch._dynamo (1.5-5 s). In a notebook, importing it here moves that
    # cost to the setup cell, out of the timed training checks; the grader's own processes never train.
    importlib.import_module("torch._dynamo")

IDX2CHAR = ("e", "h", "l", "o")
HELLO = (1, 0, 2, 2, 3)
OHLOL = (3, 1, 2, 3, 2)
# Smallest mean cross-entropy when every logit lies in [-1, 1] (tanh hidden state as logits).
TANH_FLOOR = math.log(1 + 3 * math.exp(-2))
# The training checks' setting and threshold (the hidden tests use the same ones).
LR = 0.1
NUM_EPOCHS = 30
THRESHOLD = 0.1
# The embedding must move by more than this (max abs change of its weight) during training.
MIN_EMBEDDING_CHANGE = 1e-3


# --------------------------------------------------------------------------- one_hot

ONE_HOT_OPS = {"one_hot": "torch.nn.functional.one_hot"}
ONE_HOT_REASON = ("write it by hand: zeros, then set a 1 per row; F.one_hot is what you are reimplementing, "
                  "so a solution that calls it earns no points for this exercise.")
ONE_HOT_DIMS = ("len(indices)", "num_classes")


def one_hot_call(indices, num_classes: int, as_kind: str) -> str:
    """How a message shows the call: ``one_hot([1, 0], 4)`` or ``one_hot(torch.tensor([1, 0]), 4)``."""
    shown = f"{list(indices)}" if as_kind == "list" else f"torch.tensor({list(indices)})"
    return f"one_hot({shown}, {num_classes})"


def one_hot_error_hint(as_kind: str) -> str:
    return {"list": "It must accept a Python list too: convert first with torch.as_tensor(indices).",
            "tensor": "It must accept a 1-D LongTensor too."}.get(as_kind, "")


def one_hot_problem(indices, num_classes: int, as_kind: str, out) -> str | None:
    """What is wrong with ``out`` = one_hot(indices, num_classes) (None if nothing).

    Row i must be all zeros except a 1 in column indices[i]; checked row by row, so the check
    holds no one-hot encoder of its own.
    """
    call_text = one_hot_call(indices, num_classes, as_kind)
    if not isinstance(out, torch.Tensor):
        return f"{call_text} returned a {type(out).__name__}; it must return a torch.Tensor."
    if out.dtype != torch.float32:
        return (f"{call_text} has dtype {out.dtype}, expected torch.float32: nn.RNN multiplies its input "
                "by float weights. Convert with .float().")
    n = len(indices)
    shape = tuple(out.shape)
    if shape != (n, num_classes):
        want = describe_shape((n, num_classes), ONE_HOT_DIMS)
        if shape == (num_classes, n) and n != num_classes:
            return (f"{call_text} has shape {shape}, expected {want}: one row per index, not one column. "
                    "You returned the transpose.")
        if len(shape) == 2 and shape[0] == n:
            return (f"{call_text} has shape {shape}, expected {want}: "
                    f"dimension 1 must be num_classes={num_classes}, whatever the largest index is.")
        return f"{call_text} has shape {shape}, expected {want}: one row per index (time step), one column per class."

    def ones_at(shift: int) -> int | None:
        """The first row whose only nonzero is not a 1 at column (indices[i] + shift) % num_classes, or None."""
        for i, k in enumerate(indices):
            row = out[i].detach()
            if row[(int(k) + shift) % num_classes].item() != 1 or int((row != 0).sum()) != 1:
                return i
        return None

    bad = ones_at(0)
    if bad is None:
        return None
    for shift, side in ((1, "right"), (-1, "left")):
        if ones_at(shift) is None:
            return (f"{call_text} puts each 1 one column {side} of its index: "
                    "index k goes in column k (counting from 0).")
    return (f"{call_text}: row {bad} is {out[bad].tolist()}; it should be all zeros except a 1 in column "
            f"{int(indices[bad])} (row i has its 1 in column indices[i], counting from 0).")


def _one_hot_run(one_hot, indices, num_classes: int, as_kind: str):
    shown = indices.tolist() if isinstance(indices, torch.Tensor) else indices
    return call_by_hand(one_hot, indices, num_classes, name="one_hot", ops=ONE_HOT_OPS, reason=ONE_HOT_REASON,
                        label=one_hot_call(shown, num_classes, as_kind),
                        error_hint=lambda exc: one_hot_error_hint(as_kind))


@keeps_rng
def check_one_hot(one_hot) -> None:
    """one_hot([1, 0, 2, 2, 3], 4) ("hello") and one_hot(torch.tensor([3, 1]), 6): by hand (no F.one_hot),
    type, dtype, shape, values."""
    out = _one_hot_run(one_hot, list(HELLO), 4, "list")
    problem = one_hot_problem(list(HELLO), 4, "list", out)
    if problem:
        raise CheckFailed(problem)
    second = _one_hot_run(one_hot, torch.tensor([3, 1]), 6, "tensor")
    problem = one_hot_problem([3, 1], 6, "tensor", second)
    if problem:
        raise CheckFailed(problem)
    print("      " + "  ".join(IDX2CHAR))
    for char, row in zip("hello", out.tolist(), strict=True):
        print(f"  {char}   " + "  ".join(str(int(v)) for v in row))
    print("one_hot: visible checks passed.")


# --------------------------------------------------------------------------- shared model diagnoses

LAYERS = (("Embedding", nn.Embedding), ("RNN", nn.RNN), ("Linear", nn.Linear))


def layer_config(label: str, module) -> dict:
    """The constructor arguments of an Embedding, RNN or Linear module, as plain data."""
    if label == "Embedding":
        return {"num_embeddings": int(module.num_embeddings), "embedding_dim": int(module.embedding_dim),
                "padding_idx": module.padding_idx, "max_norm": module.max_norm}
    if label == "RNN":
        return {"input_size": int(module.input_size), "hidden_size": int(module.hidden_size),
                "num_layers": int(module.num_layers), "nonlinearity": str(module.nonlinearity),
                "bias": bool(module.bias), "batch_first": bool(module.batch_first),
                "bidirectional": bool(module.bidirectional), "proj_size": int(getattr(module, "proj_size", 0))}
    return {"in_features": int(module.in_features), "out_features": int(module.out_features),
            "bias": module.bias is not None}


def model_layers(model: nn.Module) -> tuple[dict[str, list[dict]], list[str]]:
    """({label: [configs of the model's modules of that type]}, [parameters that none of them owns])."""
    layers: dict[str, list[dict]] = {label: [] for label, _ in LAYERS}
    owned = set()
    for module in model.modules():
        for label, cls in LAYERS:
            if isinstance(module, cls):
                layers[label].append(layer_config(label, module))
                owned.update(id(p) for p in module.parameters())
    extra = [name for name, p in model.named_parameters() if id(p) not in owned]
    return layers, extra


def no_head_message(name: str) -> str:
    return (f"{name} has no nn.Linear head: its logits are the RNN's hidden state, which tanh keeps in [-1, 1], "
            f"so the mean loss can never go below ln(1 + 3e^-2) = {TANH_FLOOR:.3f}. "
            "Add self.fc = nn.Linear(hidden_size, num_class) and apply it to the RNN's output.")


def structure_problem(name: str, layers: dict, extra: list, *, embedding: bool, sizes: dict) -> str | None:
    """What is missing, extra or mis-sized among the model's Embedding/RNN/Linear modules (None if nothing).

    ``layers`` and ``extra`` as :func:`model_layers` gives them; ``sizes`` holds the constructor's arguments
    (input_size or embedding_size, hidden_size, num_class, and num_layers for EmbeddingRNN).
    """
    if embedding and not layers.get("Embedding"):
        return (f"{name} has no registered nn.Embedding submodule. An embedding kept outside the model (a global, "
                "a plain list or dict, or one built inside forward) is not in model.parameters(), so the optimizer "
                "never trains it. Create it in __init__: self.emb = nn.Embedding(num_class, embedding_size).")
    if not layers.get("RNN"):
        return f"{name} has no nn.RNN submodule: create it in __init__ (self.rnn = nn.RNN(...)) so it is registered."
    if not layers.get("Linear"):
        return no_head_message(name)
    for label in ("Embedding", "RNN", "Linear"):
        if len(layers.get(label, [])) > 1:
            return (f"{name} has {len(layers[label])} nn.{label} submodules; the contract is one of each "
                    f"({'Embedding -> ' if embedding else ''}RNN -> Linear).")
    if extra:
        return (f"{name} has parameters outside its nn.Embedding/nn.RNN/nn.Linear modules "
                f"({', '.join(extra[:4])}); the contract's model has no others.")
    rnn, fc = layers["RNN"][0], layers["Linear"][0]
    if rnn["bidirectional"] or rnn["proj_size"]:
        return f"{name}'s nn.RNN must be a plain one-directional RNN (no bidirectional, no proj_size)."
    num_class, hidden_size = sizes["num_class"], sizes["hidden_size"]
    if embedding:
        emb = layers["Embedding"][0]
        got = (emb["num_embeddings"], emb["embedding_dim"])
        want = (num_class, sizes["embedding_size"])
        if got != want:
            swapped = " You swapped its arguments." if got == want[::-1] else ""
            return (f"{name}'s embedding is nn.Embedding{got}; expected nn.Embedding(num_class={want[0]}, "
                    f"embedding_size={want[1]}): one row of size embedding_size per character.{swapped}")
    reads = "embedding_size" if embedding else "input_size"
    if rnn["input_size"] != sizes[reads]:
        what = "the embedded characters" if embedding else "the one-hot vectors"
        return (f"{name}'s nn.RNN has input_size={rnn['input_size']}; it reads {what}, "
                f"so its input_size is {reads}={sizes[reads]}.")
    if rnn["hidden_size"] != hidden_size:
        return f"{name}'s nn.RNN has hidden_size={rnn['hidden_size']}; expected hidden_size={hidden_size}."
    if "num_layers" in sizes and rnn["num_layers"] != sizes["num_layers"]:
        return (f"{name}'s nn.RNN has num_layers={rnn['num_layers']}; expected num_layers={sizes['num_layers']}: "
                "pass num_layers to nn.RNN.")
    if (fc["in_features"], fc["out_features"]) != (hidden_size, num_class):
        return (f"{name}'s head is nn.Linear({fc['in_features']}, {fc['out_features']}): it must map "
                f"hidden_size={hidden_size} to num_class={num_class} (one logit per class): "
                "nn.Linear(hidden_size, num_class).")
    return None


def logits_shape_problem(label: str, shape: tuple, expected: tuple[int, int], *, hidden_size: int, num_layers: int,
                         batch: int, batch_first: bool) -> str | None:
    """What a wrong shape of the logits says about forward (None if the shape is right)."""
    shape = tuple(int(d) for d in shape)
    if shape == tuple(expected):
        return None
    n, num_class = expected
    want = describe_shape(tuple(expected), ("batch*seq_len" if batch_first else "seq_len*batch", "num_class"))
    if len(shape) == 3 and shape[0] * shape[1] == n:
        return (f"{label}: the logits have shape {shape}, expected {want}: flatten the time and batch dimensions "
                f"with .reshape(-1, num_class), as CrossEntropyLoss wants one row per prediction.")
    if len(shape) == 2 and shape[0] == n and shape[1] == hidden_size != num_class:
        return (f"{label}: the logits have shape {shape}, expected {want}: the last dimension is "
                f"hidden_size={hidden_size}. Apply the Linear head (hidden_size -> num_class) to the RNN's output.")
    if shape and shape[0] in (batch, num_layers * batch) and shape[0] != n:
        return (f"{label}: the logits have shape {shape}, expected {want}: you may have used h_n (the last step "
                "only). Use the RNN's output, which holds the top layer's hidden state at every time step.")
    return f"{label}: the logits have shape {shape}, expected {want}: one row per prediction, one column per class."


def dtype_message(label: str, dtype: str) -> str:
    return (f"{label}: the logits have dtype {dtype}, expected float32: "
            "keep the model's dtype (no .double(), no argmax).")


def returned_message(label: str, what: str) -> str:
    return f"{label}: forward returned {what}; it must return one tensor of logits, shape (N, num_class)."


def batch_first_message(name: str, embedding: bool) -> str:
    if embedding:
        return (f"{name}'s nn.RNN has batch_first=False, so it reads x (batch, seq_len) as (seq_len, batch): "
                "it runs over the batch instead of over the time steps. Create it with batch_first=True.")
    return (f"{name}'s nn.RNN has batch_first=True, but x is (seq_len, batch, input_size): "
            "leave batch_first=False (the default).")


def reset_message(name: str) -> str:
    return (f"{name} resets the hidden state at every time step: each logit only sees its own input, so "
            "the two l's of 'hello' get the same prediction. Run the RNN over the whole sequence at once "
            "(or carry h from step to step).")


def order_message(name: str, batch_first: bool) -> str:
    rows = "b*seq_len + t" if batch_first else "t*batch + b"
    return (f"{name}'s rows are in the wrong order: the logits of x[t, b] (code indices from 0) must be row {rows}, "
            "the order .reshape(-1, num_class) gives on the RNN's output layout. Don't transpose before flattening.")


def softmax_message(name: str) -> str:
    return (f"{name} returns probabilities (softmax): return the raw logits, "
            "nn.CrossEntropyLoss applies log-softmax itself.")


def squashed_message(name: str, reach: float) -> str:
    return (f"{name}'s logits all lie in [-1, 1], where correct ones reach {reach:.2f}: something squashes them "
            "(a tanh or sigmoid after the head, or the hidden state instead of the head's output). "
            "Return the Linear head's output as it is.")


def frozen_message(name: str, change: float, frozen: list[str]) -> str:
    shown = ", ".join(frozen) or "none"
    return (f"{name}'s embedding did not change during training (max change {change:.2g}): it is frozen "
            f"(parameters with requires_grad=False: {shown}) or not used in forward. An embedding is a table "
            "of trainable vectors: keep its weight trainable (nn.Embedding(num_class, embedding_size), "
            "not Embedding.from_pretrained(..., freeze=True)).")


def head_unused_message(name: str) -> str:
    return (f"{name} never applies its Linear head: the logits do not depend on it. "
            "Return self.fc(output), flattened.")


# --------------------------------------------------------------------------- visible model checks


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


def _require_structure(model: nn.Module, name: str, embedding: bool, sizes: dict) -> None:
    layers, extra = model_layers(model)
    problem = structure_problem(name, layers, extra, embedding=embedding, sizes=sizes)
    if problem:
        raise CheckFailed(problem)


def _logits(model, x, label: str, expected: tuple[int, int], *, hidden_size: int, num_layers: int,
            batch_first: bool, name: str = "", embedding: bool = False, sizes: dict | None = None) -> torch.Tensor:
    """The logits of ``model(x)``; a crash is reported with what is wrong in the model's structure, if anything."""
    try:
        out = call(model, x, name=label)
    except CheckFailed as exc:
        if sizes is None or "not implemented" in str(exc):
            raise
        layers, extra = model_layers(model)
        problem = structure_problem(name, layers, extra, embedding=embedding, sizes=sizes)
        raise CheckFailed(f"{exc} ({problem})" if problem else str(exc)) from None
    if isinstance(out, (tuple, list)):
        raise CheckFailed(returned_message(label, f"a {type(out).__name__} of {len(out)} items"))
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(returned_message(label, f"a {type(out).__name__}"))
    if out.dtype != torch.float32:
        raise CheckFailed(dtype_message(label, str(out.dtype).removeprefix("torch.")))
    batch = x.shape[0] if batch_first else x.shape[1]
    problem = logits_shape_problem(label, tuple(out.shape), expected, hidden_size=hidden_size, num_layers=num_layers,
                                   batch=batch, batch_first=batch_first)
    if problem:
        raise CheckFailed(problem)
    return out


def _behaviour_problem(model: nn.Module, x: torch.Tensor, perturbed: torch.Tensor, name: str,
                       batch_first: bool, embedding: bool) -> str | None:
    """Probe what the model does with ``x`` (a batch of at least two sequences), without a reference model.

    * the hidden state carries the past: changing only the first step changes later logits;
    * sequences don't mix and rows are in the contract's order: a sequence run alone gives its rows;
    * the head comes last: with its weight zeroed and a bias set, every row of logits is that bias.
    """
    seq_len, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])

    def row(b: int, t: int, order_batch_first: bool) -> int:
        return b * seq_len + t if order_batch_first else t * batch + b

    rnn_batch_first = _typed(model, nn.RNN)[0].batch_first
    with torch.no_grad(), quiet():
        base = model(x)
        changed = model(perturbed)
        alone = model(x[1:2] if batch_first else x[:, 1:2])
    later = [row(b, t, batch_first) for b in range(batch) for t in range(1, seq_len)]
    if torch.allclose(base[later], changed[later]):
        return batch_first_message(name, embedding) if rnn_batch_first != batch_first else reset_message(name)
    rows = [row(1, t, batch_first) for t in range(seq_len)]
    if tuple(alone.shape) != tuple(base[rows].shape) or not torch.allclose(alone, base[rows], atol=1e-5):
        if rnn_batch_first != batch_first:
            return batch_first_message(name, embedding)
        swapped = [row(1, t, not batch_first) for t in range(seq_len)]
        if tuple(alone.shape) == tuple(base[swapped].shape) and torch.allclose(alone, base[swapped], atol=1e-5):
            return order_message(name, batch_first)
        order = "b*seq_len + t" if batch_first else "t*batch + b"
        return (f"{name}: the logits of one sequence run alone differ from its rows in the batch. Rows must "
                f"be in the order {order} (x[t, b]: code indices from 0), and sequences must not mix.")
    probe = copy.deepcopy(model)
    head = _typed(probe, nn.Linear)[0]
    if head.bias is None:
        return f"{name}'s nn.Linear head has no bias; keep the default bias=True."
    bias = torch.tensor([3.0, -3.0, 2.0, -2.0, 1.0, -1.0])[: head.out_features]
    with torch.no_grad(), quiet():
        head.weight.zero_()
        head.bias.copy_(bias)
        out = probe(x)
    target = bias.expand(base.shape[0], -1)
    if tuple(out.shape) == tuple(target.shape) and torch.allclose(out, target, atol=1e-6):
        return None
    if tuple(out.shape) == tuple(target.shape) and torch.allclose(out, torch.softmax(target, dim=1), atol=1e-6):
        return softmax_message(name)
    if tuple(out.shape) == tuple(base.shape) and torch.allclose(out, base):
        return head_unused_message(name)
    if float(out.abs().max()) <= 1.0 + 1e-6:
        return squashed_message(name, float(bias.abs().max()))
    return (f"{name}: the logits must be the head's output, computed last: "
            f"with the Linear's weight set to 0 and its bias to {bias.tolist()}, "
            f"every row should be {bias.tolist()} (logits are not limited to [-1, 1]). "
            "Return self.fc(rnn_output), flattened, with nothing after it.")


def _require_behaviour(model, x, perturbed, name: str, batch_first: bool, embedding: bool) -> None:
    problem = _behaviour_problem(model, x, perturbed, name, batch_first, embedding)
    if problem:
        raise CheckFailed(problem)


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
    """"hello" as Liu Er's notes type it: (seq_len=5, batch=1, input_size=4)."""
    return torch.tensor([[[0.0, 1, 0, 0]], [[1, 0, 0, 0]], [[0, 0, 1, 0]], [[0, 0, 1, 0]], [[0, 0, 0, 1]]])


def _one_hot_batch(seed: int, seq_len: int, batch: int, input_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random one-hot sequences (seq_len, batch, input_size), and the same with the first step changed."""
    gen = torch.Generator().manual_seed(seed)
    x = F.one_hot(torch.randint(0, input_size, (seq_len, batch), generator=gen), input_size).float()
    perturbed = x.clone()
    perturbed[0] = perturbed[0].roll(1, dims=-1)
    return x, perturbed


def _one_hot_rnn_model_checks(model: nn.Module, sizes: dict, seq_len: int, batch: int) -> None:
    """Structure, logits shape and behaviour of a OneHotRNN built with ``sizes``."""
    _require_structure(model, "OneHotRNN", embedding=False, sizes=sizes)
    x, perturbed = _one_hot_batch(1, seq_len, batch, sizes["input_size"])
    _logits(model, x, f"model(x) with x of shape {tuple(x.shape)}", (seq_len * batch, sizes["num_class"]),
            hidden_size=sizes["hidden_size"], num_layers=1, batch_first=False)
    _require_behaviour(model, x, perturbed, "OneHotRNN", batch_first=False, embedding=False)


@keeps_rng
def check_one_hot_rnn(OneHotRNN) -> None:
    """OneHotRNN(input_size=5, hidden_size=8, num_class=3) on x of shape (seq_len=4, batch=2, input_size=5):
    its nn.RNN and nn.Linear sized from the arguments, logits (seq_len*batch, num_class), a Linear head computed
    last, a hidden state carried over time, rows in the order t*batch + b. All sizes differ from each other."""
    sizes = {"input_size": 5, "hidden_size": 8, "num_class": 3}
    model = _build(OneHotRNN, (5, 8, 3), "OneHotRNN(input_size=5, hidden_size=8, num_class=3)")
    _one_hot_rnn_model_checks(model, sizes, seq_len=4, batch=2)
    print("OneHotRNN: visible checks passed (sizes, shapes, head, hidden state carried over time, row order).")


@keeps_rng
def check_one_hot_rnn_training(OneHotRNN) -> None:
    """Retrain OneHotRNN(4, 8, 4) from seed 0 on hello -> ohlol; the mean loss must end below THRESHOLD.

    The model is first checked as in check_one_hot_rnn (a batch of 3 random sequences of 5 steps),
    so a structural fault is named as such rather than as a high loss.
    """
    sizes = {"input_size": 4, "hidden_size": 8, "num_class": 4}
    model = _build(OneHotRNN, (4, 8, 4), "OneHotRNN(4, 8, 4)")
    _one_hot_rnn_model_checks(model, sizes, seq_len=5, batch=3)
    if grader_trains("OneHotRNN"):
        return
    losses = _train(model, _hello_one_hot(), torch.tensor(OHLOL), seed=0)
    _check_learns(losses, "OneHotRNN")
    print(f"OneHotRNN: visible training check passed "
          f"(below {THRESHOLD}; the notes' model cannot go below {TANH_FLOOR:.3f}).")


# --------------------------------------------------------------------------- EmbeddingRNN


def _index_batch(seed: int, batch: int, seq_len: int, num_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random indices (batch, seq_len) holding the largest index, and the same with the first step changed."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, num_class, (batch, seq_len), generator=gen)
    x[0, -1] = num_class - 1
    perturbed = x.clone()
    perturbed[:, 0] = (perturbed[:, 0] + 1) % num_class
    return x, perturbed


def _embedding_sizes(num_class: int, embedding_size: int, hidden_size: int, num_layers: int) -> dict:
    return {"num_class": num_class, "embedding_size": embedding_size, "hidden_size": hidden_size,
            "num_layers": num_layers}


def _embedding_logits(model, sizes: dict, x: torch.Tensor, label: str) -> torch.Tensor:
    return _logits(model, x, label, (x.numel(), sizes["num_class"]), hidden_size=sizes["hidden_size"],
                   num_layers=sizes["num_layers"], batch_first=True, name="EmbeddingRNN", embedding=True, sizes=sizes)


def _embedding_model_checks(model: nn.Module, sizes: dict, batch: int, seq_len: int) -> None:
    _require_structure(model, "EmbeddingRNN", embedding=True, sizes=sizes)
    x, perturbed = _index_batch(3, batch, seq_len, sizes["num_class"])
    _embedding_logits(model, sizes, x, f"model(x) with x of shape {tuple(x.shape)}")
    _require_behaviour(model, x, perturbed, "EmbeddingRNN", batch_first=True, embedding=True)


@keeps_rng
def check_embedding_rnn_shape(EmbeddingRNN) -> None:
    """EmbeddingRNN(4, 10, 8, 2) on (1, 5) and (3, 7), EmbeddingRNN(4, 3, 5, 1) on (2, 6).

    The logits must have shape (batch*seq_len, num_class). In each case every size differs from the others.
    """
    sizes = _embedding_sizes(4, 10, 8, 2)
    model = _build(EmbeddingRNN, (4, 10, 8, 2),
                   "EmbeddingRNN(num_class=4, embedding_size=10, hidden_size=8, num_layers=2)")
    _embedding_logits(model, sizes, torch.tensor([HELLO]), "model(x) with x = torch.tensor([[1, 0, 2, 2, 3]])")
    x, _ = _index_batch(2, 3, 7, 4)
    _embedding_logits(model, sizes, x, "model(x) with x of shape (3, 7)")
    small_sizes = _embedding_sizes(4, 3, 5, 1)
    small = _build(EmbeddingRNN, (4, 3, 5, 1),
                   "EmbeddingRNN(num_class=4, embedding_size=3, hidden_size=5, num_layers=1)")
    x, _ = _index_batch(4, 2, 6, 4)
    _embedding_logits(small, small_sizes, x, "EmbeddingRNN(4, 3, 5, 1) on x of shape (2, 6)")
    print("EmbeddingRNN: visible shape checks passed.")


@keeps_rng
def check_embedding_rnn_structure(EmbeddingRNN) -> None:
    """EmbeddingRNN(4, 10, 8, 2) on x of shape (3, 5): a registered nn.Embedding(num_class, embedding_size), an
    nn.RNN and a Linear head sized from the arguments, the head computed last, the hidden state carried over
    time, rows in the order b*seq_len + t."""
    sizes = _embedding_sizes(4, 10, 8, 2)
    model = _build(EmbeddingRNN, (4, 10, 8, 2), "EmbeddingRNN(4, 10, 8, 2)")
    _embedding_model_checks(model, sizes, batch=3, seq_len=5)
    print("EmbeddingRNN: visible structure checks passed "
          "(embedding registered, sizes, head last, hidden state carried, row order).")


@keeps_rng
def check_embedding_rnn_training(EmbeddingRNN) -> None:
    """Retrain EmbeddingRNN(4, 10, 8, 2) from seed 0 on hello -> ohlol: the loss must end below
    THRESHOLD and the embedding's weight must change (it is trained with the rest).

    The model is first checked as in check_embedding_rnn_structure, so a structural fault is named
    as such rather than as a high loss.
    """
    sizes = _embedding_sizes(4, 10, 8, 2)
    model = _build(EmbeddingRNN, (4, 10, 8, 2), "EmbeddingRNN(4, 10, 8, 2)")
    _embedding_model_checks(model, sizes, batch=3, seq_len=5)
    if grader_trains("EmbeddingRNN"):
        return
    emb = _typed(model, nn.Embedding)[0]
    x = torch.tensor([HELLO])
    _reinit(model, 0)
    before = emb.weight.detach().clone()
    losses = _train(model, x, torch.tensor(OHLOL), seed=0)
    _check_learns(losses, "EmbeddingRNN")
    change = (emb.weight.detach() - before).abs().max().item()
    if change <= MIN_EMBEDDING_CHANGE:
        frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
        raise CheckFailed(frozen_message("EmbeddingRNN", change, frozen))
    print(f"EmbeddingRNN: visible training check passed; the embedding's weight moved by up to {change:.3f}.")
