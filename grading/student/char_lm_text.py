"""The course's helpers and visible checks of the text parts of ``poems.ipynb`` (shipped to students).

Helpers (part of the course, not answers): :func:`encode` (text -> ids, unknown characters -> 0), :func:`decode`,
and :func:`unigram_perplexity` (from :mod:`grading.student.char_lm`: the baseline every model must beat, exp of the
mean -ln p over ``val_ids[1:]`` of the training text's unigram model with add-one smoothing).

Checks: ``build_vocab``, ``make_batches``, ``perplexity`` and ``sample``. Each stops at the first problem, in the
order type -> dtype -> shape -> values. The diagnoses (``*_problem`` functions) are the ones the grader uses, so
Validate and the grade name the same fault. ``sample`` is checked with toy models (:class:`TableModel`) that have
the interface of the notebook's ``CharLM``: ``model(x, state) -> (logits, state)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from .char_lm import UNKNOWN
from .char_lm import unigram_perplexity as unigram_perplexity  # re-exported: a helper of this notebook
from .checks import CheckFailed, call, keeps_rng, quiet, shape_problem

# --------------------------------------------------------------------------- course helpers


def encode(text: str, stoi: Mapping[str, int]) -> torch.Tensor:
    """Characters -> LongTensor of their ids in ``stoi``; a character not in the vocabulary becomes 0 (UNKNOWN)."""
    return torch.tensor([stoi.get(ch, 0) for ch in text], dtype=torch.long)


def decode(ids: Sequence[int] | torch.Tensor, itos: Sequence[str]) -> str:
    """Ids -> characters."""
    return "".join(itos[int(i)] for i in ids)


def _fail(problem: str | None) -> None:
    if problem:
        raise CheckFailed(problem)


# --------------------------------------------------------------------------- build_vocab

VOCAB_TEXT = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n\n"


def plain_vocab(result: Any) -> Any:
    """``build_vocab``'s result as plain data: {"stoi": [[key, value], ...], "itos": [...]}, or a description."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return {"returned": type(result).__name__}
    stoi, itos = result
    if not isinstance(stoi, dict):
        return {"stoi_type": type(stoi).__name__}
    if not isinstance(itos, list):
        return {"itos_type": type(itos).__name__}
    plain = {"stoi": [[k if isinstance(k, str) else repr(k)[:20], v if type(v) is int else repr(v)[:20]]
                      for k, v in list(stoi.items())[:5000]],
             "itos": [c if isinstance(c, str) else repr(c)[:20] for c in itos[:5000]]}
    plain["stoi_types_ok"] = all(isinstance(k, str) and type(v) is int for k, v in stoi.items())
    plain["itos_types_ok"] = all(isinstance(c, str) for c in itos)
    return plain


def build_vocab_problem(text: str, plain: Any) -> str | None:
    """What is wrong with ``build_vocab(text)`` (as :func:`plain_vocab` gives it); None if it is right.

    The contract: itos = [UNKNOWN] followed by the distinct characters of text, sorted; stoi its inverse."""
    if "returned" in plain:
        return f"build_vocab must return a pair (stoi, itos), got a {plain['returned']}."
    if "stoi_type" in plain:
        return f"build_vocab(text)[0], stoi, must be a dict (character -> id), got a {plain['stoi_type']}."
    if "itos_type" in plain:
        return f"build_vocab(text)[1], itos, must be a list (id -> character), got a {plain['itos_type']}."
    itos, stoi = plain["itos"], dict((k, v) for k, v in plain["stoi"])
    if not plain["itos_types_ok"]:
        return "itos must hold one-character strings."
    distinct = set(text)
    if not itos or itos[0] != UNKNOWN:
        if set(itos) == distinct:
            return ('itos has no unknown entry at index 0: itos[0] must be "\\ufffd" (UNKNOWN), which stands for '
                    "any character not in the vocabulary; the text's characters follow from index 1.")
        return (f'itos[0] must be "\\ufffd" (UNKNOWN), the unknown entry at index 0, got {itos[:1]!r}.')
    rest = itos[1:]
    if len(rest) != len(set(rest)):
        return "itos lists a character twice: each distinct character of the text once."
    if set(rest) != distinct:
        missing, extra = sorted(distinct - set(rest))[:3], sorted(set(rest) - distinct)[:3]
        return (f"itos[1:] must be the distinct characters of the text: missing {missing}, extra {extra} "
                "(newlines and punctuation are characters too).")
    if rest != sorted(rest):
        return ("itos is not sorted: itos = [UNKNOWN] + sorted(set(text)), so the vocabulary does not depend on "
                "the order of a set (which changes from run to run).")
    if not plain["stoi_types_ok"]:
        return "stoi must map each character (a str) to its id (an int)."
    if len(stoi) != len(itos) or any(stoi.get(ch) != i for i, ch in enumerate(itos)):
        wrong = next((ch for i, ch in enumerate(itos) if stoi.get(ch) != i), None)
        where = f" (stoi[{wrong!r}] = {stoi.get(wrong)}, itos.index = {itos.index(wrong)})" if wrong else ""
        return f"stoi must be the inverse of itos: stoi[itos[i]] == i for every i, and nothing else{where}."
    return None


@keeps_rng
def check_build_vocab(build_vocab) -> None:
    """build_vocab on a couplet of Li Bai: the unknown entry at 0, the characters sorted, stoi the inverse."""
    result = call(build_vocab, VOCAB_TEXT, name="build_vocab")
    _fail(build_vocab_problem(VOCAB_TEXT, plain_vocab(result)))
    stoi, itos = result
    print(f"itos[:6] = {itos[:6]}; {len(itos)} entries for {len(set(VOCAB_TEXT))} distinct characters")
    print("build_vocab: visible checks passed.")


# --------------------------------------------------------------------------- make_batches

BATCH_DIMS = ("num_windows", "batch_size", "seq_len")


def expected_batch_shape(length: int, batch_size: int, seq_len: int) -> tuple[int, int, int]:
    """(num_windows, batch_size, seq_len) for a stream of ``length`` ids (the contract's arithmetic)."""
    n = (length - 1) // batch_size
    return n // seq_len, batch_size, seq_len


def plain_batches(result: Any) -> Any:
    """``make_batches``'s result as plain data."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return {"returned": type(result).__name__}
    out = {}
    for name, t in zip(("inputs", "targets"), result, strict=True):
        if type(t) is not torch.Tensor:
            return {"returned": f"pair holding a {type(t).__name__} as {name}"}
        out[name] = {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                     "values": t.detach().reshape(-1).tolist() if t.dtype in (torch.int64, torch.int32) else None}
    return out


def make_batches_problem(ids: Sequence[int], batch_size: int, seq_len: int, plain: Any,
                         error: str | None = None) -> str | None:
    """What is wrong with ``make_batches(ids, batch_size, seq_len)``; None if it is right.

    ``ids`` must hold distinct values, so each value tells its position in the text and a wrong window is named:
    targets not shifted, shifted the wrong way, rows that do not continue from one window to the next...
    ``error`` is "TypeName: message" when the call raised (a ValueError is right when num_windows == 0)."""
    num_windows, batch, seq = expected_batch_shape(len(ids), batch_size, seq_len)
    call = f"make_batches(ids of length {len(ids)}, batch_size={batch_size}, seq_len={seq_len})"
    if num_windows == 0:
        if error and error.split(":")[0] == "ValueError":
            return None
        got = f"raised {error.split(':')[0]}" if error else "returned"
        return (f"{call} {got}: when num_windows == 0 (the text is too short for one window of seq_len in every "
                "row) make_batches must raise ValueError, not return empty batches.")
    if error:
        return f"{call} raised {error}."
    if "returned" in plain:
        return f"make_batches must return a pair (inputs, targets) of tensors, got a {plain['returned']}."
    want = (num_windows, batch, seq)
    for name in ("inputs", "targets"):
        if plain[name]["dtype"] != "int64":
            return (f"{name} has dtype torch.{plain[name]['dtype']}, expected torch.int64 (a LongTensor of ids, "
                    "as nn.Embedding needs): slice and view ids, do not build a float tensor.")
        if tuple(plain[name]["shape"]) != want:
            return shape_problem(f"{call}: {name}", plain[name]["shape"], want, BATCH_DIMS,
                                 "With n = (len(ids) - 1) // batch_size, num_windows = n // seq_len.")
    position = {int(v): i for i, v in enumerate(ids)}
    if len(position) != len(ids):
        raise ValueError("make_batches_problem needs distinct ids")
    try:
        p_in = torch.tensor([position[v] for v in plain["inputs"]["values"]]).view(want)
        p_tg = torch.tensor([position[v] for v in plain["targets"]["values"]]).view(want)
    except KeyError:
        return f"{call}: inputs or targets hold values that are not in ids."
    if torch.equal(p_tg, p_in):
        return ("targets equal inputs: targets must be the inputs shifted by one, the character that follows "
                "each input (ys = ids[1:n * batch_size + 1]).")
    if torch.equal(p_tg, p_in - 1):
        return ("targets are shifted the wrong way: targets[k, b, j] must be the character that FOLLOWS "
                "inputs[k, b, j] (ys = ids[1:n * batch_size + 1]), not the one before it.")
    if not torch.equal(p_tg, p_in + 1):
        return "targets[k, b, j] must be the character that follows inputs[k, b, j] in the text (shifted by one)."
    if not torch.equal(p_in[..., 1:], p_in[..., :-1] + 1):
        return "each row of a window, inputs[k, b], must be seq_len consecutive characters of the text."
    if num_windows > 1 and not torch.equal(p_in[1:, :, 0], p_in[:-1, :, -1] + 1):
        return ("row b of window k+1 must continue row b of window k (inputs[k + 1, b, 0] is the character after "
                "inputs[k, b, -1]), so the hidden state can carry over: cut ids into batch_size equal rows first "
                "(row b is the b-th slice of the stream), then cut every row into windows.")
    n = (len(ids) - 1) // batch_size
    starts = p_in[0, :, 0].tolist()
    if starts != [b * n for b in range(batch)]:
        return (f"row b must start at position b * n of ids (offset 0, n = (len(ids) - 1) // batch_size = {n}): "
                f"the rows start at {starts}, expected {[b * n for b in range(batch)]}.")
    return None


MAKE_BATCHES_CASES = ((26, 3, 4), (41, 4, 3), (17, 2, 8), (12, 2, 6))  # len(ids), batch_size, seq_len


def _distinct_ids(length: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(1000, generator=gen)[:length] + 1


def run_quietly(fn, *args, name: str) -> tuple[Any, str | None]:
    """(result, None), or (None, "TypeName: message") when the call raised; the stub becomes a CheckFailed."""
    try:
        with quiet():
            return fn(*args), None
    except NotImplementedError:
        raise CheckFailed(f"{name} is not implemented yet: replace `raise NotImplementedError()`.") from None
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any crash becomes a message
        return None, f"{type(exc).__name__}: {str(exc)[:300]}"


@keeps_rng
def check_make_batches(make_batches) -> None:
    """make_batches on ids whose values are all distinct (each tells its position): shapes, then the windows.

    Sizes (len(ids), batch_size, seq_len): (26, 3, 4) -> 2 windows, (41, 4, 3) -> 3, (17, 2, 8) -> 1, and
    (12, 2, 6): n = 5 < seq_len, no window, so ValueError."""
    for seed, (length, batch_size, seq_len) in enumerate(MAKE_BATCHES_CASES):
        ids = _distinct_ids(length, seed)
        result, error = run_quietly(make_batches, ids, batch_size, seq_len, name="make_batches")
        _fail(make_batches_problem(ids.tolist(), batch_size, seq_len, plain_batches(result), error))
    ids = torch.arange(23)
    inputs, targets = call(make_batches, ids, 2, 3, name="make_batches")
    print("ids = torch.arange(23), batch_size 2, seq_len 3:")
    for k in range(inputs.shape[0]):
        print(f"  window {k}: inputs {inputs[k].tolist()}  targets {targets[k].tolist()}")
    print("make_batches: visible checks passed.")


# --------------------------------------------------------------------------- perplexity


def plain_value(value: Any) -> float | dict:
    """perplexity's result as plain data: the float, or {"type": its type's name}."""
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        return float(value)
    return {"type": type(value).__name__}


def perplexity_problem(value: Any, nll: torch.Tensor, rel_tol: float = 1e-6) -> str | None:
    """What is wrong with ``value`` = perplexity(logits, targets), or its :func:`plain_value`; None if right.

    ``nll`` holds -ln p(target) at every position (the leading shape of logits). Known mistakes are named: the
    summed loss, mixed log bases, perplexities averaged over windows or positions, the loss itself."""
    plain = value if isinstance(value, dict) else plain_value(value)
    if isinstance(plain, dict):
        kind = str(plain.get("type"))[:40]
        if kind == "Tensor":
            return ("perplexity must return a Python float, not a tensor: convert the result with .item() "
                    "(or float(...)).")
        return f"perplexity must return a float, got a {kind}."
    value = float(plain)
    nll = nll.double()
    mean = float(nll.mean())
    expected = math.exp(mean)

    def close(a: float, b: float, tol: float) -> bool:
        return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tol * max(abs(b), 1.0)

    if close(value, expected, rel_tol):
        return None
    total = float(nll.sum())
    if total < 700 and close(value, math.exp(total), 1e-4):
        return ("perplexity uses the summed loss: it is exp of the MEAN cross-entropy over every position "
                "(F.cross_entropy's default reduction is the mean).")
    if close(value, 2 ** mean, 1e-4) or close(value, math.exp(mean / math.log(2)), 1e-4):
        return ("perplexity mixes log bases: F.cross_entropy is in nats (natural log), and exp undoes it; "
                "2 ** loss needs the loss in bits (divided by ln 2).")
    averages = [float(nll.exp().mean())]
    if nll.dim() > 1:
        averages.append(float(nll.reshape(nll.shape[0], -1).mean(dim=1).exp().mean()))
    if any(close(value, a, 1e-4) for a in averages):
        return ("perplexity averages perplexities of windows (or positions): take exp of the mean loss over every "
                "position, once; a mean of exps is larger (Jensen's inequality).")
    if close(value, mean, 1e-4):
        return "perplexity returns the mean cross-entropy itself: perplexity is exp of it."
    return (f"perplexity is {value:.6g}, expected {expected:.6g}: exp of the mean natural-log cross-entropy over "
            f"every position (logits of shape {tuple(nll.shape)} + (vocab_size,)).")


# Probabilities by position (rows: 2 windows x 3 positions, 4 characters) and the targets of the visible check.
_WEIGHTS = ((1, 2, 3, 4), (4, 1, 1, 2), (1, 1, 6, 2), (3, 3, 1, 1), (1, 8, 1, 2), (2, 1, 1, 1))
_TARGETS = ((3, 0, 1), (0, 1, 0))


def _weights_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits (2, 3, 4) = ln p + a constant per position (softmax ignores it), targets (2, 3), -ln p(target)."""
    probs = torch.tensor(_WEIGHTS, dtype=torch.float64)
    probs = probs / probs.sum(dim=1, keepdim=True)
    offsets = torch.tensor([0.5, -1.0, 2.0, 0.0, 3.0, -2.5], dtype=torch.float64)[:, None]
    logits = (probs.log() + offsets).view(2, 3, 4)
    targets = torch.tensor(_TARGETS)
    nll = torch.tensor([-math.log(float(p[t])) for p, t in zip(probs, targets.reshape(-1), strict=True)],
                       dtype=torch.float64).view(2, 3)
    return logits, targets, nll


@keeps_rng
def check_perplexity(perplexity) -> None:
    """perplexity on (1) uniform logits: exactly vocab_size; (2) logits whose softmax is known, (2, 3, 4) in
    float64 and float32, and the same flattened to (6, 4); (3) a window of 4 dimensions (2, 2, 3, 4)."""
    uniform = torch.full((3, 5, 7), 0.25)
    value = call(perplexity, uniform, torch.zeros(3, 5, dtype=torch.long), name="perplexity")
    _fail(perplexity_problem(value, torch.full((3, 5), math.log(7))))
    logits, targets, nll = _weights_case()
    cases = {"(2, 3, 4) float64": (logits, targets, nll, 1e-9),
             "(2, 3, 4) float32": (logits.float(), targets, nll, 1e-5),
             "(6, 4) float64": (logits.view(6, 4), targets.view(6), nll.view(6), 1e-9),
             "(2, 2, 3, 4) float64": (torch.stack([logits, logits.flip(0)]), torch.stack([targets, targets.flip(0)]),
                                      torch.stack([nll, nll.flip(0)]), 1e-9)}
    for label, (lg, tg, expected_nll, tol) in cases.items():
        value = call(perplexity, lg, tg, name="perplexity")
        problem = perplexity_problem(value, expected_nll, tol)
        _fail(f"logits {label}: {problem}" if problem else None)
    print(f"uniform over 7 characters: perplexity {perplexity(uniform, torch.zeros(3, 5, dtype=torch.long)):.4f}")
    print(f"the (2, 3, 4) case: {value:.6f} (expected {math.exp(float(nll.mean())):.6f})")
    print("perplexity: visible checks passed.")


# --------------------------------------------------------------------------- sample: toy models


class TableModel(nn.Module):
    """A toy model with CharLM's interface, for checking ``sample``.

    ``forward(x, state)``: x a LongTensor (1, t); logits[0, j] = table[x[0, j]] (the next character depends only
    on the last one), of shape (1, t, vocab_size). The state is a pair (h, c) of (1, 1, 1) tensors: h counts the
    characters read so far, c the calls, so a check can see whether the state was carried. With ``record``,
    every call is kept in ``calls`` as plain data.
    """

    def __init__(self, table: Sequence[Sequence[float]] | torch.Tensor, record: bool = True):
        super().__init__()
        self.table = nn.Parameter(torch.as_tensor(table, dtype=torch.float32).clone(), requires_grad=False)
        self.record = record
        self.calls: list[dict] = []
        self.num_calls = 0

    def forward(self, x, state=None):
        self.num_calls += 1
        state_seen = _plain_state(state)
        if self.record:
            entry: dict[str, Any] = {"state": state_seen}
            if isinstance(x, torch.Tensor):
                entry.update(shape=list(x.shape), dtype=str(x.dtype).removeprefix("torch."),
                             ids=x.reshape(-1)[:200].tolist() if not x.is_floating_point() else None)
            else:
                entry.update(shape=None, dtype=type(x).__name__, ids=None)
            self.calls.append(entry)
        if not isinstance(x, torch.Tensor) or x.dtype != torch.long:
            raise TypeError(f"model(x, state): x must be a LongTensor of shape (1, t), got "
                            f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.dim() != 2:
            raise ValueError(f"model(x, state): x must have shape (1, t), got {tuple(x.shape)}")
        read = state_seen[0] if isinstance(state_seen, list) else 0.0
        h = torch.full((1, 1, 1), float(read) + x.shape[1])
        c = torch.full((1, 1, 1), float(self.num_calls))
        return self.table[x], (h, c)


def _plain_state(state: Any) -> Any:
    """None, [h, c] as floats (the toy's own state, maybe detached or cloned), or a description of something else."""
    if state is None:
        return None
    try:
        h, c = state
        return [float(h.reshape(-1)[0]), float(c.reshape(-1)[0])]
    except Exception:  # noqa: BLE001 - anything else is reported as such
        return f"a {type(state).__name__}"


def greedy_text(table: torch.Tensor, ids: Sequence[int], itos: Sequence[str], length: int,
                first_row: int | None = None) -> str:
    """The ``length`` characters greedy decoding generates after ``ids`` with a :class:`TableModel` of ``table``
    (``first_row``: which row the first step reads, the last prompt id by default)."""
    out, current = [], ids[-1] if first_row is None else first_row
    for _ in range(length):
        current = int(torch.as_tensor(table)[current].argmax())
        out.append(itos[current])
    return "".join(out)


def plain_result(result: Any, error: str | None = None) -> dict:
    """What ``sample`` returned, as plain data: {"text": str}, {"error": "TypeName: message"} or {"type": name}."""
    if error:
        return {"error": error}
    if isinstance(result, str):
        return {"text": str(result)}
    return {"type": type(result).__name__}


def returned_problem(plain: dict, prompt: str, length: int) -> str | None:
    """What is wrong with what ``sample`` returned (:func:`plain_result`), before its characters are looked at."""
    if "error" in plain:
        return f"sample raised {plain['error']}"
    if "text" not in plain:
        return (f"sample must return a str (the prompt followed by the generated characters), got a "
                f"{plain.get('type')}.")
    text = plain["text"]
    if not text.startswith(prompt):
        return (f"sample must return the prompt itself ({prompt!r}) followed by the generated characters; "
                f"got {text[:len(prompt) + 5]!r}...")
    if len(text) != len(prompt) + length:
        return (f"sample returned {len(text) - len(prompt)} generated characters after the prompt, expected "
                f"length = {length}.")
    return None


def sample_calls_problem(prompt_ids: Sequence[int], generated_ids: Sequence[int], calls: Sequence[dict],
                         prompt: str) -> str | None:
    """What is wrong with how ``sample`` called the toy model (``calls`` as :class:`TableModel` records them)."""
    if not calls:
        return "sample never called the model."
    first = calls[0]
    if first["dtype"] != "int64":
        return (f"the model must get a LongTensor x (token ids), got {first['dtype']}: "
                "torch.tensor([ids]) of ints is int64.")
    known = [i for i in prompt_ids if i]
    if first["shape"] != [1, len(prompt_ids)]:
        if len(known) < len(prompt_ids) and first["shape"] == [1, len(known)]:
            return ("prompt characters that are not in stoi must map to 0 (the unknown id), not be dropped: "
                    "stoi.get(ch, 0).")
        if first["shape"] == [1, 1] and len(prompt_ids) > 1:
            return (f"feed the whole prompt in one call: model(x, None) with x of shape (1, len(prompt)) = "
                    f"(1, {len(prompt_ids)}), then one character at a time.")
        if first["shape"] == [len(prompt_ids)]:
            return "x must have shape (1, t): add the batch dimension, torch.tensor([ids])."
        return f"the first call must feed the whole prompt as x of shape (1, {len(prompt_ids)}), got {first['shape']}."
    if first["ids"] != list(prompt_ids):
        unknown = [i for i, ch in enumerate(prompt) if prompt_ids[i] == 0]
        if unknown and [v for i, v in enumerate(first["ids"]) if i not in unknown] == \
                [v for i, v in enumerate(prompt_ids) if i not in unknown]:
            return "prompt characters that are not in stoi must map to 0 (the unknown id): stoi.get(ch, 0)."
        return f"the prompt's ids must be [stoi.get(ch, 0) for ch in prompt] = {list(prompt_ids)}, got {first['ids']}."
    if first["state"] is not None:
        return "the first call must pass the state None (the model starts from its zero state)."
    steps = calls[1:]
    if len(steps) not in (len(generated_ids) - 1, len(generated_ids)):
        return (f"after the prompt, sample must call the model once per generated character (to feed it back), "
                f"{len(generated_ids) - 1} or {len(generated_ids)} times for length {len(generated_ids)}; "
                f"it called it {len(steps)} times.")
    read = len(prompt_ids)
    for k, step in enumerate(steps):
        if step["dtype"] != "int64" or step["shape"] != [1, 1]:
            return (f"after the prompt, feed one character at a time: x of shape (1, 1), dtype int64; call {k + 2} "
                    f"got shape {step['shape']}, dtype {step['dtype']}.")
        if step["state"] != [float(read), float(k + 1)]:
            return ("the state is not carried: pass the state the previous call returned to the next call "
                    "(model(x, state) -> (logits, state)); it must not be reset or rebuilt at each step.")
        if step["ids"] != [generated_ids[k]]:
            return (f"feed back the character just drawn: call {k + 2} fed id {step['ids']}, "
                    f"expected {[generated_ids[k]]}.")
        read += 1
    return None


def greedy_problem(table: torch.Tensor, prompt_ids: Sequence[int], itos: Sequence[str], generated: str,
                   temperature: float) -> str | None:
    """What is wrong with ``generated`` where greedy decoding was expected (temperature 0, or nearly)."""
    expected = greedy_text(table, prompt_ids, itos, len(generated))
    if generated == expected:
        return None
    if generated == greedy_text(table, prompt_ids, itos, len(generated), first_row=prompt_ids[0]):
        return ("sample reads the prediction after the FIRST prompt character: the prediction for the next "
                "character is logits[0, -1], the last position.")
    if temperature == 0:
        return (f"at temperature 0 sample must be greedy, the argmax of logits[0, -1] at every step: expected "
                f"{expected!r}, got {generated!r}.")
    return (f"at temperature {temperature} sampling must agree with greedy decoding (almost surely): divide the "
            f"logits by the temperature, so a small temperature sharpens the distribution; expected {expected!r}, "
            f"got {generated!r}.")


# --------------------------------------------------------------------------- sample: the distribution


def chi_square(counts: Sequence[int], probs: Sequence[float]) -> float:
    """Pearson's statistic sum (O - E)^2 / E with E = N p (inf when a count falls where p is 0)."""
    total = sum(counts)
    stat = 0.0
    for observed, p in zip(counts, probs, strict=True):
        expected = total * p
        if expected <= 0:
            if observed:
                return math.inf
            continue
        stat += (observed - expected) ** 2 / expected
    return stat


def chi_square_sf(x: float, df: int) -> float:
    """P(chi-square with ``df`` degrees of freedom > x), for odd or even df (closed forms)."""
    if x <= 0:
        return 1.0
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= (x / 2) / k
            total += term
        return math.exp(-x / 2) * total
    total, term = math.erfc(math.sqrt(x / 2)), math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
    for k in range(1, (df + 1) // 2):
        total += term
        term *= x / (2 * k + 1)
    return total


def softmax_probs(row: Sequence[float], temperature: float) -> list[float]:
    """softmax(row / temperature) in float64, as plain floats."""
    return torch.softmax(torch.as_tensor(row, dtype=torch.float64) / temperature, dim=0).tolist()


def counts_of(generated: str, itos: Sequence[str]) -> list[int] | None:
    """How often each entry of itos was generated; None when something outside itos was."""
    index = {ch: i for i, ch in enumerate(itos)}
    counts = [0] * len(itos)
    for ch in generated:
        if ch not in index:
            return None
        counts[index[ch]] += 1
    return counts


def distribution_problem(row: Sequence[float], temperature: float, itos: Sequence[str], generated: str,
                         threshold: float) -> str | None:
    """What is wrong with ``generated``: i.i.d. draws from a model whose logits are always ``row``, at
    ``temperature`` (> 0). Pearson's chi-square against softmax(row / temperature) must stay below ``threshold``;
    a failure names the distribution the draws follow instead when it is a known mistake."""
    counts = counts_of(generated, itos)
    if counts is None:
        return "sample generated characters that are not in itos: map each drawn id to itos[id]."
    stat = chi_square(counts, softmax_probs(row, temperature))
    if stat <= threshold:
        return None
    n = len(generated)
    if max(counts) == n:
        return (f"at temperature {temperature} sample always picks the same character: it must draw from "
                "softmax(logits / temperature) with torch.multinomial(probs, 1, generator=generator) (argmax is "
                "only for temperature 0).")
    if temperature != 1 and chi_square(counts, softmax_probs(row, 1 / temperature)) <= threshold:
        return (f"at temperature {temperature} the draws follow softmax(logits * temperature): divide the logits "
                "by the temperature (a high temperature flattens the distribution, a low one sharpens it).")
    if temperature != 1 and chi_square(counts, softmax_probs(row, 1.0)) <= threshold:
        return (f"at temperature {temperature} the draws follow softmax(logits), as if the temperature were 1: "
                "divide the logits by the temperature.")
    return (f"at temperature {temperature} the {n} characters drawn do not follow softmax(logits / temperature): "
            f"Pearson's chi-square is {stat:.1f}, above {threshold:g} (counts {counts}, expected "
            f"{[round(n * p, 1) for p in softmax_probs(row, temperature)]}).")


# Pearson's chi-square threshold of the distribution checks (6 characters, 5 degrees of freedom): a correct
# sample exceeds it with probability 1.6e-9 per run (see the instructor's calibration for the figures).
CHI_SQUARE_THRESHOLD = 50.0

# The visible checks' toy vocabulary and models.
ITOS = (UNKNOWN, "春", "花", "秋", "月", "风")
STOI = {ch: i for i, ch in enumerate(ITOS)}
# Row i: logits after character i. Greedy from 花 (2): 2 -> 4 -> 1 -> 3 -> 5 -> 2 ...; from 春 (1): 3.
GREEDY_TABLE = ((0.0, 0.5, -1.0, 1.5, 0.2, -0.3), (0.1, -0.5, 0.3, 1.8, -1.0, 0.6),
                (0.0, 0.3, -0.2, -0.7, 1.6, 0.5), (-0.4, 0.2, 0.0, -1.2, 0.4, 1.7),
                (0.3, 1.9, -0.6, 0.1, -0.2, 0.7), (-0.1, 0.4, 1.5, 0.2, -0.9, 0.0))
ROW = (0.4, 1.0, -0.6, 0.2, -1.0, 0.6)  # the logits of the distribution check, whatever the input
VISIBLE_DRAWS = 1000


def run_sample(sample, model: nn.Module, prompt: str, length: int, temperature: float, seed: int,
               stoi: Mapping[str, int] | None = None, itos: Sequence[str] | None = None) -> dict:
    """Call ``sample`` with a fresh generator seeded ``seed``; what it returned as :func:`plain_result` gives it."""
    gen = torch.Generator().manual_seed(seed)
    stoi = dict(STOI if stoi is None else stoi)
    itos = list(ITOS if itos is None else itos)
    with torch.no_grad():
        result, error = run_quietly(sample, model, stoi, itos, prompt, length, temperature, gen, name="sample")
    return plain_result(result, error)


def negative_temperature_problem(plain: dict) -> str | None:
    """A negative temperature must raise ValueError."""
    if plain.get("error", "").split(":")[0] == "ValueError":
        return None
    got = f"it raised {plain['error'].split(':')[0]}" if "error" in plain else "it returned"
    return (f"a negative temperature must raise ValueError ({got}): the temperature divides the logits, and below "
            "0 it would turn the distribution upside down.")


def generator_run(sample, model: nn.Module, prompt: str, length: int, seed: int,
                  stoi: Mapping[str, int] | None = None, itos: Sequence[str] | None = None) -> list:
    """[what sample returned at temperature 1, whether torch's global random state stayed untouched]."""
    before = torch.random.get_rng_state()
    plain = run_sample(sample, model, prompt, length, 1.0, seed, stoi, itos)
    return [plain, bool(torch.equal(before, torch.random.get_rng_state()))]


def generator_problem(first: Sequence, second: Sequence) -> str | None:
    """Two runs (:func:`generator_run`) with generators of the same seed: the same text, the global state untouched."""
    if first[0] != second[0] or not (first[1] and second[1]):
        return ("draw with the generator passed in, torch.multinomial(probs, 1, generator=generator): the same "
                "generator seed must give the same text, and torch's global random state must stay untouched.")
    return None


@keeps_rng
def check_sample_interface(sample) -> None:
    """sample with a toy model: returns the prompt + length characters; feeds the prompt once as (1, t) with
    unknown characters as 0, then one character at a time, carrying the state; greedy at temperature 0 and
    nearly so at 0.05; ValueError for a negative temperature; its draws come from the generator."""
    prompt = "秋x花"  # x is not in the vocabulary: id 0
    prompt_ids = [STOI.get(ch, 0) for ch in prompt]
    for temperature in (0, 0.05):
        model = TableModel(GREEDY_TABLE)
        plain = run_sample(sample, model, prompt, 7, temperature, 0)
        _fail(returned_problem(plain, prompt, 7))
        generated = plain["text"][len(prompt):]
        _fail(sample_calls_problem(prompt_ids, [STOI.get(ch, 0) for ch in generated], model.calls, prompt))
        _fail(greedy_problem(torch.tensor(GREEDY_TABLE), prompt_ids, ITOS, generated, temperature))
    _fail(negative_temperature_problem(run_sample(sample, TableModel(GREEDY_TABLE), "春", 3, -0.5, 0)))
    runs = [generator_run(sample, TableModel([ROW] * len(ITOS), record=False), "月", 30, 7) for _ in range(2)]
    _fail(generator_problem(*runs))
    print(f"greedy from {prompt!r}: {plain['text']!r}")
    print("sample (interface): visible checks passed.")


@keeps_rng
def check_sample_distribution(sample) -> None:
    """sample with a toy model whose logits are always the same 6 numbers: 1000 characters drawn at temperature
    1, 0.5 and 2 (seeded generator) follow softmax(logits / temperature) by Pearson's chi-square test."""
    for temperature in (1.0, 0.5, 2.0):
        model = TableModel([ROW] * len(ITOS), record=False)
        plain = run_sample(sample, model, "风", VISIBLE_DRAWS, temperature, 2024)
        _fail(returned_problem(plain, "风", VISIBLE_DRAWS))
        generated = plain["text"][1:]
        _fail(distribution_problem(ROW, temperature, ITOS, generated, CHI_SQUARE_THRESHOLD))
        counts = counts_of(generated, ITOS)
        expected = [round(VISIBLE_DRAWS * p) for p in softmax_probs(ROW, temperature)]
        print(f"temperature {temperature}: counts {counts}, expected about {expected}, "
              f"chi-square {chi_square(counts, softmax_probs(ROW, temperature)):.1f}")
    print("sample (distribution): visible checks passed.")
