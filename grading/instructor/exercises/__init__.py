"""Hidden checks of every graded exercise, and the entry point hidden test cells call.

A hidden test cell reads::

    from grading.instructor.exercises import hidden_check
    hidden_check("test_rnn_cell_step", rnn_cell_step)

The same exercise objects drive the out-of-kernel verifier (``grading.instructor.verifier``). Which
modules hold them is declared in :mod:`grading.instructor.exercises.registry`.
"""

from __future__ import annotations

from typing import Any

from grading.student.checks import CheckFailed, in_grading_kernel, quiet

from .base import Case, Exercise, run_cases
from .registry import exercise_modules

# Seed of the in-kernel hidden tests (feedback). The verifier draws its own per submission.
KERNEL_SEED = 20241128

EXERCISES: dict[str, Exercise] = {ex.grade_id: ex for mod in exercise_modules().values() for ex in mod.EXERCISES}
BY_TEST_ID: dict[str, Exercise] = {tid: ex for ex in EXERCISES.values() for tid in ex.test_ids}


def hidden_check(test_id: str, obj: Any, seed: int = KERNEL_SEED) -> None:
    """Run the hidden cases of one test cell in-process; raise CheckFailed with the diagnosis.

    While grading, a test cell the verifier alone decides (``Exercise.verifier_only``: it trains the student's
    model, as the verifier does with the submission's own seed) is not trained a second time here: a student who
    sets the variable only skips work whose verdict never counted."""
    exercise = BY_TEST_ID[test_id]
    if test_id in exercise.verifier_only and in_grading_kernel():
        print("(hidden training cases: the out-of-kernel check trains and decides)")
        return
    violation = exercise.scratch_violation_in_object(obj)
    if violation:
        raise CheckFailed(violation)
    with quiet():
        cases = [c for c in exercise.cases(seed) if c.test_id == test_id]
        message = run_cases(exercise, obj, cases)[test_id]
    if message:
        raise CheckFailed(message)


__all__ = ["BY_TEST_ID", "Case", "EXERCISES", "Exercise", "hidden_check"]
