"""The main job on the sample class: every synthetic student gets exactly what their answers
deserve, and the instructor gets grades.csv, a report with plots, and feedback without hidden tests."""

import csv
import json
import shutil

import pytest

from conftest import REPO, assignment_names, gradebook_scores, grading, new_course, notebook_names
from grading.instructor.demo_term import LATE_SUBMISSIONS, apply_demo_term
from grading.instructor.exercises.registry import CAPSTONES
from grading.instructor.sample_class import PLANTED_COPY, expected_scores, roster

pytestmark = pytest.mark.slow  # runs nbgrader, kernels or the sandbox end to end

SIZE = 32
# The capstone trains a model in every submission: a smaller class of it keeps make test in its budget. The first 12
# students still hold every kind (correct, blank, partial, bug) and, with 5 bug students, every bug of the catalogue.
CAPSTONE_SIZE = 12


def class_size(assignment: str) -> int:
    return CAPSTONE_SIZE if assignment in CAPSTONES else SIZE


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("class"))
    grading("sample-class", "--size", str(SIZE), root=course)
    for assignment in CAPSTONES:
        for student in range(CAPSTONE_SIZE, SIZE):
            shutil.rmtree(course / "submitted" / f"student{student + 1:02d}" / assignment)
    apply_demo_term(course)  # as make demo: due dates, one extension, three late submissions
    outputs = {a: grading("grade", a, root=course, timeout=1500) for a in assignment_names()}
    return course, outputs


def test_the_class_covers_every_kind_of_student():
    classes = roster(assignment_names(), SIZE)
    for assignment, students in classes.items():
        kinds = {s.kind for s in students}
        assert kinds == {"correct", "blank", "partial", "bug"}, assignment
        from grading.instructor.catalogue import ANSWERS
        from grading.instructor.exercises import EXERCISES

        bug_students = sum(s.kind == "bug" for s in students)
        for grade_id, exercise in EXERCISES.items():
            if exercise.assignment != assignment:
                continue
            in_class = {s.answers[grade_id].key for s in students
                        if grade_id in s.answers and not s.answers[grade_id].correct}
            catalogue = {a.key for a in ANSWERS if a.exercise == grade_id and not a.correct}
            assert len(in_class) == min(len(catalogue), bug_students), f"{grade_id}: {catalogue - in_class}"
            assert {k for k in catalogue if "seed" in k} <= in_class, f"{grade_id}: the seed's bug is missing"


@pytest.mark.parametrize("assignment", assignment_names())
def test_every_student_gets_what_their_answers_deserve(graded_class, assignment):
    course, _ = graded_class
    students = roster(assignment_names(), SIZE)[assignment][:class_size(assignment)]
    mismatches = []
    for notebook in notebook_names(assignment):
        scores = gradebook_scores(course, assignment, notebook)
        for student in students:
            got = sum(scores[student.student_id].values())
            want = expected_scores(course, assignment, student).get(notebook, 0.0)
            if got != want:
                mismatches.append(f"{student.student_id} ({student.kind}) {notebook}: got {got}, deserves {want}")
    assert not mismatches, "\n".join(mismatches)


def test_grades_csv_has_one_row_per_student_and_a_column_per_notebook(graded_class):
    course, _ = graded_class
    with open(course / "reports" / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == SIZE
    columns = [f"{a}/{n}" for a in assignment_names() for n in notebook_names(a)]
    expected = ["student", *columns, "total", "grading_error"]
    assert list(rows[0]) == expected


def test_report_shows_histograms_pass_rates_failures_and_timings(graded_class):
    course, outputs = graded_class
    page = (course / "reports" / "report.html").read_text()
    for section in ("Scores per assignment", "Pass rate per test cell", "Most frequent failures",
                    "Tampering and disagreements", "Slowest notebooks"):
        assert section in page
    assert page.count("data:image/png;base64,") >= 2
    for output in outputs.values():
        assert "0 with grading errors" in output.stdout and "ETA" in output.stdout


def test_feedback_keeps_the_diagnosis_and_hides_hidden_tests(graded_class):
    course, _ = graded_class
    hidden = set()
    for path in (REPO / "source").rglob("*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            text = "".join(cell["source"])
            if "### BEGIN HIDDEN TESTS" in text:
                block = text.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0]
                hidden.update(line.strip() for line in block.splitlines() if len(line.strip()) > 12)
    pages = list((course / "feedback").rglob("*.html"))
    assert len(pages) == sum(class_size(a) * len(notebook_names(a)) for a in assignment_names())
    for page in pages:
        text = page.read_text()
        assert not [line for line in hidden if line in text], page
    classes = roster(assignment_names(), SIZE)
    for assignment, students in classes.items():
        for student in students[:class_size(assignment)]:
            for answer in student.answers.values():
                if answer.correct:
                    continue
                from grading.instructor.exercises import EXERCISES

                notebook = EXERCISES[answer.exercise].notebook
                text = (course / "feedback" / student.student_id / assignment / f"{notebook}.html").read_text()
                import html

                assert "FAILED" in text and answer.message in html.unescape(text), (student.student_id, answer.key)


def test_student_bundle_holds_nothing_instructor_only(tmp_path):
    out = tmp_path / "bundle"
    grading("bundle", "--out", str(out), root=REPO)
    files = [p.relative_to(out) for p in out.rglob("*") if p.is_file()]
    names = {str(p) for p in files}
    assert any(n.startswith("assignments/") for n in names) and any(n.startswith("lectures/") for n in names)
    assert "grading/student/checks.py" in names and "README.md" in names and "requirements.txt" in names
    for path in files:
        parts = path.parts
        assert parts[0] not in ("source", "tests", "release") and "instructor" not in parts, path
        assert "__pycache__" not in parts
        if path.suffix in (".ipynb", ".py"):
            text = (out / path).read_text()
            for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "hidden_check", "grading.instructor"):
                assert marker not in text, f"{path} contains {marker!r}"


def test_the_term_takes_what_course_yml_says_from_the_late_students_only(graded_class):
    from grading.instructor.scores import assignment_scores

    course, _ = graded_class
    _, _, table = assignment_scores(course)
    late = table["student01", "hello_ohlol"]
    assert late.score > 0 and late.late_penalty == pytest.approx(0.2 * late.score)  # 2 started days
    extended = table["student02", "hello_ohlol"]
    assert extended.seconds_late == 0 and extended.late_penalty == 0  # within the extension
    capped = table["student03", "lstm_gru"]
    assert capped.score > 0 and capped.final == 0  # past the 3-day cap
    others = [(s, a) for (s, a), score in table.items() if score.late_penalty and (a, s) not in LATE_SUBMISSIONS]
    assert not others
    page = (course / "reports" / "report.html").read_text()
    assert "Late submissions" in page and "student01 (2 d, -" in page
    assert "Extensions granted" in page and "medical certificate" in page


def test_the_similarity_report_flags_only_the_planted_copy(graded_class):
    from grading.instructor.similarity import similarity_report

    course, _ = graded_class
    planted_assignment, source, copier = PLANTED_COPY
    for assignment in assignment_names():
        found = similarity_report(course, assignment)
        flagged = {(p.first, p.second) for p in found.pairs}
        assert flagged == ({tuple(sorted((source, copier)))} if assignment == planted_assignment else set()), assignment
        assert "no verdict" in found.path.read_text()
    out = grading("similarity", planted_assignment, root=course).stdout
    assert f"{min(source, copier)} + {max(source, copier)}" in out
    grading("report", root=course)
    assert f"similarity-{planted_assignment}.html" in (course / "reports" / "report.html").read_text()
