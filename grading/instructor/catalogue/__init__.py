"""The answer catalogue: alternative correct answers and common wrong answers of every exercise.

One instructor-only place, used by the tests (every correct answer gets full marks, every
wrong one loses the points of the test cells it names, with a message that names the fault)
and by the sample class (synthetic students submit these answers).
"""

from __future__ import annotations

from dataclasses import dataclass

from grading.instructor.exercises.registry import catalogue_modules


@dataclass(frozen=True)
class Answer:
    """One way to fill the solution cell ``exercise`` (its grade_id).

    ``source`` replaces the whole solution cell. A correct answer passes every test cell of
    the exercise; a wrong one fails exactly the test cells in ``fails``, and each failure
    message contains ``message`` (the diagnosis a student reads).
    """

    exercise: str
    key: str
    description: str
    source: str
    correct: bool
    fails: tuple[str, ...] = ()
    message: str = ""


def _load() -> list[Answer]:
    answers = [answer for module in catalogue_modules().values() for answer in module.ANSWERS]
    keys = [(a.exercise, a.key) for a in answers]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise ValueError(f"duplicate catalogue entries: {sorted(duplicates)}")
    return answers


ANSWERS: list[Answer] = _load()


def answers_for(exercise: str, correct: bool | None = None) -> list[Answer]:
    """The catalogue entries of one exercise (optionally only correct or only wrong ones)."""
    return [a for a in ANSWERS if a.exercise == exercise and (correct is None or a.correct == correct)]
