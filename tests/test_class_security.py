"""A class on the hub's exchange, run as real Unix accounts: two students and an instructor.

The accounts are made by ``python -m grading roster add`` (ids ``rnnt<random>``) and deleted with
``userdel -r`` afterwards, also when a test fails. The course lives under /srv/rnn-course-tests/<random>
(0755 parents: a check must not pass only because a parent folder is closed). The students run
nbgrader from a small world-readable venv (/srv/rnn-course-tests/venv: nbgrader and the student
package, built once and reused while its inputs are unchanged) with the students' nbgrader config
passed by JUPYTER_CONFIG_PATH, exactly as written for /etc/jupyter. Everything a student does runs as
that student (``runuser``); every check asserts what the command did, not mode bits alone.
"""

from __future__ import annotations

import contextlib
import copy
import grp
import os
import pwd
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from conftest import QUICK_LIMITS, REPO, gradebook_scores, grading, new_course, notebook_names, source_nb
from grading.instructor.database import open_gradebook
from grading.instructor.roster import group_exists
from grading.instructor.settings import GradingSettings

pytestmark = pytest.mark.slow

TESTS_ROOT = Path("/srv/rnn-course-tests")
VENV = Path(GradingSettings().student_env)  # the hub's students' environment (the setting's default)
SYSTEM_PYTHON = Path("/usr/bin/python3.11")
ASSIGNMENT = "rnn_basics"
GROUPS = ("students", "instructors")
SOLUTION_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)
DENIED = ("Permission denied", "Operation not permitted")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "creates Unix accounts and runs commands as them: needs root"
    for tool in ("useradd", "userdel", "runuser", "chpasswd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not SYSTEM_PYTHON.exists():
        return f"the students' nbgrader needs {SYSTEM_PYTHON} (Debian's python3.11)"
    return None


if _skip_reason():
    pytest.skip(_skip_reason(), allow_module_level=True)


def sh(cmd: list[str], timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, errors="replace", timeout=timeout,
                          **kwargs)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


# ---------------------------------------------------------------- the students' nbgrader


@pytest.fixture(scope="session")
def student_venv() -> Path:
    """The students' environment the hub runs every server from (built once, then reused by the hub's test)."""
    from grading.instructor.settings import load_settings
    from grading.instructor.student_env import build_student_env

    TESTS_ROOT.mkdir(mode=0o755, exist_ok=True)
    os.chmod(TESTS_ROOT, 0o755)
    return build_student_env(REPO, load_settings(None, {}))


# ---------------------------------------------------------------- the class


@dataclass
class Klass:
    base: Path
    course: Path
    exchange: Path
    config_path: Path
    s1: str
    s2: str
    teacher: str
    passwords: dict[str, str]
    roster_output: str
    notes: dict = field(default_factory=dict)

    @property
    def course_exchange(self) -> Path:
        return self.exchange / "rnn-course"

    def env(self, **extra: str) -> dict[str, str]:
        return {"GRADING_EXCHANGE_ROOT": str(self.exchange), **extra}

    def root_cmd(self, *args: str, root: Path | None = None, check: bool = True, **extra: str):
        """``python -m grading ARGS`` as root (the instructor's commands)."""
        return grading(*args, root=root or self.course, check=check, env=self.env(**extra), timeout=1200)

    def nbgrader(self, user: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The students' nbgrader, run by ``user`` in a login shell from their home."""
        line = (f"cd ~ && JUPYTER_CONFIG_PATH={shlex.quote(str(self.config_path))} "
                f"{shlex.quote(str(VENV / 'bin' / 'nbgrader'))} {shlex.join(args)}")
        return sh(["runuser", "-l", user, "-c", line], timeout=300, check=check)

    def as_user(self, user: str, *cmd: str) -> subprocess.CompletedProcess:
        return sh(["runuser", "-u", user, "--", *cmd], timeout=120, check=False, cwd="/")


def _cleanup(users: list[str], groups_before: dict[str, bool], base: Path) -> None:
    for user in users:
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True, timeout=30)
            subprocess.run(["userdel", "-r", user], capture_output=True, timeout=60)
    for group, existed in groups_before.items():
        if not existed and group_exists(group) and not grp.getgrnam(group).gr_mem:
            subprocess.run(["groupdel", group], capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def klass(request, student_venv) -> Klass:
    """Accounts from a roster, a course with rnn_basics released to a test exchange, the students' config."""
    from grading.instructor.exchange import install_students_config
    from grading.instructor.settings import load_settings

    suffix = secrets.token_hex(3)
    s1, s2, teacher = f"rnnt{suffix}a", f"rnnt{suffix}b", f"rnnt{suffix}i"
    base = TESTS_ROOT / suffix
    groups_before = {g: group_exists(g) for g in GROUPS}
    request.addfinalizer(lambda: _cleanup([s1, s2, teacher], groups_before, base))
    base.mkdir(mode=0o755, parents=True)
    exchange = base / "exchange"
    course = new_course(base / "course", [ASSIGNMENT])
    (course / "grading_config.py").write_text(f'c = get_config()  # noqa: F821\n'
                                              f'c.GradingSettings.exchange_root = "{exchange}"\n')
    private = course / "hub"  # a root-only folder, as the hub keeps its cookie secret: securing keeps it so
    private.mkdir(mode=0o700)
    (private / "cookie_secret").write_text("not for instructors")
    (private / "cookie_secret").chmod(0o600)
    (course / "link-to-shadow").symlink_to("/etc/shadow")  # securing must not follow it
    os.mkfifo(course / "fifo", 0o666)  # nor open it
    roster = base / "roster.csv"
    roster.write_text(f"id,first_name,last_name,email,role\n{s1},Ann,Liu,ann@example.org,\n"
                      f"{s2},Bo,Wang,bo@example.org,student\n{teacher},Tim,Chen,tim@example.org,instructor\n")
    out = grading("roster", "add", str(roster), root=course).stdout
    passwords = {line.split()[0]: line.split()[2] for line in out.splitlines() if line.startswith(f"rnnt{suffix}")}
    config_path = base / "etc-jupyter"
    install_students_config(load_settings(course, {"GRADING_EXCHANGE_ROOT": str(exchange)}),
                            config_path / "nbgrader_config.py", course)
    k = Klass(base, course, exchange, config_path, s1, s2, teacher, passwords, out)
    k.notes["shadow"] = os.stat("/etc/shadow")
    k.root_cmd("release-assignment", ASSIGNMENT, "--due", "2099-01-01 00:00:00 UTC")
    return k


def solved(student: str, version: str, unsolved: tuple[str, ...] = ()) -> dict[str, nbformat.NotebookNode]:
    """The release notebooks with the instructor's solutions, except ``unsolved`` ones; a marker names the author."""
    out = {}
    for name in notebook_names(ASSIGNMENT):
        source = source_nb(ASSIGNMENT, name)
        nb = copy.deepcopy(source)
        first = True
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") and name not in unsolved:
                cell.source = SOLUTION_MARKERS.sub("", cell.source)
                if first:
                    cell.source += f"\n# answer by {student} {version}"
                    first = False
            elif meta.get("solution"):
                cell.source = "# YOUR CODE HERE\nraise NotImplementedError()"
        out[name] = nb
    return out


def work_on(k: Klass, student: str, notebooks: dict[str, nbformat.NotebookNode]) -> None:
    """What the student types: their fetched notebooks, overwritten in their home (owned by them)."""
    entry = pwd.getpwnam(student)
    folder = Path(entry.pw_dir) / ASSIGNMENT
    for name, nb in notebooks.items():
        path = folder / f"{name}.ipynb"
        nbformat.write(nb, path)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def submissions(k: Klass, student: str) -> list[Path]:
    """Every inbound entry named after the student (found as root), oldest first."""
    return sorted((k.course_exchange / "inbound").glob(f"{student}+{ASSIGNMENT}+*"), key=lambda p: p.lstat().st_ctime)


def real_submissions(k: Klass, student: str) -> list[Path]:
    """The folders the student's own nbgrader submit made."""
    uid = pwd.getpwnam(student).pw_uid
    return [p for p in submissions(k, student) if not p.is_symlink() and p.lstat().st_uid == uid]


@pytest.fixture(scope="module")
def submitted(klass: Klass) -> Klass:
    """s1 submits once, on time; s2 on time, then again after the deadline (with less solved); s2 also plants a
    submission in s1's name, a symbolic link to the instructor's source/ and a back-dated copy of their own."""
    k = klass
    for student in (k.s1, k.s2):
        k.nbgrader(student, "fetch_assignment", ASSIGNMENT)
    work_on(k, k.s1, solved(k.s1, "v1"))
    k.notes["s1_submit"] = k.nbgrader(k.s1, "submit", ASSIGNMENT)
    work_on(k, k.s2, solved(k.s2, "v1"))
    k.notes["s2_submit1"] = k.nbgrader(k.s2, "submit", ASSIGNMENT)
    time.sleep(1)
    k.root_cmd("release-assignment", ASSIGNMENT, "--force", "--due", time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                                    time.gmtime()))
    time.sleep(1.5)
    work_on(k, k.s2, solved(k.s2, "v2", unsolved=("rnn_cell",)))
    k.notes["s2_submit2"] = k.nbgrader(k.s2, "submit", ASSIGNMENT)
    inbound = k.course_exchange / "inbound"
    future = "2099-01-01 00:00:00.000000 UTC"
    impostor = inbound / f"{k.s1}+{ASSIGNMENT}+{future}+fake"
    k.notes["impostor"] = [k.as_user(k.s2, "mkdir", str(impostor)),
                           k.as_user(k.s2, "cp", "/etc/hostname", str(impostor / "rnn_cell.ipynb"))]
    link = inbound / f"{k.s2}+{ASSIGNMENT}+{future}+link"
    k.notes["link"] = k.as_user(k.s2, "ln", "-s", str(k.course / "source" / ASSIGNMENT), str(link))
    latest = real_submissions(k, k.s2)[-1]
    backdated = inbound / f"{k.s2}+{ASSIGNMENT}+2020-01-01 00:00:00.000000 UTC+backdated"
    k.notes["backdated"] = k.as_user(k.s2, "cp", "-r", str(latest), str(backdated))
    return k


@pytest.fixture(scope="module")
def graded(submitted: Klass) -> Klass:
    """The instructor (root) collects, grades with quick limits and releases feedback; each student fetches it."""
    k = submitted
    k.notes["collect"] = k.root_cmd("collect", ASSIGNMENT)
    k.notes["grade"] = k.root_cmd("grade", ASSIGNMENT, **QUICK_LIMITS)
    k.notes["release_feedback"] = k.root_cmd("release-feedback", ASSIGNMENT)
    for student in (k.s1, k.s2):
        k.notes[f"fetch_feedback_{student}"] = k.nbgrader(student, "fetch_feedback", ASSIGNMENT)
    return k


def fetched_feedback(k: Klass, student: str) -> dict[str, str]:
    """notebook -> the feedback HTML the student fetched into their home (read as root)."""
    home = Path(pwd.getpwnam(student).pw_dir)
    return {p.stem: p.read_text() for p in (home / ASSIGNMENT / "feedback").glob("*/*.html")}


def released_feedback_path(k: Klass, student: str, notebook: str) -> Path:
    from nbgrader.utils import notebook_hash

    secret = (k.course / "submitted" / student / ASSIGNMENT / "submission_secret.txt").read_text().strip()
    return k.course_exchange / "feedback" / f"{notebook_hash(secret=secret, notebook_id=notebook)}.html"


def assert_denied(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode != 0, f"{what}: the command succeeded\n{proc.stdout[-2000:]}"
    assert any(word in proc.stderr for word in DENIED), f"{what}: {proc.stderr[-2000:]}"


# ---------------------------------------------------------------- accounts


def test_the_roster_made_real_accounts(klass: Klass):
    assert set(klass.passwords) == {klass.s1, klass.s2, klass.teacher}
    assert all(re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", p) for p in klass.passwords.values())
    for user, group in ((klass.s1, "students"), (klass.s2, "students"), (klass.teacher, "instructors")):
        home = Path(pwd.getpwnam(user).pw_dir)
        assert pwd.getpwnam(user).pw_shell == "/bin/bash"
        assert klass.as_user(user, "id", "-Gn").stdout.split().count(group) == 1
        other = klass.s2 if user == klass.s1 else klass.s1
        assert_denied(klass.as_user(other, "ls", str(home)), f"{other} lists {user}'s home")


def test_students_fetch_and_submit_in_a_login_shell(submitted: Klass):
    k = submitted
    for key in ("s1_submit", "s2_submit1", "s2_submit2"):
        assert "Submitted as: rnn-course rnn_basics" in k.notes[key].stdout + k.notes[key].stderr
    assert len(submissions(k, k.s1)) == 2 and len(submissions(k, k.s2)) == 4  # with the planted ones
    assert len(real_submissions(k, k.s1)) == 1 and len(real_submissions(k, k.s2)) == 3
    for folder in real_submissions(k, k.s1) + real_submissions(k, k.s2)[:2]:
        st = folder.stat()
        assert (st.st_mode & 0o7777, grp.getgrgid(st.st_gid).gr_name) == (0o2770, "instructors"), folder
        for path in folder.iterdir():
            assert (path.stat().st_mode & 0o777, grp.getgrgid(path.stat().st_gid).gr_name) == (0o640, "instructors")


def test_a_student_cannot_list_the_inbound(submitted: Klass):
    assert_denied(submitted.as_user(submitted.s2, "ls", str(submitted.course_exchange / "inbound")), "ls inbound")


def test_a_student_cannot_read_another_s_submission_even_knowing_its_path(submitted: Klass):
    k = submitted
    theirs = real_submissions(k, k.s1)[0]
    assert_denied(k.as_user(k.s2, "cat", str(theirs / "rnn_cell.ipynb")), "cat s1's notebook")
    assert_denied(k.as_user(k.s2, "cat", str(theirs / "submission_secret.txt")), "cat s1's secret")
    assert_denied(k.as_user(k.s2, "ls", str(theirs)), "ls s1's submission")
    assert_denied(k.as_user(k.s2, "mv", str(theirs), str(theirs.parent / f"{k.s2}+{ASSIGNMENT}+stolen")),
                  "rename s1's submission")
    assert k.as_user(k.s1, "cat", str(theirs / "rnn_cell.ipynb")).returncode == 0  # its author can
    assert k.as_user(k.teacher, "cat", str(theirs / "rnn_cell.ipynb")).returncode == 0  # and the instructors


def test_a_student_cannot_write_into_outbound(klass: Klass):
    outbound = klass.course_exchange / "outbound"
    assert_denied(klass.as_user(klass.s1, "touch", str(outbound / ASSIGNMENT / "rnn_cell.ipynb")), "overwrite")
    assert_denied(klass.as_user(klass.s1, "mkdir", str(outbound / "fake_assignment")), "mkdir in outbound")
    assert_denied(klass.as_user(klass.s1, "rm", "-f", str(outbound / ASSIGNMENT / "rnn_cell.ipynb")), "rm")
    assert klass.as_user(klass.s1, "cat", str(outbound / ASSIGNMENT / "rnn_cell.ipynb")).returncode == 0


def test_a_student_cannot_read_the_course_root(graded: Klass):
    k = graded
    targets = [k.course / "gradebook.db", k.course / "source" / ASSIGNMENT / "rnn_cell.ipynb",
               k.course / ".grading_secret", k.course / "grading_config.py", k.course / "nbgrader_config.py",
               k.course / "submitted" / k.s1 / ASSIGNMENT / "rnn_cell.ipynb",
               k.course / "feedback" / k.s1 / ASSIGNMENT / "rnn_cell.html"]
    for path in targets:
        assert path.exists(), path
        assert_denied(k.as_user(k.s1, "cat", str(path)), f"cat {path}")
    assert_denied(k.as_user(k.s1, "ls", str(k.course)), "ls the course root")
    assert_denied(k.as_user(k.s1, "ls", str(k.course / "source")), "ls source/")


def test_the_instructor_reads_the_course_but_not_the_secret(graded: Klass):
    k = graded
    assert k.as_user(k.teacher, "cat", str(k.course / "source" / ASSIGNMENT / "rnn_cell.ipynb")).returncode == 0
    assert k.as_user(k.teacher, "cat", str(k.course / "gradebook.db")).returncode == 0
    assert_denied(k.as_user(k.teacher, "cat", str(k.course / ".grading_secret")), "instructor reads the secret")
    assert_denied(k.as_user(k.teacher, "touch", str(k.course / "nbgrader_config.py")), "instructor edits the config")
    assert_denied(k.as_user(k.teacher, "cat", str(k.course / "hub" / "cookie_secret")), "a root-only file")
    assert_denied(k.as_user(k.teacher, "touch", str(k.course / "grading.py")), "instructor adds a module")
    st = (k.course / ".grading_secret").stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)


def test_closing_the_course_root_follows_no_link(klass: Klass):
    shadow = os.stat("/etc/shadow")
    before = klass.notes["shadow"]
    assert (shadow.st_mode, shadow.st_uid, shadow.st_gid) == (before.st_mode, before.st_uid, before.st_gid)
    fifo = (klass.course / "fifo").lstat()
    assert fifo.st_mode & 0o007 == 0 and grp.getgrgid(fifo.st_gid).gr_name == "instructors"
    st = klass.course.stat()
    assert (st.st_uid, st.st_mode & 0o7777, grp.getgrgid(st.st_gid).gr_name) == (0, 0o2750, "instructors")


def test_collect_takes_the_latest_marks_late_and_refuses_what_a_student_planted(graded: Klass):
    k = graded
    out = k.notes["collect"].stdout
    assert re.search(rf"{k.s1}\s+\S+ \S+ UTC\s+on time", out), out
    assert re.search(rf"{k.s2}\s+\S+ \S+ UTC\s+LATE", out), out
    assert f"it names {k.s1} but belongs to {k.s2}: not collected" in out
    assert "not a folder (a symbolic link or a file): never followed" in out
    assert "stated time 2020-01-01 00:00:00 UTC differs from the last change of its files" in out  # back-dated
    assert "collected 2 submissions of rnn_basics (1 late)" in out
    s1_nb = (k.course / "submitted" / k.s1 / ASSIGNMENT / "rnn_cell.ipynb").read_text()
    assert f"answer by {k.s1} v1" in s1_nb  # not what s2 planted in s1's name
    s2_nb = (k.course / "submitted" / k.s2 / ASSIGNMENT / "nn_rnn.ipynb").read_text()
    assert f"answer by {k.s2} v2" in s2_nb  # the latest
    assert not (k.course / "submitted" / k.s2 / ASSIGNMENT / "rnn_cell.ipynb").read_text().count("answer by")
    source = (k.course / "source" / ASSIGNMENT / "rnn_cell.ipynb").read_text()
    assert "### BEGIN SOLUTION" in source and not any(
        "### BEGIN SOLUTION" in p.read_text() for p in (k.course / "submitted").rglob("*.ipynb"))


def test_grades_count_the_latest_submission_and_record_the_late_one(graded: Klass):
    k = graded
    assert "2 submissions of rnn_basics graded" in k.notes["grade"].stdout
    scores = gradebook_scores(k.course, ASSIGNMENT)
    assert sum(scores[k.s1].values()) == 8, scores[k.s1]
    assert sum(scores[k.s2].values()) == 4 and all(v == 0 for g, v in scores[k.s2].items() if "rnn_cell" in g
                                                   or "run_cell" in g), scores[k.s2]
    with open_gradebook(k.course) as gb:
        assert gb.find_submission(ASSIGNMENT, k.s2).total_seconds_late > 0
        assert gb.find_submission(ASSIGNMENT, k.s1).total_seconds_late == 0


def test_each_student_fetches_their_own_feedback(graded: Klass):
    k = graded
    mine, theirs = fetched_feedback(k, k.s1), fetched_feedback(k, k.s2)
    assert set(mine) == set(theirs) == {"rnn_cell", "nn_rnn"}, (mine.keys(), theirs.keys())
    assert f"answer by {k.s1} v1" in mine["rnn_cell"] and k.s2 not in "".join(mine.values())
    assert f"answer by {k.s2} v2" in theirs["nn_rnn"] and k.s1 not in "".join(theirs.values())
    assert "BEGIN HIDDEN TESTS" not in "".join(mine.values()) + "".join(theirs.values())
    for student in (k.s1, k.s2):
        for notebook in ("rnn_cell", "nn_rnn"):
            st = released_feedback_path(k, student, notebook).stat()
            assert (st.st_uid, st.st_mode & 0o777) == (pwd.getpwnam(student).pw_uid, 0o640)


def test_a_student_cannot_read_another_s_feedback(graded: Klass):
    k = graded
    path = released_feedback_path(k, k.s1, "rnn_cell")
    assert_denied(k.as_user(k.s2, "cat", str(path)), "cat s1's released feedback")
    assert_denied(k.as_user(k.s2, "ls", str(k.course_exchange / "feedback")), "list the released feedback")
    assert_denied(k.as_user(k.s2, "cp", str(path), "/tmp/x"), "copy s1's feedback")
    assert k.as_user(k.s1, "cat", str(path)).returncode == 0


def test_a_second_course_on_the_same_exchange_sees_nothing_of_this_one(graded: Klass):
    from grading.instructor.course import CourseError
    from grading.instructor.exchange import setup_exchange
    from grading.instructor.settings import load_settings

    k = graded
    modes = {p: (p.stat().st_mode, p.stat().st_gid) for p in [k.course_exchange, *k.course_exchange.iterdir()]}
    other_id = f"{k.s1}-other"
    other = k.base / "course2"
    other.mkdir(mode=0o755)
    config = (REPO / "nbgrader_config.py").read_text().replace('"rnn-course"', f'"{other_id}"')
    assert other_id in config
    (other / "nbgrader_config.py").write_text(config)
    shutil.copy2(k.course / "grading_config.py", other)
    shutil.copytree(k.course / "release" / ASSIGNMENT, other / "release" / ASSIGNMENT)
    k.root_cmd("release-assignment", ASSIGNMENT, root=other)
    assert {p: (p.stat().st_mode, p.stat().st_gid) for p in modes} == modes
    listing = k.nbgrader(k.s1, "list")
    listed = listing.stdout + listing.stderr
    assert "rnn-course rnn_basics" in listed and other_id not in listed
    k.as_user(k.s1, "mkdir", "-p", f"/home/{k.s1}/{other_id}")
    line = (f"export JUPYTER_CONFIG_PATH={k.config_path}; cd ~/{other_id} && {VENV}/bin/nbgrader fetch_assignment "
            f"{ASSIGNMENT} --course {other_id} && {VENV}/bin/nbgrader submit {ASSIGNMENT} --course {other_id}")
    sh(["runuser", "-l", k.s1, "-c", line], timeout=300)
    assert len(list((k.exchange / other_id / "inbound").iterdir())) == 1
    assert len(real_submissions(k, k.s1)) == 1  # this course's inbound got nothing
    out = k.root_cmd("collect", ASSIGNMENT, root=other).stdout
    assert "collected 1 submissions" in out and k.s2 not in out
    assert k.root_cmd("collect", ASSIGNMENT).stdout.count(other_id) == 0
    squatted = f"{k.s2}-squat"
    assert k.as_user(k.s2, "mkdir", str(k.exchange / squatted)).returncode == 0  # the root is 1777, as nbgrader needs
    with pytest.raises(CourseError, match=f"owned by {k.s2}"):
        setup_exchange(load_settings(other), squatted)
    assert_denied(k.as_user(k.s2, "mv", str(k.course_exchange), str(k.exchange / "moved")), "rename a course")


def test_a_removed_student_keeps_their_grades(graded: Klass):
    k = graded
    before = gradebook_scores(k.course, ASSIGNMENT)[k.s2]
    out = k.root_cmd("roster", "remove", k.s2)
    assert "account locked" in out.stdout
    assert sh(["passwd", "--status", k.s2]).stdout.split()[1] == "L"
    assert k.s2 not in grp.getgrnam("students").gr_mem
    assert gradebook_scores(k.course, ASSIGNMENT)[k.s2] == before
    k.root_cmd("report")
    assert k.s2 in (k.course / "reports" / "grades.csv").read_text()
    out = k.root_cmd("roster", "add", str(k.base / "roster.csv"), check=False)
    assert out.returncode == 4 and f"{k.s2!r} is an existing account outside the course" in out.stderr


def test_closing_a_checkout_used_as_course_root_keeps_the_graders_environment_readable(tmp_path, monkeypatch):
    """The sandboxed kernels read the grader's virtualenv as another uid: when it lives in the course root (a
    checkout used as the course), closing the root must leave its modes alone; the rest is closed."""
    from grading.instructor.exchange import secure_course_root

    course = TESTS_ROOT / f"checkout-{secrets.token_hex(3)}"
    course.mkdir(mode=0o755, parents=True)
    try:
        shutil.copy(REPO / "nbgrader_config.py", course / "nbgrader_config.py")
        (course / "source").mkdir()
        (course / "source" / "answer.py").write_text("x = 1\n")
        lib = course / ".venv" / "lib"
        lib.mkdir(parents=True)
        (lib / "torch.py").write_text("")
        os.chmod(lib / "torch.py", 0o644)
        monkeypatch.setattr(sys, "prefix", str(course / ".venv"))
        secure_course_root(course)
        assert (lib / "torch.py").stat().st_mode & 0o777 == 0o644
        assert (course / ".venv").stat().st_mode & 0o005 == 0o005
        assert (course / "source" / "answer.py").stat().st_mode & 0o007 == 0
        assert course.stat().st_mode & 0o007 == 0
    finally:
        shutil.rmtree(course, ignore_errors=True)
