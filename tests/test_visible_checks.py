"""Validate catches what the hidden tests catch.

For every wrong answer of the catalogue and every test cell it must fail, the *visible* part of
that test cell (what a student's Validate runs) must fail too, with a message that names the same
fault as the hidden test (the answer's ``message``). A wrong answer Validate cannot catch is listed
in ``NOT_VISIBLE`` with the reason.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest

from conftest import source_nb
from grading.instructor.catalogue import ANSWERS
from grading.instructor.exercises import EXERCISES
from grading.instructor.verifier import setup_imports

HIDDEN_MARK = "### BEGIN HIDDEN TESTS"

# (exercise, answer key, test cell) -> why the visible check cannot fail it.
NOT_VISIBLE: dict[tuple[str, str, str], str] = {}

WRONG = [(a, test_id) for a in ANSWERS if not a.correct for test_id in a.fails]


def visible_source(assignment: str, notebook: str, test_id: str) -> str:
    """The part of a test cell the release keeps (everything before the hidden tests)."""
    for cell in source_nb(assignment, notebook).cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == test_id:
            return cell.source.split(HIDDEN_MARK)[0]
    raise KeyError(f"{assignment}/{notebook}: no test cell {test_id}")


def visible_message(answer, test_id: str) -> str | None:
    """Run the answer, then the visible part of ``test_id``, as a kernel would; the failure message or None."""
    exercise = EXERCISES[answer.exercise]
    namespace: dict = {}
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(setup_imports(source_nb(exercise.assignment, exercise.notebook)), namespace)
        exec(answer.source, namespace)
        try:
            exec(visible_source(exercise.assignment, exercise.notebook, test_id), namespace)
        except AssertionError as exc:
            return str(exc)
    return None


@pytest.mark.parametrize("answer,test_id", WRONG, ids=[f"{a.exercise}-{a.key}-{t}" for a, t in WRONG])
def test_validate_names_the_fault_the_hidden_test_names(answer, test_id):
    reason = NOT_VISIBLE.get((answer.exercise, answer.key, test_id))
    message = visible_message(answer, test_id)
    if reason:
        assert message is None, f"listed as invisible ({reason}) but Validate now fails it: {message!r}"
        return
    assert message is not None, f"{answer.description}: Validate passes {test_id}; the hidden test fails it"
    assert answer.message in message, (
        f"{answer.description}: Validate says {message!r}, which does not name the fault ({answer.message!r})")


def test_every_exemption_is_a_catalogue_entry():
    known = {(a.exercise, a.key, t) for a, t in WRONG}
    assert set(NOT_VISIBLE) <= known, sorted(set(NOT_VISIBLE) - known)
