"""Every catalogue answer, checked in-process by the hidden checks: correct ones pass every
test cell of their exercise; wrong ones fail exactly the cells they name, with their diagnosis."""

import nbformat
import pytest

from conftest import REPO, source_nb
from grading.instructor.catalogue import ANSWERS
from grading.instructor.exercises import EXERCISES, hidden_check
from grading.instructor.grader import HIDDEN, INSTRUCTOR_SOURCES
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


def _secret_lines() -> set[str]:
    """What no student-visible message may quote (grader.secret_lines, read from this repository's files)."""
    lines = set()
    for path in (REPO / "source").rglob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            for block in HIDDEN.findall(cell.source):
                lines.update(line.strip() for line in block.splitlines() if len(line.strip()) >= 8)
    for rel in INSTRUCTOR_SOURCES:
        for path in (REPO / "grading" / rel).rglob("*.py"):
            lines.update(line.strip() for line in path.read_text().splitlines() if len(line.strip()) >= 24)
    return lines


SECRETS = _secret_lines()


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
        quoted = [line for line in SECRETS if line in messages[test_id]]
        assert not quoted, f"{test_id}: the feedback would withhold this message, it quotes {quoted[:2]}"
