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
_RECIPE = ("how the gradients are clipped and the loss reduced only shows in the parameters after several Adam steps "
           "(Adam's first step does not depend on the gradient's scale): checking it needs a reference training loop, "
           "which is train_tbptt's answer, and the student module ships no answer")
NOT_VISIBLE: dict[tuple[str, str, str], str] = {
    ("train_tbptt", "no_clip", "test_train_tbptt_steps"): _RECIPE,
    ("train_tbptt", "per_parameter_clip", "test_train_tbptt_steps"): _RECIPE,
    ("train_tbptt", "summed_loss", "test_train_tbptt_steps"): _RECIPE,
}

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


TRAINING_TESTS = sorted(tid for ex in EXERCISES.values() for tid in ex.verifier_only)


def _run_test_cell(answer, test_id: str, hidden: bool) -> tuple[str, str | None]:
    """Run the answer, then the test cell (visible part, or the whole cell with ``hidden``); (stdout, failure)."""
    exercise = EXERCISES[answer.exercise]
    cell = next(c.source for c in source_nb(exercise.assignment, exercise.notebook).cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == test_id)
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(setup_imports(source_nb(exercise.assignment, exercise.notebook)), namespace)
        exec(answer.source, namespace)
        try:
            exec(cell if hidden else cell.split(HIDDEN_MARK)[0], namespace)
        except AssertionError as exc:
            return out.getvalue(), str(exc)
    return out.getvalue(), None


def test_the_training_tests_are_the_ones_the_verifier_alone_decides():
    assert TRAINING_TESTS == ["test_char_lm_training", "test_embedding_rnn_training", "test_gru_training",
                              "test_lstm_training", "test_one_hot_rnn_head_training"]


@pytest.mark.parametrize("test_id", TRAINING_TESTS)
def test_validate_trains_and_grading_leaves_the_training_to_the_verifier(test_id, monkeypatch):
    """In a student's kernel a training test trains; in the grader's kernels (GRADING_VERIFIER_DECIDES=1) neither
    its visible nor its hidden part trains a second time: the out-of-kernel check trains and decides. A model
    that is wrong before any training is still named in the kernel."""
    from grading.student import checks

    exercise = next(ex for ex in EXERCISES.values() if test_id in ex.test_ids)
    correct = next(a for a in ANSWERS if a.exercise == exercise.grade_id and a.correct)
    out, failure = _run_test_cell(correct, test_id, hidden=True)
    assert failure is None and "passed" in out and "the grader trains it again" not in out

    monkeypatch.setenv(checks.VERIFIER_DECIDES, "1")
    trained = []
    for module in ("grading.student.lstm_gru", "grading.student.hello_ohlol", "grading.student.char_lm"):
        for name in ("train_cell", "_train"):
            if hasattr(__import__(module, fromlist=[name]), name):
                monkeypatch.setattr(f"{module}.{name}", lambda *a, **k: trained.append(a) or {})
    out, failure = _run_test_cell(correct, test_id, hidden=True)
    assert failure is None, failure
    assert "the grader trains it again out of the kernel" in out
    assert "the out-of-kernel check trains and decides" in out
    assert not trained
    early = [a for a in ANSWERS if a.exercise == exercise.grade_id and not a.correct and test_id in a.fails
             and visible_message(a, test_id) and "train" not in visible_message(a, test_id).lower()]
    for answer in early[:3]:
        assert _run_test_cell(answer, test_id, hidden=False)[1] is not None, answer.key
