"""Calibrate the training tests of ``lstm_gru``: LSTMCellScratch and GRUCellScratch in the course's CharModel.

For every seed the hidden test's own training cases are drawn (``Exercise.cases(seed)``: one run on
hello -> ohlol, one on a random target over e, h, l, o, each from its own initial weights), the
variant is retrained with the test's own probe (the course's training loop, Adam lr 0.05, 150
epochs, summed loss, one thread) and judged by the test's own judge. A threshold is right when
every reference passes on every seed and every known-bad variant gets the verdict its catalogue
entry expects on every seed.

``loss_pass_rate`` says how often the loss *alone*, computed from the variant's own logits, would
pass: with a Linear head most wrong cells still fit five characters, so the loss catches few of
them. The judge does not trust the loss: it rebuilds the model with torch's nn.LSTMCell /
nn.GRUCell, loads the trained weights and requires the same logits, which no wrong forward pass
gives (``pass_rate`` 0 for them). The notes' LSTM and the shared-weight cell only fit when
input_size == hidden_size, so they are trained with embedding_size = hidden_size.

Why 150 epochs: at 100 epochs a correct GRU left a slow tail (worst of 1,000 runs 0.29 and 0.12, the
next 0.028: seeds 176 and 399 on random targets); at 150 the worst of the same 1,000 runs is 0.017
(LSTM: 0.023 at 100 epochs, 0.014 at 150).

Run ``python -m grading calibrate [num_seeds]`` to print the table.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from grading.instructor.catalogue import answers_for
from grading.instructor.exercises import EXERCISES
from grading.instructor.exercises.base import is_packed_tensor, unpack
from grading.student.lstm_gru import HIDDEN_SIZE, LOSS_THRESHOLD, encode

from . import verdict_problems

# exercise -> [(variant, expected verdict of the training test, options)]; "torch" variants put
# torch's own cell in the course model, the others are catalogue keys.
VARIANTS = {
    "lstm_cell": [
        ("torch.nn.LSTMCell", "pass", {}), ("chunk", "pass", {}), ("fused_concat", "pass", {}),
        ("detached_cell", "pass", {}),
        ("seed_lstm", "fail", {"embedding_size": HIDDEN_SIZE}),
        ("shared_weights", "fail", {"embedding_size": HIDDEN_SIZE}),
        ("sigmoid_candidate", "fail", {}), ("memory_dropped", "fail", {}), ("order_ifog", "fail", {}),
        ("tanh_forget_gate", "fail", {}), ("buffers", "fail", {}),
    ],
    "gru_cell": [
        ("torch.nn.GRUCell", "pass", {}), ("chunk", "pass", {}), ("interpolated", "pass", {}),
        ("detached_h", "pass", {}),
        ("shared_weights", "fail", {"embedding_size": HIDDEN_SIZE}),
        ("reset_before_matmul", "fail", {}), ("z_swapped", "fail", {}), ("sigmoid_candidate", "fail", {}),
        ("no_reset", "fail", {}), ("order_zrn", "fail", {}), ("buffers", "fail", {}),
    ],
}


def _load(grade_id: str, key: str):
    exercise = EXERCISES[grade_id]
    if key.startswith("torch."):
        return exercise, exercise.torch_cell
    answer = next(a for a in answers_for(grade_id) if a.key == key)
    namespace: dict = {}
    exec(exercise.preamble, namespace)  # noqa: S102 - the instructor's catalogue
    exec(answer.source, namespace)  # noqa: S102
    return exercise, namespace[exercise.name]


def _own_loss(case, observed) -> float:
    """Summed cross-entropy of the variant's own logits (what a loss-only test would see)."""
    logits = observed.get("logits") if isinstance(observed, dict) else None
    if not is_packed_tensor(logits) or tuple(logits["shape"]) != (len(case.data["target"]), 4):
        return float("inf")
    loss = float(F.cross_entropy(unpack(logits), encode(case.data["target"]), reduction="sum"))
    return loss if loss == loss else float("inf")


def _training_cases(exercise, seed: int, options: dict):
    cases = [c for c in exercise.cases(seed) if c.label == "training"]
    if "embedding_size" not in options:
        return cases
    out = []
    for case in cases:
        data = exercise.training_case(case.data["target"], case.data["init_seed"],
                                      embedding_size=options["embedding_size"])
        out.append(type(case)(case.test_id, case.label, data))
    return out


def calibrate(num_seeds: int = 200, variants: dict | None = None, bad_seeds: int | None = None) -> list[dict]:
    """Retrain every variant on seeds x (ohlol, random target); one row per (exercise, variant, target kind).

    References run ``num_seeds`` seeds, known-bad variants ``bad_seeds`` (default num_seeds // 4, at least 10).
    Rows: exercise, variant, target, expected, seeds, pass_rate, loss_pass_rate, worst_loss, median_loss,
    best_loss, threshold, cpu_ms_per_run.
    """
    torch.set_num_threads(1)
    bad_seeds = bad_seeds or max(10, num_seeds // 4)
    rows = []
    for grade_id, plan in (variants or VARIANTS).items():
        for key, expected, options in plan:
            exercise, cls = _load(grade_id, key)
            seeds = num_seeds if expected == "pass" else bad_seeds
            results: dict[str, list] = {"ohlol": [], "random": []}
            started = time.process_time()
            for seed in range(seeds):
                for kind, case in zip(("ohlol", "random"), _training_cases(exercise, seed, options), strict=False):
                    try:
                        observed = exercise.probe(cls, case)
                    except Exception:  # noqa: BLE001 - a crashing variant fails
                        results[kind].append((False, float("inf")))
                        continue
                    results[kind].append((exercise.judge(case, observed) is None, _own_loss(case, observed)))
            cpu_per_run = (time.process_time() - started) / (2 * seeds)
            for kind, runs in results.items():
                losses = [loss for _, loss in runs]
                rows.append({
                    "exercise": grade_id, "variant": key, "target": kind, "expected": expected, "seeds": len(runs),
                    "pass_rate": sum(ok for ok, _ in runs) / len(runs),
                    "loss_pass_rate": sum(loss <= LOSS_THRESHOLD for loss in losses) / len(runs),
                    "worst_loss": max(losses), "median_loss": statistics.median(losses), "best_loss": min(losses),
                    "threshold": LOSS_THRESHOLD, "cpu_ms_per_run": round(1000 * cpu_per_run, 1),
                })
    return rows


def problems(rows: list[dict]) -> list[str]:
    """Rows whose verdicts are not all the expected one."""
    return verdict_problems(rows)


def format_table(rows: list[dict]) -> str:
    head = (f"{'exercise':<10} {'variant':<20} {'target':<7} {'exp':<4} {'seeds':>5} {'pass':>6} {'loss<=thr':>9} "
            f"{'worst':>8} {'median':>8} {'best':>8} {'thr':>5} {'cpu ms':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['exercise']:<10} {r['variant']:<20} {r['target']:<7} {r['expected']:<4} {r['seeds']:>5} "
                     f"{r['pass_rate']:>6.3f} {r['loss_pass_rate']:>9.3f} "
                     f"{r['worst_loss']:>8.4f} {r['median_loss']:>8.4f} "
                     f"{r['best_loss']:>8.4f} {r['threshold']:>5} {r['cpu_ms_per_run']:>7}")
    return "\n".join(lines)

