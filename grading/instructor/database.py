"""The gradebook's database: which URL, whether it is there, and ``python -m grading db init``.

One setting says where the gradebook is: nbgrader's ``CourseDirectory.db_url`` in
``nbgrader_config.py``, overridden by the environment variable ``GRADING_DB_URL``; without
either, nbgrader's default ``sqlite:///<root>/gradebook.db``. Students' Validate reads
``nbgrader_config.py``, so a password there is refused: a PostgreSQL password comes from
``GRADING_DB_URL``, ``PGPASSWORD`` or ``~/.pgpass`` (libpq reads the last two itself).

``init_database`` creates, on a PostgreSQL server, the course's login role, its database owned
by that role (no one else may connect) and nbgrader's tables (created by nbgrader's
``Gradebook`` when it opens an empty database). The server only ever receives the password's
SCRAM verifier, never the password itself. Every step is idempotent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nbgrader.api import Gradebook
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from .course import CourseError

ENV_URL = "GRADING_DB_URL"
ENV_ADMIN_URL = "GRADING_DB_ADMIN_URL"
ENV_PASSWORD = "GRADING_DB_PASSWORD"
COURSE_ID = "rnn-course"
DRIVER = "postgresql+psycopg2"
NBGRADER_TABLES = frozenset({"assignment", "notebook", "grade_cells", "student", "submitted_assignment",
                             "submitted_notebook", "grade", "comment"})
CONNECT_TIMEOUT = 10  # seconds; libpq's connect_timeout
ADMIN_TIMEOUT = 120
LOCK_WAIT = 120  # seconds a check waits for sqlite's lock, held by another writer
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)
TRANSIENT = ("database is locked", "deadlock detected", "could not serialize access")


def configured_url(root: Path, config: Config | None = None) -> str:
    """``CourseDirectory.db_url`` from the course's nbgrader_config.py ('' when unset); refuses a password."""
    if config is None:
        path = Path(root) / "nbgrader_config.py"
        config = PyFileConfigLoader(path.name, str(root)).load_config() if path.is_file() else Config()
    url = str(config.CourseDirectory.db_url) if "db_url" in config.CourseDirectory else ""
    if url and _password(url):
        raise CourseError("nbgrader_config.py holds the gradebook's password, and students' Validate reads that "
                          "file: remove it from db_url and put it in ~/.pgpass (or in GRADING_DB_URL)")
    return url


def db_url(root: Path, config: Config | None = None) -> str:
    """The course's gradebook URL: ``GRADING_DB_URL`` > nbgrader's ``CourseDirectory.db_url`` > sqlite default."""
    configured = configured_url(root, config)  # refused with a password, even when the environment overrides it
    url = os.environ.get(ENV_URL, "").strip() or configured
    return with_driver(url) if url else f"sqlite:///{Path(root).resolve() / 'gradebook.db'}"


def with_driver(url: str) -> str:
    """``url`` with the PostgreSQL driver the course installs (psycopg2) named: SQLAlchemy 2.1 reads a bare
    ``postgresql://`` (libpq's own spelling, which psql and pg_dump take) as psycopg 3, which is not installed."""
    scheme, sep, rest = url.partition("://")
    return f"{DRIVER}://{rest}" if sep and scheme in ("postgresql", "postgres") else url


def shown(url: str) -> str:
    """``url`` as it may be printed: never with its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<an unreadable database URL>"


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError:
        return None


def is_transient(error: BaseException | str) -> bool:
    """A database error that goes away when the transaction is tried again (sqlite's lock, a PostgreSQL
    deadlock or serialization failure between two graders)."""
    message = str(error).lower()
    return any(word in message for word in TRANSIENT)


def _engine(url: str):
    """An engine for a short check: connection attempts end within ``CONNECT_TIMEOUT``."""
    parsed = make_url(with_driver(url))
    args = {"connect_timeout": CONNECT_TIMEOUT} if parsed.get_backend_name() == "postgresql" else {}
    return create_engine(parsed, connect_args=args)


def gradebook_problem(url: str, course_id: str | None = None, assignment: str | None = None) -> str | None:
    """Why the gradebook at ``url`` cannot be graded into (no file, no server, no nbgrader tables, the
    assignment not released), or None. Never creates anything."""
    url = with_driver(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"the gradebook URL {url!r} is not a database URL (check {ENV_URL} and nbgrader_config.py's db_url)"
    create = "create it with `python -m grading release`"
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not Path(database).is_file():
            return f"no gradebook at {database}: {create}"
    elif parsed.get_backend_name() == "postgresql":
        create = "create it with `python -m grading db init`, then `python -m grading release`"
    engine = _engine(url)
    deadline = time.monotonic() + LOCK_WAIT
    try:
        while True:
            try:
                with engine.connect() as conn:
                    tables = set(inspect(conn).get_table_names())
                    if NBGRADER_TABLES - tables:
                        return f"no gradebook in {shown(url)} (the database has no nbgrader tables): {create}"
                    if assignment is None:
                        return None
                    found = conn.execute(text("SELECT 1 FROM assignment WHERE name = :name AND course_id = :course"),
                                         {"name": assignment, "course": course_id or COURSE_ID}).first()
                    return None if found is not None else (
                        f"no assignment {assignment!r} in the gradebook at {shown(url)}: "
                        "run `python -m grading release` first")
            except SQLAlchemyError as exc:
                if is_transient(exc) and time.monotonic() < deadline:  # another grader holds sqlite's lock
                    time.sleep(0.5)
                    continue
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
                return (f"cannot open the gradebook at {shown(url)}: {reason[0] if reason else type(exc).__name__} "
                        f"(check {ENV_URL}, ~/.pgpass and that the server runs; a new database: "
                        "`python -m grading db init`)")
    finally:
        engine.dispose()


def check_gradebook(url: str, course_id: str | None = None, assignment: str | None = None) -> None:
    """Raise a CourseError that says how to create the gradebook when it is missing."""
    problem = gradebook_problem(url, course_id, assignment)
    if problem:
        raise CourseError(problem)


@contextmanager
def open_gradebook(root: Path) -> Iterator[Gradebook]:
    """nbgrader's Gradebook of the course at ``root``; a CourseError when there is none (nothing is created)."""
    from .course import load_config

    config = load_config(root)
    url = str(config.CourseDirectory.db_url)
    check_gradebook(url)
    with Gradebook(url, str(config.CourseDirectory.course_id or COURSE_ID)) as gb:
        yield gb


# ---------------------------------------------------------------- db init

def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677; PostgreSQL's own format)."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


class AdminSession:
    """SQL run as a PostgreSQL superuser: through ``admin_url`` (psycopg2), or, without one, by ``psql`` as the
    ``postgres`` system account (peer authentication on the local socket; PGHOST/PGPORT are honoured)."""

    def __init__(self, admin_url: str | None):
        self.admin_url = admin_url
        if admin_url:
            import psycopg2

            parsed = make_url(with_driver(admin_url))
            if parsed.get_backend_name() != "postgresql":
                raise CourseError(f"the admin URL {shown(admin_url)} is not a PostgreSQL URL")
            try:
                self.conn = psycopg2.connect(_libpq_dsn(parsed), connect_timeout=CONNECT_TIMEOUT)
            except psycopg2.Error as exc:
                raise CourseError(f"cannot connect to {shown(admin_url)} as an administrator: "
                                  f"{str(exc).strip().splitlines()[0]}") from None
            self.conn.autocommit = True
        else:
            self.conn = None
            if os.geteuid() != 0 and _user() != "postgres":
                raise CourseError(f"no admin URL: pass --admin-url (or set {ENV_ADMIN_URL}), or run as root to use "
                                  "the postgres account's peer authentication")

    def run(self, sql: str) -> list[str]:
        """Execute ``sql`` (trusted text: identifiers checked, literals quoted); the first column of its rows."""
        if self.conn is not None:
            import psycopg2

            try:
                with self.conn.cursor() as cur:
                    cur.execute(sql)
                    return [str(row[0]) for row in cur.fetchall()] if cur.description else []
            except psycopg2.Error as exc:
                raise CourseError(f"the database server refused: {str(exc).strip().splitlines()[0]}") from None
        cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", "postgres"]
        if _user() != "postgres":
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        try:
            proc = subprocess.run(cmd, input=sql, capture_output=True, text=True, timeout=ADMIN_TIMEOUT, cwd="/")
        except FileNotFoundError as exc:
            raise CourseError(f"cannot run psql as postgres ({exc.filename} not found): install postgresql-client "
                              "or pass --admin-url") from None
        except subprocess.TimeoutExpired:
            raise CourseError(f"psql as postgres did not answer within {ADMIN_TIMEOUT} s") from None
        if proc.returncode != 0:
            raise CourseError("psql as postgres failed: " + (proc.stderr.strip().splitlines() or ["no message"])[-1])
        return [line for line in proc.stdout.splitlines() if line]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _libpq_dsn(url: URL) -> str:
    """A libpq connection string for ``url`` (keeps a socket directory given as ``?host=``)."""
    parts = {"dbname": url.database, "user": url.username, "password": url.password, "host": url.host,
             "port": url.port, **{k: v for k, v in url.query.items() if isinstance(v, str)}}
    return " ".join(f"{k}={_dsn_value(str(v))}" for k, v in parts.items() if v not in (None, ""))


def _dsn_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _check_name(kind: str, name: str) -> str:
    if not NAME.match(name):
        raise CourseError(f"{kind} name {name!r} is not a plain PostgreSQL name (lower-case letters, digits, _)")
    return name


def course_url(admin_url: str | None, db_name: str, role: str, host: str | None = None,
               port: int | None = None) -> str:
    """The URL graders export as GRADING_DB_URL (no password): the admin URL's server, over TCP by default, since
    password authentication is what pg_hba allows on TCP (Debian: scram-sha-256 on localhost)."""
    admin = make_url(with_driver(admin_url)) if admin_url else None
    if host is None:
        host = admin.host if admin is not None and admin.host else "localhost"
    if port is None:
        admin_port = (admin.port or admin.query.get("port")) if admin is not None else os.environ.get("PGPORT")
        port = int(admin_port) if admin_port else 5432
    return URL.create(DRIVER, username=role, host=host, port=port, database=db_name).render_as_string(
        hide_password=False)


def init_database(admin_url: str | None, db_name: str, role: str, password: str, *, course_id: str = COURSE_ID,
                  host: str | None = None, port: int | None = None) -> str:
    """Create (or bring up to date) the course's role, its database and nbgrader's tables; return the course URL
    without password. The role gets LOGIN and ``password``; the database is owned by it and closed to others."""
    _check_name("role", role)
    _check_name("database", db_name)
    if not password:
        raise CourseError("the course role needs a password")
    role_q, db_q = f'"{role}"', f'"{db_name}"'
    admin = AdminSession(admin_url)
    try:
        login = f"LOGIN PASSWORD {_literal(scram_verifier(password))}"
        if admin.run(f"SELECT 1 FROM pg_roles WHERE rolname = {_literal(role)}"):
            admin.run(f"ALTER ROLE {role_q} {login}")
        else:
            admin.run(f"CREATE ROLE {role_q} {login}")
        if admin.run(f"SELECT 1 FROM pg_database WHERE datname = {_literal(db_name)}"):
            admin.run(f"ALTER DATABASE {db_q} OWNER TO {role_q}")
        else:
            admin.run(f"CREATE DATABASE {db_q} OWNER {role_q} ENCODING 'UTF8' TEMPLATE template0")
        admin.run(f"REVOKE ALL ON DATABASE {db_q} FROM PUBLIC; GRANT ALL ON DATABASE {db_q} TO {role_q}")
    finally:
        admin.close()
    url = course_url(admin_url, db_name, role, host, port)
    login_url = make_url(url).set(password=password).render_as_string(hide_password=False)
    try:
        engine = _engine(login_url)
        with engine.connect():
            pass
        engine.dispose()
        with Gradebook(login_url, course_id):
            pass  # nbgrader creates its tables (and records its schema version) in an empty database
        with Gradebook(login_url):
            pass  # the course row nbgrader's SaveAutoGrades opens: made once here, not raced for by two workers
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise CourseError(f"the role and database exist, but {shown(url)} does not accept the course role: "
                          f"{reason[0] if reason else exc} (check that the server's pg_hba.conf allows password "
                          "logins there, or pass --host/--port)") from None
    check_gradebook(login_url)
    return url


# ---------------------------------------------------------------- passwords

def pgpass_path() -> Path:
    return Path(os.environ.get("PGPASSFILE") or Path.home() / ".pgpass")


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _pgpass_fields(line: str) -> list[str]:
    fields, current, escaped = [], "", False
    for ch in line:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            fields.append(current)
            current = ""
        else:
            current += ch
    return [*fields, current]


def pgpass_lookup(url: str, path: Path | None = None) -> str | None:
    """The password ~/.pgpass holds for ``url``'s host, port, database and user (libpq's matching), or None."""
    parsed = make_url(url)
    want = [parsed.host or "localhost", str(parsed.port or 5432), parsed.database or "", parsed.username or ""]
    path = path or pgpass_path()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = _pgpass_fields(line)
        if len(fields) == 5 and all(f in ("*", w) for f, w in zip(fields[:4], want, strict=True)):
            return fields[4]
    return None


def pgpass_store(url: str, password: str, path: Path | None = None) -> Path:
    """Add ``url``'s password to ~/.pgpass (created 0600: libpq ignores a file others can read)."""
    parsed = make_url(url)
    path = path or pgpass_path()
    entry = ":".join(_pgpass_escape(v) for v in (parsed.host or "localhost", str(parsed.port or 5432),
                                                  parsed.database or "", parsed.username or "", password))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        if path.stat().st_size and not path.read_text().endswith("\n"):
            f.write("\n")
        f.write(entry + "\n")
    os.chmod(path, 0o600)
    return path


def course_password(url: str, password_file: Path | None) -> tuple[str, str]:
    """(password, where it came from): --password-file, then GRADING_DB_PASSWORD, then ~/.pgpass, else a new
    random one stored in ~/.pgpass. Never printed."""
    if password_file is not None:
        try:
            lines = Path(password_file).read_text().splitlines()
        except OSError as exc:
            raise CourseError(f"cannot read the password file {password_file}: {exc.strerror}") from None
        if not lines or not lines[0].strip():
            raise CourseError(f"the password file {password_file} is empty")
        return lines[0].strip(), str(password_file)
    if os.environ.get(ENV_PASSWORD, "").strip():
        return os.environ[ENV_PASSWORD].strip(), ENV_PASSWORD
    found = pgpass_lookup(url)
    if found:
        return found, str(pgpass_path())
    password = secrets.token_urlsafe(24)
    return password, f"{pgpass_store(url, password)} (new)"


def _course_id(root: Path) -> str:
    from .course import load_config

    try:
        return str(load_config(root).CourseDirectory.course_id or COURSE_ID)
    except CourseError:
        return COURSE_ID


def default_name(course_id: str) -> str:
    """The course's database and role name: its course id as a plain PostgreSQL name (rnn-course: rnn_course)."""
    name = re.sub(r"[^a-z0-9_]", "_", course_id.lower())
    return name if NAME.match(name) else "rnn_course"


def cmd_db_init(args) -> int:
    """``python -m grading db init``: prints what to export, never the password."""
    root = Path(args.root).resolve()
    course_id = _course_id(root)
    db_name = _check_name("database", args.db or default_name(course_id))
    role = _check_name("role", args.role or db_name)
    admin_url = args.admin_url or os.environ.get(ENV_ADMIN_URL, "").strip() or None
    url = course_url(admin_url, db_name, role, args.host, args.port)
    password, source = course_password(url, Path(args.password_file) if args.password_file else None)
    url = init_database(admin_url, db_name, role, password, course_id=course_id, host=args.host, port=args.port)
    where = make_url(url)
    print(f"gradebook database {db_name} on {where.host}:{where.port}, owned by the role {role} "
          f"(password from {source}); nbgrader's tables are in place")
    print("every grader (and formgrader on the hub) uses it with:")
    print(f"    export {ENV_URL}={url}")
    print(f"and the password in their ~/.pgpass (mode 0600), one line: {where.host}:{where.port}:{db_name}:{role}:"
          "<password>")
    print("next: `python -m grading release` registers the assignments in it")
    return 0


def _db_usage(args) -> int:
    raise CourseError("usage: python -m grading db init [options]")


def add_db_commands(sub, command, root_parser) -> None:
    """``db init``: the subcommands of ``python -m grading db``."""
    p = command(sub, "db", _db_usage, "the gradebook's PostgreSQL database (db init)", root_parser)
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    q = command(db_sub, "init", cmd_db_init, "create the course's role, its database and nbgrader's tables on a "
                "PostgreSQL server (idempotent); prints the URL to export as GRADING_DB_URL", root_parser)
    q.add_argument("--admin-url", default=None, help=f"a superuser's URL; without it, ${ENV_ADMIN_URL}, else psql "
                   "as the postgres account (peer authentication, as root)")
    q.add_argument("--db", default=None, help="database name; without it, the course id (rnn_course)")
    q.add_argument("--role", default=None, help="the course's login role; without it, the database name")
    q.add_argument("--password-file", default=None, help=f"a file whose first line is the role's password; without "
                   f"it, ${ENV_PASSWORD}, else ~/.pgpass, else a new random one added to ~/.pgpass")
    q.add_argument("--host", default=None, help="host in the course URL; without it, the admin URL's, else localhost")
    q.add_argument("--port", type=int, default=None, help="port in the course URL; without it, the admin URL's, "
                   "else $PGPORT, else 5432")
