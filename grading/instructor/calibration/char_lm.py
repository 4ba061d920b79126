"""Calibrate the ``char_lm`` thresholds: the graded training of ``CharLM`` (and the parts' own checks, below).

**Training.** For every seed the hidden test's own training case is drawn (``Exercise.cases(seed)``: the grader's
initialisation seed), the variant is trained with the test's own probe (the course's recipe: two epochs of truncated
BPTT over the training poems, Adam lr 0.005, clipping at 1.0, one thread) and judged by the test's own judge. The
figure is the validation perplexity divided by the unigram model's (estimated on the training text with add-one
smoothing, 590 on the course's split): a model that ignores context cannot go below 1. A threshold is right when every
reference passes on every seed and every known-bad variant fails on every seed. The ``one_char (own)`` row is the
perplexity of ``no_context`` (each character read on its own, from a zero state: a bigram model) from its *own*
forward pass, what a loss-only test would see: 0.76 to 0.78, above the threshold, so passing needs more context than
the last character.

**Sampling.** ``test_sample_distribution``'s chi-square threshold (rows of
:func:`grading.instructor.exercises.char_lm_text.calibrate_sample`): a run costs 0.1 s, so ``num_seeds`` seeds.

Training runs cost about 1.6 s each, so they take ``max(50, num_seeds // 4)`` seeds.

Run ``python -m grading calibrate [num_seeds]`` to print the table.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import nbformat
import torch

from grading.instructor.catalogue import answers_for
from grading.instructor.exercises import EXERCISES
from grading.instructor.exercises.base import run_cases
from grading.instructor.exercises.char_lm_model import corpus
from grading.instructor.exercises.char_lm_text import calibrate_sample
from grading.instructor.verifier import setup_imports
from grading.student.char_lm import PERPLEXITY_RATIO
from grading.student.checks import quiet

from . import verdict_problems

SOURCE = Path(__file__).resolve().parents[3] / "source" / "char_lm"
# (exercise, catalogue key, expected verdict of the training test)
TRAINING_VARIANTS = [
    ("char_lm", "reference", "pass"),
    ("char_lm", "sequential_names", "pass"),
    ("char_lm", "no_context", "fail"),
    ("char_lm", "softmax_output", "fail"),
]


def _load(grade_id: str, key: str):
    """The catalogue answer's object, defined after the imports of its notebook's setup cells."""
    exercise = EXERCISES[grade_id]
    answer = next(a for a in answers_for(grade_id) if a.key == key)
    notebook = nbformat.read(SOURCE / f"{exercise.notebook}.ipynb", as_version=4)
    namespace: dict = {}
    exec(setup_imports(notebook), namespace)  # noqa: S102 - the course's own notebook
    exec(answer.source, namespace)  # noqa: S102
    return exercise, namespace[exercise.name]


def training_seeds(num_seeds: int) -> int:
    return max(50, num_seeds // 4)


def calibrate_training(num_seeds: int) -> list[dict]:
    """One row per variant: pass rate and the ratio validation perplexity / unigram perplexity over the seeds."""
    baseline = corpus()["baseline"]
    rows = []
    for grade_id, key, expected in TRAINING_VARIANTS:
        exercise, cls = _load(grade_id, key)
        seeds = training_seeds(num_seeds) if expected == "pass" else max(10, training_seeds(num_seeds) // 5)
        passed, judged, own = 0, [], []
        started = time.process_time()
        for seed in range(seeds):
            case = next(c for c in exercise.cases(seed) if c.label == "training")
            try:
                observed = exercise.probe(cls, case)
            except Exception:  # noqa: BLE001 - a crashing variant fails
                judged.append(math.inf)
                own.append(math.inf)
                continue
            verdict = exercise.judge(case, observed)
            passed += verdict is None
            own_loss = observed.get("own_loss", math.inf)
            own.append(math.exp(own_loss) / baseline if math.isfinite(own_loss) else math.inf)
            judged.append(_judged_ratio(exercise, case, observed, baseline))
        cpu = (time.process_time() - started) / seeds
        rows.append(_row(grade_id, key, expected, seeds, passed / seeds, judged, cpu))
        if key == "no_context":
            rows.append(_row(grade_id, "one_char (own)", "fail", seeds, sum(r < PERPLEXITY_RATIO for r in own)
                             / seeds, own, cpu))
    return rows


def _judged_ratio(exercise, case, observed: dict, baseline: float) -> float:
    """The ratio the judge computes from the trained weights with genuine modules (inf when it cannot)."""
    from grading.instructor.exercises.char_lm_model import from_bytes, reference_model, run_reference

    try:
        layers = reference_model(case.data["sizes"])
        for label, module in layers.items():
            module.load_state_dict({k: from_bytes(v) for k, v in observed["weights"][label].items()})
        val = torch.tensor(case.data["val"])
        logits, _ = run_reference(layers, val[:-1].unsqueeze(0))
        return math.exp(float(torch.nn.functional.cross_entropy(logits[0], val[1:]))) / baseline
    except Exception:  # noqa: BLE001 - no usable weights
        return math.inf


def _row(exercise: str, variant: str, expected: str, seeds: int, pass_rate: float, ratios: list[float],
         cpu: float) -> dict:
    return {"exercise": exercise, "variant": variant, "target": "ppl/unigram", "expected": expected, "seeds": seeds,
            "pass_rate": pass_rate, "worst": max(ratios), "median": statistics.median(ratios), "best": min(ratios),
            "threshold": PERPLEXITY_RATIO, "cpu_ms_per_run": round(1000 * cpu, 1)}


# The exercises whose checks compare with a tolerance on grader-drawn inputs (the sample's chi-square and CharLM's
# training have their own rows).
VERDICT_EXERCISES = ("rnn_bptt", "clip_grad_norm", "build_vocab", "make_batches", "perplexity", "char_lm",
                     "train_tbptt")


def calibrate_verdicts(num_seeds: int) -> list[dict]:
    """Every catalogue answer of :data:`VERDICT_EXERCISES` on ``num_seeds`` grader seeds (the training case aside).

    A reference passes a seed when no test cell fails; a wrong answer "passes" a seed when one of the cells it must
    fail passes (it escapes). The figure is the number of the exercise's test cells that fail on a seed.
    """
    rows = []
    for grade_id in VERDICT_EXERCISES:
        exercise = EXERCISES[grade_id]
        for answer in answers_for(grade_id):
            _, obj = _load(grade_id, answer.key)
            failing, passed = [], 0
            started = time.process_time()
            for seed in range(num_seeds):
                cases = [c for c in exercise.cases(seed) if c.test_id not in exercise.verifier_only]
                with quiet():
                    verdicts = run_cases(exercise, obj, cases)
                failed = {tid for tid, message in verdicts.items() if message}
                failing.append(len(failed))
                wanted = {t for t in answer.fails if any(c.test_id == t for c in cases)}
                passed += not failed if answer.correct else not wanted <= failed
            cpu = (time.process_time() - started) / num_seeds
            rows.append({"exercise": grade_id, "variant": answer.key, "target": "cells failed",
                         "expected": "pass" if answer.correct else "fail", "seeds": num_seeds,
                         "pass_rate": passed / num_seeds, "worst": max(failing),
                         "median": statistics.median(failing), "best": min(failing), "threshold": "-",
                         "cpu_ms_per_run": round(1000 * cpu, 1)})
    return rows


def calibrate(num_seeds: int = 200) -> list[dict]:
    """Every grader-drawn check on ``num_seeds`` seeds, the chi-square test of ``sample`` on ``num_seeds`` seeds (a
    run costs 0.1 s), then the training test on ``max(50, num_seeds // 4)``."""
    torch.set_num_threads(1)
    return calibrate_verdicts(num_seeds) + calibrate_sample(num_seeds) + calibrate_training(num_seeds)


def problems(rows: list[dict]) -> list[str]:
    """Rows whose verdicts are not all the expected one."""
    return verdict_problems(rows)


def format_table(rows: list[dict]) -> str:
    head = (f"{'exercise':<13} {'variant':<20} {'figure':<12} {'exp':<4} {'seeds':>5} {'pass':>6} "
            f"{'worst':>8} {'median':>8} {'best':>8} {'thr':>6} {'cpu ms':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['exercise']:<13} {r['variant']:<20} {r['target']:<12} {r['expected']:<4} {r['seeds']:>5} "
                     f"{r['pass_rate']:>6.3f} {r['worst']:>8.4f} {r['median']:>8.4f} {r['best']:>8.4f} "
                     f"{r['threshold']:>6} {r['cpu_ms_per_run']:>8}")
    return "\n".join(lines)
