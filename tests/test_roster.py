"""The roster: every malformed line is refused with its line number and reason, before anything changes.

Fast tests parse rosters and check them against the system's accounts without creating any; the slow
ones (root only) create ``rnnt*`` accounts with ``python -m grading roster add`` and delete them.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

from conftest import REPO, grading
from grading.instructor.exchange import STUDENTS_CONFIG_TEXT, students_nbgrader_config
from grading.instructor.roster import (
    PASSWORD_ALPHABET,
    USER_NAME,
    RosterEntry,
    RosterError,
    check_accounts,
    group_exists,
    new_password,
    parse_roster,
    read_roster,
)
from grading.instructor.settings import load_settings

HEADER = "id,first_name,last_name,email\n"


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(RosterError) as caught:
        parse_roster(text, "r.csv")
    assert str(caught.value).startswith("r.csv: roster refused, nothing was changed")
    return caught.value.problems


def test_a_good_roster_with_and_without_roles():
    entries = parse_roster("id,first_name,last_name,email,role\n"
                           "alice,Alice,Liu,alice@example.org,\n"
                           "\n"
                           "bob,Bob,Wang,bob@example.org,Student\n"
                           "carol,Carol,Chen,carol@example.org,instructor\n")
    assert [(e.line, e.id, e.role, e.group) for e in entries] == [
        (2, "alice", "student", "students"), (4, "bob", "student", "students"),
        (5, "carol", "instructor", "instructors")]
    assert parse_roster(HEADER + " dave , Dave ,Li, d@x.org\n")[0] == RosterEntry(2, "dave", "Dave", "Li", "d@x.org")


def test_a_spreadsheet_export_with_a_byte_order_mark_and_crlf(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(("\ufeff" + HEADER + "alice,Alice,Liu,a@x.org\r\n").encode())
    assert [e.id for e in read_roster(path)] == ["alice"]


@pytest.mark.parametrize(("user", "reason"), [
    ("Alice", "not a valid Unix user name"), ("1abc", "not a valid Unix user name"),
    ("-rf", "not a valid Unix user name"), ("a" * 33, "not a valid Unix user name"),
    ("al ice", "not a valid Unix user name"), ("bob.smith", "not a valid Unix user name"),
    ("zoë", "not a valid Unix user name"), ("../x", "not a valid Unix user name"),
])
def test_an_id_that_is_not_a_unix_user_name(user, reason):
    found = problems(HEADER + "ok,A,B,a@x.org\n" + f"{user},A,B,a@x.org\n")
    assert len(found) == 1 and found[0][0] == 3 and reason in found[0][1] and repr(user) in found[0][1]


def test_the_longest_valid_id_is_32_characters():
    assert parse_roster(HEADER + f"{'a' * 32},A,B,a@x.org\n")[0].id == "a" * 32


def test_a_duplicate_id_names_both_lines():
    found = problems(HEADER + "alice,A,B,a@x.org\nbob,B,C,b@x.org\nalice,A,B,a2@x.org\n")
    assert found == [(4, "duplicate id 'alice' (first on line 2)")]


@pytest.mark.parametrize(("row", "reason"), [
    (",A,B,a@x.org", "empty id"), ("alice,,B,a@x.org", "empty first_name"), ("alice,A,,a@x.org", "empty last_name"),
    ("alice,A,B,", "empty email"), ("alice,A,B,   ", "empty email"), ("alice,A,B", "3 fields where the header has 4"),
    ("alice,A,B,a@x.org,extra", "5 fields where the header has 4"), ("alice,A:1,B,a@x.org", "first_name contains ':'"),
    ('alice,"A\nB",C,a@x.org', "first_name contains ':' or a control character"),
    ("alice,A,B,not-an-address", "is not an email address"),
])
def test_a_missing_or_malformed_field(row, reason):
    found = problems(HEADER + row + "\n")
    assert len(found) >= 1 and found[0][0] in (2, 3) and any(reason in r for _, r in found), found


def test_an_unknown_role():
    found = problems("id,first_name,last_name,email,role\nalice,A,B,a@x.org,ta\n")
    assert found == [(2, "unknown role 'ta' (student or instructor)")]


@pytest.mark.parametrize(("header", "reason"), [
    ("id,first_name,email\n", "missing column 'last_name'"), ("id,first,last_name,email\n", "missing column"),
    ("id,first_name,last_name,email,emial\n", "unknown column 'emial'"),
    ("id,id,first_name,last_name,email\n", "a column is named twice"),
])
def test_a_wrong_header_is_line_1(header, reason):
    found = problems(header + "alice,A,B,a@x.org\n")
    assert len(found) == 1 and found[0][0] == 1 and reason in found[0][1]


def test_every_bad_line_is_reported_at_once():
    found = problems(HEADER + "alice,A,B,a@x.org\nRoot,A,B,a@x.org\nbob,,B,b@x.org\nalice,A,B,a@x.org\n")
    assert [line for line, _ in found] == [3, 4, 5]


def test_empty_files_and_a_header_alone_are_refused(tmp_path):
    assert problems("") == [(1, "empty file: the first line must be the header id,first_name,last_name,email and "
                                "optionally role")]
    assert problems(HEADER)[0][1] == "no accounts in the file, only the header"
    path = tmp_path / "r.csv"
    path.write_bytes(HEADER.encode() + b"b\xe9b,A,B,a@x.org\n")
    with pytest.raises(RosterError) as caught:
        read_roster(path)
    assert caught.value.problems == [(2, "not UTF-8 text")]


@pytest.mark.parametrize("user", ["root", "daemon", "nobody"])
def test_a_system_account_is_refused_before_any_change(user):
    entries = parse_roster(HEADER + f"rnnt{secrets.token_hex(3)},A,B,a@x.org\n{user},A,B,a@x.org\n")
    with pytest.raises(RosterError) as caught:
        check_accounts(entries, "r.csv")
    assert caught.value.problems == [(3, f"{user!r} is an existing account outside the course (not in students or "
                                         f"instructors): choose another id")]


def test_an_id_that_names_an_existing_group_is_refused():
    def is_user(name: str) -> bool:
        try:
            pwd.getpwnam(name)
        except KeyError:
            return False
        return True

    groups = [g.gr_name for g in grp.getgrall() if USER_NAME.fullmatch(g.gr_name) and not is_user(g.gr_name)]
    if not groups:
        pytest.skip("every group here is also a user's name")
    entries = parse_roster(HEADER + f"{groups[0]},A,B,a@x.org\n")
    with pytest.raises(RosterError) as caught:
        check_accounts(entries)
    assert caught.value.problems == [(2, f"a group named {groups[0]!r} already exists: choose another id")]


def test_passwords_are_random_and_readable():
    seen = {new_password() for _ in range(200)}
    assert len(seen) == 200
    for password in seen:
        groups = password.split("-")
        assert len(groups) == 3 and all(len(g) == 4 and set(g) <= set(PASSWORD_ALPHABET) for g in groups)
    assert not set("01lio") & set(PASSWORD_ALPHABET)


def test_the_roster_command_needs_a_valid_file_and_changes_nothing(tmp_path):
    roster = tmp_path / "r.csv"
    roster.write_text(HEADER + "Bad Id,A,B,a@x.org\n")
    out = grading("roster", "add", str(roster), root=REPO, check=False)
    assert out.returncode == 4 and "line 2: id 'Bad Id' is not a valid Unix user name" in out.stderr
    assert "nothing was changed" in out.stderr


# ---------------------------------------------------------------- students' nbgrader settings


def test_students_config_names_the_course_the_exchange_and_the_private_submit(tmp_path):
    settings = load_settings(environ={"GRADING_EXCHANGE_ROOT": "/srv/x/exchange"})
    text = students_nbgrader_config(settings, REPO)
    (tmp_path / "nbgrader_config.py").write_text(text)
    config = PyFileConfigLoader("nbgrader_config.py", str(tmp_path)).load_config()
    assert config.CourseDirectory.course_id == "rnn-course"
    assert config.Exchange.root == "/srv/x/exchange"
    assert config.ExchangeFactory.submit == "grading.student.exchange.PrivateSubmit"
    assert config.Execute.timeout == 30
    assert "db_url" not in text and "GradingSettings" not in text and STUDENTS_CONFIG_TEXT.count("{") == 4


def test_the_private_submit_imports_nothing_of_the_instructor():
    code = ("import sys, grading.student.exchange as e; from nbgrader.exchange.default.submit import ExchangeSubmit; "
            "assert issubclass(e.PrivateSubmit, ExchangeSubmit); "
            "print([m for m in sys.modules if m.startswith('grading.instructor')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


# ---------------------------------------------------------------- real accounts (root only)

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                                reason="creates Unix accounts: needs root and useradd")


@pytest.fixture
def scratch_course(tmp_path):
    """A course root with nbgrader's config only (the gradebook is created by roster add)."""
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy2(REPO / "nbgrader_config.py", root)
    return root


@pytest.fixture
def accounts():
    """Names of ``rnnt*`` accounts a test may create; deleted afterwards, also on failure, with the course groups
    if the test created them."""
    names: list[str] = []
    groups = [g for g in ("students", "instructors") if not group_exists(g)]
    yield names
    for name in names:
        subprocess.run(["userdel", "-r", name], capture_output=True, timeout=60)
    for group in groups:
        if group_exists(group) and not grp.getgrnam(group).gr_mem:
            subprocess.run(["groupdel", group], capture_output=True, timeout=60)


def _shadow(user: str) -> str:
    return next(line for line in Path("/etc/shadow").read_text().splitlines() if line.startswith(user + ":"))


@pytest.mark.slow
@needs_root
def test_roster_add_creates_accounts_and_is_idempotent(scratch_course, accounts, tmp_path):
    from grading.instructor.database import open_gradebook

    suffix = secrets.token_hex(3)
    student, teacher = f"rnnt{suffix}s", f"rnnt{suffix}i"
    accounts += [student, teacher]
    roster = tmp_path / "r.csv"
    roster.write_text(f"id,first_name,last_name,email,role\n{student},Ann,Li,ann@x.org,\n"
                      f"{teacher},Tom,Wu,tom@x.org,instructor\n")
    out = grading("roster", "add", str(roster), root=scratch_course)
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.startswith("rnnt")}
    assert lines[student][1] == "student" and lines[teacher][1] == "instructor"
    for user, group in ((student, "students"), (teacher, "instructors")):
        entry = pwd.getpwnam(user)
        assert entry.pw_shell == "/bin/bash" and os.stat(entry.pw_dir).st_mode & 0o777 == 0o700
        assert user in grp.getgrnam(group).gr_mem
        assert _shadow(user).split(":")[1].startswith("$")  # a password is set, not locked
        check = subprocess.run(["runuser", "-u", user, "--", "id", "-Gn"], capture_output=True, text=True, timeout=30)
        assert group in check.stdout.split()
    assert user not in grp.getgrnam("students").gr_mem
    first_hash = _shadow(student)
    roster.write_text(f"id,first_name,last_name,email,role\n{student},Anna,Li,anna@x.org,\n"
                      f"{teacher},Tom,Wu,tom@x.org,instructor\n")
    out = grading("roster", "add", str(roster), root=scratch_course)
    assert "(unchanged)" in out.stdout and "0 accounts created, 2 unchanged" in out.stdout
    assert _shadow(student) == first_hash
    with open_gradebook(scratch_course) as gb:
        record = gb.find_student(student)
        assert (record.first_name, record.email) == ("Anna", "anna@x.org")
        assert teacher not in [s.id for s in gb.students]


@pytest.mark.slow
@needs_root
def test_roster_with_an_outside_account_creates_nobody(scratch_course, accounts, tmp_path):
    fresh = f"rnnt{secrets.token_hex(3)}"
    accounts.append(fresh)
    roster = tmp_path / "r.csv"
    roster.write_text(f"{HEADER}{fresh},A,B,a@x.org\ndaemon,D,E,d@x.org\n")
    out = grading("roster", "add", str(roster), root=scratch_course, check=False)
    assert out.returncode == 4 and "line 3: 'daemon' is an existing account outside the course" in out.stderr
    with pytest.raises(KeyError):
        pwd.getpwnam(fresh)
    assert not (scratch_course / "gradebook.db").exists()
    out = grading("roster", "remove", "daemon", root=scratch_course, check=False)
    assert out.returncode == 4 and "not a course account" in out.stderr
