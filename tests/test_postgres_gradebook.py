"""Graders share a PostgreSQL gradebook: a real PostgreSQL server (``postgres.py``), no mock, no sqlite stand-in.

``db init`` creates the course's role, its database and nbgrader's tables (twice is fine); ``release`` and
``grade`` of a small class write into PostgreSQL and leave no ``gradebook.db``; a regrade runs while another
process enters manual scores and comments through nbgrader's ``Gradebook`` (as formgrader does), and neither
loses an update; the password stays out of ``nbgrader_config.py`` and of everything students receive.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import psycopg2
import pytest
from nbgrader.api import Gradebook
from postgres import SUPERUSER, running_server
from sqlalchemy import text

from conftest import REPO, gradebook_scores, grading, results
from grading.instructor.database import pgpass_lookup
from grading.instructor.sample_class import expected_scores, roster, write_class

pytestmark = pytest.mark.slow  # a real PostgreSQL server, nbgrader, kernels and the sandbox

A = "rnn_basics"
ROLE = DB = "rnn_course"
CLASS = ("student01", "student02", "student06")  # correct (two styles), partly answered: each has points to write
TEST_CELLS = {"rnn_cell": ("test_rnn_cell_step", "test_run_cell"),
              "nn_rnn": ("test_rnn_shapes", "test_rnn_shapes_batch_first", "test_last_time_step")}
SOLUTION_CELLS = {"rnn_cell": ("rnn_cell_step", "run_cell"), "nn_rnn": ("rnn_shapes", "last_time_step")}
WRITER_SECONDS = 300
AUDIT = """
CREATE TABLE audit (at timestamptz NOT NULL, app text NOT NULL, tbl text NOT NULL, row_id text NOT NULL,
                    auto text, manual text);
CREATE FUNCTION audit_grade() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.auto_score IS DISTINCT FROM OLD.auto_score
     OR NEW.manual_score IS DISTINCT FROM OLD.manual_score THEN
    INSERT INTO public.audit VALUES (clock_timestamp(), current_setting('application_name'), 'grade', NEW.id,
                                     NEW.auto_score::text, NEW.manual_score::text);
  END IF;
  RETURN NEW;
END $$;
CREATE FUNCTION audit_comment() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.auto_comment IS DISTINCT FROM OLD.auto_comment
     OR NEW.manual_comment IS DISTINCT FROM OLD.manual_comment THEN
    INSERT INTO public.audit VALUES (clock_timestamp(), current_setting('application_name'), 'comment', NEW.id,
                                     NEW.auto_comment, NEW.manual_comment);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_grade AFTER INSERT OR UPDATE ON grade FOR EACH ROW EXECUTE FUNCTION audit_grade();
CREATE TRIGGER audit_comment AFTER INSERT OR UPDATE ON comment FOR EACH ROW EXECUTE FUNCTION audit_comment();
GRANT SELECT ON audit TO rnn_course;
"""
# A second grader in formgrader: one manual score or comment per request (formgrader commits each one), in a loop
# over several students' cells, from the moment the grading run has started writing until told to stop.
WRITER = r"""
import json, sys, time
from nbgrader.api import Gradebook
from sqlalchemy import text
from sqlalchemy import text

url, targets, stop, out, limit = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
entered, errors, commits = {}, [], []
deadline = time.monotonic() + limit
with Gradebook(url, "rnn-course") as gb:
    while not gb.db.execute(text("SELECT count(*) FROM audit WHERE app = 'grader'")).scalar():
        gb.db.rollback()
        if time.monotonic() > deadline:
            sys.exit("the grading run never wrote to the gradebook")
        time.sleep(0.05)
    gb.db.rollback()
    k = 0
    while time.monotonic() < deadline:
        k += 1
        for student, notebook, cell, kind in targets:
            key = "/".join((student, notebook, cell))
            try:
                if kind == "grade":
                    grade = gb.find_grade(cell, notebook, "rnn_basics", student)
                    value = (k % 4) * 0.25
                    grade.manual_score, grade.needs_manual_grade = value, False
                else:
                    value = f"note {k} on {cell}"
                    gb.find_comment(cell, notebook, "rnn_basics", student).manual_comment = value
                gb.db.commit()
                entered[key] = value
                commits.append(time.time())
            except Exception as exc:
                gb.db.rollback()
                errors.append(f"{key}: {type(exc).__name__}: {exc}"[:300])
        try:
            open(stop).close()
            break
        except OSError:
            pass
json.dump({"entered": entered, "errors": errors, "commits": commits, "rounds": k}, open(out, "w"))
"""


@pytest.fixture(scope="module")
def pg():
    yield from running_server()


def _db_init(root, *args, env=None):
    return grading("db", "init", *args, root=root, timeout=120, env=env)


def _course_root(path):
    path.mkdir(parents=True)
    (path / "nbgrader_config.py").write_text((REPO / "nbgrader_config.py").read_text())
    return path


@pytest.fixture(scope="module")
def course(pg, tmp_path_factory):
    """A course whose gradebook is PostgreSQL (db init with a new password kept in a private pgpass file, then
    release), three catalogue students of rnn_basics graded once."""
    base = tmp_path_factory.mktemp("pgcourse")
    root = _course_root(base / "course")
    for src in (REPO / "source" / A).iterdir():
        (root / "source" / A).mkdir(parents=True, exist_ok=True)
        (root / "source" / A / src.name).write_bytes(src.read_bytes())
    pgpass = base / "pgpass"
    out = _db_init(root, "--admin-url", pg.admin_url(), "--host", "127.0.0.1", env={"PGPASSFILE": str(pgpass)})
    url = next(line.split("=", 1)[1] for line in out.stdout.splitlines() if "export GRADING_DB_URL=" in line)
    env = {"GRADING_DB_URL": url, "PGPASSFILE": str(pgpass)}
    grading("release", root=root, env=env)
    students = [s for s in roster([A], 8)[A] if s.student_id in CLASS]
    write_class(root, {A: students})
    first = grading("grade", A, "--jobs", "2", root=root, env=env)
    return {"root": root, "url": url, "env": env, "pgpass": pgpass, "password": pgpass_lookup(url, pgpass),
            "students": students, "first": first}


@pytest.fixture
def use_course_db(course, monkeypatch):
    for key, value in course["env"].items():
        monkeypatch.setenv(key, value)
    return course


def _gradebook(course, app=""):
    url = course["url"] + (f"?application_name={app}" if app else "")
    return Gradebook(url, "rnn-course")


# ---------------------------------------------------------------- db init

def test_db_init_creates_role_database_and_schema_and_twice_is_fine(pg, tmp_path):
    root = _course_root(tmp_path / "c")
    (tmp_path / "password").write_text("s3cret-for:the course\n")
    args = ("--admin-url", pg.admin_url(), "--host", "127.0.0.1", "--db", "initcheck", "--role", "initcheck_role",
            "--password-file", str(tmp_path / "password"))
    env = {"PGPASSFILE": str(tmp_path / "absent")}
    first = _db_init(root, *args, env=env)
    url = f"postgresql+psycopg2://initcheck_role@127.0.0.1:{pg.port}/initcheck"
    assert f"export GRADING_DB_URL={url}\n" in first.stdout
    for secret in ("s3cret-for:the course", pg.password):
        assert secret not in first.stdout + first.stderr
    role = pg.sql("SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolpassword FROM pg_authid "
                  "WHERE rolname = 'initcheck_role'")
    assert role and role[0][:4] == (True, False, False, False) and role[0][4].startswith("SCRAM-SHA-256$4096:")
    assert pg.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'initcheck'") == [
        ("initcheck_role",)]
    tables = dict(pg.sql("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'", "initcheck"))
    assert {"assignment", "grade", "comment", "submitted_notebook", "alembic_version"} <= set(tables)
    assert set(tables.values()) == {"initcheck_role"}
    login = f"postgresql+psycopg2://initcheck_role:{'s3cret-for:the course'.replace(':', '%3A').replace(' ', '%20')}" \
            f"@127.0.0.1:{pg.port}/initcheck"
    with Gradebook(login, "rnn-course") as gb:
        gb.update_or_create_student("kept")
        gb.db.commit()

    # no one else may connect to the course's database
    pg.sql("DROP ROLE IF EXISTS intruder")
    pg.sql("CREATE ROLE intruder LOGIN PASSWORD 'intruder'")
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        psycopg2.connect(f"host=127.0.0.1 port={pg.port} user=intruder password=intruder dbname=initcheck",
                         connect_timeout=10)

    again = _db_init(root, *args, env=env)
    assert f"export GRADING_DB_URL={url}\n" in again.stdout
    with Gradebook(login, "rnn-course") as gb:
        assert [s.id for s in gb.students] == ["kept"]
    assert pg.sql("SELECT count(*) FROM alembic_version", "initcheck") == [(1,)]


def test_db_init_by_default_runs_as_the_postgres_account_and_keeps_a_new_password_in_pgpass(pg, tmp_path):
    if pg.account != SUPERUSER or os.geteuid() != 0:
        pytest.skip("the default path (psql as the postgres account, peer authentication) needs root and the "
                    "postgres system account")
    root = _course_root(tmp_path / "c")
    pgpass = tmp_path / "pgpass"
    env = {**pg.socket_env(), "PGPASSFILE": str(pgpass), "GRADING_DB_ADMIN_URL": "", "GRADING_DB_PASSWORD": ""}
    out = _db_init(root, "--db", "peercheck", "--host", "127.0.0.1", env=env)
    url = f"postgresql+psycopg2://peercheck@127.0.0.1:{pg.port}/peercheck"
    assert f"export GRADING_DB_URL={url}\n" in out.stdout and "(new)" in out.stdout
    password = pgpass_lookup(url, pgpass)
    assert password and password not in out.stdout + out.stderr
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    again = _db_init(root, "--db", "peercheck", "--host", "127.0.0.1", env=env)
    assert "(new)" not in again.stdout and len(pgpass.read_text().splitlines()) == 1
    conn = psycopg2.connect(host="127.0.0.1", port=pg.port, dbname="peercheck", user="peercheck", connect_timeout=10,
                            passfile=str(pgpass))  # libpq reads the password from it
    conn.close()


def test_a_missing_or_unreachable_postgresql_gradebook_is_a_clear_course_error(course, pg, tmp_path):
    root = course["root"]
    pg.sql("DROP DATABASE IF EXISTS empty_course")
    pg.sql(f"CREATE DATABASE empty_course OWNER {ROLE}")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:*:*:{ROLE}:{course['password']}\n")
    pgpass.chmod(0o600)
    env = {**course["env"], "PGPASSFILE": str(pgpass)}
    empty = {**env, "GRADING_DB_URL": f"postgresql://{ROLE}@127.0.0.1:{pg.port}/empty_course"}
    out = grading("grade", A, root=root, check=False, env=empty)
    assert out.returncode == 4 and "no gradebook in" in out.stderr and "python -m grading db init" in out.stderr
    assert pg.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", "empty_course") == [(0,)]
    gone = {**env, "GRADING_DB_URL": f"postgresql://{ROLE}@127.0.0.1:1/{DB}"}
    out = grading("report", root=root, check=False, env=gone)
    assert out.returncode == 4 and "cannot open the gradebook" in out.stderr
    assert course["password"] not in out.stdout + out.stderr


def test_a_password_in_nbgrader_config_is_refused(tmp_path):
    root = _course_root(tmp_path / "c")
    with open(root / "nbgrader_config.py", "a") as f:
        f.write('c.CourseDirectory.db_url = "postgresql://rnn_course:hunter2@localhost/rnn_course"\n')
    for override in ("", f"sqlite:///{root / 'gradebook.db'}"):  # refused even when the environment overrides it
        out = grading("report", root=root, check=False, env={"GRADING_DB_URL": override})
        assert out.returncode == 4 and "~/.pgpass" in out.stderr and "hunter2" not in out.stdout + out.stderr


# ---------------------------------------------------------------- grading into PostgreSQL

def test_release_and_grade_write_the_expected_scores_into_postgresql(use_course_db):
    course = use_course_db
    root = course["root"]
    assert "0 with grading errors" in course["first"].stdout, course["first"].stdout[-3000:]
    assert not list(root.rglob("gradebook.db")) and not list(root.rglob("*.db"))
    scores = gradebook_scores(root, A)
    for student in course["students"]:
        expected = expected_scores(root, A, student)
        got = {nb: sum(scores[student.student_id][c] for c in cells) for nb, cells in TEST_CELLS.items()}
        assert got == expected, student.student_id
    assert sorted(scores) == sorted(CLASS)
    assert pg_rows(course, "SELECT count(*) FROM grade WHERE manual_score IS NOT NULL") == [(0,)]


def pg_rows(course, statement):
    with _gradebook(course) as gb:
        return [tuple(r) for r in gb.db.execute(text(statement)).all()]


def test_two_graders_at_once_lose_no_update(use_course_db, pg, tmp_path):
    """A regrade of the class while a second grader enters manual scores and comments on several students.

    The second grader starts once the grading run has written to the gradebook and stops while it is still
    writing, so that the run's later commits land on rows that already hold the grader's entries. A trigger
    records every change of a score or comment row with its time and its writer (``application_name``)."""
    course = use_course_db
    root = course["root"]
    # stale machine scores (as after a change to the release): the run's commits change every row it records
    pg.sql("UPDATE grade SET auto_score = 0; UPDATE comment SET auto_comment = NULL;", DB)
    pg.sql(AUDIT, DB)
    targets = [(s, nb, cell, "grade") for s in CLASS for nb, cells in TEST_CELLS.items() for cell in cells[:2]]
    targets += [(s, nb, cells[0], "comment") for s in CLASS for nb, cells in SOLUTION_CELLS.items()]
    stop, out = tmp_path / "stop", tmp_path / "writer.json"
    writer_env = dict(os.environ, PGPASSFILE=str(course["pgpass"]), OMP_NUM_THREADS="1")
    env = dict(os.environ, **{**course["env"], "GRADING_DB_URL": course["url"] + "?application_name=grader"})
    log, writer_err = tmp_path / "grade.log", tmp_path / "writer.err"
    with open(writer_err, "w") as f:
        writer = subprocess.Popen([sys.executable, "-c", WRITER, course["url"] + "?application_name=formgrader",
                                   json.dumps(targets), str(stop), str(out), str(WRITER_SECONDS)], env=writer_env,
                                  stdout=f, stderr=subprocess.STDOUT)
    grader = None
    try:
        with open(log, "w") as f:
            grader = subprocess.Popen([sys.executable, "-m", "grading", "grade", A, "--jobs", "2"], cwd=root, env=env,
                                      stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while not stop.exists() and grader.poll() is None and time.monotonic() < deadline:
            # once the first submission's verified scores are in (two workers: the third is still to come)
            verified, entered = pg.sql("SELECT count(*) FILTER (WHERE app = 'grader' AND auto::float8 > 0), "
                                       "count(*) FILTER (WHERE app = 'formgrader') FROM audit WHERE tbl = 'grade'",
                                       DB)[0]
            if verified and entered >= 2 * len(targets):
                stop.write_text("")
            time.sleep(0.2)
        grader.wait(timeout=600)
    finally:
        stop.write_text("")
        for proc in (grader, writer):
            if proc is not None and proc.poll() is None:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL) if proc is grader else proc.kill()
                    proc.wait(timeout=30)
    assert writer.returncode == 0, writer_err.read_text()[-3000:]
    regrade = log.read_text()
    assert grader.returncode == 0 and "0 with grading errors" in regrade, regrade[-3000:]
    written = json.loads(out.read_text())
    assert not written["errors"], written["errors"][:5]

    # both ran at once: the second grader committed while the grading run was writing, and the run went on writing
    # after the second grader's last entry
    rows = pg.sql("SELECT extract(epoch FROM at)::float8, app, tbl, row_id, auto, manual FROM audit ORDER BY at", DB)
    run = [r[0] for r in rows if r[1] == "grader"]
    human = [r[0] for r in rows if r[1] == "formgrader"]
    timeline = f"run {len(run)} writes {run[:1]}..{run[-1:]}, second grader {len(human)} {human[:1]}..{human[-1:]}"
    assert len(human) >= 2 * len(targets) and len(run) >= 10, timeline
    assert sum(run[0] < t < run[-1] for t in human) >= 2 * len(targets), timeline
    assert sum(human[0] < t < human[-1] for t in run) >= 2 and sum(t > human[-1] for t in run) >= 2, timeline

    # no write of the grading run ever changed a grader's manual score or comment
    manual_before: dict[tuple[str, str], str | None] = {}
    for at, app, table, row_id, _auto, manual in rows:
        key = (table, row_id)
        if app == "grader" and key in manual_before:
            assert manual == manual_before[key], f"the grading run changed the manual {table} {row_id} at {at}"
        manual_before[key] = manual

    # every manual score and comment entered is there; every auto score is the verified one
    with _gradebook(course) as gb:
        for key, value in written["entered"].items():
            student, notebook, cell = key.split("/")
            kind = next(t[3] for t in targets if t[:3] == (student, notebook, cell))
            if kind == "grade":
                grade = gb.find_grade(cell, notebook, A, student)
                assert grade.manual_score == value and grade.score == value, key
            else:
                comment = gb.find_comment(cell, notebook, A, student)
                assert comment.manual_comment == value and comment.auto_comment.startswith("Checked outside"), key
        assert len(written["entered"]) == len(targets)
        for student in course["students"]:
            sid = student.student_id
            verified = {nb: rec["cells"] for nb, rec in results(root, A, sid)["notebooks"].items()}
            expected = expected_scores(root, A, student)
            for notebook, cells in TEST_CELLS.items():
                autos = {c: gb.find_grade(c, notebook, A, sid).auto_score for c in cells}
                assert autos == {c: verified[notebook][c]["score"] for c in cells}, (sid, notebook)
                assert sum(autos.values()) == expected[notebook], (sid, notebook)


def test_the_password_is_in_no_config_and_in_nothing_students_receive(course, tmp_path):
    password = course["password"]
    assert password and len(password) >= 16
    root = course["root"]
    for config in (root / "nbgrader_config.py", REPO / "nbgrader_config.py"):
        assert password not in config.read_text()
    bundle = tmp_path / "bundle"
    grading("bundle", "--out", str(bundle), root=REPO, env=course["env"])
    received = [p for p in bundle.rglob("*") if p.is_file()]
    received += [p for p in (root / "feedback").rglob("*") if p.is_file()]
    assert len(received) > 10
    for path in received:
        data = path.read_bytes()
        assert password.encode() not in data, path
        assert b"GRADING_DB_URL" not in data and b"postgresql" not in data, path
    assert course["url"].startswith("postgresql+psycopg2://rnn_course@") and password not in course["url"]
