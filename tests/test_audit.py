"""The audit trail in the gradebook (``grading/instructor/audit.py``): real sqlite gradebooks and a real PostgreSQL
server (``postgres.py``), nbgrader's own ``Gradebook`` API, other processes writing as formgrader does. No kernel.

Each change of a grade's ``auto_score``, ``manual_score`` or ``extra_credit`` and of a notebook's late penalty is a
row with who, why, old and new value, whichever process wrote it; the grader's context never outlives its
transaction (not even when nbgrader commits in the middle of it), never names another process's change, and two
graders writing into PostgreSQL at once are told apart.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from nbgrader.api import Grade, Gradebook
from postgres import PostgresServer, running_server
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, SAWarning

from conftest import REPO
from grading.instructor import audit
from grading.instructor.attempts import gradebook_write
from grading.instructor.audit import (
    COLUMNS,
    FORMGRADER_HOOK,
    FORMGRADER_WHY,
    OUTSIDE_WHY,
    UNKNOWN_WHO,
    add_audit_commands,
    audit_rows,
    clear_context,
    current_user,
    ensure_audit,
    history_text,
    set_context,
    write_audit_csv,
)
from grading.instructor.course import CourseError
from grading.instructor.hub import INSTRUCTOR_NBGRADER_CONFIG

COURSE = "rnn-course"
ME = current_user
# Another process writing a manual score and extra credit through nbgrader's Gradebook, as formgrader's API handler
# does: optionally after loading nbgrader_config.py files (the hook) and inside a Jupyter server.
FORMGRADER = r"""
import sys
from traitlets.config.loader import PyFileConfigLoader

url, server, configs = sys.argv[1], sys.argv[2] == "server", sys.argv[3:]
for folder in configs:
    PyFileConfigLoader("nbgrader_config.py", folder).load_config()
if server:
    from jupyter_server.serverapp import ServerApp

    ServerApp.instance()  # what a running Jupyter server (formgrader's process) has
from nbgrader.api import Gradebook
from sqlalchemy import inspect, text

with Gradebook(url, "rnn-course") as gb:
    grade = gb.find_grade("c1", "nb1", "a1", "s1")
    grade.manual_score = 0.5
    grade.extra_credit = 0.25
    gb.db.commit()
    if inspect(gb.engine).has_table("grading_audit_context"):
        print("context rows:", gb.db.execute(text("SELECT count(*) FROM grading_audit_context")).scalar())
"""


def populate(url: str) -> None:
    """Assignment a1, notebook nb1 with graded cells c1 (1 point) and c2 (2 points), students s1 and s2, each with a
    submission whose grades are still empty, and s3 without any."""
    with Gradebook(url, COURSE) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's add_submission autoflushes half-built objects
        gb.update_or_create_assignment("a1")
        gb.update_or_create_notebook("nb1", "a1")
        for cell, points in (("c1", 1.0), ("c2", 2.0)):
            gb.update_or_create_grade_cell(cell, "nb1", "a1", max_score=points, cell_type="code")
        for student in ("s1", "s2", "s3"):
            gb.update_or_create_student(student)
        for student in ("s1", "s2"):
            gb.update_or_create_submission("a1", student)


def course_root(path: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", path / "nbgrader_config.py")
    return path


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory) -> bytes:
    """``populate``'s sqlite gradebook, built once (nbgrader commits after every step)."""
    path = tmp_path_factory.mktemp("template") / "gradebook.db"
    populate(f"sqlite:///{path}")
    return path.read_bytes()


@pytest.fixture
def course(tmp_path, monkeypatch, sqlite_template):
    """(root, url): a course root whose sqlite gradebook has the audit trail."""
    monkeypatch.delenv("GRADING_DB_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    root = course_root(tmp_path / "course")
    (root / "gradebook.db").write_bytes(sqlite_template)
    url = f"sqlite:///{root / 'gradebook.db'}"
    ensure_audit(url)
    return root, url


def set_score(student: str, cell: str, value: float | None, field: str = "auto_score"):
    def change(gb: Gradebook) -> None:
        setattr(gb.find_grade(cell, "nb1", "a1", student), field, value)
    return change


def changes(root: Path, student: str | None = None) -> list[tuple]:
    """(who, student, cell, field, old, new, why) of each recorded change, oldest first."""
    return [(r["who"], r["student"], r["cell"], r["field"], r["old"], r["new"], r["why"])
            for r in audit_rows(root, student)]


def context_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM grading_audit_context")).scalar()
    finally:
        engine.dispose()


def formgrader(url: str, *configs: Path, server: bool = True, user: str | None = "alice") -> str:
    env = {k: v for k, v in os.environ.items() if k != "JUPYTERHUB_USER"}
    if user:
        env["JUPYTERHUB_USER"] = user
    out = subprocess.run([sys.executable, "-c", FORMGRADER, url, "server" if server else "plain",
                          *map(str, configs)], capture_output=True, text=True, timeout=120, env=env, cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def instructor_config(folder: Path, root: Path, url: str) -> Path:
    """The hub's formgrader overlay (hub.INSTRUCTOR_NBGRADER_CONFIG), as ``python -m grading hub`` writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nbgrader_config.py").write_text(INSTRUCTOR_NBGRADER_CONFIG.format(
        root=str(root), course_id=COURSE, db_url=url, exchange=str(folder / "exchange")))
    return folder


# ---------------------------------------------------------------- the grader's own writes (sqlite)

def test_a_grader_write_is_recorded_with_who_why_and_old_and_new(course):
    root, url = course
    assert changes(root) == []  # empty grades created by nbgrader are not changes
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="autograde")
    gradebook_write(url, COURSE, set_score("s1", "c1", 0.0), why="regrade", who="teacher")
    assert changes(root) == [(ME(), "s1", "c1", "auto_score", None, 1.0, "autograde"),
                             ("teacher", "s1", "c1", "auto_score", 1.0, 0.0, "regrade")]
    row = audit_rows(root)[0]
    assert row["assignment"] == "a1" and row["notebook"] == "nb1" and row["at"].endswith("+00:00")
    assert context_rows(url) == 0


def test_the_hub_user_is_who_when_set(course, monkeypatch):
    root, url = course
    monkeypatch.setenv("JUPYTERHUB_USER", "carol")
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="autograde")
    assert changes(root)[0][0] == "carol"


def test_writing_the_same_value_again_records_nothing(course):
    root, url = course
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="autograde")
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="regrade")
    engine = create_engine(url)
    with engine.begin() as conn:  # not even a raw UPDATE that sets the value it already has
        conn.execute(text("UPDATE grade SET auto_score = auto_score, manual_score = manual_score"))
    engine.dispose()
    assert [c[-1] for c in changes(root)] == ["autograde"]


def test_the_reason_can_change_mid_transaction_and_earlier_changes_keep_theirs(course):
    root, url = course

    def change(gb: Gradebook) -> None:
        gb.find_grade("c1", "nb1", "a1", "s1").auto_score = 1.0  # pending, not yet flushed
        set_context(gb, "verifier")
        gb.find_grade("c1", "nb1", "a1", "s1").auto_score = 0.0
        gb.find_grade("c2", "nb1", "a1", "s1").extra_credit = 0.5

    gradebook_write(url, COURSE, change, why="autograde")
    assert changes(root) == [(ME(), "s1", "c1", "auto_score", None, 1.0, "autograde"),
                             (ME(), "s1", "c1", "auto_score", 1.0, 0.0, "verifier"),
                             (ME(), "s1", "c2", "extra_credit", None, 0.5, "verifier")]


def test_nbgrader_committing_inside_the_change_neither_loses_nor_commits_the_context(course):
    root, url = course
    committed_contexts = []

    def change(gb: Gradebook) -> None:
        gb.find_grade("c1", "nb1", "a1", "s1").auto_score = 1.0
        gb.update_or_create_student("s4")  # nbgrader commits here (flushing the score above)
        committed_contexts.append(context_rows(url))  # what another process sees now
        gb.update_or_create_submission("a1", "s2")  # commits again
        gb.find_grade("c2", "nb1", "a1", "s2").auto_score = 2.0

    gradebook_write(url, COURSE, change, why="autograde")
    assert committed_contexts == [0]
    assert changes(root) == [(ME(), "s1", "c1", "auto_score", None, 1.0, "autograde"),
                             (ME(), "s2", "c2", "auto_score", None, 2.0, "autograde")]
    assert context_rows(url) == 0


def test_a_retried_transaction_records_only_what_was_committed(course):
    root, url = course
    attempts = []

    def change(gb: Gradebook) -> None:
        gb.find_grade("c1", "nb1", "a1", "s1").auto_score = 1.0 if not attempts else 0.5
        gb.db.flush()  # the trigger has run: only the rollback can take the row back
        attempts.append(1)
        if len(attempts) == 1:
            raise OperationalError("UPDATE grade", {}, Exception("database is locked"))

    gradebook_write(url, COURSE, change, why="autograde")
    assert len(attempts) == 2
    assert changes(root) == [(ME(), "s1", "c1", "auto_score", None, 0.5, "autograde")]
    assert context_rows(url) == 0


def test_a_failed_change_leaves_no_row_and_no_context(course):
    root, url = course

    def change(gb: Gradebook) -> None:
        set_score("s1", "c1", 1.0)(gb)
        gb.db.flush()
        raise ValueError("the grader gave up")

    with pytest.raises(ValueError):
        gradebook_write(url, COURSE, change, why="autograde")
    assert changes(root) == [] and context_rows(url) == 0


def test_existing_callers_without_a_reason_still_work_and_are_recorded_as_outside(course):
    root, url = course
    assert gradebook_write(url, COURSE, lambda gb: gb.find_grade("c1", "nb1", "a1", "s1").max_score) == 1.0
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0))
    assert changes(root) == [(UNKNOWN_WHO, "s1", "c1", "auto_score", None, 1.0, OUTSIDE_WHY)]


def test_a_late_penalty_change_is_recorded(course):
    root, url = course

    def penalty(value):
        def change(gb: Gradebook) -> None:
            gb.find_submission_notebook("nb1", "a1", "s2").late_submission_penalty = value
        return change

    gradebook_write(url, COURSE, penalty(0.5), why="late penalty")
    gradebook_write(url, COURSE, penalty(0.5), why="late penalty")
    gradebook_write(url, COURSE, penalty(None), why="extension granted", who="teacher")
    assert changes(root) == [(ME(), "s2", None, "late_penalty", None, 0.5, "late penalty"),
                             ("teacher", "s2", None, "late_penalty", 0.5, None, "extension granted")]
    assert audit_rows(root)[0]["notebook"] == "nb1"


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader's add_submission autoflushes
def test_a_new_grade_with_a_score_is_recorded_and_an_empty_one_is_not(course):
    root, url = course
    gradebook_write(url, COURSE, lambda gb: gb.update_or_create_submission("a1", "s3"), why="autograde")
    assert changes(root) == []  # a new submission: its grades and penalty are still empty
    with Gradebook(url, COURSE) as gb:
        gb.update_or_create_grade_cell("c3", "nb1", "a1", max_score=3.0, cell_type="code")

    def add(gb: Gradebook) -> None:
        cell = gb.find_grade_cell("c3", "nb1", "a1")
        gb.db.add(Grade(cell=cell, notebook=gb.find_submission_notebook("nb1", "a1", "s1"), auto_score=3.0,
                        manual_score=2.5))

    gradebook_write(url, COURSE, add, why="autograde")
    assert sorted(changes(root)) == [(ME(), "s1", "c3", "auto_score", None, 3.0, "autograde"),
                                     (ME(), "s1", "c3", "manual_score", None, 2.5, "autograde")]


# ---------------------------------------------------------------- other processes (formgrader)

def test_a_manual_score_from_another_process_without_the_hook_is_recorded_as_unknown(course):
    root, url = course
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="autograde")
    formgrader(url, server=True)  # no nbgrader_config.py loaded: no hook
    assert sorted(changes(root)[1:]) == [(UNKNOWN_WHO, "s1", "c1", "extra_credit", None, 0.25, OUTSIDE_WHY),
                                         (UNKNOWN_WHO, "s1", "c1", "manual_score", None, 0.5, OUTSIDE_WHY)]


def test_formgrader_on_the_hub_names_the_hub_user(course, tmp_path):
    root, url = course
    overlay = instructor_config(tmp_path / "overlay", root, url)
    out = formgrader(url, overlay, root, user="alice")  # the overlay and the course root's config: hook once
    assert "context rows: 0" in out
    assert sorted(changes(root)) == [("alice", "s1", "c1", "extra_credit", None, 0.25, FORMGRADER_WHY),
                                     ("alice", "s1", "c1", "manual_score", None, 0.5, FORMGRADER_WHY)]


def test_formgrader_without_a_hub_names_the_os_user(course):
    root, url = course
    formgrader(url, root, user=None)
    assert {c[0] for c in changes(root)} == {ME()}


def test_the_hook_acts_only_in_a_jupyter_server(course):
    root, url = course
    formgrader(url, root, server=False)  # e.g. a script or nbgrader's command line that read the config
    assert {(c[0], c[-1]) for c in changes(root)} == {(UNKNOWN_WHO, OUTSIDE_WHY)}


def test_the_hook_never_overrides_the_graders_own_context(course):
    """Even in a process that read nbgrader_config.py (the grader does) inside a Jupyter server."""
    root, url = course
    script = (f"from traitlets.config.loader import PyFileConfigLoader\n"
              f"PyFileConfigLoader('nbgrader_config.py', {str(root)!r}).load_config()\n"
              "from jupyter_server.serverapp import ServerApp\nServerApp.instance()\n"
              "from grading.instructor.attempts import gradebook_write\n"
              f"gradebook_write({url!r}, 'rnn-course', lambda gb: setattr(gb.find_grade('c1', 'nb1', 'a1', 's1'), "
              "'auto_score', 1.0), why='autograde', who='grader')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert changes(root) == [("grader", "s1", "c1", "auto_score", None, 1.0, "autograde")]


def test_the_hook_leaves_a_gradebook_without_audit_tables_alone(tmp_path, sqlite_template):
    (tmp_path / "job.db").write_bytes(sqlite_template)  # a job's gradebook, or a course before its first grading
    url = f"sqlite:///{tmp_path / 'job.db'}"
    formgrader(url, course_root(tmp_path / "c"))
    with Gradebook(url, COURSE) as gb:
        assert gb.find_grade("c1", "nb1", "a1", "s1").manual_score == 0.5


def test_the_hook_is_self_contained_and_the_same_in_both_configs():
    assert FORMGRADER_HOOK in (REPO / "nbgrader_config.py").read_text()
    assert FORMGRADER_HOOK in INSTRUCTOR_NBGRADER_CONFIG  # unchanged by its str.format: the hook has no brace
    assert "{" not in FORMGRADER_HOOK and "}" not in FORMGRADER_HOOK
    assert "grading" not in "".join(line for line in FORMGRADER_HOOK.splitlines() if "import" in line)


def test_validate_reads_the_config_without_sqlalchemy(tmp_path):
    """Students' Validate reads nbgrader_config.py: the hook never breaks it, even where sqlalchemy is missing."""
    script = ("import sys\nsys.modules['sqlalchemy'] = None\n"
              "from traitlets.config.loader import PyFileConfigLoader\n"
              f"c = PyFileConfigLoader('nbgrader_config.py', {str(REPO)!r}).load_config()\n"
              "print(c.CourseDirectory.course_id)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == COURSE, out.stderr[-2000:]


def test_the_context_is_not_left_behind_for_a_later_outside_write(course):
    root, url = course
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="autograde")
    assert context_rows(url) == 0
    formgrader(url, server=False)
    assert [(c[0], c[-1]) for c in changes(root)] == [(ME(), "autograde"), (UNKNOWN_WHO, OUTSIDE_WHY),
                                                      (UNKNOWN_WHO, OUTSIDE_WHY)]


# ---------------------------------------------------------------- schema

def test_ensure_audit_is_idempotent_and_replaces_older_triggers(course):
    root, url = course
    engine = create_engine(url)

    def triggers():
        with engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'grading_audit%'")))

    ours = triggers()
    assert len(ours) == 8 and all(name.startswith(audit.PREFIX) for name in ours)
    with engine.begin() as conn:
        conn.execute(text("CREATE TRIGGER grading_audit_v0_old AFTER UPDATE ON grade BEGIN SELECT 1; END"))
        conn.execute(text(f"DROP TRIGGER {ours[0]}"))
    ensure_audit(url)
    ensure_audit(engine)
    assert triggers() == ours
    engine.dispose()
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="autograde")
    assert len(changes(root)) == 1


def test_ensure_audit_refuses_a_database_without_nbgrader_tables(tmp_path):
    with pytest.raises(CourseError, match="no nbgrader gradebook"):
        ensure_audit(f"sqlite:///{tmp_path / 'empty.db'}")


def test_set_context_refuses_something_that_is_no_session():
    with pytest.raises(TypeError):
        set_context("sqlite://", "why")


# ---------------------------------------------------------------- audit.csv, history, the commands

def test_audit_csv_has_the_columns_and_every_change(course):
    root, url = course
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="autograde")
    gradebook_write(url, COURSE, set_score("s2", "c2", 1.5, "manual_score"), why='regrade, "by hand"')
    path = write_audit_csv(root)
    assert path == root / "reports" / "audit.csv"
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["at", "who", "student", "assignment", "notebook", "cell", "field", "old", "new", "why"]
    assert tuple(rows[0]) == COLUMNS
    assert [r[1:] for r in rows[1:]] == [[ME(), "s1", "a1", "nb1", "c1", "auto_score", "", "1.0", "autograde"],
                                         [ME(), "s2", "a1", "nb1", "c2", "manual_score", "", "1.5",
                                          'regrade, "by hand"']]
    assert rows[1][0] <= rows[2][0]


def test_history_shows_one_student_oldest_first(course):
    root, url = course
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="autograde")
    gradebook_write(url, COURSE, set_score("s2", "c1", 1.0), why="autograde")
    gradebook_write(url, COURSE, set_score("s1", "c1", 0.0), why="verifier: the check failed")
    text_ = history_text(root, "s1")
    lines = text_.splitlines()
    assert lines[0] == "s1: 2 grade changes, oldest first"
    assert "when (UTC)" in lines[1] and "why" in lines[1]
    assert lines[2].endswith("autograde") and " — " in lines[2] and lines[3].endswith("verifier: the check failed")
    assert "s2" not in text_
    assert history_text(root, "s3") == "s3: no grade change recorded"


def test_history_of_an_unknown_student_is_a_course_error(course):
    root, _ = course
    with pytest.raises(CourseError, match="no student 'nobody'"):
        history_text(root, "nobody")


def test_a_course_without_a_gradebook_is_a_course_error(tmp_path, monkeypatch):
    monkeypatch.delenv("GRADING_DB_URL", raising=False)
    root = course_root(tmp_path / "c")
    with pytest.raises(CourseError, match="no gradebook"):
        audit_rows(root)


def test_the_commands(course, capsys):
    root, url = course
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="autograde")
    parser = argparse.ArgumentParser()
    root_parser = argparse.ArgumentParser(add_help=False)
    root_parser.add_argument("--root", default=".")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(sub, name, func, help_text, parent):
        p = sub.add_parser(name, help=help_text, parents=[parent])
        p.set_defaults(func=func)
        return p

    add_audit_commands(sub, command, root_parser)
    args = parser.parse_args(["audit", "--root", str(root)])
    assert args.func(args) == 0 and (root / "reports" / "audit.csv").is_file()
    assert "1 grade change written to" in capsys.readouterr().out
    args = parser.parse_args(["history", "s1", "--root", str(root)])
    assert args.func(args) == 0 and "autograde" in capsys.readouterr().out
    args = parser.parse_args(["history", "nobody", "--root", str(root)])
    with pytest.raises(CourseError):
        args.func(args)


# ---------------------------------------------------------------- PostgreSQL

@pytest.fixture(scope="module")
def pg():
    yield from running_server()


def pg_url(pg: PostgresServer, database: str) -> str:
    return f"postgresql+psycopg2://postgres:{pg.password}@127.0.0.1:{pg.port}/{database}"


@pytest.fixture(scope="module")
def pg_template(pg) -> str:
    """A database holding ``populate``'s gradebook (no audit trail), copied by each test."""
    pg.sql("CREATE DATABASE audit_template")
    populate(pg_url(pg, "audit_template"))
    return "audit_template"


@pytest.fixture
def pg_course(pg, pg_template, tmp_path, monkeypatch, request):
    """(root, url): a course root whose gradebook is a fresh PostgreSQL database with the audit trail."""
    name = "audit_" + "".join(ch for ch in request.node.name.lower() if ch.isalnum())[:40]
    pg.sql(f"DROP DATABASE IF EXISTS {name}")
    pg.sql(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    url = pg_url(pg, name)
    root = course_root(tmp_path / "course")
    monkeypatch.setenv("GRADING_DB_URL", url)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    ensure_audit(url)
    return root, url


def test_postgresql_records_the_grader_formgrader_and_outside_writes(pg_course, tmp_path):
    root, url = pg_course
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="autograde")
    gradebook_write(url, COURSE, set_score("s1", "c1", 1.0), why="regrade")  # no change, no row
    formgrader(url, instructor_config(tmp_path / "overlay", root, url), user="alice")
    formgrader(url, server=False)  # the same values again: nothing
    gradebook_write(url, COURSE, set_score("s1", "c1", None, "manual_score"))  # no reason given: outside
    found = changes(root)
    assert found[0] == (ME(), "s1", "c1", "auto_score", None, 1.0, "autograde")
    assert sorted(found[1:3]) == [("alice", "s1", "c1", "extra_credit", None, 0.25, FORMGRADER_WHY),
                                  ("alice", "s1", "c1", "manual_score", None, 0.5, FORMGRADER_WHY)]
    assert found[3:] == [("postgres", "s1", "c1", "manual_score", 0.5, None, OUTSIDE_WHY)]
    assert context_rows(url) == 0


def test_postgresql_late_penalty_history_and_csv(pg_course):
    root, url = pg_course

    def change(gb: Gradebook) -> None:
        gb.find_submission_notebook("nb1", "a1", "s2").late_submission_penalty = 0.25
        set_context(gb, "verifier")
        gb.find_grade("c2", "nb1", "a1", "s2").auto_score = 2.0

    gradebook_write(url, COURSE, change, why="late penalty")
    assert changes(root, "s2") == [(ME(), "s2", None, "late_penalty", None, 0.25, "late penalty"),
                                   (ME(), "s2", "c2", "auto_score", None, 2.0, "verifier")]
    assert history_text(root, "s2").startswith("s2: 2 grade changes")
    with write_audit_csv(root).open(newline="") as f:
        assert len(list(csv.reader(f))) == 3


def test_postgresql_two_concurrent_graders_are_told_apart(pg_course):
    root, url = pg_course
    one, two = Gradebook(url, COURSE), Gradebook(url, COURSE)
    try:
        set_context(one, "autograde", who="grader-one")
        set_context(two, "regrade", who="grader-two")
        one.find_grade("c1", "nb1", "a1", "s1").auto_score = 1.0
        one.db.flush()
        two.find_grade("c1", "nb1", "a1", "s2").auto_score = 0.5
        two.db.flush()
        set_context(one, "verifier", who="grader-one")  # both transactions are still open
        one.find_grade("c2", "nb1", "a1", "s1").auto_score = 2.0
        one.db.flush()
        clear_context(two)
        two.db.commit()
        one.find_grade("c1", "nb1", "a1", "s1").auto_score = 0.0  # after the other's commit
        clear_context(one)
        one.db.commit()
    finally:
        one.close()
        two.close()
    assert sorted(changes(root), key=repr) == sorted([
        ("grader-one", "s1", "c1", "auto_score", None, 1.0, "autograde"),
        ("grader-two", "s2", "c1", "auto_score", None, 0.5, "regrade"),
        ("grader-one", "s1", "c2", "auto_score", None, 2.0, "verifier"),
        ("grader-one", "s1", "c1", "auto_score", 1.0, 0.0, "verifier")], key=repr)
    assert context_rows(url) == 0


def test_postgresql_threads_writing_at_once_keep_their_own_reasons(pg_course):
    root, url = pg_course
    barrier = threading.Barrier(2)
    errors = []

    def grader(student: str, why: str) -> None:
        def change(gb: Gradebook) -> None:
            gb.find_grade("c1", "nb1", "a1", student).auto_score = 1.0
            gb.db.flush()
            barrier.wait(timeout=30)  # both transactions hold their context at the same moment
            gb.find_grade("c2", "nb1", "a1", student).auto_score = 2.0
        try:
            gradebook_write(url, COURSE, change, why=why)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=grader, args=args) for args in (("s1", "for s1"), ("s2", "for s2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert {(c[1], c[-1]) for c in changes(root)} == {("s1", "for s1"), ("s2", "for s2")}
    assert len(changes(root)) == 4


def test_postgresql_a_context_committed_by_mistake_names_no_later_change(pg_course):
    root, url = pg_course
    engine = create_engine(url, pool_size=1, max_overflow=0)  # one connection: the same backend throughout
    with engine.connect() as conn:
        set_context(conn, "left behind", who="careless")
        conn.commit()  # without clear_context
        conn.execute(text("UPDATE grade SET auto_score = 1 WHERE id = (SELECT g.id FROM grade g "
                          "JOIN base_cell b ON b.id = g.cell_id JOIN submitted_notebook sn ON sn.id = g.notebook_id "
                          "JOIN submitted_assignment sa ON sa.id = sn.assignment_id "
                          "WHERE b.name = 'c1' AND sa.student_id = 's1')"))
        conn.commit()
    engine.dispose()
    assert changes(root) == [("postgres", "s1", "c1", "auto_score", None, 1.0, OUTSIDE_WHY)]


def test_postgresql_ensure_audit_concurrently_and_again(pg_course):
    root, url = pg_course
    errors = []

    def install() -> None:
        try:
            ensure_audit(url)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    engine = create_engine(url)
    with engine.connect() as conn:
        names = conn.execute(text("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'grading_audit%'")).scalars().all()
    engine.dispose()
    assert sorted(names) == [f"{audit.PREFIX}grade", f"{audit.PREFIX}penalty"]


# ---------------------------------------------------------------- the coordinator's record of a job

def test_the_coordinator_records_the_kernels_score_then_the_verifiers_then_the_late_penalty(course):
    """A cell the notebook's own test passed (1) but the out-of-kernel check failed (0): the trail shows both steps,
    each with its reason, then the penalty; a second record of the same job is a regrade and changes nothing."""
    from types import SimpleNamespace

    from grading.instructor.autograde import Coordinator, GradeOptions
    from grading.instructor.jobs import JobResult
    from grading.instructor.records import SubmissionResult
    from grading.instructor.settings import GradingSettings

    root, url = course
    result = SubmissionResult("s1", "a1")
    result.notebooks["nb1"] = {"cells": {"c1": {"kernel_score": 1.0}, "c2": {"kernel_score": 2.0}}}
    grades = [{"notebook": "nb1", "name": "c1", "auto_score": 0.0, "needs_manual": False},
              {"notebook": "nb1", "name": "c2", "auto_score": 2.0, "needs_manual": False}]
    done = JobResult(result, None, grades, [], {"nb1": 0.5})
    c = Coordinator(root, "a1", url, COURSE, GradeOptions(), GradingSettings(), root / "staging",
                    SimpleNamespace(run="r1"))
    gradebook_write(url, COURSE, lambda gb: c._record(gb, done), why="autograde")
    rows = [(cell, field, old, new, why.split(" (run")[0]) for _, _, cell, field, old, new, why in changes(root, "s1")]
    assert rows == [("c1", "auto_score", None, 1.0, "autograde"), ("c2", "auto_score", None, 2.0, "autograde"),
                    ("c1", "auto_score", 1.0, 0.0, "verifier"), (None, "late_penalty", None, 0.5, "late penalty")]
    gradebook_write(url, COURSE, lambda gb: c._record(gb, done), why="autograde")
    again = changes(root, "s1")[len(rows):]
    assert [(cell, old, new, why.split(" (run")[0]) for _, _, cell, _, old, new, why in again] == [
        ("c1", 0.0, 1.0, "regrade"), ("c1", 1.0, 0.0, "verifier")]
