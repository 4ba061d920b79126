"""The term through the real grader: a late submission loses what course.yml says, computed from the verified
scores (not the pending zeros nbgrader's own late-penalty step sees); granting an extension and regrading removes
it (nbgrader issue #723); withdrawing it and ``regrade-late`` brings it back; the feedback, the report and the
audit trail say so."""

from __future__ import annotations

import csv

import pytest

from conftest import grading, new_course
from grading.instructor.sample_class import roster, write_class
from grading.instructor.scores import assignment_scores

pytestmark = pytest.mark.slow  # runs nbgrader, kernels or the sandbox end to end

ASSIGNMENT = "rnn_basics"
TERM = """\
assignments:
  rnn_basics:
    due: 2026-11-20T18:00:00+01:00
late_policy:
  per_day: 10
  max_days: 3
"""
EXTENDED = TERM + """\
extensions:
  student01:
    rnn_basics:
      due: 2026-11-24T18:00:00+01:00
      reason: medical certificate
"""


def _score(course, student):
    _, _, table = assignment_scores(course)
    return table[student, ASSIGNMENT]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("term"), [ASSIGNMENT])
    write_class(course, {ASSIGNMENT: roster([ASSIGNMENT], 2)[ASSIGNMENT]})  # two correct students
    (course / "submitted" / "student01" / ASSIGNMENT / "timestamp.txt").write_text("2026-11-22 09:30:00.000000 UTC")
    (course / "course.yml").write_text(TERM)
    grading("grade", ASSIGNMENT, root=course, timeout=900)
    return course


def test_a_late_submission_loses_a_share_of_its_verified_score(course):
    late, on_time = _score(course, "student01"), _score(course, "student02")
    assert late.score == on_time.score == late.max_score > 0  # both answers are correct
    assert late.late_penalty == pytest.approx(0.2 * late.score)  # 2 started days, 10% each
    assert on_time.late_penalty == 0
    feedback = next((course / "feedback" / "student01" / ASSIGNMENT).glob("*.html")).read_text()
    assert "Late submission penalty" in feedback
    report = (course / "reports" / "report.html").read_text()
    assert "student01 (2 d, -" in report
    rows = list(csv.DictReader((course / "reports" / "grades.csv").read_text().splitlines()))
    assert float(next(r for r in rows if r["student"] == "student01")["total"]) == pytest.approx(late.final)


def test_an_extension_then_a_regrade_takes_the_penalty_away_and_regrade_late_restores_it(course):
    before = _score(course, "student01").late_penalty
    assert before > 0
    (course / "course.yml").write_text(EXTENDED)
    grading("grade", ASSIGNMENT, "--student", "student01", root=course, timeout=600)
    assert _score(course, "student01").late_penalty == 0  # nbgrader #723
    assert "Extensions granted" in (course / "reports" / "report.html").read_text()
    (course / "course.yml").write_text(TERM)  # withdrawn: no notebook runs, the penalty comes back
    out = grading("regrade-late", ASSIGNMENT, root=course).stdout
    assert "student01: 2 day(s) late, penalty 0 ->" in out
    assert _score(course, "student01").late_penalty == pytest.approx(before)
    grading("audit", root=course)
    rows = list(csv.DictReader((course / "reports" / "audit.csv").read_text().splitlines()))
    mine = [r for r in rows if r["student"] == "student01"]
    reasons = " | ".join(r["why"] for r in mine)
    # both answers are correct, so the verifier changes nothing here (test_audit.py shows it when it does)
    for why in ("autograde", "late penalty", "regrade", "regrade-late"):
        assert why in reasons, why
    assert all(r["who"] for r in mine)
    history = grading("history", "student01", root=course).stdout
    assert "late penalty" in history and "rnn_basics" in history


def test_a_malformed_course_yml_stops_grading_before_anything_changes(course):
    (course / "course.yml").write_text(TERM.replace("per_day: 10", "per_day: -10"))
    proc = grading("grade", ASSIGNMENT, root=course, check=False)
    assert proc.returncode == 4
    assert "course.yml, line 5:" in proc.stderr and "per_day" in proc.stderr
    (course / "course.yml").write_text(TERM)
