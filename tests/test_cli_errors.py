"""The grading command fails clearly, with a non-zero exit, on the instructor's usual mistakes."""

import shutil

from conftest import REPO, grading, new_course, source_nb, submit


def test_unknown_assignment(course):
    out = grading("grade", "no_such_assignment", root=course, check=False)
    assert out.returncode == 2 and "unknown assignment 'no_such_assignment'" in out.stderr
    assert "rnn_basics" in out.stderr


def test_empty_submitted_folder(tmp_path):
    root = new_course(tmp_path / "c", ["rnn_basics"])
    (root / "submitted").mkdir()
    out = grading("grade", "rnn_basics", root=root, check=False)
    assert out.returncode == 2 and "nothing to grade" in out.stderr


def test_missing_gradebook(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    shutil.copy2(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "source" / "rnn_basics", root / "source" / "rnn_basics")
    submit(root, "s", "rnn_basics", {"rnn_cell": source_nb("rnn_basics", "rnn_cell")})
    out = grading("grade", "rnn_basics", root=root, check=False)
    assert out.returncode == 2 and "no gradebook" in out.stderr and "python -m grading release" in out.stderr


def test_not_a_course_root(tmp_path):
    out = grading("grade", "rnn_basics", root=tmp_path, check=False)
    assert out.returncode == 2 and "error:" in out.stderr


def test_unknown_student(course):
    out = grading("grade", "rnn_basics", "--student", "nobody", root=course, check=False)
    assert out.returncode == 2
