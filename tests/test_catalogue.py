"""Every catalogue answer, checked in-process by the hidden checks: correct ones pass every
test cell of their exercise; wrong ones fail exactly the cells they name, with their diagnosis."""

import pytest

from conftest import source_nb
from grading.instructor.catalogue import ANSWERS
from grading.instructor.exercises import EXERCISES, hidden_check
from grading.instructor.verifier import setup_imports


def run_answer(answer):
    """Run the answer with exactly the names its notebook's setup cells import, as a student's kernel would."""
    exercise = EXERCISES[answer.exercise]
    namespace: dict = {}
    exec(setup_imports(source_nb(exercise.assignment, exercise.notebook)), namespace)
    exec(answer.source, namespace)
    messages = {}
    for test_id in exercise.test_ids:
        try:
            hidden_check(test_id, namespace[exercise.name])
            messages[test_id] = None
        except AssertionError as exc:
            messages[test_id] = str(exc)
    return messages


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: f"{a.exercise}-{a.key}")
def test_catalogue_answer_gets_the_verdict_it_deserves(answer):
    messages = run_answer(answer)
    failed = tuple(t for t, m in messages.items() if m)
    if answer.correct:
        assert not failed, f"a correct answer ({answer.description}) failed: {messages}"
        return
    assert set(failed) == set(answer.fails), (
        f"{answer.description}: failed {failed}, expected {answer.fails}: {messages}")
    for test_id in failed:
        assert answer.message in messages[test_id], (
            f"{test_id}: {messages[test_id]!r} does not name the fault ({answer.message!r})")
