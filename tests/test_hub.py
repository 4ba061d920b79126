"""A class on a real JupyterHub, end to end in Debian's chromium.

``python -m grading hub`` runs as root with PAM logins and ``LocalProcessSpawner``. Two students
and an instructor are real Unix accounts made by ``python -m grading roster add``. The instructor
releases ``rnn_basics``; each student logs in with their password, fetches it in the Assignments
panel, answers it in the notebook editor (one fully, one partly), presses Validate and submits.
The instructor collects, grades and releases feedback; each student fetches and opens their own
feedback in the panel: the right score, no hidden test, nobody else's work. Through the hub a
student reaches neither formgrader nor the instructor's server; the instructor reaches formgrader.

Figures (hub start, login to a usable JupyterLab, memory per student server, the whole loop) are
written to ``test-artifacts/hub/metrics.json``.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    UI_MS,
    answer_notebook,
    free_port,
    plan,
    read_dialog,
    require_chromium,
    saved_sources,
    stop,
    wait_cells,
)

from conftest import QUICK_LIMITS, REPO, grading, new_course
from grading.instructor.student_env import LOGIN_PATH_SCRIPT

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ASSIGNMENT = "rnn_basics"
TEST_ROOT = Path("/srv/rnn-course-tests")  # every account can traverse it: nothing passes because a parent is closed
STUDENTS_CONFIG = Path("/etc/jupyter/nbgrader_config.py")
ARTIFACTS = REPO / "test-artifacts" / "hub"
HUB_READY = 900          # seconds: preparing the class builds the students' environment on a fresh machine
LOGIN_MS = 180_000       # login to a running JupyterLab (the hub spawns the server)
VALIDATE_MS = 180_000
GRADE = 900


@dataclass
class Member:
    id: str
    password: str
    role: str
    login_seconds: float = 0.0


@dataclass
class Hub:
    base: str
    proc: subprocess.Popen
    log: Path
    course: Path
    env: dict
    members: dict[str, Member]
    metrics: dict = field(default_factory=dict)

    def students(self) -> list[Member]:
        return [m for m in self.members.values() if m.role == "student"]

    def instructor(self) -> Member:
        return next(m for m in self.members.values() if m.role == "instructor")

    def log_tail(self, chars: int = 8000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def require_class_machine() -> None:
    if os.geteuid() != 0:
        pytest.skip("the hub spawns servers as other Unix users: run the tests as root")
    for tool in ("useradd", "runuser", "configurable-http-proxy"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: `make setup` installs the hub's system packages")
    require_chromium()


def wait_for_login_page(hub: Hub) -> None:
    deadline = time.monotonic() + HUB_READY
    while time.monotonic() < deadline:
        if hub.proc.poll() is not None:
            pytest.fail(f"python -m grading hub exited with {hub.proc.returncode}:\n{hub.log_tail()}")
        try:
            with urllib.request.urlopen(f"{hub.base}/hub/login", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    pytest.fail(f"the hub did not serve its login page within {HUB_READY} s:\n{hub.log_tail()}")


def stop_hub(proc: subprocess.Popen, proxy_pid_file: Path) -> None:
    """SIGTERM to the hub (it stops every user's server), then its whole session, then the proxy (JupyterHub
    starts it in a session of its own), each by PID."""
    stop(proc, timeout=60)
    try:
        os.kill(int(proxy_pid_file.read_text().strip()), signal.SIGTERM)
    except (OSError, ValueError):
        pass


def kill_user_processes(user: str, deadline: float = 20) -> None:
    """Servers and kernels a spawner left behind (found by uid, killed by PID), waited for: userdel refuses an
    account that still runs a process."""
    import psutil

    uid = pwd.getpwnam(user).pw_uid
    left = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=deadline)


def delete_account(user: str) -> None:
    """userdel -r, once the account runs nothing; a failure is reported, not ignored."""
    try:
        kill_user_processes(user)
    except KeyError:
        return
    out = subprocess.run(["userdel", "-r", user], capture_output=True, text=True, timeout=60)
    if out.returncode not in (0, 12):  # 12: the home folder could not be removed in full
        raise RuntimeError(f"userdel -r {user} failed ({out.returncode}): {out.stderr.strip()}")


def memory_of(user: str) -> int:
    """Resident memory of every process running as ``user`` (their server and kernels), in bytes."""
    import psutil

    uid = pwd.getpwnam(user).pw_uid
    total = 0
    for proc in psutil.process_iter(["uids", "memory_info"]):
        if proc.info["uids"] and proc.info["uids"].real == uid and proc.info["memory_info"]:
            total += proc.info["memory_info"].rss
    return total


@pytest.fixture(scope="module")
def hub():
    require_class_machine()
    from grading.instructor.roster import add_roster, read_roster

    started = time.monotonic()
    tag = secrets.token_hex(3)
    TEST_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    TEST_ROOT.chmod(0o755)
    folder = TEST_ROOT / f"hub-{tag}"
    folder.mkdir(mode=0o755)
    groups_before = {g.gr_name for g in grp.getgrall()}
    saved_config = STUDENTS_CONFIG.read_bytes() if STUDENTS_CONFIG.exists() else None
    saved_login_path = LOGIN_PATH_SCRIPT.read_bytes() if LOGIN_PATH_SCRIPT.exists() else None
    checkout_mode = REPO.stat().st_mode & 0o7777  # the hub closes the checkout; put it back as it was
    course = new_course(folder / "course", [ASSIGNMENT])
    env = {**QUICK_LIMITS, "GRADING_EXCHANGE_ROOT": str(folder / "exchange")}
    roster = folder / "roster.csv"
    ids = {"student": [f"rnnt{tag}a", f"rnnt{tag}b"], "instructor": [f"rnnt{tag}i"]}
    roster.write_text("id,first_name,last_name,email,role\n" + "".join(
        f"{i},First{n},Last{n},{i}@example.org,{role}\n" for role, group in ids.items() for n, i in enumerate(group)))
    members: dict[str, Member] = {}
    proc = None
    log = folder / "hub.log"
    try:
        os.environ.update(env)
        try:
            passwords = dict(add_roster(course, read_roster(roster)))
        finally:
            for key in env:
                os.environ.pop(key, None)
        members = {i: Member(i, passwords[i], role) for role, group in ids.items() for i in group}
        port = free_port()
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "grading", "hub", "--root", str(course), "--port", str(port),
                 "--hub-port", str(free_port()), "--proxy-api-port", str(free_port())],
                cwd=course, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        state = Hub(f"http://127.0.0.1:{port}", proc, log, course, env, members)
        wait_for_login_page(state)
        state.metrics["prepare_and_start_hub_seconds"] = round(time.monotonic() - started, 1)
        state.metrics.update(hub_start_from_log(log))
        grading("release-assignment", ASSIGNMENT, root=course, env=env)
        yield state
    finally:
        if proc is not None:
            stop_hub(proc, course / "hub" / "proxy.pid")
        leftovers = []
        for member in members.values():
            try:
                delete_account(member.id)
            except RuntimeError as exc:
                leftovers.append(str(exc))
        for group in ("students", "instructors"):
            if group not in groups_before:
                subprocess.run(["groupdel", group], capture_output=True, timeout=60)
        REPO.chmod(checkout_mode)
        if saved_login_path is None:
            LOGIN_PATH_SCRIPT.unlink(missing_ok=True)
        else:
            LOGIN_PATH_SCRIPT.write_bytes(saved_login_path)
        if saved_config is None:
            STUDENTS_CONFIG.unlink(missing_ok=True)
        else:
            STUDENTS_CONFIG.write_bytes(saved_config)
        if ARTIFACTS.exists() or log.exists():
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            if log.exists():
                shutil.copy(log, ARTIFACTS / "hub.log")
        shutil.rmtree(folder, ignore_errors=True)
        if leftovers:
            pytest.fail("accounts left on the machine:\n" + "\n".join(leftovers))


def hub_start_from_log(log: Path) -> dict:
    """JupyterHub's own start time: from its first log line to "JupyterHub is now running"."""
    stamps = re.findall(r"^\[I (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) JupyterHub .*?(Running JupyterHub version|"
                        r"JupyterHub is now running)", log.read_text(errors="replace"), flags=re.MULTILINE)
    from datetime import datetime

    times = {what: datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f") for stamp, what in stamps}
    if len(times) < 2:
        return {}
    return {"jupyterhub_start_seconds": round((times["JupyterHub is now running"]
                                              - times["Running JupyterHub version"]).total_seconds(), 2)}


# --------------------------------------------------------------------------- browser helpers


def as_user(user: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True, text=True, timeout=120, cwd="/")


def test_students_run_the_checks_but_reach_nothing_of_the_instructors(hub):
    """The students' environment holds grading.student and not grading.instructor, and the checkout that holds
    the hidden checks and the answer catalogue is closed to students (the hub closed it)."""
    from grading.instructor.settings import load_settings

    python = str(Path(load_settings(hub.course).student_env) / "bin" / "python")
    student = hub.students()[0].id
    assert as_user(student, python, "-c", "import grading.student.lstm_gru, torch").returncode == 0
    denied = as_user(student, python, "-c", "import grading.instructor")
    assert denied.returncode != 0 and "No module named 'grading.instructor'" in denied.stderr, denied.stderr
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=60)
    assert "CJK" in fonts.stdout, "no CJK font: the glossaries' Chinese terms would not render (make setup)"
    listed = subprocess.run(["runuser", "-l", student, "-c", f"nbgrader list {ASSIGNMENT}"], capture_output=True,
                            text=True, timeout=300)  # a login shell: PATH and the system-wide settings only
    assert listed.returncode == 0 and f"rnn-course {ASSIGNMENT}" in listed.stdout + listed.stderr, listed
    for path in (REPO / "grading" / "instructor" / "catalogue" / "__init__.py", REPO / "source",
                 hub.course / "gradebook.db", hub.course / "source", hub.course / ".grading_secret"):
        out = as_user(student, "ls" if path.is_dir() else "cat", str(path))
        assert out.returncode != 0 and "Permission denied" in out.stderr, f"{student} reads {path}: {out.stdout[:200]}"


def log_in(page, hub: Hub, member: Member) -> None:
    """The hub's login form, then wait for the user's JupyterLab to be usable."""
    page.goto(f"{hub.base}/hub/login")
    page.locator("#username_input").fill(member.id)
    page.locator("#password_input").fill(member.password)
    started = time.monotonic()
    page.locator("#login_submit").click()
    page.wait_for_url(re.compile(rf"/user/{member.id}/lab"), timeout=LOGIN_MS)
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=LOGIN_MS)
    page.locator(".jp-DirListing-content").wait_for(timeout=LOGIN_MS)
    member.login_seconds = round(time.monotonic() - started, 1)


def open_assignments(page) -> None:
    page.locator("#jp-MainMenu .lm-MenuBar-item", has_text=re.compile(r"^Nbgrader$")).click()
    page.locator('.lm-Menu li[data-command="nbgrader:open-assignment-list"]').click()
    page.locator("#released_assignments_list, #fetched_assignments_list").first.wait_for(timeout=UI_MS)


def list_item(page, which: str, name: str):
    return page.locator(f"#{which}_assignments_list > .list_item").filter(
        has=page.locator(".item_name", has_text=re.compile(rf"^{name}$")))


def home(member: Member) -> Path:
    return Path(pwd.getpwnam(member.id).pw_dir)


def solve(page, member: Member, notebooks: dict[str, int]) -> None:
    """Open each fetched notebook from the panel and type in the first ``n`` answers; save; wait for the file."""
    from playwright.sync_api import expect

    for name, count in notebooks.items():
        p = plan(ASSIGNMENT, name)
        p.exercises = p.exercises[:count]
        page.locator(".lm-TabBar-tab", has_text="Assignments").click()
        row = page.locator("#fetched_assignments_list .assignment-notebooks .list_item").filter(
            has=page.locator(".item_name", has_text=re.compile(rf"^{name}$")))
        expect(row).to_have_count(1)
        if not row.locator(".item_name a").is_visible():  # the assignment's notebook list is folded
            page.locator("#fetched_assignments_list a", has_text=re.compile(rf"^{ASSIGNMENT}$")).click()
        row.locator(".item_name a").click()
        path = home(member) / ASSIGNMENT / f"{name}.ipynb"
        wait_cells(page, path)
        answer_notebook(page, p)
        page.keyboard.press("ControlOrMeta+s")
        want = {ex.grade_id: ex.answer.strip() for ex in p.exercises}
        deadline = time.monotonic() + UI_MS / 1000
        while {k: v.strip() for k, v in saved_sources(path).items() if k in want} != want:
            if time.monotonic() > deadline:
                pytest.fail(f"{path} was not saved with the typed answers")
            time.sleep(0.25)


def validate_in_panel(page, name: str, success: bool) -> str:
    page.locator(".lm-TabBar-tab", has_text="Assignments").click()
    row = page.locator("#fetched_assignments_list .assignment-notebooks .list_item").filter(
        has=page.locator(".item_name", has_text=re.compile(rf"^{name}$")))
    row.locator(".item_status button", has_text="Validate").click()
    return read_dialog(page, success=success)


# --------------------------------------------------------------------------- the loop


FULL = {"rnn_cell": 99, "nn_rnn": 99}   # every exercise of both notebooks
PART = {"rnn_cell": 1}                  # rnn_cell_step only


def expected_scores(answers: dict[str, int]) -> dict[str, float]:
    """Points per notebook a student earns with the first ``n`` exercises of each notebook answered."""
    from grading.instructor.catalogue import Answer  # noqa: F401 - the catalogue's exercises decide the cells
    from grading.instructor.exercises import EXERCISES

    scores = {}
    for name in ("rnn_cell", "nn_rnn"):
        p = plan(ASSIGNMENT, name)
        answered = {ex.grade_id for ex in p.exercises[:answers.get(name, 0)]}
        cells = {tid for ex in EXERCISES.values() if ex.grade_id in answered for tid in ex.test_ids}
        from conftest import source_nb

        nb = source_nb(ASSIGNMENT, name)
        scores[name] = sum(float(c.metadata["nbgrader"]["points"]) for c in nb.cells
                           if c.metadata.get("nbgrader", {}).get("grade_id") in cells)
    return scores


def test_a_class_on_the_hub(hub):
    """Fetch, answer, Validate, Submit in the browser; collect, grade, release feedback; each student sees
    only their own feedback, with their score; formgrader and other servers are out of students' reach."""
    from playwright.sync_api import expect, sync_playwright

    loop_started = time.monotonic()
    expect.set_options(timeout=UI_MS)
    full, part = hub.students()
    answers = {full.id: FULL, part.id: PART}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        pages = {}
        try:
            for student in (full, part):
                context = browser.new_context(viewport={"width": 1440, "height": 1000})
                context.set_default_timeout(UI_MS)
                page = pages[student.id] = context.new_page()
                log_in(page, hub, student)
                open_assignments(page)
                released = list_item(page, "released", ASSIGNMENT)
                expect(released).to_have_count(1)
                released.locator(".item_status button").click()
                expect(list_item(page, "fetched", ASSIGNMENT)).to_have_count(1)
                assert (home(student) / ASSIGNMENT / "rnn_cell.ipynb").exists()
                solve(page, student, answers[student.id])
                text = validate_in_panel(page, "rnn_cell", success=student is full)
                assert ("passes all the tests" in text) == (student is full), text
                page.locator(".lm-TabBar-tab", has_text="Assignments").click()
                list_item(page, "fetched", ASSIGNMENT).locator(".item_status button", has_text="Submit").click()
                expect(list_item(page, "submitted", ASSIGNMENT)).to_have_count(1)
                hub.metrics.setdefault("server_memory_mb", {})[student.id] = round(memory_of(student.id) / 2**20)

            # The instructor's side: formgrader is theirs, not the students'.
            instructor = hub.instructor()
            context = browser.new_context()
            ipage = context.new_page()
            log_in(ipage, hub, instructor)
            response = ipage.goto(f"{hub.base}/user/{instructor.id}/formgrader")
            assert response.status == 200, response.status
            for student in (full, part):
                page = pages[student.id]
                for path in (f"user/{student.id}/formgrader", f"user/{instructor.id}/lab",
                             f"user/{instructor.id}/formgrader", f"user/{instructor.id}/api/contents"):
                    response = page.request.get(f"{hub.base}/{path}")  # through the hub's redirects and OAuth
                    assert response.status in (403, 404), f"{student.id} got {response.status} for /{path}"

            grading("collect", ASSIGNMENT, root=hub.course, env=hub.env)
            grading("grade", ASSIGNMENT, root=hub.course, env=hub.env, timeout=GRADE)
            grading("release-feedback", ASSIGNMENT, root=hub.course, env=hub.env)

            from nbgrader.api import Gradebook

            from grading.instructor.database import db_url

            with Gradebook(db_url(hub.course), "rnn-course") as gb:
                graded = {s.id: {nb.name: nb.score for nb in gb.find_submission(ASSIGNMENT, s.id).notebooks}
                          for s in (full, part)}
            for student in (full, part):
                assert graded[student.id] == expected_scores(answers[student.id]), graded
                open_own_feedback(pages[student.id], hub, student, other=part if student is full else full,
                                  score=graded[student.id]["rnn_cell"])
        finally:
            browser.close()
    hub.metrics["login_to_lab_seconds"] = {m.id: m.login_seconds for m in hub.members.values()}
    hub.metrics["loop_seconds"] = round(time.monotonic() - loop_started, 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "metrics.json").write_text(json.dumps(hub.metrics, indent=1))


def open_own_feedback(page, hub: Hub, student: Member, other: Member, score: float) -> None:
    """Fetch Feedback in the panel, follow "(view feedback)", open the notebook's feedback page."""
    from playwright.sync_api import expect

    page.reload()
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=LOGIN_MS)
    open_assignments(page)
    submitted = list_item(page, "submitted", ASSIGNMENT)
    expect(submitted).to_have_count(1)
    submitted.locator(".item_status button", has_text="Fetch Feedback").click()
    view = page.locator("#submitted_assignments_list a", has_text="view feedback")
    expect(view).to_have_count(1, timeout=UI_MS)
    view.click()
    entry = page.locator(".jp-DirListing-itemText", has_text=re.compile(r"^rnn_cell\.html$"))
    expect(entry).to_have_count(1)
    entry.dblclick()
    frame = page.frame_locator(".jp-HTMLViewer:not(.lm-mod-hidden) iframe, iframe.jp-HTMLViewer-iframe").first
    body = frame.locator("body")
    expect(body).to_contain_text("rnn_cell", timeout=UI_MS)
    text = body.inner_text()
    assert re.search(rf"Score: {score:g}(\.0)? / ", text) or f"{score:g} / " in text, text[:2000]
    for secret in ("BEGIN HIDDEN TESTS", "hidden_check", "grading.instructor", other.id):
        assert secret not in text, f"{student.id}'s feedback shows {secret!r}"
    files = list((home(student) / ASSIGNMENT / "feedback").rglob("*.html"))
    assert files and all(f.stat().st_uid == pwd.getpwnam(student.id).pw_uid for f in files), files
