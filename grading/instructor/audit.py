"""The audit trail: every grade change, recorded in the gradebook itself, and ``python -m grading audit``/``history``.

The gradebook (sqlite or PostgreSQL) holds two tables of its own next to nbgrader's:

* ``grading_audit``: one row per changed value: when (UTC), who (the OS or hub user), student, assignment,
  notebook, cell, field (``auto_score``, ``manual_score``, ``extra_credit`` or ``late_penalty``), old and new
  value, and why (autograde, verifier, late penalty, regrade, a manual grade in formgrader...).
* ``grading_audit_context``: who is writing and why, for the duration of one transaction.

The rows are written by database triggers (``ensure_audit``) on nbgrader's ``grade`` and
``submitted_notebook`` tables, so a change is recorded whichever process makes it: the grader, the
verifier, formgrader in an instructor's Jupyter server, a hand-written script. A trigger takes who and
why from the context row of its own transaction: on sqlite the row with key 0 (sqlite has one writer at
a time), on PostgreSQL the row with key ``pg_backend_pid()`` written in the current transaction (so two
graders writing at once are never mixed up, and a context row left behind by mistake names nobody's
later changes). Without one, the change is recorded as ``unknown`` (PostgreSQL: the database role) and
"written outside the grader".

The grader sets its context with ``set_context`` (``attempts.gradebook_write(..., why=...)`` does it):
the row is written at the start of each transaction and deleted just before each commit, so it is never
committed and a later write by another process is not attributed to the grader. Formgrader's process has
no ``grading`` package: ``FORMGRADER_HOOK``, a self-contained piece of its nbgrader_config.py, does the
same for its grade changes, with who = the hub user and why = "manual grade (formgrader)".
"""

from __future__ import annotations

import csv
import datetime
import os
import time
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, scoped_session

from .course import CourseError
from .database import is_transient, open_gradebook, with_driver

AUDIT_TABLE = "grading_audit"
CONTEXT_TABLE = "grading_audit_context"
VERSION = 1  # in the triggers' names: a newer definition replaces the older triggers
PREFIX = f"grading_audit_v{VERSION}_"
GRADE_FIELDS = ("auto_score", "manual_score", "extra_credit")
PENALTY_FIELD = "late_penalty"
UNKNOWN_WHO = "unknown"
OUTSIDE_WHY = "written outside the grader"
FORMGRADER_WHY = "manual grade (formgrader)"
COLUMNS = ("at", "who", "student", "assignment", "notebook", "cell", "field", "old", "new", "why")
CSV_NAME = "audit.csv"
LOCK_RETRY_SECONDS = 120.0
NBGRADER_TABLES = ("grade", "submitted_notebook", "submitted_assignment", "assignment", "notebook", "base_cell")
# The context row's key and transaction, per dialect (sqlite: one writer at a time, one row).
CONTEXT_KEY = {"sqlite": ("0", "0"), "postgresql": ("pg_backend_pid()", "txid_current()")}
_SESSION_CONTEXT = "grading_audit_context"  # Session.info: (who, why) while a context is set
_SESSION_LISTENING = "grading_audit_listening"
_installed: set[str] = set()  # db URLs whose triggers this process has checked (ensure_audit_once)

# ---------------------------------------------------------------- schema

SQLITE_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (id INTEGER PRIMARY KEY, at TEXT NOT NULL, who TEXT NOT NULL,
        student TEXT, assignment TEXT, notebook TEXT, cell TEXT, field TEXT NOT NULL, "old" REAL, "new" REAL,
        why TEXT NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {AUDIT_TABLE}_student ON {AUDIT_TABLE} (student)",
    f"""CREATE TABLE IF NOT EXISTS {CONTEXT_TABLE} (key INTEGER PRIMARY KEY, xact INTEGER NOT NULL,
        who TEXT NOT NULL, why TEXT NOT NULL)""",
)
SQLITE_TRIGGER = """CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {table} FOR EACH ROW WHEN {when}
BEGIN
  INSERT INTO grading_audit (at, who, student, assignment, notebook, cell, field, "old", "new", why)
  SELECT strftime('%Y-%m-%d %H:%M:%f', 'now'), COALESCE(ctx.who, '{unknown}'), sa.student_id, a.name, n.name,
         {cell}, '{field}', {old}, {new}, COALESCE(ctx.why, '{outside}')
  FROM (SELECT 1) AS one
  LEFT JOIN grading_audit_context AS ctx ON ctx.key = 0
  LEFT JOIN submitted_notebook AS sn ON sn.id = {submitted_notebook}
  LEFT JOIN submitted_assignment AS sa ON sa.id = sn.assignment_id
  LEFT JOIN assignment AS a ON a.id = sa.assignment_id
  LEFT JOIN notebook AS n ON n.id = sn.notebook_id
  LEFT JOIN base_cell AS b ON b.id = {cell_id};
END"""


def _sqlite_triggers() -> dict[str, str]:
    """name -> CREATE TRIGGER: for each audited column, one trigger on INSERT (a value) and one on UPDATE."""
    columns = [("grade", field, field, "b.name", "NEW.notebook_id", "NEW.cell_id") for field in GRADE_FIELDS]
    columns.append(("submitted_notebook", "late_submission_penalty", PENALTY_FIELD, "NULL", "NEW.id", "NULL"))
    triggers = {}
    for table, column, field, cell, submitted_notebook, cell_id in columns:
        for op, event_sql, when, old in (
                ("insert", "INSERT", f"NEW.{column} IS NOT NULL", "NULL"),
                ("update", f"UPDATE OF {column}", f"NEW.{column} IS NOT OLD.{column}", f"OLD.{column}")):
            name = f"{PREFIX}{field}_{op}"
            triggers[name] = SQLITE_TRIGGER.format(
                name=name, event=event_sql, table=table, when=when, unknown=UNKNOWN_WHO, outside=OUTSIDE_WHY,
                cell=cell, field=field, old=old, new=f"NEW.{column}", submitted_notebook=submitted_notebook,
                cell_id=cell_id)
    return triggers


POSTGRES_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (id bigserial PRIMARY KEY, at timestamptz NOT NULL,
        who text NOT NULL, student text, assignment text, notebook text, cell text, field text NOT NULL,
        "old" double precision, "new" double precision, why text NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {AUDIT_TABLE}_student ON {AUDIT_TABLE} (student)",
    f"""CREATE TABLE IF NOT EXISTS {CONTEXT_TABLE} (key integer PRIMARY KEY, xact bigint NOT NULL,
        who text NOT NULL, why text NOT NULL)""",
)
# One function per audited table; {names} finds student, assignment, notebook (and cell), {values} lists
# (field, old, new) for each audited column.
POSTGRES_FUNCTION = """CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
  who_ text; why_ text; student_ text; assignment_ text; notebook_ text; cell_ text;
  o1 double precision; o2 double precision; o3 double precision;
BEGIN
  SELECT ctx.who, ctx.why INTO who_, why_ FROM grading_audit_context AS ctx
   WHERE ctx.key = pg_backend_pid() AND ctx.xact = txid_current();
  IF NOT FOUND THEN
    who_ := session_user;
    why_ := '{outside}';
  END IF;
  {names}
  IF TG_OP = 'UPDATE' THEN
    {olds}
  END IF;
  INSERT INTO grading_audit (at, who, student, assignment, notebook, cell, field, "old", "new", why)
  SELECT clock_timestamp(), who_, student_, assignment_, notebook_, cell_, f.field, f.o, f.n, why_
    FROM (VALUES {values}) AS f (field, o, n)
   WHERE f.n IS DISTINCT FROM f.o;
  RETURN NULL;
END
$body$"""
POSTGRES_GRADE_NAMES = """SELECT sa.student_id, a.name, n.name INTO student_, assignment_, notebook_
    FROM submitted_notebook AS sn JOIN submitted_assignment AS sa ON sa.id = sn.assignment_id
    JOIN assignment AS a ON a.id = sa.assignment_id JOIN notebook AS n ON n.id = sn.notebook_id
   WHERE sn.id = NEW.notebook_id;
  SELECT b.name INTO cell_ FROM base_cell AS b WHERE b.id = NEW.cell_id;"""
POSTGRES_PENALTY_NAMES = """SELECT sa.student_id, a.name INTO student_, assignment_
    FROM submitted_assignment AS sa JOIN assignment AS a ON a.id = sa.assignment_id WHERE sa.id = NEW.assignment_id;
  SELECT n.name INTO notebook_ FROM notebook AS n WHERE n.id = NEW.notebook_id;"""


def _postgres_ddl() -> tuple[list[str], dict[str, str]]:
    """The functions and triggers (CREATE statements), and trigger name -> its table."""
    grade, penalty = f"{PREFIX}grade", f"{PREFIX}penalty"
    olds = " ".join(f"o{i} := OLD.{field};" for i, field in enumerate(GRADE_FIELDS, 1))
    values = ", ".join(f"('{field}', o{i}, NEW.{field})" for i, field in enumerate(GRADE_FIELDS, 1))
    statements = [
        POSTGRES_FUNCTION.format(name=grade, outside=OUTSIDE_WHY, names=POSTGRES_GRADE_NAMES, olds=olds,
                                 values=values),
        POSTGRES_FUNCTION.format(name=penalty, outside=OUTSIDE_WHY, names=POSTGRES_PENALTY_NAMES,
                                 olds="o1 := OLD.late_submission_penalty;",
                                 values=f"('{PENALTY_FIELD}', o1, NEW.late_submission_penalty)"),
        f"DROP TRIGGER IF EXISTS {grade} ON grade",
        f"CREATE TRIGGER {grade} AFTER INSERT OR UPDATE OF {', '.join(GRADE_FIELDS)} ON grade "
        f"FOR EACH ROW EXECUTE FUNCTION {grade}()",
        f"DROP TRIGGER IF EXISTS {penalty} ON submitted_notebook",
        f"CREATE TRIGGER {penalty} AFTER INSERT OR UPDATE OF late_submission_penalty ON submitted_notebook "
        f"FOR EACH ROW EXECUTE FUNCTION {penalty}()",
    ]
    return statements, {grade: "grade", penalty: "submitted_notebook"}


def _triggers(conn: Connection) -> dict[str, str]:
    """The audit triggers in the database (any version): name -> table."""
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' "
                                 "AND name LIKE 'grading_audit_v%'"))
    else:
        rows = conn.execute(text("SELECT tgname, tgrelid::regclass::text FROM pg_trigger "
                                 "WHERE NOT tgisinternal AND tgname LIKE 'grading_audit_v%'"))
    return {str(name): str(table) for name, table in rows}


def _install(conn: Connection) -> None:
    """Create what is missing (tables, triggers) and drop triggers of older versions, in ``conn``'s transaction."""
    dialect = conn.dialect.name
    if dialect not in CONTEXT_KEY:
        raise CourseError(f"the audit trail needs a sqlite or PostgreSQL gradebook, not {dialect}")
    if dialect == "sqlite":
        expected = _sqlite_triggers()
        create = [*SQLITE_TABLES, *expected.values()]
        wanted = set(expected)
    else:
        statements, wanted_tables = _postgres_ddl()
        create = [*POSTGRES_TABLES, *statements]
        wanted = set(wanted_tables)

    def current() -> bool:
        tables = set(inspect(conn).get_table_names())
        missing = [t for t in NBGRADER_TABLES if t not in tables]
        if missing:
            raise CourseError(f"no nbgrader gradebook here (no table {missing[0]}): the audit trail goes into an "
                              "existing gradebook (`python -m grading release` creates it)")
        return {AUDIT_TABLE, CONTEXT_TABLE} <= tables and set(_triggers(conn)) == wanted

    if current():
        return
    if dialect == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('grading_audit'))")  # one installer at a time
        if current():
            return
    for statement in create:
        conn.exec_driver_sql(statement)
    for name, table in _triggers(conn).items():
        if name not in wanted:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if dialect != "sqlite" else ""))


def ensure_audit(db_url_or_engine: str | Engine) -> None:
    """Create the audit tables and triggers in the gradebook (idempotent; cheap when they are in place). Call it
    outside any open transaction that writes nbgrader's tables (PostgreSQL replaces triggers under a lock)."""
    engine = create_engine(with_driver(db_url_or_engine)) if isinstance(db_url_or_engine, str) else db_url_or_engine
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    delay = 0.1
    try:
        while True:
            try:
                with engine.begin() as conn:
                    _install(conn)
                return
            except OperationalError as exc:
                if not is_transient(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
    finally:
        if isinstance(db_url_or_engine, str):
            engine.dispose()


def ensure_audit_once(db_url: str, engine: Engine | None = None) -> None:
    """``ensure_audit`` the first time this process writes to ``db_url``."""
    if db_url not in _installed:
        ensure_audit(engine if engine is not None else db_url)
        _installed.add(db_url)


# ---------------------------------------------------------------- who and why

def current_user() -> str:
    """The hub user (``JUPYTERHUB_USER``) when set, else the OS user of the effective uid."""
    hub_user = os.environ.get("JUPYTERHUB_USER", "").strip()
    if hub_user:
        return hub_user
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _target(gb_or_session) -> Session | Connection:
    target = getattr(gb_or_session, "db", gb_or_session)  # nbgrader's Gradebook: its scoped session
    if isinstance(target, scoped_session):
        target = target()
    if not isinstance(target, Session | Connection):
        raise TypeError(f"a Gradebook, a Session or a Connection, not {type(gb_or_session).__name__}")
    return target


def _write_context(conn: Connection, who: str, why: str) -> None:
    key, xact = CONTEXT_KEY[conn.dialect.name]
    conn.execute(text(f"INSERT INTO {CONTEXT_TABLE} (key, xact, who, why) VALUES ({key}, {xact}, :who, :why) "
                      "ON CONFLICT (key) DO UPDATE SET xact = excluded.xact, who = excluded.who, why = excluded.why"),
                 {"who": who, "why": why})


def _delete_context(conn: Connection) -> None:
    conn.execute(text(f"DELETE FROM {CONTEXT_TABLE} WHERE key = {CONTEXT_KEY[conn.dialect.name][0]}"))


def _after_begin(session: Session, transaction, connection: Connection) -> None:
    context = session.info.get(_SESSION_CONTEXT)
    if context is not None:
        _write_context(connection, *context)


def _before_commit(session: Session) -> None:
    if session.info.get(_SESSION_CONTEXT) is not None:
        session.flush()  # commit would flush after this hook: the pending changes keep their reason
        _delete_context(session.connection())


def set_context(gb_or_session, why: str, who: str | None = None) -> None:
    """From now on, the grade changes made through ``gb_or_session`` (nbgrader's Gradebook, a Session or a
    Connection) are recorded as made by ``who`` (default: ``current_user()``) because of ``why``.

    The context row is written in the current transaction. With a Gradebook or a Session, changes made before
    this call are flushed first (they keep the earlier reason), the row is written again at the start of every
    later transaction of that session (nbgrader's methods commit on their own) and deleted before each commit.
    ``clear_context`` ends it; with a plain Connection, call it before committing."""
    who = who or current_user()
    target = _target(gb_or_session)
    if isinstance(target, Connection):
        _write_context(target, who, why)
        return
    target.flush()
    target.info[_SESSION_CONTEXT] = (who, why)
    if not target.info.get(_SESSION_LISTENING):
        event.listen(target, "after_begin", _after_begin)
        event.listen(target, "before_commit", _before_commit)
        target.info[_SESSION_LISTENING] = True
    _write_context(target.connection(), who, why)


def clear_context(gb_or_session) -> None:
    """Flush what is pending (still under the context) and delete the context row; call it before committing."""
    target = _target(gb_or_session)
    if isinstance(target, Session):
        target.flush()
        target.info.pop(_SESSION_CONTEXT, None)
        target = target.connection()
    _delete_context(target)


# Formgrader's process (on the hub, a Python environment without the grading package) records its grade changes
# with this self-contained code, a part of nbgrader_config.py (the repository's and the hub's instructor overlay,
# hub.INSTRUCTOR_NBGRADER_CONFIG). It has no brace, so it goes unchanged through that template's str.format.
FORMGRADER_HOOK = '''

# Grade changes made in formgrader name their grader in the gradebook's audit trail (python -m grading audit;
# grading/instructor/audit.py). Self-contained: formgrader's environment has no grading package. It acts only in
# a running Jupyter server and on a gradebook that has the audit tables: students' Validate, which may read this
# file, and the grader's own processes are left alone.
def _grading_audit_hook():
    import os
    import sys

    try:
        from sqlalchemy import event, text
        from sqlalchemy.orm import Session
    except ImportError:
        return
    if getattr(Session, "_grading_audit_hook", False):
        return
    keys = dict(sqlite=("0", "0"), postgresql=("pg_backend_pid()", "txid_current()"))
    probe = dict(sqlite="SELECT 1 FROM sqlite_master WHERE name = 'grading_audit_context'",
                 postgresql="SELECT to_regclass('grading_audit_context')")

    def user():
        import pwd

        try:
            return os.environ.get("JUPYTERHUB_USER") or pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            return "uid " + str(os.geteuid())

    def before_flush(session, flush_context, instances):
        server = sys.modules.get("jupyter_server.serverapp")
        if server is None or not server.ServerApp.initialized() or session.info.get("grading_audit_context"):
            return  # not formgrader's process, or a session whose context the grader sets (audit.set_context)
        if not any(getattr(o, "__tablename__", "") in ("grade", "submitted_notebook")
                   for o in list(session.new) + list(session.dirty)):
            return
        connection = session.connection()
        dialect = connection.dialect.name
        if dialect not in keys or connection.execute(text(probe[dialect])).scalar() is None:
            return
        key, xact = keys[dialect]
        connection.execute(text("INSERT INTO grading_audit_context (key, xact, who, why) VALUES (" + key + ", "
                                + xact + ", :who, 'manual grade (formgrader)') ON CONFLICT (key) DO UPDATE SET "
                                "xact = excluded.xact, who = excluded.who, why = excluded.why"), dict(who=user()))
        session.info["grading_audit_key"] = key

    def after_flush(session, flush_context):
        key = session.info.pop("grading_audit_key", None)
        if key is not None:
            session.connection().execute(text("DELETE FROM grading_audit_context WHERE key = " + key))

    event.listen(Session, "before_flush", before_flush)
    event.listen(Session, "after_flush", after_flush)
    Session._grading_audit_hook = True


_grading_audit_hook()
'''


# ---------------------------------------------------------------- reading the trail

def _at(value) -> str:
    """A trigger's timestamp as ISO 8601 UTC, to the millisecond."""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC).isoformat(timespec="milliseconds")


def audit_rows(root: Path, student: str | None = None) -> list[dict]:
    """The course's recorded grade changes (one student's, or all), oldest first; each a dict of ``COLUMNS``
    (``old``/``new`` floats or None). Empty when the gradebook has no audit trail yet."""
    with open_gradebook(Path(root)) as gb:
        if not inspect(gb.engine).has_table(AUDIT_TABLE):
            return []
        where = " WHERE student = :student" if student is not None else ""
        rows = gb.db.execute(text(f'SELECT at, who, student, assignment, notebook, cell, field, "old", "new", why '
                                  f"FROM {AUDIT_TABLE}{where} ORDER BY at, id"), {"student": student}).all()
        gb.db.rollback()
    out = []
    for row in rows:
        item = dict(zip(COLUMNS, row, strict=True))
        item["at"] = _at(item["at"])
        item["old"], item["new"] = (None if v is None else float(v) for v in (item["old"], item["new"]))
        out.append(item)
    return out


def write_audit_csv(root: Path) -> Path:
    """Every recorded grade change into ``reports/audit.csv`` (header ``COLUMNS``), oldest first."""
    rows = audit_rows(root)
    path = Path(root) / "reports" / CSV_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{CSV_NAME}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(["" if row[c] is None else repr(row[c]) if c in ("old", "new") else row[c]
                             for c in COLUMNS])
    tmp.replace(path)
    return path


def _known_student(root: Path, student: str) -> bool:
    with open_gradebook(Path(root)) as gb:
        found = gb.db.execute(text("SELECT 1 FROM student WHERE id = :id"), {"id": student}).first()
        gb.db.rollback()
    return found is not None


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def history_text(root: Path, student: str) -> str:
    """``student``'s grade changes as a readable table, oldest first; a CourseError for an unknown student."""
    rows = audit_rows(root, student)
    if not rows and not _known_student(root, student):
        raise CourseError(f"no student {student!r} in the gradebook")
    if not rows:
        return f"{student}: no grade change recorded"
    header = ("when (UTC)", "who", "assignment", "notebook", "cell", "field", "old", "new", "why")
    table = [header] + [(r["at"][:19].replace("T", " "), r["who"], r["assignment"] or "", r["notebook"] or "",
                         r["cell"] or "", r["field"], _number(r["old"]), _number(r["new"]), r["why"])
                        for r in rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header) - 1)]
    lines = ["  ".join(f"{cell:<{w}}" for cell, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
             for line in table]
    return f"{student}: {len(rows)} grade change{'s' if len(rows) != 1 else ''}, oldest first\n" + "\n".join(lines)


# ---------------------------------------------------------------- command line

def cmd_audit(args) -> int:
    """``python -m grading audit``: reports/audit.csv."""
    root = Path(args.root).resolve()
    path = write_audit_csv(root)
    with path.open(newline="", encoding="utf-8") as f:
        count = sum(1 for _ in csv.reader(f)) - 1
    print(f"{count} grade change{'s' if count != 1 else ''} written to {path}")
    return 0


def cmd_history(args) -> int:
    """``python -m grading history STUDENT``."""
    print(history_text(Path(args.root).resolve(), args.student))
    return 0


def add_audit_commands(sub, command, root_parser) -> None:
    """``audit`` and ``history STUDENT``."""
    command(sub, "audit", cmd_audit, "every grade change (when, who, what, why): reports/audit.csv", root_parser)
    p = command(sub, "history", cmd_history, "one student's grade changes, oldest first", root_parser)
    p.add_argument("student", help="student id")
