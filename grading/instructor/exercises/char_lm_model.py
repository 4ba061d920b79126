"""Hidden checks of ``poems.ipynb``'s model parts: ``CharLM`` (``char_lm``) and ``train_tbptt`` (``train_tbptt``).

``CharLM`` is judged by what it computes. The probe finds the model's ``nn.Embedding``, ``nn.LSTM`` and
``nn.Linear`` by type (any attribute names), loads the grader's weights into them and runs it on a whole sequence
and on the same sequence in two halves, the state carried; the judge rebuilds Embedding -> LSTM(batch_first) ->
Linear from genuine torch modules and compares. The training case re-initialises the model from the grader's seed,
trains it with the course's recipe (:mod:`grading.student.char_lm`: Adam, truncated BPTT over d2l's sequential
windows, clipping) on the training poems, and returns the trained weights (float32 bytes, base64); the judge loads
them into genuine modules and computes the validation perplexity itself, against :data:`PERPLEXITY_RATIO` times the
unigram model's perplexity (the calibration: :mod:`grading.instructor.calibration.char_lm`).

``train_tbptt`` is judged on a small LSTM language model the probe builds (:class:`RecordingLM`), which records
every call: the state it received (None, a tensor still attached to the graph, the state the previous window
returned). The judge retrains the same model in its own process with the contract's recipe and compares the
returned losses and the final parameters; a mismatch is named by re-running the known wrong recipes (no clipping,
clipping per parameter, the summed loss, SGD) and finding the one that gives the student's numbers.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
from typing import Any

import torch

from grading.student.char_lm import (
    BATCH_SIZE,
    CLIP,
    DATA_FILE,
    EMBEDDING_SIZE,
    EPOCHS,
    HIDDEN_SIZE,
    LR,
    NUM_LAYERS,
    PERPLEXITY_RATIO,
    SEQ_LEN,
    UNKNOWN,
    poems_of,
    probabilities,
    split_poems,
    state_problem,
    unigram_perplexity,
)

from .base import Case, Exercise, ProbeError, max_diff, pack, unpack
from .data import find

# Genuine classes and functions, captured before any student code runs.
_MODULE, _EMBEDDING, _LSTM, _LINEAR = torch.nn.Module, torch.nn.Embedding, torch.nn.LSTM, torch.nn.Linear
_ADAM, _SGD = torch.optim.Adam, torch.optim.SGD
_CROSS_ENTROPY = torch.nn.functional.cross_entropy
_CLIP = torch.nn.utils.clip_grad_norm_
_NO_GRAD, _ENABLE_GRAD = torch.no_grad, torch.enable_grad
_FORK_RNG, _MANUAL_SEED = torch.random.fork_rng, torch.manual_seed
_TENSOR, _LONG, _FLOAT32 = torch.tensor, torch.long, torch.float32
_FROMBUFFER, _STACK, _EQUAL = torch.frombuffer, torch.stack, torch.equal
_B64E, _B64D = base64.b64encode, base64.b64decode

LAYERS = (("Embedding", _EMBEDDING), ("LSTM", _LSTM), ("Linear", _LINEAR))
PROBABILITIES = ("CharLM returns probabilities: return the Linear layer's raw scores (logits); cross_entropy and "
                 "softmax(logits / T) apply the softmax themselves.")
MAX_WEIGHTS = 2_000_000  # floats one trained model may send back (the course's model has 471,230)
VALUE_TOL = 1e-9


# --------------------------------------------------------------------------- the corpus (the grader's side)
def vocabulary(text: str) -> tuple[dict[str, int], list[str]]:
    """The contract's vocabulary of ``text`` (the answer of ``build_vocab``: instructor-only)."""
    itos = [UNKNOWN, *sorted(set(text))]
    return {ch: i for i, ch in enumerate(itos)}, itos


_CORPUS: dict[bytes, dict] = {}


def corpus() -> dict:
    """The training and validation poems as ids of the contract's vocabulary, and the unigram baseline.

    From the assignment's data file as :func:`grading.instructor.exercises.data.find` locates it (computed once
    per file content).
    """
    raw = find("char_lm", DATA_FILE).read_bytes()
    key = hashlib.sha256(raw).digest()
    if key not in _CORPUS:
        train, val = split_poems(poems_of(raw.decode("utf-8")))
        stoi, itos = vocabulary(train)
        train_ids = [stoi[ch] for ch in train]
        val_ids = [stoi.get(ch, 0) for ch in val]
        _CORPUS[key] = {"vocab_size": len(itos), "train": train_ids, "val": val_ids,
                        "baseline": unigram_perplexity(train_ids, val_ids, len(itos))}
    return _CORPUS[key]


def windows(ids, batch_size: int, seq_len: int):
    """d2l's sequential partitioning (the contract of ``make_batches``), for the grader's own training loop."""
    ids = ids if isinstance(ids, torch.Tensor) else _TENSOR(ids, dtype=_LONG)
    n = (len(ids) - 1) // batch_size
    xs, ys = ids[:n * batch_size].view(batch_size, n), ids[1:n * batch_size + 1].view(batch_size, n)
    k = n // seq_len
    return (_STACK([xs[:, i * seq_len:(i + 1) * seq_len] for i in range(k)]),
            _STACK([ys[:, i * seq_len:(i + 1) * seq_len] for i in range(k)]))


# --------------------------------------------------------------------------- models and plain data
def find_lm_layers(model) -> tuple[dict[str, list], list[str]]:
    """The model's Embedding, LSTM and Linear modules by type, and the parameters none of them owns."""
    found: dict[str, list] = {label: [] for label, _ in LAYERS}
    owned = set()
    for _, module in model.named_modules():
        for label, cls in LAYERS:
            if isinstance(module, cls):
                found[label].append(module)
                owned.update(id(p) for p in module.parameters())
    return found, [name for name, p in model.named_parameters() if id(p) not in owned]


def layer_config(label: str, module) -> dict:
    if label == "Embedding":
        return {"num_embeddings": module.num_embeddings, "embedding_dim": module.embedding_dim}
    if label == "LSTM":
        return {"input_size": module.input_size, "hidden_size": module.hidden_size, "num_layers": module.num_layers,
                "batch_first": bool(module.batch_first), "bidirectional": bool(module.bidirectional),
                "proj_size": int(module.proj_size), "bias": bool(module.bias)}
    return {"in_features": module.in_features, "out_features": module.out_features,
            "bias": module.bias is not None}


def expected_config(vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int) -> dict:
    return {"Embedding": {"num_embeddings": vocab_size, "embedding_dim": embedding_size},
            "LSTM": {"input_size": embedding_size, "hidden_size": hidden_size, "num_layers": num_layers,
                     "batch_first": True, "bidirectional": False, "proj_size": 0, "bias": True},
            "Linear": {"in_features": hidden_size, "out_features": vocab_size, "bias": True}}


def reference_model(sizes: dict):
    """Embedding -> LSTM -> Linear from genuine modules, in float64; ``sizes`` as :func:`expected_config` takes."""
    emb = _EMBEDDING(sizes["vocab_size"], sizes["embedding_size"]).double()
    lstm = _LSTM(sizes["embedding_size"], sizes["hidden_size"], sizes["num_layers"], batch_first=True).double()
    head = _LINEAR(sizes["hidden_size"], sizes["vocab_size"]).double()
    return {"Embedding": emb, "LSTM": lstm, "Linear": head}


def run_reference(layers: dict, x, state=None):
    """(logits, (h, c)) of the reference layers on ``x`` (batch, seq_len)."""
    with _NO_GRAD():
        out, new_state = layers["LSTM"](layers["Embedding"](x), state)
        return layers["Linear"](out), new_state


def random_weights(layers: dict, gen: torch.Generator) -> dict:
    """label -> {parameter name: tensor}: standard normal embeddings, uniform(-0.5, 0.5) elsewhere (float64)."""
    out = {}
    for label, module in layers.items():
        out[label] = {}
        for name, p in module.state_dict().items():
            if label == "Embedding":
                out[label][name] = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            else:
                out[label][name] = torch.rand(p.shape, generator=gen, dtype=torch.float64) - 0.5
    return out


def load_weights(found: dict[str, list], weights: dict) -> None:
    """Copy ``weights`` (label -> {name: tensor}) into the first module of each label (in place, no autograd)."""
    with _NO_GRAD():
        for label, params in weights.items():
            state = found[label][0].state_dict()
            for name, value in params.items():
                state[name].copy_(value)


def to_bytes(t: torch.Tensor) -> dict:
    """A float32 tensor as base64 bytes (a trained model is too large for pack's lists)."""
    flat = t.detach().to(_FLOAT32).contiguous().reshape(-1)
    return {"b64": _B64E(flat.numpy().tobytes()).decode("ascii"), "shape": list(t.shape)}


def from_bytes(value: Any) -> torch.Tensor:
    """Inverse of :func:`to_bytes` for hostile data: ValueError unless the shape and the byte count agree."""
    if not isinstance(value, dict) or not isinstance(value.get("b64"), str) or not isinstance(value.get("shape"), list):
        raise ValueError("not a packed tensor")
    shape = value["shape"]
    if len(shape) > 4 or not all(isinstance(d, int) and 0 <= d <= MAX_WEIGHTS for d in shape):
        raise ValueError("bad shape")
    raw = _B64D(value["b64"].encode("ascii"), validate=True)
    if len(raw) != 4 * math.prod(shape) or math.prod(shape) > MAX_WEIGHTS:
        raise ValueError("wrong size")
    return _FROMBUFFER(bytearray(raw), dtype=_FLOAT32).reshape(shape).double()


def build(cls, sizes: dict, seed: int):
    """The student's model, built without touching the global random state, checked to be an nn.Module."""
    with _FORK_RNG(devices=[]):
        _MANUAL_SEED(seed)
        model = cls(sizes["vocab_size"], sizes["embedding_size"], sizes["hidden_size"], sizes["num_layers"])
    if not isinstance(model, _MODULE):
        raise ProbeError(f"must be a subclass of nn.Module; an instance is a {type(model).__name__}")
    return model


def describe(model) -> dict:
    found, extra = find_lm_layers(model)
    return {"layers": {label: [layer_config(label, m) for m in mods] for label, mods in found.items()},
            "extra": extra}


def structure_problem(name: str, described: Any, sizes: dict) -> str | None:
    """What is missing, extra or configured otherwise than the contract says (None: the contract's layers)."""
    if not isinstance(described, dict) or not isinstance(described.get("layers"), dict):
        return f"{name}: the check could not read the model's layers."
    expected = expected_config(sizes["vocab_size"], sizes["embedding_size"], sizes["hidden_size"], sizes["num_layers"])
    for label, config in expected.items():
        found = described["layers"].get(label)
        if not isinstance(found, list) or len(found) != 1:
            count = len(found) if isinstance(found, list) else 0
            return (f"{name} must have exactly one nn.{label} (found {count}): the contract is "
                    "Embedding -> nn.LSTM(batch_first=True) -> Linear.")
        if found[0] != config:
            wrong = {k: v for k, v in found[0].items() if config.get(k) != v}
            hint = ""
            if "batch_first" in wrong:
                hint = (" x is (batch, seq_len): without batch_first=True the LSTM reads the batch as time and the "
                        "characters of one line as separate sequences.")
            return f"{name}'s nn.{label} is configured {wrong}, expected {config}.{hint}"
    if described.get("extra"):
        return f"{name} has parameters outside its Embedding, LSTM and Linear: {described['extra'][:3]}."
    return None


class _GuardedExercise(Exercise):
    """An exercise whose judge reads hostile data: anything it cannot read fails the case, never the grader."""

    def judge(self, case: Case, observed: Any) -> str | None:
        try:
            return self._judge(case, observed)
        except Exception as exc:  # noqa: BLE001 - unreadable data is a failure, never a crash of the grader
            return f"{self.name}: the check could not read the results ({type(exc).__name__})."

    def _judge(self, case: Case, observed: Any) -> str | None:
        raise NotImplementedError


# --------------------------------------------------------------------------- CharLM
class CharLMExercise(_GuardedExercise):
    grade_id = "char_lm"
    name = "CharLM"
    assignment = "char_lm"
    notebook = "poems"
    test_ids = ("test_char_lm_shapes", "test_char_lm_values", "test_char_lm_training")
    verifier_only = ("test_char_lm_training",)

    SHAPES = [(11, 3, 5, 1, 2, 7), (7, 4, 6, 2, 3, 5), (13, 2, 3, 1, 1, 1)]  # vocab, emb, hidden, layers, batch, seq

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        extra = (rng.randint(5, 15), rng.randint(2, 6), rng.randint(2, 6), rng.randint(1, 2), rng.randint(1, 4),
                 rng.randint(2, 8))
        out = []
        for v, e, h, layers, batch, seq in [*self.SHAPES, extra]:
            sizes = {"vocab_size": v, "embedding_size": e, "hidden_size": h, "num_layers": layers}
            x = torch.randint(0, v, (batch, seq), generator=gen)
            out.append(Case(self.test_ids[0], "shapes", {"sizes": sizes, "x": pack(x)}))
        for v, e, h, layers, batch, seq in [*self.SHAPES, extra]:
            sizes = {"vocab_size": v, "embedding_size": e, "hidden_size": h, "num_layers": layers}
            weights = random_weights(reference_model(sizes), gen)
            x = torch.randint(0, v, (batch, max(seq, 2)), generator=gen)
            out.append(Case(self.test_ids[1], "values", {"sizes": sizes, "x": pack(x), "split": max(seq, 2) // 2,
                                                          "weights": pack(weights)}))
        data = corpus()
        sizes = {"vocab_size": data["vocab_size"], "embedding_size": EMBEDDING_SIZE, "hidden_size": HIDDEN_SIZE,
                 "num_layers": NUM_LAYERS}
        out.append(Case(self.test_ids[2], "training", {"sizes": sizes, "init_seed": rng.randrange(2**31),
                                                        "train": data["train"], "val": data["val"]}))
        return out

    # -- probe -------------------------------------------------------------------------------
    def probe(self, cls: Any, case: Case) -> Any:
        d = case.data
        sizes = d["sizes"]
        model = build(cls, sizes, d.get("init_seed", 0))
        described = describe(model)
        if case.label == "training":
            return {"model": described, **self._train(model, d)}
        x = unpack(d["x"])
        if case.label == "shapes":
            out = _call(model, x, None)
            out.pop("_state", None)
            return {"model": described, **out}
        found, _ = find_lm_layers(model)
        if any(len(found[label]) != 1 for label, _ in LAYERS):
            return {"model": described}
        model.double()
        load_weights(found, unpack(d["weights"]))
        whole = _call(model, x, None)
        k = d["split"]
        first = _call(model, x[:, :k], None)
        state = first.pop("_state", None)
        second = _call(model, x[:, k:], state) if state is not None else {"error": "no state to carry"}
        whole.pop("_state", None)
        second.pop("_state", None)
        return {"model": described, "whole": whole, "first": first, "second": second}

    def _train(self, model, d: dict) -> dict:
        found, _ = find_lm_layers(model)
        if any(len(found[label]) != 1 for label, _ in LAYERS):
            return {}
        with _FORK_RNG(devices=[]):
            _MANUAL_SEED(d["init_seed"])
            for label, _ in LAYERS:
                found[label][0].reset_parameters()
        inputs, targets = windows(d["train"], BATCH_SIZE, SEQ_LEN)
        optimizer = _ADAM(model.parameters(), lr=LR)
        with _ENABLE_GRAD():
            for _ in range(EPOCHS):
                state = None
                for x, y in zip(inputs, targets, strict=True):
                    if state is not None:
                        state = tuple(s.detach() for s in state)
                    logits, state = model(x, state)
                    loss = _CROSS_ENTROPY(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
                    optimizer.zero_grad()
                    loss.backward()
                    _CLIP(model.parameters(), CLIP)
                    optimizer.step()
        val = _TENSOR(d["val"], dtype=_LONG)
        with _NO_GRAD():
            logits, _ = model(val[:-1].unsqueeze(0))
            own = float(_CROSS_ENTROPY(logits[0], val[1:]))
        return {"own_loss": own, "probabilities": probabilities(logits),
                "weights": {label: {k: to_bytes(v) for k, v in found[label][0].state_dict().items()}
                            for label, _ in LAYERS}}

    # -- judge -------------------------------------------------------------------------------
    def _judge(self, case: Case, observed: dict) -> str | None:
        d = case.data
        sizes = d["sizes"]
        problem = structure_problem(self.name, observed.get("model"), sizes)
        if problem:
            return problem
        if case.label == "shapes":
            return _output_problem(self.name, observed, unpack(d["x"]).shape, sizes)
        if case.label == "training":
            return self._judge_training(d, observed)
        x = unpack(d["x"])
        for part in ("whole", "first", "second"):
            problem = _output_problem(self.name, observed.get(part, {}), None, sizes)
            if problem:
                return problem
        layers = reference_model(sizes)
        for label, params in unpack(d["weights"]).items():
            layers[label].load_state_dict(params)
        logits, (h, c) = run_reference(layers, x)
        got = unpack(observed["whole"]["logits"])
        if probabilities(got):
            return PROBABILITIES
        if max_diff(got, logits) > VALUE_TOL:
            return (f"{self.name}'s logits differ from Embedding -> LSTM -> Linear on the same weights (largest "
                    f"difference {max_diff(got, logits):.3g}): the forward pass must apply the three layers in turn.")
        if max_diff(unpack(observed["whole"]["h"]), h) > VALUE_TOL or \
                max_diff(unpack(observed["whole"]["c"]), c) > VALUE_TOL:
            return f"{self.name} must return the LSTM's own state (h, c) as the second value."
        k = d["split"]
        _, state = run_reference(layers, x[:, :k])
        continued, _ = run_reference(layers, x[:, k:], state)
        if max_diff(unpack(observed["second"]["logits"]), continued) > VALUE_TOL:
            return (f"{self.name} ignores the state it is given: forward(x2, state) after forward(x1) must continue "
                    "the sequence, so pass state to the LSTM (sampling and truncated BPTT rely on it).")
        return None

    def _judge_training(self, d: dict, observed: dict) -> str | None:
        sizes = d["sizes"]
        if "weights" not in observed:
            return f"{self.name} could not be trained: {observed.get('error', 'no weights came back')}."
        layers = reference_model(sizes)
        for label, module in layers.items():
            params = {k: from_bytes(v) for k, v in observed["weights"][label].items()}
            module.load_state_dict(params)
        val = _TENSOR(d["val"], dtype=_LONG)
        logits, _ = run_reference(layers, val[:-1].unsqueeze(0))
        loss = float(_CROSS_ENTROPY(logits[0], val[1:]))
        if observed.get("probabilities") is True:
            return PROBABILITIES
        own = observed.get("own_loss")
        if not isinstance(own, float) or not math.isfinite(own) or abs(own - loss) > 1e-3 * max(1.0, abs(loss)):
            return (f"{self.name}'s forward pass gives another validation loss ({own}) than Embedding -> LSTM -> "
                    f"Linear with its own trained weights ({loss:.4f}).")
        baseline = unigram_perplexity(d["train"], d["val"], sizes["vocab_size"])
        ppl = math.exp(loss)
        if not ppl < PERPLEXITY_RATIO * baseline:
            return (f"{self.name} trained with the course's recipe reaches a validation perplexity of {ppl:.0f}; it "
                    f"must be below {PERPLEXITY_RATIO} x {baseline:.0f} (the unigram model's) = "
                    f"{PERPLEXITY_RATIO * baseline:.0f}, which needs a model that uses the context.")
        return None


def _call(model, x, state) -> dict:
    """Run the model; plain data about (logits, (h, c)) or what it returned instead. ``_state`` is kept for a
    second call and removed before the data leaves the probe."""
    try:
        out = model(x, state)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - a crash is a finding
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return {"returned": type(out).__name__}
    logits, new_state = out
    if not isinstance(logits, torch.Tensor) or not isinstance(new_state, (tuple, list)) or len(new_state) != 2 \
            or not all(isinstance(s, torch.Tensor) for s in new_state):
        return {"returned": f"({type(logits).__name__}, {type(new_state).__name__})"}
    h, c = new_state
    return {"logits": pack(logits.detach().clone()), "h": pack(h.detach().clone()), "c": pack(c.detach().clone()),
            "_state": (h, c)}


def _output_problem(name: str, observed: dict, x_shape, sizes: dict) -> str | None:
    if not isinstance(observed, dict):
        return f"{name}: the check could not read the output."
    if "error" in observed:
        return f"{name}(x, state) raised {observed['error']}"
    if "returned" in observed:
        return f"{name}.forward must return (logits, (h, c)); it returned {observed['returned']}."
    if x_shape is None:
        return None
    batch, seq = x_shape
    v, h, layers = sizes["vocab_size"], sizes["hidden_size"], sizes["num_layers"]
    shape = observed["logits"]["shape"]
    if shape != [batch, seq, v]:
        return f"{name}'s logits have shape {tuple(shape)}, expected (batch={batch}, seq_len={seq}, vocab_size={v})."
    for part in ("h", "c"):
        got = observed[part]["shape"]
        if got != [layers, batch, h]:
            return (f"{name}'s state {part} has shape {tuple(got)}, expected (num_layers={layers}, batch={batch}, "
                    f"hidden_size={h}): return the LSTM's (h, c) as they are (even with batch_first=True).")
    return None


# --------------------------------------------------------------------------- train_tbptt
class RecordingLM(torch.nn.Module):
    """A small Embedding -> LSTM -> Linear model that records every call: which window, and the state it got."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int):
        super().__init__()
        self.emb = _EMBEDDING(vocab_size, embedding_size)
        self.lstm = _LSTM(embedding_size, hidden_size, batch_first=True)
        self.head = _LINEAR(hidden_size, vocab_size)
        self.calls: list[dict] = []
        self._last = None

    def forward(self, x, state=None):
        record = {"none": state is None}
        if state is not None:
            record["attached"] = any(getattr(s, "grad_fn", None) is not None for s in state)
            record["continues"] = self._last is not None and all(
                isinstance(s, torch.Tensor) and _EQUAL(s.detach(), last)
                for s, last in zip(state, self._last, strict=False))
        self.calls.append(record)
        out, new_state = self.lstm(self.emb(x), state)
        self._last = tuple(s.detach().clone() for s in new_state)
        return self.head(out), new_state


def tbptt_reference(weights: dict, d: dict, variant: str = "contract") -> tuple[list[float], dict]:
    """Train a RecordingLM from ``weights`` with the contract's recipe or a known wrong one; (losses, state_dict)."""
    model = RecordingLM(d["vocab_size"], d["embedding_size"], d["hidden_size"]).double()
    model.load_state_dict(weights)
    inputs, targets = unpack(d["inputs"]), unpack(d["targets"])
    optimizer = (_SGD if variant == "sgd" else _ADAM)(model.parameters(), lr=d["lr"])
    losses = []
    with _ENABLE_GRAD():
        for _ in range(d["epochs"]):
            state, total = None, 0.0
            for x, y in zip(inputs, targets, strict=True):
                if state is not None:
                    state = tuple(s.detach() for s in state)
                logits, state = model(x, state)
                reduction = "sum" if variant == "summed_loss" else "mean"
                loss = _CROSS_ENTROPY(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction=reduction)
                optimizer.zero_grad()
                loss.backward()
                if variant == "per_parameter_clip":
                    for p in model.parameters():
                        _CLIP([p], d["clip"])
                elif variant != "no_clip":
                    _CLIP(model.parameters(), d["clip"])
                optimizer.step()
                total += loss.item()
            losses.append(total / len(inputs))
    return losses, model.state_dict()


TBPTT_BUGS = {
    "no_clip": "the gradients are not clipped: call torch.nn.utils.clip_grad_norm_(model.parameters(), clip) "
               "after backward() and before step()",
    "per_parameter_clip": "each parameter's gradient is clipped on its own: clip the global norm of all of them at "
                          "once, clip_grad_norm_(model.parameters(), clip)",
    "summed_loss": "the loss is summed over the window: take the mean cross-entropy of the window",
    "sgd": "the optimiser is SGD: the contract is Adam(model.parameters(), lr)",
}


class TrainTbpttExercise(_GuardedExercise):
    grade_id = "train_tbptt"
    name = "train_tbptt"
    assignment = "char_lm"
    notebook = "poems"
    test_ids = ("test_train_tbptt_state", "test_train_tbptt_steps")

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        out = []
        for test_id in self.test_ids:
            v, e, h = rng.randint(5, 9), rng.randint(2, 4), rng.randint(3, 6)
            num_windows, batch, seq = rng.randint(3, 4), rng.randint(2, 3), rng.randint(3, 5)
            model = RecordingLM(v, e, h).double()
            weights = {k: torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5
                       for k, p in model.state_dict().items()}
            inputs = torch.randint(0, v, (num_windows, batch, seq), generator=gen)
            targets = torch.randint(0, v, (num_windows, batch, seq), generator=gen)
            out.append(Case(test_id, "training", {
                "vocab_size": v, "embedding_size": e, "hidden_size": h, "weights": pack(weights),
                "inputs": pack(inputs), "targets": pack(targets), "epochs": 2, "lr": 0.05, "clip": 0.05}))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        d = case.data
        model = RecordingLM(d["vocab_size"], d["embedding_size"], d["hidden_size"]).double()
        model.load_state_dict(unpack(d["weights"]))
        out: dict = {}
        try:
            losses = fn(model, unpack(d["inputs"]), unpack(d["targets"]), d["epochs"], d["lr"], d["clip"])
            out["losses"] = [float(x) for x in losses] if isinstance(losses, (list, tuple)) else repr(type(losses))
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - a crash is a finding; the calls so far still tell why
            out["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        out["calls"] = model.calls[:1000]
        out["params"] = pack({k: v.detach().clone() for k, v in model.state_dict().items()})
        return out

    def _judge(self, case: Case, observed: dict) -> str | None:
        d = case.data
        windows_per_epoch = d["inputs"]["shape"][0]
        problem = state_problem(observed.get("calls"), windows_per_epoch, d["epochs"])
        if problem:
            return f"{self.name}: {problem}"
        if "error" in observed:
            return f"{self.name} raised {observed['error']}"
        if case.test_id == self.test_ids[0]:
            return None
        losses = observed.get("losses")
        if not isinstance(losses, list) or len(losses) != d["epochs"]:
            return (f"{self.name} must return a list of {d['epochs']} floats, one mean window loss per epoch; "
                    f"it returned {losses!r:.80}.")
        weights = unpack(d["weights"])
        expected, params = tbptt_reference(weights, d)
        got = unpack(observed["params"])
        if _close(got, params) and all(abs(a - b) <= 1e-8 for a, b in zip(losses, expected, strict=True)):
            return None
        if _close(got, params):
            return (f"{self.name} trains as the contract says but returns {losses}, expected the mean window loss of "
                    f"each epoch {[round(x, 6) for x in expected]}.")
        for variant, message in TBPTT_BUGS.items():
            if _close(got, tbptt_reference(weights, d, variant)[1]):
                return f"{self.name}: {message}."
        return (f"{self.name}'s parameters after training differ from the contract's recipe (Adam(lr), state carried "
                "and detached, mean cross-entropy per window, clip_grad_norm_ before each step).")


def _close(got: dict, expected: dict, tol: float = 1e-8) -> bool:
    return isinstance(got, dict) and set(got) == set(expected) and all(
        isinstance(got[k], torch.Tensor) and max_diff(got[k].double(), expected[k]) <= tol for k in expected)


EXERCISES = [CharLMExercise(), TrainTbpttExercise()]
