"""The class roster: real Unix accounts for students and instructors, and the students in nbgrader's gradebook.

``python -m grading roster add ROSTER.csv`` (as root) reads a CSV with the header
``id,first_name,last_name,email`` and an optional ``role`` column (``student``, the default, or
``instructor``). The whole file is checked before anything changes; any problem refuses it, with the
line number and the reason. Then each new id becomes a Unix user (its own private group, home 0700,
shell /bin/bash) in the group ``students`` or ``instructors`` (created when missing), with a random,
readable initial password that never expires (JupyterHub has no page to change an expired one).
Students are registered in the gradebook. Running it again is harmless: an existing course account
keeps its password ("unchanged") and its gradebook record is updated.

``python -m grading roster remove ID`` locks the account and takes it out of its course group; its
home, its submissions and its grades stay.
"""

from __future__ import annotations

import csv
import grp
import io
import os
import pwd
import re
import secrets
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .course import CourseError, load_config

STUDENTS, INSTRUCTORS = "students", "instructors"
ROLES = {"student": STUDENTS, "instructor": INSTRUCTORS}
REQUIRED = ("id", "first_name", "last_name", "email")
COLUMNS = (*REQUIRED, "role")
HEADER = "id,first_name,last_name,email and optionally role"
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f:]")  # would break /etc/passwd's GECOS field
MAX_ROSTER_BYTES = 10 * 2**20
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or copied by hand
COMMAND_TIMEOUT = 60


class RosterError(CourseError):
    """The roster is refused as a whole; ``problems`` are (line number, reason), the file's order."""

    def __init__(self, source: str, problems: list[tuple[int, str]]):
        self.problems = problems
        lines = "\n".join(f"  line {line}: {reason}" for line, reason in problems)
        super().__init__(f"{source}: roster refused, nothing was changed\n{lines}")


@dataclass(frozen=True)
class RosterEntry:
    line: int
    id: str
    first_name: str
    last_name: str
    email: str
    role: str = "student"

    @property
    def group(self) -> str:
        return ROLES[self.role]


def read_roster(path: Path) -> list[RosterEntry]:
    """The accounts of a roster CSV, checked as a whole; RosterError lists every line that is wrong."""
    data = Path(path).read_bytes()[: MAX_ROSTER_BYTES + 1]
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterError(str(path), [(1, "the file is larger than 10 MB")])
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's export may start with a byte order mark
    except UnicodeDecodeError as exc:
        raise RosterError(str(path), [(_line_of(data, exc.start), "not UTF-8 text")]) from None
    return parse_roster(text, str(path))


def _line_of(data: bytes, offset: int) -> int:
    return data[:offset].count(b"\n") + 1


def parse_roster(text: str, source: str = "roster") -> list[RosterEntry]:
    """Parse and check roster text (see ``read_roster``)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    problems: list[tuple[int, str]] = []
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise RosterError(source, [(1, f"empty file: the first line must be the header {HEADER}")]) from None
    except csv.Error as exc:
        raise RosterError(source, [(1, f"not a CSV line ({exc})")]) from None
    missing = [name for name in REQUIRED if name not in header]
    unknown = [name for name in header if name not in COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        reasons = [f"missing column {name!r}" for name in missing] + [f"unknown column {name!r}" for name in unknown]
        reasons += ["a column is named twice"] if len(set(header)) != len(header) else []
        raise RosterError(source, [(1, f"header {','.join(header)!r}: {'; '.join(reasons)} (expected {HEADER})")])
    entries: list[RosterEntry] = []
    first_seen: dict[str, int] = {}
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append((reader.line_num, f"not a CSV line ({exc})"))
            break
        line = reader.line_num
        if not any(field.strip() for field in row):
            continue  # blank lines are allowed
        entry, reasons = _entry(line, header, row)
        if entry is not None and entry.id in first_seen:
            reasons.append(f"duplicate id {entry.id!r} (first on line {first_seen[entry.id]})")
        elif entry is not None:
            first_seen[entry.id] = line
        problems += [(line, reason) for reason in reasons]
        if entry is not None and not reasons:
            entries.append(entry)
    if not problems and not entries:
        problems.append((line, "no accounts in the file, only the header"))
    if problems:
        raise RosterError(source, problems)
    return entries


def _entry(line: int, header: list[str], row: list[str]) -> tuple[RosterEntry | None, list[str]]:
    """One row as an entry (None when it has no usable id), and what is wrong with it."""
    if len(row) != len(header):
        return None, [f"{len(row)} fields where the header has {len(header)}"]
    fields = {name: value.strip() for name, value in zip(header, row, strict=True)}
    reasons = [f"empty {name}" for name in REQUIRED if not fields[name]]
    reasons += [f"{name} contains ':' or a control character" for name in COLUMNS
                if CONTROL.search(fields.get(name, ""))]
    role = fields.get("role", "").lower() or "student"
    if role not in ROLES:
        reasons.append(f"unknown role {fields['role']!r} (student or instructor)")
    user = fields["id"]
    if user and not USER_NAME.fullmatch(user):
        reasons.append(f"id {user!r} is not a valid Unix user name (lower-case letters, digits, _ and -, "
                       f"starting with a letter or _, at most 32 characters)")
    if fields["email"] and not EMAIL.fullmatch(fields["email"]):
        reasons.append(f"email {fields['email']!r} is not an email address")
    if not user or not USER_NAME.fullmatch(user):
        return None, reasons
    return RosterEntry(line, user, fields["first_name"], fields["last_name"], fields["email"],
                       role if role in ROLES else "student"), reasons


# ---------------------------------------------------------------- accounts


def _group_members(name: str) -> set[str]:
    try:
        return set(grp.getgrnam(name).gr_mem)
    except KeyError:
        return set()


def course_role(user: str) -> str | None:
    """"student" or "instructor" for an existing course account, None for any other account or none."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    for role, group in (("instructor", INSTRUCTORS), ("student", STUDENTS)):
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            continue
        if user in _group_members(group) or entry.pw_gid == gid:
            return role
    return None


def check_accounts(entries: Iterable[RosterEntry], source: str = "roster") -> None:
    """Refuse, before any change, ids that name an account or a group outside the course, or a role change."""
    problems = []
    for entry in entries:
        exists = user_exists(entry.id)
        role = course_role(entry.id)
        if exists and role is None:
            problems.append((entry.line, f"{entry.id!r} is an existing account outside the course (not in "
                                         f"{STUDENTS} or {INSTRUCTORS}): choose another id"))
        elif exists and role != entry.role:
            problems.append((entry.line, f"{entry.id!r} is already a course {role}; a roster does not change an "
                                         f"account's role"))
        elif not exists and group_exists(entry.id):
            problems.append((entry.line, f"a group named {entry.id!r} already exists: choose another id"))
    if problems:
        raise RosterError(source, problems)


def user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _run(cmd: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if proc.returncode != 0:
        raise CourseError(f"{cmd[0]} {cmd[-1]} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def ensure_group(name: str) -> int:
    """The gid of group ``name``, created (a regular group) when missing."""
    if not group_exists(name):
        _run(["groupadd", name])
    return grp.getgrnam(name).gr_gid


def new_password(words: int = 3, letters: int = 4) -> str:
    """A random password that reads and types easily, e.g. ``k7mq-x3tb-9hwe`` (about 59 bits)."""
    return "-".join("".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(letters)) for _ in range(words))


def require_root(what: str) -> None:
    """Accounts, groups and other users' files change only as root: say so before anything is tried."""
    if os.geteuid() != 0:
        raise CourseError(f"{what} changes accounts, groups or file owners: run it as root")


def create_account(entry: RosterEntry) -> str:
    """Create the Unix user of ``entry``; return its initial password."""
    home = Path("/home") / entry.id
    _run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", "--user-group",
          "--groups", entry.group, "--comment", f"{entry.first_name} {entry.last_name}".replace(",", " "),
          "-K", "HOME_MODE=0700", entry.id])
    os.chmod(home, 0o700)
    password = new_password()
    _run(["chpasswd"], stdin=f"{entry.id}:{password}\n")
    # Never expires and is never forced to change: the hub has no page for an expired password.
    _run(["chage", "--mindays", "0", "--maxdays", "99999", "--inactive", "-1", "--expiredate", "-1", entry.id])
    return password


def register_students(root: Path, entries: Iterable[RosterEntry]) -> None:
    """Create or update the students' records in the course's gradebook."""
    from nbgrader.api import Gradebook

    from .course import open_api

    students = [e for e in entries if e.role == "student"]
    if not students:
        return
    with Gradebook(gradebook_url(root), open_api(root).coursedir.course_id) as gb:
        for e in students:
            gb.update_or_create_student(e.id, first_name=e.first_name, last_name=e.last_name, email=e.email)


def gradebook_url(root: Path) -> str:
    """The gradebook's URL: ``GRADING_DB_URL``, else nbgrader's ``CourseDirectory.db_url``, else sqlite."""
    from .database import db_url

    return db_url(root)


def add_roster(root: Path, entries: list[RosterEntry], log: Callable[[str], None] | None = None,
               source: str = "roster") -> list[tuple[str, str | None]]:
    """Create the missing accounts and register the students; (id, new password or None if it existed)."""
    require_root("roster add")
    load_config(root)  # a clear error when this is not a course root, before any change
    check_accounts(entries, source)
    for group in sorted({e.group for e in entries}):
        ensure_group(group)
    created: list[tuple[str, str | None]] = []
    for entry in entries:
        if user_exists(entry.id):
            created.append((entry.id, None))
        else:
            created.append((entry.id, create_account(entry)))
            if log:
                log(f"created {entry.role} account {entry.id}")
    register_students(root, entries)
    return created


def remove_student(user: str) -> str:
    """Lock ``user``'s account and take it out of its course group; home, submissions and grades stay."""
    require_root("roster remove")
    role = course_role(user)
    if role is None:
        raise CourseError(f"{user!r} is not a course account (not in {STUDENTS} or {INSTRUCTORS}): nothing changed")
    group = ROLES[role]
    _run(["usermod", "--lock", user])
    if user in _group_members(group):
        _run(["gpasswd", "--delete", user, group])
    return role


def roster_table(entries: list[RosterEntry], created: list[tuple[str, str | None]]) -> str:
    """What ``roster add`` prints: one line per account with its initial password or "unchanged"."""
    passwords = dict(created)
    width = max([len("id"), *(len(e.id) for e in entries)])
    lines = [f"{'id':<{width}}  {'role':<10}  password"]
    for e in entries:
        lines.append(f"{e.id:<{width}}  {e.role:<10}  {passwords[e.id] or '(unchanged)'}")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def cmd_roster_add(args) -> int:
    root = Path(args.root).resolve()
    entries = read_roster(Path(args.roster))
    created = add_roster(root, entries, log=print, source=args.roster)
    print(roster_table(entries, created))
    new = sum(1 for _, password in created if password)
    print(f"\n{new} accounts created, {len(created) - new} unchanged; {sum(e.role == 'student' for e in entries)} "
          f"students registered in the gradebook")
    if new:
        print("Give each person their initial password privately; they change it with `passwd` in a terminal of "
              "the hub (File > New > Terminal).")
    return 0


def cmd_roster_remove(args) -> int:
    role = remove_student(args.id)
    print(f"{args.id}: account locked and removed from {ROLES[role]}; home, submissions and grades kept")
    return 0


def _roster_usage(args) -> int:
    raise CourseError("python -m grading roster add ROSTER.csv | roster remove ID")


def add_roster_commands(sub, command, root_parser) -> None:
    """``roster add`` and ``roster remove``, run as root."""
    p = command(sub, "roster", _roster_usage, "the class's Unix accounts (roster add, roster remove; as root)",
                root_parser)
    roster_sub = p.add_subparsers(dest="roster_command", required=True, metavar="ROSTER_COMMAND")
    q = command(roster_sub, "add", cmd_roster_add, "create the accounts of a roster CSV (id,first_name,last_name,email"
                "[,role]) and register the students in the gradebook; idempotent; prints initial passwords",
                root_parser)
    q.add_argument("roster", help="the CSV file")
    q = command(roster_sub, "remove", cmd_roster_remove, "lock an account and take it out of the course's group; "
                "its home, submissions and grades stay", root_parser)
    q.add_argument("id", help="the account's id (Unix user name)")
