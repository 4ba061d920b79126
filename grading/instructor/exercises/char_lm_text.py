"""Hidden checks of the text parts of ``poems.ipynb``: build_vocab, make_batches, perplexity, sample.

The diagnoses are the visible checks' own (:mod:`grading.student.char_lm_text`), so Validate and the grade name
the same fault; the inputs are drawn from the grader's seed and the references are computed here.

``sample`` is checked with the toy :class:`~grading.student.char_lm_text.TableModel`, which the probe builds
inside the sandbox from the case's plain data (a logits table), since no model object crosses the sandbox
boundary; the probe returns the generated text and the calls the model saw, as plain data. The distribution test
draws 1000 characters at temperatures 1, 0.5 and 2 from a model whose logits never change and compares the
counts with softmax(logits / temperature) by Pearson's chi-square (5 degrees of freedom) against
``CHI_SQUARE_THRESHOLD``; :func:`calibrate_sample` gives the figures behind that threshold.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from typing import Any

import torch

from grading.student.char_lm import UNKNOWN
from grading.student.char_lm_text import (
    CHI_SQUARE_THRESHOLD,
    TableModel,
    build_vocab_problem,
    chi_square,
    chi_square_sf,
    counts_of,
    distribution_problem,
    generator_problem,
    greedy_problem,
    make_batches_problem,
    negative_temperature_problem,
    perplexity_problem,
    plain_batches,
    plain_result,
    plain_value,
    plain_vocab,
    returned_problem,
    sample_calls_problem,
    softmax_probs,
)

from .base import Case, Exercise, ProbeError, pack, unpack

ASSIGNMENT, NOTEBOOK = "char_lm", "poems"
# Characters the hidden cases draw their texts and vocabularies from: Han characters, punctuation, newline, ASCII.
POOL = "春眠不觉晓处闻啼鸟夜来风雨声花落知多少床前明月光疑是地上霜举头望低思故乡，。？！\nab"


def _guard(name: str, judge):
    """Run a judge; unreadable plain data from the sandbox is a failure, never a crash of the grader."""
    try:
        return judge()
    except Exception as exc:  # noqa: BLE001
        return f"{name}: the check could not read the results ({type(exc).__name__}: {exc})."


def _call(fn, *args) -> tuple[Any, str | None]:
    """(result, None) or (None, "TypeName: message"); NotImplementedError propagates (the harness names it)."""
    try:
        return fn(*args), None
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - any crash of student code is a finding
        return None, f"{type(exc).__name__}: {str(exc)[:300]}"


# --------------------------------------------------------------------------- build_vocab


class BuildVocab(Exercise):
    grade_id = "build_vocab"
    name = "build_vocab"
    assignment = ASSIGNMENT
    notebook = NOTEBOOK
    test_ids = ("test_build_vocab",)

    FIXED = ("春", "花落知多少\n\n", "ba，a。\nb春")

    def cases(self, seed: int) -> list[Case]:
        rng = random.Random(seed)
        texts = list(self.FIXED)
        texts += ["".join(rng.choice(POOL) for _ in range(rng.randint(5, 80))) for _ in range(4)]
        return [Case(self.test_ids[0], f"text of {len(t)} characters", {"text": t}) for t in texts]

    def probe(self, fn: Any, case: Case) -> Any:
        result, error = _call(fn, case.data["text"])
        return {"error": error} if error else plain_vocab(result)

    def judge(self, case: Case, observed: Any) -> str | None:
        def run():
            if "error" in observed:
                return f"build_vocab raised {observed['error']}"
            text = case.data["text"]
            problem = build_vocab_problem(text, observed)
            if problem:
                return problem
            itos = [UNKNOWN, *sorted(set(text))]
            if observed["itos"] != itos or dict(observed["stoi"]) != {ch: i for i, ch in enumerate(itos)}:
                return "build_vocab differs from itos = [UNKNOWN] + sorted(set(text)) and its inverse stoi."
            return None
        return _guard(self.name, run)


# --------------------------------------------------------------------------- make_batches


def reference_batches(ids: torch.Tensor, batch_size: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """d2l's sequential partitioning with offset 0 (None when num_windows == 0)."""
    n = (len(ids) - 1) // batch_size
    num_windows = n // seq_len
    if num_windows == 0:
        return None
    xs = ids[:n * batch_size].view(batch_size, n)
    ys = ids[1:n * batch_size + 1].view(batch_size, n)
    cut = num_windows * seq_len
    return (xs[:, :cut].reshape(batch_size, num_windows, seq_len).transpose(0, 1).contiguous(),
            ys[:, :cut].reshape(batch_size, num_windows, seq_len).transpose(0, 1).contiguous())


class MakeBatches(Exercise):
    grade_id = "make_batches"
    name = "make_batches"
    assignment = ASSIGNMENT
    notebook = NOTEBOOK
    test_ids = ("test_make_batches",)

    # (len(ids), batch_size, seq_len): several windows, one window, batch 1, rows that drop a tail, none at all.
    FIXED = ((26, 3, 4), (101, 4, 5), (50, 1, 7), (9, 2, 4), (10, 3, 4), (3, 2, 1))

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        sizes = list(self.FIXED) + [(rng.randint(2, 300), rng.randint(1, 6), rng.randint(1, 12)) for _ in range(4)]
        out = []
        for length, batch_size, seq_len in sizes:
            ids = torch.randperm(5000, generator=gen)[:length] + rng.randint(0, 100)
            out.append(Case(self.test_ids[0], f"len(ids)={length}, batch_size={batch_size}, seq_len={seq_len}",
                            {"ids": pack(ids), "batch_size": batch_size, "seq_len": seq_len, "distinct": True}))
        stream = torch.randint(0, 6, (rng.randint(60, 120),), generator=gen)
        out.append(Case(self.test_ids[0], "a text with repeated characters",
                        {"ids": pack(stream), "batch_size": 3, "seq_len": 5, "distinct": False}))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        ids = unpack(case.data["ids"])
        result, error = _call(fn, ids, case.data["batch_size"], case.data["seq_len"])
        return {"error": error} if error else {"plain": plain_batches(result)}

    def judge(self, case: Case, observed: Any) -> str | None:
        def run():
            ids = unpack(case.data["ids"])
            batch_size, seq_len = case.data["batch_size"], case.data["seq_len"]
            error, plain = observed.get("error"), observed.get("plain")
            if case.data["distinct"]:
                return make_batches_problem(ids.tolist(), batch_size, seq_len, plain, error)
            expected = reference_batches(ids, batch_size, seq_len)
            problem = make_batches_problem(list(range(len(ids))), batch_size, seq_len, {"returned": "-"}, error) \
                if error else None
            if problem or expected is None:
                return problem
            if "returned" in plain:
                return f"make_batches must return a pair (inputs, targets) of tensors, got a {plain['returned']}."
            for name, want in zip(("inputs", "targets"), expected, strict=True):
                got = plain[name]
                same = got["shape"] == list(want.shape) and got["values"] == want.reshape(-1).tolist()
                if got["dtype"] != "int64" or not same:
                    return (f"make_batches({case.label}): {name} differs from d2l's sequential partitioning "
                            f"(dtype {got['dtype']}, shape {got['shape']}, expected int64 {list(want.shape)}).")
            return None
        return _guard(self.name, run)


# --------------------------------------------------------------------------- perplexity


class Perplexity(Exercise):
    grade_id = "perplexity"
    name = "perplexity"
    assignment = ASSIGNMENT
    notebook = NOTEBOOK
    test_ids = ("test_perplexity",)

    SHAPES = (((7, 5), "float64"), ((3, 4, 6), "float64"), ((2, 3, 4, 9), "float64"), ((4, 6, 11), "float32"),
              ((2, 5, 3), "float32"))

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        out = [Case(self.test_ids[0], "uniform logits", {"logits": pack(torch.full((2, 3, 13), -1.5)),
                                                          "targets": pack(torch.arange(6).view(2, 3))})]
        for shape, dtype in self.SHAPES:
            scale = 0.5 + 2.5 * torch.rand(shape[:-1] + (1,), generator=gen, dtype=torch.float64)
            logits = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(getattr(torch, dtype))
            targets = torch.randint(0, shape[-1], shape[:-1], generator=gen)
            out.append(Case(self.test_ids[0], f"logits {shape} {dtype}", {"logits": pack(logits),
                                                                          "targets": pack(targets)}))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        result, error = _call(fn, unpack(case.data["logits"]), unpack(case.data["targets"]))
        return {"error": error} if error else {"value": plain_value(result)}

    def judge(self, case: Case, observed: Any) -> str | None:
        def run():
            if "error" in observed:
                return f"perplexity raised {observed['error']}"
            logits, targets = unpack(case.data["logits"]), unpack(case.data["targets"])
            vocab_size = logits.shape[-1]
            nll = torch.nn.functional.cross_entropy(logits.double().reshape(-1, vocab_size), targets.reshape(-1),
                                                    reduction="none").view(targets.shape)
            tol = 1e-9 if logits.dtype == torch.float64 else 1e-5
            problem = perplexity_problem(observed["value"], nll, tol)
            return f"logits {tuple(logits.shape)}: {problem}" if problem else None
        return _guard(self.name, run)


# --------------------------------------------------------------------------- sample

VOCAB_SIZE = 6
DRAWS = 1000  # characters drawn per temperature in the distribution test
TEMPERATURES = (1.0, 0.5, 2.0)
ROW_VALUES = (0.4, 1.0, -0.6, 0.2, -1.0, 0.6)  # the logits of the distribution test, permuted per seed
GREEDY_ROW = (1.6, 0.4, 0.0, -0.4, -0.9, -1.5)  # a row of the greedy table: the top logit 1.2 above the next


def _vocabulary(rng: random.Random) -> tuple[list[str], dict[str, int], str]:
    """itos (UNKNOWN and 5 characters of POOL), stoi, and a character that is not in the vocabulary."""
    chars = rng.sample([c for c in POOL if c != "\n"], VOCAB_SIZE)
    itos = [UNKNOWN, *sorted(chars[:-1])]
    return itos, {ch: i for i, ch in enumerate(itos)}, chars[-1]


def _sample_run(fn: Any, table: list, itos: list[str], prompt: str, length: int, temperature: float, seed: int,
                record: bool = True) -> dict:
    model = TableModel(table, record=record)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        result, error = _call(fn, model, {ch: i for i, ch in enumerate(itos)}, list(itos), prompt, length,
                              temperature, gen)
    return {"result": plain_result(result, error), "calls": model.calls if record else None}


class Sample(Exercise):
    grade_id = "sample"
    name = "sample"
    assignment = ASSIGNMENT
    notebook = NOTEBOOK
    test_ids = ("test_sample_interface", "test_sample_distribution")

    def cases(self, seed: int) -> list[Case]:
        rng = random.Random(seed)
        interface, distribution = self.test_ids
        itos, stoi, outside = _vocabulary(rng)
        table = []
        for _ in range(VOCAB_SIZE):
            row = list(GREEDY_ROW)
            rng.shuffle(row)
            table.append(row)
        # A prompt whose first and last characters lead to different greedy successors, with one unknown character.
        first, last = rng.sample(range(1, VOCAB_SIZE), 2)
        while table[first].index(max(table[first])) == table[last].index(max(table[last])):
            table[first] = table[first][1:] + table[first][:1]
        prompt = itos[first] + outside + itos[last]
        base = {"table": table, "itos": itos, "prompt": prompt, "length": 8}
        out = [Case(interface, "greedy", {**base, "temperature": 0, "seed": rng.randrange(2**31)}),
               Case(interface, "near greedy", {**base, "temperature": 0.05, "seed": rng.randrange(2**31)}),
               Case(interface, "negative temperature", {**base, "temperature": -0.7, "seed": 0}),
               Case(interface, "generator", {**base, "table": [list(ROW_VALUES)] * VOCAB_SIZE, "length": 30,
                                             "temperature": 1.0, "seed": rng.randrange(2**31)})]
        for temperature in TEMPERATURES:
            row = list(ROW_VALUES)
            rng.shuffle(row)
            shift = rng.uniform(-2, 2)
            out.append(Case(distribution, f"temperature {temperature}",
                            {"row": [v + shift for v in row], "itos": itos, "prompt": itos[rng.randrange(1, 6)],
                             "length": DRAWS, "temperature": temperature, "seed": rng.randrange(2**31)}))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        d = case.data
        if case.label == "generator":
            runs = []
            for _ in range(2):
                before = torch.random.get_rng_state()
                run = _sample_run(fn, d["table"], d["itos"], d["prompt"], d["length"], 1.0, d["seed"], record=False)
                runs.append([run["result"], bool(torch.equal(before, torch.random.get_rng_state()))])
            return {"runs": runs}
        if case.test_id == self.test_ids[1]:
            table = [d["row"]] * VOCAB_SIZE
            return _sample_run(fn, table, d["itos"], d["prompt"], d["length"], d["temperature"], d["seed"],
                               record=False)
        return _sample_run(fn, d["table"], d["itos"], d["prompt"], d["length"], d["temperature"], d["seed"])

    def judge(self, case: Case, observed: Any) -> str | None:
        return _guard(self.name, lambda: self._judge(case, observed))

    def _judge(self, case: Case, observed: Any) -> str | None:
        d = case.data
        if case.label == "generator":
            first, second = observed["runs"]
            return returned_problem(first[0], d["prompt"], d["length"]) or generator_problem(first, second)
        result = observed["result"]
        if case.label == "negative temperature":
            return negative_temperature_problem(result)
        problem = returned_problem(result, d["prompt"], d["length"])
        if problem:
            return problem
        generated = result["text"][len(d["prompt"]):]
        if case.test_id == self.test_ids[1]:
            return distribution_problem(d["row"], d["temperature"], d["itos"], generated, CHI_SQUARE_THRESHOLD)
        stoi = {ch: i for i, ch in enumerate(d["itos"])}
        prompt_ids = [stoi.get(ch, 0) for ch in d["prompt"]]
        if any(ch not in stoi for ch in generated):
            return "sample generated characters that are not in itos: map each drawn id to itos[id]."
        problem = sample_calls_problem(prompt_ids, [stoi[ch] for ch in generated], observed["calls"], d["prompt"])
        return problem or greedy_problem(torch.tensor(d["table"]), prompt_ids, d["itos"], generated,
                                         d["temperature"])


# --------------------------------------------------------------------------- calibration of the chi-square test

SAMPLE_VARIANTS = (("reference", "pass"), ("exp_normalise", "pass"), ("feeds_last_too", "pass"),
                   ("multiplied", "fail"), ("always_argmax", "fail"), ("no_temperature", "fail"))


def sample_statistics(fn: Any, seed: int) -> list[float]:
    """Pearson's statistic of each distribution case of ``seed`` for the sample function ``fn`` (inf: unusable)."""
    exercise = Sample()
    stats = []
    for case in (c for c in exercise.cases(seed) if c.test_id == exercise.test_ids[1]):
        result = exercise.probe(fn, case)["result"]
        counts = counts_of(result.get("text", "")[1:], case.data["itos"]) if "text" in result else None
        stats.append(math.inf if counts is None or sum(counts) != DRAWS else
                     chi_square(counts, softmax_probs(case.data["row"], case.data["temperature"])))
    return stats


def calibrate_sample(num_seeds: int = 200, variants: tuple[tuple[str, str], ...] = SAMPLE_VARIANTS) -> list[dict]:
    """The chi-square test of ``test_sample_distribution`` on grading seeds 0 .. num_seeds - 1, per catalogue
    variant, in the rows of :mod:`grading.instructor.calibration` (keys exercise, variant, target, expected, seeds,
    pass_rate, worst, median, best, threshold, cpu_ms_per_run): the figure of a seed is the largest statistic of
    its three temperatures, so ``worst`` is the reference's largest over all seeds and ``best`` a wrong variant's
    smallest; ``tail_probability`` is P(chi-square_5 > threshold), a correct sample's chance to fail one case."""
    from grading.instructor.catalogue import answers_for  # instructor-only: never imported in the sandbox

    torch.set_num_threads(1)
    exercise = Sample()
    rows = []
    for key, expected in variants:
        answer = next(a for a in answers_for("sample") if a.key == key)
        namespace: dict = {}
        exec(exercise.preamble, namespace)  # noqa: S102 - the instructor's catalogue
        exec(answer.source, namespace)  # noqa: S102
        fn = namespace["sample"]
        started = time.process_time()
        worst_per_seed = [max(sample_statistics(fn, seed)) for seed in range(num_seeds)]
        cpu = (time.process_time() - started) / num_seeds
        passed = [w <= CHI_SQUARE_THRESHOLD for w in worst_per_seed]
        rows.append({"exercise": "sample", "variant": key, "target": "chi-square", "expected": expected,
                     "seeds": num_seeds, "pass_rate": sum(passed) / num_seeds, "worst": max(worst_per_seed),
                     "median": statistics.median(worst_per_seed), "best": min(worst_per_seed),
                     "threshold": CHI_SQUARE_THRESHOLD, "cpu_ms_per_run": round(1000 * cpu, 1),
                     "tail_probability": chi_square_sf(CHI_SQUARE_THRESHOLD, VOCAB_SIZE - 1)})
    return rows


def format_sample_table(rows: list[dict]) -> str:
    """The calibration rows as a text table."""
    lines = [f"{'variant':16s} {'expected':8s} {'seeds':>5s} {'pass':>6s} {'max stat':>10s} {'min stat':>10s}"]
    for r in rows:
        lines.append(f"{r['variant']:16s} {r['expected']:8s} {r['seeds']:5d} {r['pass_rate']:6.1%} "
                     f"{r['worst']:10.1f} {r['best']:10.1f}")
    if rows:
        lines.append(f"threshold {rows[0]['threshold']:g} (5 degrees of freedom): a correct sample exceeds it with "
                     f"probability {rows[0]['tail_probability']:.2g} per case")
    return "\n".join(lines)


def sample_calibration_problems(rows: list[dict]) -> list[str]:
    """Rows whose pass rate is not 100% (references) or 0% (wrong variants)."""
    return [f"sample/{r['variant']}: pass rate {r['pass_rate']:.3f}, expected {r['expected']}" for r in rows
            if r["pass_rate"] != (1.0 if r["expected"] == "pass" else 0.0)]


EXERCISES = [BuildVocab(), MakeBatches(), Perplexity(), Sample()]

__all__ = ["EXERCISES", "ProbeError", "calibrate_sample", "format_sample_table", "reference_batches",
           "sample_calibration_problems"]
