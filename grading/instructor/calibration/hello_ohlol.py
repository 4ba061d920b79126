"""Calibrate the training tests of ``hello_ohlol``: OneHotRNN (the Linear head) and EmbeddingRNN.

For every seed the hidden test's own cases are drawn (``Exercise.cases(seed)``: hello -> ohlol
and hello -> a random target over e, h, l, o, each retrained from two fresh initialisations),
the catalogue's answer is retrained with the test's own probe (the course's training loop, one
thread) and judged by the test's own judge (the best of the two runs must beat the threshold).
A threshold is right when the reference passes on every seed and every known-bad variant
fails on every seed. ``loss_pass_rate`` says how often the loss *alone* would pass: the bugs no
loss threshold catches (an embedding that is never trained) show up there with a high rate and a
``pass_rate`` of 0, because the structural checks catch them.

Run ``python -m grading calibrate [num_seeds]`` to print the table.
"""

from __future__ import annotations

import statistics
import time

import torch

from grading.instructor.catalogue import answers_for
from grading.instructor.exercises import EXERCISES
from grading.instructor.exercises.base import is_packed_tensor, unpack

from . import verdict_problems

# exercise grade_id -> (catalogue key, expected verdict)
VARIANTS = {
    "one_hot_rnn_head": [("reference", "pass"), ("names_reshape", "pass"),
                         ("no_head", "fail"), ("hidden_reset", "fail"), ("softmax", "fail")],
    "embedding_rnn": [("reference", "pass"), ("names_reshape", "pass"),
                      ("no_head", "fail"), ("frozen_embedding", "fail"), ("embedding_in_list", "fail"),
                      ("hidden_reset", "fail"), ("batch_first_missing", "fail")],
}


def _load(grade_id: str, key: str):
    exercise = EXERCISES[grade_id]
    answer = next(a for a in answers_for(grade_id) if a.key == key)
    namespace: dict = {}
    exec(exercise.preamble, namespace)  # noqa: S102 - the instructor's catalogue
    exec(answer.source, namespace)  # noqa: S102
    return exercise, namespace[exercise.name]


def _loss(target: list[int], run) -> float:
    """Mean cross-entropy of one trained run's logits, as the probe returned them (what the loss alone says)."""
    logits = run.get("logits") if isinstance(run, dict) else None
    if not is_packed_tensor(logits) or tuple(logits["shape"]) != (len(target), 4):
        return float("inf")
    return float(torch.nn.functional.cross_entropy(unpack(logits), torch.tensor(target)))


def calibrate(num_seeds: int = 200, variants: dict | None = None) -> list[dict]:
    """Retrain every variant on ``num_seeds`` grading seeds x (ohlol, random target), each case being two
    fresh runs as in the hidden test; one row per (exercise, variant, target kind).

    Row keys: exercise, variant, target, expected, seeds, runs, pass_rate (the hidden test's verdict),
    loss_pass_rate (best run's loss <= threshold, ignoring the structural checks), worst_loss (worst case
    of the best of two runs: what the threshold is compared with), worst_run_loss (worst single run),
    runs_over_threshold, median_loss, best_loss, threshold, ms_per_run.
    """
    torch.set_num_threads(1)
    rows = []
    for grade_id, plan in (variants or VARIANTS).items():
        for key, expected in plan:
            exercise, cls = _load(grade_id, key)
            results: dict[str, list] = {"ohlol": [], "random": []}
            started = time.perf_counter()
            runs = 0
            for seed in range(num_seeds):
                train_cases = [c for c in exercise.cases(seed) if c.data.get("kind") == "train"]
                for kind, case in zip(("ohlol", "random"), train_cases, strict=False):
                    observed = exercise.probe(cls, case)
                    verdict = exercise.judge(case, observed)
                    losses = [_loss(case.data["target"], run) for run in observed["runs"]]
                    runs += len(losses)
                    results[kind].append((verdict is None, losses))
            per_run = (time.perf_counter() - started) / max(runs, 1)
            for kind, cases in results.items():
                best = [min(losses) for _, losses in cases]
                every = [loss for _, losses in cases for loss in losses]
                rows.append({
                    "exercise": grade_id, "variant": key, "target": kind, "expected": expected,
                    "seeds": len(cases), "runs": len(every),
                    "pass_rate": sum(ok for ok, _ in cases) / len(cases),
                    "loss_pass_rate": sum(b <= exercise.THRESHOLD for b in best) / len(cases),
                    "worst_loss": max(best), "worst_run_loss": max(every),
                    "runs_over_threshold": sum(loss > exercise.THRESHOLD for loss in every),
                    "median_loss": statistics.median(every), "best_loss": min(every),
                    "threshold": exercise.THRESHOLD, "ms_per_run": round(1000 * per_run, 1),
                })
    return rows


def settings_problems() -> list[str]:
    """The visible training checks must use the hidden tests' calibrated setting."""
    from grading.student import hello_ohlol as visible

    bad = []
    for grade_id in VARIANTS:
        exercise = EXERCISES[grade_id]
        for name in ("LR", "NUM_EPOCHS", "THRESHOLD"):
            if getattr(visible, name) != getattr(exercise, name):
                bad.append(f"grading.student.hello_ohlol.{name} = {getattr(visible, name)}, "
                           f"but {grade_id} uses {getattr(exercise, name)}")
    return bad


def problems(rows: list[dict]) -> list[str]:
    """Rows whose verdicts are not all the expected one, and settings out of sync."""
    return settings_problems() + verdict_problems(rows)


def format_table(rows: list[dict]) -> str:
    head = (f"{'exercise':<17} {'variant':<20} {'target':<7} {'seeds':>5} {'pass':>6} {'loss<=thr':>9} "
            f"{'worst':>8} {'worst run':>9} {'runs>thr':>8} {'median':>8} {'best':>8} {'thr':>5} {'ms/run':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['exercise']:<17} {r['variant']:<20} {r['target']:<7} {r['seeds']:>5} {r['pass_rate']:>6.3f} "
                     f"{r['loss_pass_rate']:>9.3f} {r['worst_loss']:>8.4f} {r['worst_run_loss']:>9.4f} "
                     f"{r['runs_over_threshold']:>8} {r['median_loss']:>8.4f} {r['best_loss']:>8.4f} "
                     f"{r['threshold']:>5} {r['ms_per_run']:>7}")
    return "\n".join(lines)

