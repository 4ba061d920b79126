"""Cheating submissions: a wrong answer never gains from patching the kernel, a correct one keeps
its points, and both are flagged. Nothing a submission prints reaches the feedback.

Each cheat is appended to the solution cell of an exercise, once with a wrong answer and once
with a correct one, and the whole set is graded in one class run through ``python -m grading grade``.
"""

import pytest

from conftest import (
    REPO,
    gradebook_scores,
    grading,
    limits_for,
    new_course,
    results,
    source_nb,
    submit,
    with_solution,
)
from grading.instructor.catalogue import answers_for
from grading.instructor.exercises import EXERCISES

pytestmark = pytest.mark.slow  # runs nbgrader, kernels or the sandbox end to end

CHEATS = {
    "input_transformer": 'get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])',
    "custom_exc": ("get_ipython().set_custom_exc((BaseException,), "
                   "lambda shell, etype, value, tb, tb_offset=None: None)"),
    "showtraceback": "get_ipython().showtraceback = lambda *args, **kwargs: None",
    "patched_comparisons": ("import numpy\ntorch.allclose = lambda *a, **k: True\n"
                            "numpy.allclose = lambda *a, **k: True\n"
                            "torch.testing.assert_close = lambda *a, **k: None\n"
                            "torch.Tensor.abs = lambda self: torch.zeros_like(self)\n"
                            "torch.Tensor.max = lambda self, *a, **k: torch.zeros((), dtype=self.dtype)"),
    "patched_course_checks": ("import grading.student.checks as checks\nimport grading.instructor.exercises as hidden\n"
                              "checks.check_close = lambda *a, **k: None\nhidden.hidden_check = lambda *a, **k: None\n"
                              "{visible_check} = lambda *a, **k: None"),
    "prerun_hook_leak": ("import base64\nget_ipython().events.register('pre_run_cell', lambda info: "
                         "print('LEAK', info.raw_cell, base64.b64encode(info.raw_cell.encode()).decode()))"),
}
# solution grade_id -> (visible check to silence, or None, hijack); assignment and notebook are the exercise's.
TARGETS = {
    "rnn_cell_step": ("check_rnn_cell_step",
                      "torch.nn.RNNCell.forward = lambda self, x, h=None: rnn_cell_step(x, h, self.weight_ih, "
                      "self.weight_hh, self.bias_ih, self.bias_hh)"),
    "lstm_cell": (None, "torch.nn.LSTMCell = LSTMCellScratch\nnn.LSTMCell = LSTMCellScratch"),
    "gru_cell": (None, "torch.nn.GRUCell = GRUCellScratch\nnn.GRUCell = GRUCellScratch"),
    # The capstone (its own time limits): the state log's judge silenced in the kernel.
    "train_tbptt": ("check_train_tbptt",
                    "import grading.student.char_lm as lm\nlm.state_problem = lambda *a, **k: None"),
}


def _answers(grade_id):
    correct = answers_for(grade_id, correct=True)[0]
    wrong = next(a for a in answers_for(grade_id, correct=False)
                 if not EXERCISES[grade_id].scratch_violation_in_source(a.source))
    return correct, wrong


def build_class():
    """student -> (assignment, notebook, grade_id, the test cells the answer fails, solution cell source)."""
    plan = {}
    for grade_id, (visible, hijack) in TARGETS.items():
        exercise = EXERCISES[grade_id]
        correct, wrong = _answers(grade_id)
        cheats = dict(CHEATS, hijacked_reference=hijack)
        for cheat, code in cheats.items():
            code = code.replace("{visible_check}", visible or "check_close")
            for label, answer in (("correct", correct), ("wrong", wrong)):
                plan[f"{grade_id}-{cheat}-{label}"] = (exercise.assignment, exercise.notebook, grade_id, answer.fails,
                                                       answer.source + "\n\n" + code + "\n")
    return plan


PLAN = build_class()


@pytest.fixture(scope="module")
def cheating_run(tmp_path_factory):
    assignments = sorted({p[0] for p in PLAN.values()})
    course = new_course(tmp_path_factory.mktemp("cheating"), assignments)
    for student, (assignment, notebook, grade_id, _, source) in PLAN.items():
        notebook_with_cheat = with_solution(source_nb(assignment, notebook), grade_id, source)
        submit(course, student, assignment, {notebook: notebook_with_cheat})
    for assignment in assignments:
        honest = {n: source_nb(assignment, n) for n in [p[1] for p in PLAN.values() if p[0] == assignment][:1]}
        submit(course, "honest", assignment, honest)
        grading("grade", assignment, root=course, env=limits_for(assignment), timeout=1500)
    return course


@pytest.mark.parametrize("student", sorted(PLAN))
def test_cheat_gets_what_the_code_deserves_and_is_flagged(cheating_run, student):
    assignment, notebook, grade_id, fails, _ = PLAN[student]
    scores = gradebook_scores(cheating_run, assignment, notebook)[student]
    record = results(cheating_run, assignment, student)["notebooks"][notebook]
    for tid in EXERCISES[grade_id].test_ids:
        full = record["cells"][tid]["max_score"]
        assert scores[tid] == (0.0 if tid in fails else full), f"{tid}: {record['cells'][tid]}"
        if tid in fails:
            assert record["cells"][tid]["message"], record["cells"][tid]
    assert record["flags"], f"{student} was not flagged: {record}"


def test_honest_reference_keeps_full_marks_and_is_not_flagged(cheating_run):
    for assignment in sorted({p[0] for p in PLAN.values()}):
        for nb in results(cheating_run, assignment, "honest")["notebooks"].values():
            if nb.get("anomalies"):
                continue  # a notebook the honest student did not submit here
            assert nb["score"] == nb["max_score"] and not nb["flags"], nb


def test_feedback_never_shows_hidden_tests_or_what_the_kernel_printed(cheating_run):
    import base64
    import json

    hidden, encoded = set(), set()
    for path in (REPO / "source").rglob("*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if "### BEGIN HIDDEN TESTS" not in source:
                continue
            encoded.add(base64.b64encode(source.encode()).decode()[:60])
            block = source.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0]
            hidden.update(line.strip() for line in block.splitlines() if len(line.strip()) > 12)
    assert hidden and encoded
    pages = list((cheating_run / "feedback").rglob("*.html"))
    assert len(pages) >= len(PLAN)
    for page in pages:
        text = page.read_text()
        leaked = [line for line in hidden if line in text] + [code for code in encoded if code in text]
        assert not leaked, f"{page} shows hidden test text: {leaked[:3]}"
        assert "LEAK</" not in text and "LEAK " not in text.replace("'LEAK'", ""), (
            f"{page}: kernel output reached feedback")
