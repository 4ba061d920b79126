"""``python -m grading export``: the grades as CSV for Canvas, Moodle or a spreadsheet.

A real sqlite gradebook, written with nbgrader's ``Gradebook`` (no kernels): two assignments, three students
(one with names that a spreadsheet would run as formulas, one with a comma, a quote and an accent), automatic
scores, a grader's manual score that overrides an automatic one, late penalties (one larger than the score),
and a student who did not submit one assignment. Every exported value is checked against a score computed
here from the gradebook's own objects.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import warnings
from pathlib import Path

import pytest
from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.exc import SAWarning

from conftest import REPO
from grading.instructor.course import CourseError
from grading.instructor.database import ENV_URL
from grading.instructor.export import (
    cmd_export,
    export_rows,
    number,
    text_cell,
    write_export,
)
from grading.instructor.scores import AssignmentScore, StudentInfo

COURSE_ID = "rnn-course"
ASSIGNMENTS = {  # assignment -> notebook -> grade cell -> max score
    "hw1": {"nb1": {"c1": 5.0, "c2": 5.0}},
    "hw2": {"p1": {"c1": 2.5}, "p2": {"c1": 1.25, "c2": 4.0}},
}
STUDENTS = {  # id -> (first name, last name, email)
    "alice": ("Alice", "Liu", "alice@example.org"),
    "bob": ("Bób", 'O"Brien, Jr', "bob@example.org"),
    "eve": ("-Eve", "=SUM(1+1)", "eve@example.org"),
}
AUTO = {  # (student, assignment, notebook, cell) -> automatic score
    ("alice", "hw1", "nb1", "c1"): 5.0, ("alice", "hw1", "nb1", "c2"): 2.5,
    ("alice", "hw2", "p1", "c1"): 2.5, ("alice", "hw2", "p2", "c1"): 1.25, ("alice", "hw2", "p2", "c2"): 0.0,
    ("bob", "hw1", "nb1", "c1"): 3.0, ("bob", "hw1", "nb1", "c2"): 4.0,
    ("eve", "hw1", "nb1", "c1"): 0.1, ("eve", "hw1", "nb1", "c2"): 0.2,
    ("eve", "hw2", "p1", "c1"): 2.5, ("eve", "hw2", "p2", "c1"): 1.25, ("eve", "hw2", "p2", "c2"): 4.0,
}
MANUAL = {("bob", "hw1", "nb1", "c2"): 1.0}  # a grader's score replaces the automatic 4
PENALTIES = {("alice", "hw2", "p2"): 0.5, ("eve", "hw2", "p1"): 10.0}  # eve's is more than her score
NOT_SUBMITTED = {("bob", "hw2")}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A course root, built once: the repository's nbgrader_config.py and a sqlite gradebook (nbgrader's default
    place, ``gradebook.db`` in the root)."""
    root = tmp_path_factory.mktemp("export") / "course"
    root.mkdir()
    shutil.copy2(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", COURSE_ID) as gb:
        for assignment, notebooks in ASSIGNMENTS.items():
            gb.update_or_create_assignment(assignment)
            for notebook, cells in notebooks.items():
                gb.update_or_create_notebook(notebook, assignment)
                for cell, max_score in cells.items():
                    gb.update_or_create_grade_cell(cell, notebook, assignment, max_score=max_score, cell_type="code")
        for student, (first, last, email) in STUDENTS.items():
            gb.update_or_create_student(student, first_name=first, last_name=last, email=email)
        with warnings.catch_warnings():  # nbgrader's add_submission autoflushes a half-built submission
            warnings.simplefilter("ignore", SAWarning)
            for student in STUDENTS:
                for assignment in ASSIGNMENTS:
                    if (student, assignment) not in NOT_SUBMITTED:
                        gb.add_submission(assignment, student)
        for (student, assignment, notebook, cell), score in AUTO.items():
            gb.find_grade(cell, notebook, assignment, student).auto_score = score
        for (student, assignment, notebook, cell), score in MANUAL.items():
            gb.find_grade(cell, notebook, assignment, student).manual_score = score
        for (student, assignment, notebook), penalty in PENALTIES.items():
            gb.find_submission_notebook(notebook, assignment, student).late_submission_penalty = penalty
        gb.db.commit()
    return root


@pytest.fixture
def course(template, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the template course; the gradebook is its sqlite file whatever the environment says."""
    monkeypatch.delenv(ENV_URL, raising=False)
    return Path(shutil.copytree(template, tmp_path / "course"))


def expected(root: Path) -> tuple[dict[tuple[str, str], str | None], dict[tuple[str, str], str], dict[str, str]]:
    """From the gradebook's objects: (student, assignment) -> final score as text (None: not submitted),
    -> late penalty as text, and assignment -> maximum score as text."""
    finals: dict[tuple[str, str], str | None] = {}
    penalties: dict[tuple[str, str], str] = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", COURSE_ID) as gb:
        maxima = {a.name: _text(sum(cell.max_score for nb in a.notebooks for cell in nb.grade_cells))
                  for a in gb.assignments}
        for student in gb.students:
            for assignment in gb.assignments:
                try:
                    sub = gb.find_submission(assignment.name, student.id)
                except MissingEntry:
                    finals[student.id, assignment.name] = None
                    continue
                earned = sum(grade.score for nb in sub.notebooks for grade in nb.grades)
                penalty = sum(nb.late_submission_penalty or 0.0 for nb in sub.notebooks)
                finals[student.id, assignment.name] = _text(max(0.0, earned - penalty))
                penalties[student.id, assignment.name] = _text(penalty)
    return finals, penalties, maxima


def _text(value: float) -> str:
    return f"{round(value, 2):g}"


def read(path: Path, bom: bool) -> list[list[str]]:
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") == bom, path
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_the_fixture_exercises_overrides_penalties_the_floor_and_float_noise(course):
    finals, penalties, maxima = expected(course)
    assert finals["bob", "hw1"] == "4"  # manual 1 replaced the automatic 4 (3 + 1)
    assert finals["alice", "hw2"] == "3.25" and penalties["alice", "hw2"] == "0.5"
    assert finals["eve", "hw2"] == "0"  # a penalty larger than the score: floored at 0
    assert finals["eve", "hw1"] == "0.3"  # 0.1 + 0.2 in the database
    assert finals["bob", "hw2"] is None
    assert maxima == {"hw1": "10", "hw2": "7.75"}


def test_canvas(course):
    finals, _, maxima = expected(course)
    path = write_export(course, "canvas")
    assert path == course / "reports" / "export-canvas.csv"
    header, points, *rows = read(path, bom=True)
    assert header == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "hw1", "hw2"]
    assert points == ["Points Possible", "", "", "", "", maxima["hw1"], maxima["hw2"]]
    assert rows == [
        ["Liu, Alice", "", "alice", "alice@example.org", "", finals["alice", "hw1"], finals["alice", "hw2"]],
        ['O"Brien, Jr, Bób', "", "bob", "bob@example.org", "", finals["bob", "hw1"], ""],
        ["'=SUM(1+1), -Eve", "", "eve", "eve@example.org", "", finals["eve", "hw1"], finals["eve", "hw2"]],
    ]
    assert rows[0][5:] == ["7.5", "3.25"] and rows[2][5:] == ["0.3", "0"]


def test_moodle(course):
    finals, _, _ = expected(course)
    header, *rows = read(write_export(course, "moodle"), bom=True)
    assert header == ["First name", "Last name", "ID number", "Email address", "hw1", "hw2"]
    assert rows == [
        ["Alice", "Liu", "alice", "alice@example.org", finals["alice", "hw1"], finals["alice", "hw2"]],
        ["Bób", 'O"Brien, Jr', "bob", "bob@example.org", finals["bob", "hw1"], ""],
        ["'-Eve", "'=SUM(1+1)", "eve", "eve@example.org", finals["eve", "hw1"], finals["eve", "hw2"]],
    ]


def test_plain_csv(course):
    finals, penalties, _ = expected(course)
    path = write_export(course, "csv")
    assert path == course / "reports" / "export-csv.csv"
    header, *rows = read(path, bom=False)
    assert header == ["student", "first_name", "last_name", "email", "hw1", "hw1 late penalty", "hw2",
                      "hw2 late penalty", "total"]

    def total(student: str) -> str:
        return _text(sum(float(finals[student, a]) for a in ASSIGNMENTS if finals[student, a] is not None))

    assert rows == [
        ["alice", "Alice", "Liu", "alice@example.org", finals["alice", "hw1"], penalties["alice", "hw1"],
         finals["alice", "hw2"], penalties["alice", "hw2"], total("alice")],
        ["bob", "Bób", 'O"Brien, Jr', "bob@example.org", finals["bob", "hw1"], penalties["bob", "hw1"], "", "",
         total("bob")],
        ["eve", "'-Eve", "'=SUM(1+1)", "eve@example.org", finals["eve", "hw1"], penalties["eve", "hw1"],
         finals["eve", "hw2"], penalties["eve", "hw2"], total("eve")],
    ]
    assert [row[-1] for row in rows] == ["10.75", "4", "0.3"]
    assert rows[0][7] == "0.5" and rows[2][7] == "10"


@pytest.mark.parametrize(("fmt", "column", "bom"), [("canvas", 6, True), ("moodle", 5, True), ("csv", 6, False)])
def test_a_missing_submission_is_empty_unless_missing_as_zero(course, fmt, column, bom):
    header, *rows = read(write_export(course, fmt), bom=bom)
    bob = next(row for row in rows if "bob" in row)
    assert header[column] == "hw2" and bob[column] == ""
    header, *rows = read(write_export(course, fmt, missing_as_zero=True), bom=bom)
    bob = next(row for row in rows if "bob" in row)
    assert bob[column] == "0"
    if fmt == "csv":
        assert bob[column + 1] == "0" and bob[-1] == "4"  # no penalty; the total is unchanged


def test_one_assignment(course):
    finals, _, maxima = expected(course)
    path = write_export(course, "canvas", "hw2")
    assert path == course / "reports" / "export-canvas-hw2.csv"
    header, points, *rows = read(path, bom=True)
    assert header == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "hw2"]
    assert points[-1] == maxima["hw2"]
    assert [row[-1] for row in rows] == [finals["alice", "hw2"], "", finals["eve", "hw2"]]
    assert write_export(course, "moodle", "hw1") == course / "reports" / "export-moodle-hw1.csv"
    assert write_export(course, "csv", "hw1") == course / "reports" / "export-csv-hw1.csv"
    assert not (course / "reports" / "export-canvas.csv").exists()


def test_an_unknown_assignment_names_the_known_ones(course):
    with pytest.raises(CourseError, match=r"unknown assignment 'hw3' \(known: hw1, hw2\)"):
        write_export(course, "canvas", "hw3")
    assert not (course / "reports").exists()


def test_a_course_without_a_gradebook(course):
    (course / "gradebook.db").unlink()
    with pytest.raises(CourseError, match="no gradebook"):
        write_export(course, "moodle")
    assert not (course / "gradebook.db").exists()  # nothing was created


def test_cmd_export_prints_the_path(course, capsys):
    args = argparse.Namespace(root=str(course), format="moodle", assignment="hw1", missing_as_zero=False)
    assert cmd_export(args) == 0
    path = course / "reports" / "export-moodle-hw1.csv"
    assert capsys.readouterr().out.strip() == str(path)
    assert read(path, bom=True)[0][-1] == "hw1"


def test_the_command_line(course, capsys):
    from grading.instructor.cli import main

    assert main(["--root", str(course), "export", "--format", "canvas"]) == 0
    path = course / "reports" / "export-canvas.csv"
    assert capsys.readouterr().out.strip() == str(path)
    assert read(path, bom=True)[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]


def test_numbers_have_at_most_two_decimals_and_no_noise():
    assert [number(x) for x in (7.5, 10.0, 3.25, 0.1 + 0.2, 10 / 3, 2 / 3, 0.0, -0.0, 100.0, 1e-9)] == [
        "7.5", "10", "3.25", "0.3", "3.33", "0.67", "0", "0", "100", "0"]


def test_formula_guard():
    assert [text_cell(s) for s in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "Ann", "", "a=b")] == [
        "'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "Ann", "", "a=b"]


def test_export_rows_without_a_gradebook():
    students = [StudentInfo("s1", "", "", "s1@x.org"), StudentInfo("s2", "Ann", "", "")]
    table = {("s1", "a"): AssignmentScore("s1", "a", True, 10 / 3, 5.0, 0.0, 0.0),
             ("s2", "a"): AssignmentScore("s2", "a", False, 0.0, 5.0, 0.0, 0.0)}
    header, rows = export_rows("canvas", ["a"], students, table)
    assert header[-1] == "a" and rows == [["Points Possible", "", "", "", "", "5"],
                                          ["s1", "", "s1", "s1@x.org", "", "3.33"], ["Ann", "", "s2", "", "", ""]]
    with pytest.raises(CourseError, match="unknown export format 'xls'"):
        export_rows("xls", ["a"], students, table)
