"""Autograding the reference solutions, the untouched release and a submission with deleted
test cells, through plain nbgrader (with the course's nbgrader_config.py) and the course's command."""

import copy
import csv

import nbformat
import pytest
from nbgrader.api import Gradebook

from conftest import assignment_names, grading, nbgrader, new_course, notebook_names, release_nb, source_nb, submit

pytestmark = pytest.mark.slow  # runs nbgrader, kernels or the sandbox end to end


def scores(root, assignment, student):
    """notebook -> (score, max_score), and every test cell's score, from the gradebook."""
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "rnn-course") as gb:
        sub = gb.find_submission(assignment, student)
        return {nb.name: (nb.score, nb.max_score, {g.name: g.score for g in nb.grades}) for nb in sub.notebooks}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = new_course(tmp_path_factory.mktemp("basics"))
    for assignment in assignment_names():
        names = notebook_names(assignment)
        submit(root, "reference", assignment, {n: source_nb(assignment, n) for n in names})
        submit(root, "untouched", assignment, {n: release_nb(root, assignment, n) for n in names})
        deleted = {}
        for n in names:
            nb = copy.deepcopy(source_nb(assignment, n))
            nb.cells = [c for c in nb.cells if not c.metadata.get("nbgrader", {}).get("grade")]
            deleted[n] = nb
        submit(root, "deleted_tests", assignment, deleted)
        grading("grade", assignment, root=root)
    return root


@pytest.mark.parametrize("assignment", assignment_names())
def test_reference_solution_gets_full_marks(graded, assignment):
    for name, (score, max_score, cells) in scores(graded, assignment, "reference").items():
        assert max_score > 0
        assert score == max_score, f"{name}: {cells}"


@pytest.mark.parametrize("assignment", assignment_names())
def test_untouched_release_gets_zero_on_every_graded_cell(graded, assignment):
    for name, (_score, _, cells) in scores(graded, assignment, "untouched").items():
        assert all(v == 0 for v in cells.values()), f"{name}: {cells}"


@pytest.mark.parametrize("assignment", assignment_names())
def test_deleted_test_cells_are_restored_and_graded(graded, assignment):
    for name, (score, max_score, cells) in scores(graded, assignment, "deleted_tests").items():
        assert score == max_score, f"{name}: deleted test cells were not restored: {cells}"
        autograded = nbformat.read(graded / "autograded" / "deleted_tests" / assignment / f"{name}.ipynb", as_version=4)
        graded_ids = [c.metadata["nbgrader"]["grade_id"] for c in autograded.cells
                      if c.metadata.get("nbgrader", {}).get("grade")]
        assert sorted(graded_ids) == sorted(cells)


def test_plain_nbgrader_restores_deleted_test_cells_too(tmp_path):
    """nbgrader's own autograde, with the course's nbgrader_config.py (RestoreLayout before OverwriteCells)."""
    root = new_course(tmp_path / "plain", ["rnn_basics"])
    nb = copy.deepcopy(source_nb("rnn_basics", "rnn_cell"))
    nb.cells = [c for c in nb.cells if not c.metadata.get("nbgrader", {}).get("grade")]
    submit(root, "s1", "rnn_basics", {"rnn_cell": nb})
    nbgrader("autograde", "rnn_basics", "--force", root=root)
    score, max_score, cells = scores(root, "rnn_basics", "s1")["rnn_cell"]
    assert score == max_score and len(cells) >= 2


def test_grade_writes_grades_csv_with_one_row_per_student(graded):
    with open(graded / "reports" / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["student"] for r in rows) == ["deleted_tests", "reference", "untouched"]
    columns = set(rows[0]) - {"student", "total", "grading_error"}
    assert columns == {f"{a}/{n}" for a in assignment_names() for n in notebook_names(a)}
    reference = next(r for r in rows if r["student"] == "reference")
    assert float(reference["total"]) == sum(float(reference[c]) for c in columns) > 0


def test_feedback_is_written_per_student_and_notebook(graded):
    for assignment in assignment_names():
        for name in notebook_names(assignment):
            page = (graded / "feedback" / "reference" / assignment / f"{name}.html").read_text()
            assert "PASSED" in page and "FAILED" not in page
            page = (graded / "feedback" / "untouched" / assignment / f"{name}.html").read_text()
            assert "FAILED" in page and "not implemented yet" in page
