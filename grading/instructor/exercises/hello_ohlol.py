"""Hidden checks of the ``hello_ohlol`` assignment: one_hot, OneHotRNN, EmbeddingRNN.

The two model exercises are judged by what the model computes, never by how it is written:

* the probe builds the student's model, finds its ``nn.Embedding``, ``nn.RNN`` and ``nn.Linear``
  submodules by *type* (any attribute names), re-initialises them from the grader's generator
  in a fixed order (so the student's own initialisation and creation order do not matter), runs
  it, and returns the modules' configuration and parameters plus the logits, as plain data;
* the judge rebuilds the model from genuine torch modules with those parameters, recomputes the
  logits itself, and diagnoses a mismatch by comparing with the usual wrong variants (no head,
  hidden state reset every step, wrong flatten order, batch_first missing, softmax applied).

Training tests retrain a fresh model with the course's own loop (Adam, mean cross-entropy,
hello -> ohlol or a random target over e, h, l, o) and judge the loss the *judge* recomputes
from the trained parameters against a threshold calibrated by
``grading.instructor.calibration.hello_ohlol`` (figures in the notebooks' instructor notes).
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch

from grading.student.checks import refused_ops
from grading.student.hello_ohlol import (
    MIN_EMBEDDING_CHANGE,
    ONE_HOT_OPS,
    ONE_HOT_REASON,
    batch_first_message,
    dtype_message,
    frozen_message,
    head_unused_message,
    layer_config,
    logits_shape_problem,
    one_hot_call,
    one_hot_error_hint,
    one_hot_problem,
    order_message,
    reset_message,
    returned_message,
    softmax_message,
    squashed_message,
    structure_problem,
)

from .base import Case, Exercise, ProbeError, find_layers, is_packed_tensor, max_diff, pack, unpack

# Genuine classes and functions, captured before any student code runs.
_MODULE = torch.nn.Module
_EMBEDDING, _RNN, _LINEAR = torch.nn.Embedding, torch.nn.RNN, torch.nn.Linear
_ADAM = torch.optim.Adam
_CROSS_ENTROPY = torch.nn.functional.cross_entropy
_SOFTMAX = torch.softmax
_EYE, _ZEROS, _RAND, _RANDN = torch.eye, torch.zeros, torch.rand, torch.randn
_NO_GRAD, _FORK_RNG, _MANUAL_SEED = torch.no_grad, torch.random.fork_rng, torch.manual_seed
_GENERATOR = torch.Generator

IDX2CHAR = ("e", "h", "l", "o")
HELLO = (1, 0, 2, 2, 3)
OHLOL = (3, 1, 2, 3, 2)
# The best mean cross-entropy a model whose logits lie in [-1, 1] can reach: target logit +1,
# the three others -1 (a tanh hidden state used as logits, the model of Liu Er's notes).
TANH_FLOOR = math.log(1 + 3 * math.exp(-2))


def _word(indices) -> str:
    return "".join(IDX2CHAR[i] for i in indices)


# --------------------------------------------------------------------------- probing side


_config = layer_config


def _describe(model) -> dict:
    """Plain-data description of the model: its typed submodules with parameters, and the rest."""
    found, extra = find_layers(model)
    return {
        "modules": {label: [{"config": _config(label, m),
                             "params": {k: pack(v.detach().clone()) for k, v in m.state_dict().items()}}
                            for m in mods] for label, mods in found.items()},
        "extra": extra,
        "frozen": [name for name, p in model.named_parameters() if not p.requires_grad],
    }


def _reinit(modules: list, gen, head_scale: float = 1.0) -> None:
    """Torch's default initialisation, drawn from ``gen`` in a fixed order: Embedding, RNN, Linear.

    ``modules`` is [(label, module), ...] in that order. Used on the student's modules (probe)
    and on the reference rebuilt in the judge, so both start from identical parameters.
    ``head_scale`` enlarges the Linear head so that the logits leave [-1, 1] (value tests).
    """
    with _NO_GRAD():
        for label, module in modules:
            for _name, p in module.named_parameters():
                if label == "Embedding":
                    p.copy_(_RANDN(p.shape, generator=gen))
                else:
                    fan = module.hidden_size if label == "RNN" else module.in_features
                    bound = (head_scale if label == "Linear" else 1.0) / math.sqrt(fan)
                    p.copy_(_RAND(p.shape, generator=gen) * 2 * bound - bound)


def _canonical(found: dict[str, list]) -> list:
    return [(label, mods[0]) for label, mods in found.items() if len(mods) == 1]


def _build_student(cls, args: dict, seed: int, head_scale: float = 1.0):
    """Instantiate the student's class and re-initialise its typed submodules from ``seed``."""
    with _FORK_RNG(devices=[]):
        _MANUAL_SEED(seed)
        model = cls(**args)
    if not isinstance(model, _MODULE):
        raise ProbeError(f"must be a subclass of nn.Module; an instance is a {type(model).__name__}")
    found, _ = find_layers(model)
    _reinit(_canonical(found), _GENERATOR().manual_seed(seed), head_scale)
    return model


def _forward(model, x) -> dict:
    """Run the model; plain data about its output (or the error it raised)."""
    try:
        out = model(x)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - a crash is a finding, reported with the modules
        return {"error": f"{type(exc).__name__}: {exc}"}
    if isinstance(out, (tuple, list)):
        return {"returned": f"a {type(out).__name__} of {len(out)} items"}
    if not isinstance(out, torch.Tensor):
        return {"returned": f"a {type(out).__name__}"}
    return {"logits": pack(out.detach().clone())}


def _one_hot_input(gen, seq_len: int, batch: int, size: int) -> torch.Tensor:
    idx = torch.randint(0, size, (seq_len, batch), generator=gen)
    return _EYE(size)[idx]


def _train(model, x, labels, lr: float, num_epochs: int) -> dict:
    """The course's training loop: Adam on the mean cross-entropy, full batch."""
    first = _forward(model, x)
    if "logits" not in first:
        return first
    shape = first["logits"]["shape"]
    if shape != [len(labels), 4]:
        return {"untrained_shape": shape}
    optimizer = _ADAM([p for p in model.parameters() if p.requires_grad] or [torch.nn.Parameter(_ZEROS(1))], lr=lr)
    for _ in range(num_epochs):
        optimizer.zero_grad()
        loss = _CROSS_ENTROPY(model(x), labels)
        loss.backward()
        optimizer.step()
    with _NO_GRAD():
        return _forward(model, x)


# --------------------------------------------------------------------------- judging side


def _rebuild(label: str, desc: dict, batch_first: bool):
    c = desc["config"]
    if label == "Embedding":
        module = _EMBEDDING(c["num_embeddings"], c["embedding_dim"], padding_idx=c["padding_idx"],
                            max_norm=c["max_norm"])
    elif label == "RNN":
        module = _RNN(c["input_size"], c["hidden_size"], c["num_layers"], nonlinearity=c["nonlinearity"],
                      bias=c["bias"], batch_first=batch_first, bidirectional=c["bidirectional"])
    else:
        module = _LINEAR(c["in_features"], c["out_features"], bias=c["bias"])
    return module


def _load(module, params: dict) -> None:
    module.load_state_dict({k: unpack(v) for k, v in params.items()})


class _Reference:
    """The contract's model rebuilt from genuine torch modules: [Embedding ->] RNN -> Linear."""

    def __init__(self, described: dict, *, embedding: bool, batch_first: bool):
        mods = described["modules"]
        self.batch_first = batch_first
        self.emb = _rebuild("Embedding", mods["Embedding"][0], batch_first) if embedding else None
        self.rnn = _rebuild("RNN", mods["RNN"][0], batch_first)
        self.fc = _rebuild("Linear", mods["Linear"][0], batch_first)

    def modules(self) -> list:
        out = [("Embedding", self.emb)] if self.emb is not None else []
        return out + [("RNN", self.rnn), ("Linear", self.fc)]

    def load(self, described: dict) -> None:
        for label, module in self.modules():
            _load(module, described["modules"][label][0]["params"])

    def hidden(self, x: torch.Tensor, reset: bool = False) -> torch.Tensor:
        """Top-layer hidden states, (seq, batch, H) or (batch, seq, H) as the layout says."""
        inputs = self.emb(x) if self.emb is not None else x
        if not reset:
            return self.rnn(inputs)[0]
        time_dim = 1 if self.batch_first else 0
        steps = [self.rnn(step)[0] for step in inputs.split(1, dim=time_dim)]
        return torch.cat(steps, dim=time_dim)

    def logits(self, x: torch.Tensor, reset: bool = False, order: str = "contract") -> torch.Tensor:
        with _NO_GRAD():
            out = self.fc(self.hidden(x, reset))
            if order != "contract":
                out = out.transpose(0, 1)
            return out.reshape(-1, out.shape[-1])


def _structure_problem(name: str, described: Any, *, embedding: bool, sizes: dict) -> str | None:
    """What is missing, extra or mis-sized among the model's typed submodules (None if it has the contract's)."""
    if not isinstance(described, dict) or "modules" not in described:
        return f"{name} could not be inspected."
    layers = {label: [m["config"] for m in mods] for label, mods in described["modules"].items()}
    return structure_problem(name, layers, list(described.get("extra") or []), embedding=embedding, sizes=sizes)


def _shape_problem(label: str, observed: dict, expected: tuple[int, int], *, hidden_size: int, num_layers: int,
                   batch: int, batch_first: bool, name: str = "") -> str | None:
    if "error" in observed:
        return f"{name or label}'s forward raised {observed['error']}"
    if "returned" in observed:
        return returned_message(label, observed["returned"])
    if not is_packed_tensor(observed.get("logits")):
        return f"{label}: forward must return a torch.Tensor of logits, shape {expected}."
    logits = observed["logits"]
    if logits["dtype"] != "float32":
        return dtype_message(label, logits["dtype"])
    shape = tuple(logits["shape"])
    problem = logits_shape_problem(label, shape, expected, hidden_size=hidden_size, num_layers=num_layers,
                                   batch=batch, batch_first=batch_first)
    if problem is None and tuple(unpack(logits).shape) != tuple(expected):
        return f"{label}: the logits came back malformed."
    return problem


def _value_problem(name: str, reference: _Reference, described: dict, x, logits: torch.Tensor, *,
                   embedding: bool) -> str | None:
    """None when ``logits`` are what the contract's model computes; else the likeliest fault."""
    expected = reference.logits(x)
    tol = 1e-4 * max(1.0, float(expected.abs().max()))
    if max_diff(logits, expected) <= tol:
        return None
    rnn = described["modules"]["RNN"][0]["config"]
    if rnn["batch_first"] != reference.batch_first:
        return batch_first_message(name, embedding)
    with _NO_GRAD():
        hidden = reference.hidden(x)
    if hidden.shape[-1] == logits.shape[-1] and max_diff(logits, hidden.reshape(logits.shape)) <= tol:
        return head_unused_message(name)
    if max_diff(logits, reference.logits(x, reset=True)) <= tol:
        return reset_message(name)
    if max_diff(logits, reference.logits(x, order="swapped")) <= tol:
        return order_message(name, embedding)
    if max_diff(logits, _SOFTMAX(expected, dim=1)) <= tol:
        return softmax_message(name)
    if float(expected.abs().max()) > 1.5 and float(logits.abs().max()) <= 1.0 + 1e-6:
        return squashed_message(name, float(expected.abs().max()))
    return (f"{name}'s logits differ from {'Embedding -> ' if embedding else ''}nn.RNN -> nn.Linear with the same "
            f"parameters (max difference {max_diff(logits, expected):.3g}): forward must feed "
            f"{'the embedded x' if embedding else 'x'} to the RNN (h0 = zeros or none) "
            "and the RNN's output to the Linear head.")


class _ModelExercise(Exercise):
    """Shared machinery of OneHotRNN and EmbeddingRNN.

    Case data: ``kind`` ("shape", "values" or "train"), ``sizes``, and ``seed`` (shape/values) or
    ``seeds`` + ``target`` (train). A training case retrains a fresh model once per seed and passes
    when every run is structurally right and the *best* run's loss is below THRESHOLD: a correct
    model stuck in a rare local minimum (about 1 run in 2,000) then still passes, while the
    known-bad models fail every run (their loss has a floor, see the calibration).
    """

    embedding = False
    batch_first = False
    LR = 0.1
    NUM_EPOCHS = 30
    THRESHOLD = 0.1
    TRAIN_SIZES: dict = {}
    # Shape and value tests enlarge the head's initial weights so that correct logits leave [-1, 1].
    HEAD_SCALE = 8.0

    # -- hooks
    def args(self, sizes: dict) -> dict:
        raise NotImplementedError

    def make_input(self, gen: torch.Generator, sizes: dict) -> torch.Tensor:
        raise NotImplementedError

    def train_input(self) -> torch.Tensor:
        raise NotImplementedError

    def n_rows(self, sizes: dict) -> int:
        return sizes["seq_len"] * sizes["batch"]

    def label(self, sizes: dict) -> str:
        """How a message names the model and its input: ``EmbeddingRNN(4, 10, 8, 2) on x of shape (1, 5)``."""
        args = ", ".join(str(v) for v in self.args(sizes).values())
        first = (sizes["batch"], sizes["seq_len"]) if self.batch_first else (sizes["seq_len"], sizes["batch"])
        shape = first if self.embedding else (*first, sizes["input_size"])
        return f"{self.name}({args}) on x of shape {shape}"

    def train_case(self, test_id: str, target: list[int], rng: random.Random) -> Case:
        return Case(test_id, f"hello -> {_word(target)}",
                    {"kind": "train", "sizes": self.TRAIN_SIZES, "target": target,
                     "seeds": [rng.randrange(2**31), rng.randrange(2**31)]})

    # -- probe
    def probe(self, cls: Any, case: Case) -> Any:
        d = case.data
        if d["kind"] == "train":
            return {"runs": [self._train_run(cls, d, seed) for seed in d["seeds"]]}
        model = _build_student(cls, self.args(d["sizes"]), d["seed"], head_scale=self.HEAD_SCALE)
        model.eval()
        x = self.make_input(_GENERATOR().manual_seed(d["seed"]), d["sizes"])
        with _NO_GRAD(), _FORK_RNG(devices=[]):
            _MANUAL_SEED(d["seed"])
            result = _forward(model, x)
        result.update(_describe(model))
        return result

    def _train_run(self, cls: Any, d: dict, seed: int) -> dict:
        model = _build_student(cls, self.args(d["sizes"]), seed)
        with _FORK_RNG(devices=[]):
            _MANUAL_SEED(seed)
            result = _train(model, self.train_input(), torch.tensor(d["target"]), self.LR, self.NUM_EPOCHS)
        result.update(_describe(model))
        return result

    # -- judge
    def judge(self, case: Case, observed: Any) -> str | None:
        try:
            return self._judge(case, observed)
        except Exception as exc:  # noqa: BLE001 - malformed plain data never crashes the grader
            return f"{self.name}'s results could not be judged ({type(exc).__name__}: {exc})."

    def _judge(self, case: Case, observed: Any) -> str | None:
        if not isinstance(observed, dict):
            return f"{self.name} could not be run."
        d = case.data
        if d["kind"] == "train":
            return self._judge_training(d, observed)
        problem, reference = self._model_problem(d, observed, d["kind"])
        if problem or d["kind"] == "shape":
            return problem
        x = self.make_input(_GENERATOR().manual_seed(d["seed"]), d["sizes"])
        return _value_problem(self.name, reference, observed, x, unpack(observed["logits"]), embedding=self.embedding)

    def _model_problem(self, d: dict, observed: dict, kind: str) -> tuple[str | None, _Reference | None]:
        """Shape and structure problems; else the reference model loaded with the observed parameters."""
        sizes = d["sizes"]
        expected = (self.n_rows(sizes), sizes["num_class"])
        if "untrained_shape" in observed:
            observed = dict(observed, logits={"tensor": [], "dtype": "float32", "shape": observed["untrained_shape"]})
        shape = _shape_problem(self.label(sizes), observed, expected, hidden_size=sizes["hidden_size"],
                               num_layers=sizes.get("num_layers", 1), batch=sizes["batch"],
                               batch_first=self.batch_first, name=self.name)
        structure = _structure_problem(self.name, observed, embedding=self.embedding, sizes=self.args(sizes))
        if kind == "shape":
            if shape and structure and "error" in observed:
                return f"{shape} ({structure})", None
            return shape, None
        if structure or shape:
            return structure or shape, None
        try:
            reference = _Reference(observed, embedding=self.embedding, batch_first=self.batch_first)
            reference.load(observed)
        except Exception as exc:  # noqa: BLE001 - malformed or inconsistent parameters
            return f"{self.name}'s parameters could not be loaded into the reference modules: {exc}", None
        return None, reference

    def run_loss(self, d: dict, run: Any) -> tuple[str | None, float]:
        """(structural problem or None, mean loss recomputed from the run's trained parameters)."""
        if not isinstance(run, dict):
            return f"{self.name} could not be run.", math.inf
        problem, reference = self._model_problem(d, run, "train")
        if problem:
            return problem, math.inf
        x = self.train_input()
        problem = _value_problem(self.name, reference, run, x, unpack(run["logits"]), embedding=self.embedding)
        if problem:
            return problem, math.inf
        with _NO_GRAD():
            loss = float(_CROSS_ENTROPY(reference.logits(x), torch.tensor(d["target"])))
        return self._after_training(d, run, reference), loss

    def _judge_training(self, d: dict, observed: dict) -> str | None:
        runs = observed.get("runs")
        if not isinstance(runs, list) or len(runs) != len(d["seeds"]):
            return f"{self.name} could not be trained."
        losses = []
        for seed, run in zip(d["seeds"], runs, strict=True):
            problem, loss = self.run_loss(dict(d, seed=seed), run)
            if problem:
                return problem
            losses.append(loss)
        best = min(losses)
        if not math.isfinite(best) or best > self.THRESHOLD:
            shown = " and ".join(f"{loss:.3f}" for loss in losses)
            why = ""
            if best >= TANH_FLOOR - 1e-3:
                why = (f" Both are above {TANH_FLOOR:.3f}, the floor of logits bounded in [-1, 1]: "
                       "check that the Linear head comes last.")
            return (f"{self.name} does not learn: after {self.NUM_EPOCHS} epochs of Adam (lr {self.LR}) on hello -> "
                    f"{_word(d['target'])} from two fresh initialisations, its mean losses are {shown}; "
                    f"a correct model gets below {self.THRESHOLD} (calibrated on 1,000 seeds).{why}")
        return None

    def _after_training(self, d: dict, observed: dict, reference: _Reference) -> str | None:
        return None


class OneHotExercise(Exercise):
    grade_id = "one_hot"
    name = "one_hot"
    assignment = "hello_ohlol"
    notebook = "one_hot_rnn"
    test_ids = ("test_one_hot",)
    # From scratch: F.one_hot is what the exercise reimplements. No name scan (a variable may well be
    # called one_hot); every route to the operator is refused in torch's dispatcher instead.
    trapped_ops = tuple(ONE_HOT_OPS)
    forbidden_reason = ONE_HOT_REASON

    def cases(self, seed: int) -> list[Case]:
        rng = random.Random(seed)
        out = [Case(self.test_ids[0], "hello as a list", {"indices": list(HELLO), "num_classes": 4, "as": "list"}),
               Case(self.test_ids[0], "hello as a tensor", {"indices": list(HELLO), "num_classes": 4, "as": "tensor"}),
               Case(self.test_ids[0], "num_classes above the largest index",
                    {"indices": [0, 2, 1], "num_classes": 6, "as": "tensor"}),
               Case(self.test_ids[0], "one index", {"indices": [rng.randrange(5)], "num_classes": 5, "as": "list"})]
        for kind in ("list", "tensor"):
            n = rng.randint(2, 9)
            indices = [rng.randrange(n) for _ in range(rng.randint(3, 12))]
            out.append(Case(self.test_ids[0], f"random {kind}",
                            {"indices": indices, "num_classes": n + rng.randint(0, 3), "as": kind}))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        d = case.data
        indices = list(d["indices"]) if d["as"] == "list" else torch.tensor(d["indices"], dtype=torch.int64)
        with refused_ops(ONE_HOT_OPS) as calls:
            try:
                out = fn(indices, d["num_classes"])
            except NotImplementedError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported with the input kind
                out = exc
        if calls:
            return {"calls": list(calls)}
        if isinstance(out, Exception):
            return {"error": f"{type(out).__name__}: {out}"}
        if not isinstance(out, torch.Tensor):
            return {"returned": type(out).__name__}
        return {"out": pack(out.detach().clone())}

    def judge(self, case: Case, observed: Any) -> str | None:
        try:
            return self._judge(case, observed)
        except Exception as exc:  # noqa: BLE001 - malformed plain data never crashes the grader
            return f"one_hot's results could not be judged ({type(exc).__name__}: {exc})."

    def _judge(self, case: Case, observed: Any) -> str | None:
        d = case.data
        indices, num_classes = d["indices"], d["num_classes"]
        call = one_hot_call(indices, num_classes, d["as"])
        if not isinstance(observed, dict):
            return f"{call} could not be run."
        if observed.get("calls"):
            calls = observed["calls"] if isinstance(observed["calls"], list) else [observed["calls"]]
            known = tuple(ONE_HOT_OPS.values())
            labels = sorted({c if c in known else "a refused operator" for c in calls})
            return f"{self.name} calls {', '.join(labels)}: {ONE_HOT_REASON}"
        if "error" in observed:
            return f"{call} raised {observed['error']}. {one_hot_error_hint(d['as'])}".strip()
        if "returned" in observed:
            return f"{call} returned a {observed['returned']}; it must return a torch.Tensor."
        out = observed.get("out")
        if not is_packed_tensor(out):
            return f"{call} must return a torch.Tensor."
        problem = one_hot_problem(indices, num_classes, d["as"], unpack(out))
        if problem is None and max_diff(unpack(out), _EYE(num_classes)[torch.tensor(indices)]) != 0:
            return f"{call} is not the one-hot encoding of {indices}."
        return problem


class OneHotRNNExercise(_ModelExercise):
    grade_id = "one_hot_rnn_head"
    name = "OneHotRNN"
    assignment = "hello_ohlol"
    notebook = "one_hot_rnn"
    test_ids = ("test_one_hot_rnn_head", "test_one_hot_rnn_head_training")
    verifier_only = ("test_one_hot_rnn_head_training",)

    embedding = False
    batch_first = False
    # Calibrated by grading.instructor.calibration.hello_ohlol (see the notebook's instructor notes).
    LR = 0.1
    NUM_EPOCHS = 30
    THRESHOLD = 0.1
    TRAIN_SIZES = {"input_size": 4, "hidden_size": 8, "num_class": 4, "seq_len": 5, "batch": 1}

    def args(self, s: dict) -> dict:
        return {"input_size": s["input_size"], "hidden_size": s["hidden_size"], "num_class": s["num_class"]}

    def make_input(self, gen: torch.Generator, s: dict) -> torch.Tensor:
        return _one_hot_input(gen, s["seq_len"], s["batch"], s["input_size"])

    def train_input(self) -> torch.Tensor:
        return _EYE(4)[torch.tensor(HELLO)].view(len(HELLO), 1, 4)

    def cases(self, seed: int) -> list[Case]:
        rng = random.Random(seed)
        out = []
        shapes = [(5, 1, 4, 8, 4), (3, 2, 4, 6, 4), (4, 3, 5, 7, 3),
                  (rng.randint(2, 7), rng.randint(2, 4), rng.randint(2, 6), rng.randint(2, 9), rng.randint(2, 6))]
        for seq_len, batch, input_size, hidden_size, num_class in shapes:
            sizes = {"seq_len": seq_len, "batch": batch, "input_size": input_size, "hidden_size": hidden_size,
                     "num_class": num_class}
            out.append(Case(self.test_ids[0], f"{sizes}",
                            {"kind": "values", "sizes": sizes, "seed": rng.randrange(2**31)}))
        for target in (list(OHLOL), [rng.randrange(4) for _ in HELLO]):
            out.append(self.train_case(self.test_ids[1], target, rng))
        return out


class EmbeddingRNNExercise(_ModelExercise):
    grade_id = "embedding_rnn"
    name = "EmbeddingRNN"
    assignment = "hello_ohlol"
    notebook = "embedding_rnn"
    test_ids = ("test_embedding_rnn_shape", "test_embedding_rnn_structure", "test_embedding_rnn_training")
    verifier_only = ("test_embedding_rnn_training",)

    embedding = True
    batch_first = True
    # Calibrated by grading.instructor.calibration.hello_ohlol (see the notebook's instructor notes).
    LR = 0.1
    NUM_EPOCHS = 30
    THRESHOLD = 0.1
    TRAIN_SIZES = {"num_class": 4, "embedding_size": 10, "hidden_size": 8, "num_layers": 2, "seq_len": 5, "batch": 1}
    # The embedding must move by more than this (max abs change of its weight) during training.
    MIN_EMBEDDING_CHANGE = MIN_EMBEDDING_CHANGE

    def args(self, s: dict) -> dict:
        return {"num_class": s["num_class"], "embedding_size": s["embedding_size"],
                "hidden_size": s["hidden_size"], "num_layers": s["num_layers"]}

    def make_input(self, gen: torch.Generator, s: dict) -> torch.Tensor:
        x = torch.randint(0, s["num_class"], (s["batch"], s["seq_len"]), generator=gen)
        x[0, -1] = s["num_class"] - 1  # every index is in range of a correct embedding: the largest one is used
        return x

    def train_input(self) -> torch.Tensor:
        return torch.tensor([HELLO])

    def cases(self, seed: int) -> list[Case]:
        rng = random.Random(seed)
        out = []
        shapes = {
            "test_embedding_rnn_shape": [(4, 10, 8, 2, 1, 5), (4, 3, 5, 1, 3, 4), (6, 5, 7, 3, 2, 6),
                                         (rng.randint(2, 8), rng.randint(2, 8), rng.randint(2, 9),
                                          rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 7))],
            "test_embedding_rnn_structure": [(4, 10, 8, 2, 2, 5), (5, 3, 6, 1, 3, 4),
                                             (rng.randint(2, 8), rng.randint(2, 8), rng.randint(2, 9),
                                              rng.randint(1, 3), rng.randint(2, 4), rng.randint(2, 7))],
        }
        for test_id, combos in shapes.items():
            for num_class, embedding_size, hidden_size, num_layers, batch, seq_len in combos:
                sizes = {"num_class": num_class, "embedding_size": embedding_size, "hidden_size": hidden_size,
                         "num_layers": num_layers, "batch": batch, "seq_len": seq_len}
                kind = "shape" if test_id.endswith("shape") else "values"
                out.append(Case(test_id, f"{sizes}", {"kind": kind, "sizes": sizes, "seed": rng.randrange(2**31)}))
        for target in (list(OHLOL), [rng.randrange(4) for _ in HELLO]):
            out.append(self.train_case(self.test_ids[2], target, rng))
        return out

    def _after_training(self, d: dict, observed: dict, reference: _Reference) -> str | None:
        """The embedding must have been trained: compare with the initial weights, recomputed here."""
        initial = _Reference(observed, embedding=True, batch_first=True)
        _reinit(initial.modules(), _GENERATOR().manual_seed(d["seed"]))
        change = max_diff(reference.emb.weight.detach(), initial.emb.weight.detach())
        if change <= self.MIN_EMBEDDING_CHANGE:
            return frozen_message(self.name, change, list(observed.get("frozen") or []))
        return None


EXERCISES = [OneHotExercise(), OneHotRNNExercise(), EmbeddingRNNExercise()]
