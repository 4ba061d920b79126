"""course.yml: its schema and errors (each naming its line), the late policy's arithmetic, nbgrader's plugin
interface, and ``regrade-late`` on a real gradebook, including nbgrader issue #723 (an extension granted
after grading must take the penalty away)."""

from __future__ import annotations

import datetime
import textwrap

import pytest
from nbgrader.api import Gradebook
from traitlets.config import Config

from conftest import REPO, assignment_names
from grading.instructor.late import CourseLatePolicy, apply_penalties, plugin_config, regrade_late
from grading.instructor.term import LatePolicy, TermError, load_term, parse_term

DAY = 86400
ASSIGNMENTS = ["rnn_basics", "hello_ohlol"]
GOOD = """\
assignments:
  rnn_basics:
    due: 2026-11-20T18:00:00+01:00
  hello_ohlol:
    due: 2026-11-27T18:00:00Z
extensions:
  ada:
    rnn_basics:
      due: 2026-11-23T18:00:00+01:00
      reason: medical certificate
late_policy:
  per_day: 10
  max_days: 3
"""


def parse(text: str, students=("ada", "bo")):
    return parse_term(textwrap.dedent(text), "course.yml", ASSIGNMENTS, set(students))


def test_a_good_file_is_read_with_time_zones_and_extensions():
    term = parse(GOOD)
    assert term.due["rnn_basics"] == datetime.datetime(2026, 11, 20, 17, 0, tzinfo=datetime.UTC)
    assert term.due["hello_ohlol"].utcoffset() == datetime.timedelta(0)
    assert term.extension_delta("ada", "rnn_basics") == datetime.timedelta(days=3)
    assert term.extension_delta("bo", "rnn_basics") is None
    assert term.extension("ada", "rnn_basics").reason == "medical certificate"
    assert term.policy == LatePolicy(10, 3, "score", 0)
    assert parse("") .policy is None


def test_the_repositorys_course_yml_is_valid():
    term = parse_term((REPO / "course.yml").read_text(), "course.yml", assignment_names(), set())
    assert set(term.due) == set(assignment_names())
    assert term.policy is not None


@pytest.mark.parametrize("text, line, words", [
    (GOOD.replace("ada:", "zed:"), 7, "unknown student 'zed'"),
    (GOOD.replace("  hello_ohlol:\n", "  hello_world:\n"), 4, "unknown assignment 'hello_world'"),
    (GOOD.replace("2026-11-27T18:00:00Z", "2026-13-27T18:00"), 5, "not an ISO 8601 date"),
    (GOOD.replace("2026-11-27T18:00:00Z", "2026-11-27T18:00:00"), 5, "no time zone offset"),
    (GOOD.replace("per_day: 10", "per_day: -5"), 12, "out of range"),
    (GOOD.replace("per_day: 10", "per_day: ten"), 12, "not a number"),
    (GOOD.replace("max_days: 3", "max_days: 2.5"), 13, "not a whole number"),
    (GOOD + "  applies_to: everything\n", 14, "applies_to"),
    (GOOD + "  bonus: 3\n", 14, "unknown key 'bonus'"),
    (GOOD.replace("2026-11-23T18", "2026-11-19T18"), 9, "not later than the assignment's"),
    (GOOD.replace("      reason: medical certificate\n", ""), 9, "needs a due date and a reason"),
    (GOOD + "assignments:\n  lstm_gru:\n    due: 2026-12-01T00:00:00Z\n", 14, "appears twice"),
    ("assignments:\n  rnn_basics: [due\n", 3, "not valid YAML"),
    ("assignments:\n  rnn_basics:\n    due: 2026-11-20T18:00:00Z\nextensions:\n  ada:\n    hello_ohlol:\n"
     "      due: 2026-11-29T18:00:00Z\n      reason: x\n", 6, "has no due date under assignments"),
])
def test_each_mistake_is_an_error_naming_its_line(text, line, words):
    with pytest.raises(TermError) as caught:
        parse(text)
    assert f"course.yml, line {line}:" in str(caught.value)
    assert words in str(caught.value)


@pytest.mark.parametrize("seconds, score, max_score, policy, expected", [
    (0, 8, 10, LatePolicy(10, 3), 0),
    (1, 8, 10, LatePolicy(10, 3), 0.8),  # a started day counts
    (DAY, 8, 10, LatePolicy(10, 3), 0.8),
    (DAY + 1, 8, 10, LatePolicy(10, 3), 1.6),
    (3 * DAY, 8, 10, LatePolicy(10, 3), 2.4),
    (3 * DAY + 1, 8, 10, LatePolicy(10, 3), 8),  # past the cap: everything off
    (DAY, 8, 10, LatePolicy(10, 3, "max_score"), 1.0),
    (2 * DAY, 1, 10, LatePolicy(30, 3, "max_score"), 1),  # never more than the score
    (10 * 60, 8, 10, LatePolicy(10, 3, grace_minutes=15), 0),
    (20 * 60, 8, 10, LatePolicy(10, 3, grace_minutes=15), 0.8),
    (5 * DAY, 0, 10, LatePolicy(10, 3), 0),
])
def test_the_policy_takes_a_share_per_started_day_up_to_the_cap(seconds, score, max_score, policy, expected):
    assert policy.penalty(score, max_score, seconds) == pytest.approx(expected)


def test_nbgrader_plugin_interface_uses_the_course_policy():
    config = Config()
    plugin_config(config, LatePolicy(25, 2))
    assert config.AssignLatePenalties.plugin_class == "grading.instructor.late.CourseLatePolicy"
    plugin = CourseLatePolicy(config=config)
    assert plugin.late_submission_penalty("ada", 8.0, DAY + 5) == pytest.approx(4.0)
    assert plugin.late_submission_penalty("ada", 8.0, 3 * DAY) == pytest.approx(8.0)


# ---------------------------------------------------------------- regrade-late on a real gradebook

def _course(tmp_path, course_yml: str):
    (tmp_path / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = 'term-test'\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{tmp_path / 'gradebook.db'}'\n")
    for name in ASSIGNMENTS:
        (tmp_path / "source" / name).mkdir(parents=True)
    (tmp_path / "course.yml").write_text(textwrap.dedent(course_yml))
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url, "term-test") as gb:
        gb.update_or_create_assignment("rnn_basics")
        gb.update_or_create_notebook("nb", "rnn_basics")
        for cell in ("t1", "t2"):
            gb.update_or_create_grade_cell(cell, "nb", "rnn_basics", max_score=5, cell_type="code")
        for student, submitted in (("ada", "2026-11-22T10:00:00"), ("bo", "2026-11-20T10:00:00")):
            gb.update_or_create_student(student)
            sub = gb.update_or_create_submission("rnn_basics", student,
                                                 timestamp=datetime.datetime.fromisoformat(submitted))
            for grade in sub.notebooks[0].grades:
                grade.auto_score = 4.0
        gb.db.commit()
    return url


def _penalties(url):
    with Gradebook(url, "term-test") as gb:
        submissions = gb.find_assignment("rnn_basics").submissions
        return {s.student.id: float(s.late_submission_penalty or 0) for s in submissions}


TERM = """\
assignments:
  rnn_basics:
    due: 2026-11-20T18:00:00Z
late_policy:
  per_day: 10
  max_days: 3
"""
EXTENDED = TERM + """\
extensions:
  ada:
    rnn_basics:
      due: 2026-11-23T18:00:00Z
      reason: ill
"""


def test_regrade_late_recomputes_when_an_extension_is_granted_and_withdrawn(tmp_path):
    url = _course(tmp_path, TERM)
    assert regrade_late(tmp_path, "rnn_basics") == [("ada", 2, 0.0, pytest.approx(1.6))]  # 20% of 8
    assert _penalties(url) == {"ada": pytest.approx(1.6), "bo": 0.0}
    # nbgrader #723: the extension must take the penalty away, not leave the old one
    (tmp_path / "course.yml").write_text(EXTENDED)
    assert regrade_late(tmp_path, "rnn_basics") == [("ada", 0, pytest.approx(1.6), 0.0)]
    assert _penalties(url) == {"ada": 0.0, "bo": 0.0}
    with Gradebook(url, "term-test") as gb:
        assert gb.find_submission("rnn_basics", "ada").extension == datetime.timedelta(days=3)
    (tmp_path / "course.yml").write_text(TERM)
    regrade_late(tmp_path, "rnn_basics")
    assert _penalties(url) == {"ada": pytest.approx(1.6), "bo": 0.0}
    with Gradebook(url, "term-test") as gb:
        assert gb.find_submission("rnn_basics", "ada").extension is None


def test_regrade_late_follows_a_manual_score(tmp_path):
    url = _course(tmp_path, TERM)
    regrade_late(tmp_path, "rnn_basics")
    with Gradebook(url, "term-test") as gb:
        gb.find_grade("t1", "nb", "rnn_basics", "ada").manual_score = 5.0  # formgrader: 9 of 10 now
        gb.db.commit()
        apply_penalties(gb, "rnn_basics", "ada", LatePolicy(10, 3))
        gb.db.rollback()
    assert regrade_late(tmp_path, "rnn_basics") == [("ada", 2, pytest.approx(1.6), pytest.approx(1.8))]


def test_regrade_late_refuses_without_course_yml_or_with_a_bad_one(tmp_path):
    _course(tmp_path, TERM)
    (tmp_path / "course.yml").write_text(TERM.replace("per_day: 10", "per_day: -1"))
    with pytest.raises(TermError, match="line 5"):
        regrade_late(tmp_path, "rnn_basics")
    (tmp_path / "course.yml").unlink()
    with pytest.raises(Exception, match="no course.yml"):
        regrade_late(tmp_path, "rnn_basics")
    assert load_term(tmp_path) is None
