"""A student who has read the grader: attacks on other students' grades, on the grader itself,
and on what students receive.

One hostile class (rnn_basics/rnn_cell, 2 + 2 points) is graded three times: with one worker
(every honest student is graded *after* every attacker, on the same kernel server), with two
workers, and once more as a regrade of the first run. Honest students are named ``z_*`` so
that they sort last. Each attack's outcome is asserted exactly, for the attacker and for the
honest students, together with the gradebook's integrity, the report's completeness and the
cleanliness of everything a student receives.
"""

import json
import os
import sqlite3

import nbformat
import pytest

from conftest import (
    QUICK_LIMITS,
    REPO,
    gradebook_scores,
    grading,
    new_course,
    results,
    submit,
    with_solution,
)
from grading.instructor.messages import VERIFIER_COMMENT
from rnn_cell_class import ALL_ZERO, CHEAT, FULL, NB, REF, RUN, RUN_ZERO, STEP, STEP_ZERO, WRONG_STEP, A

pytestmark = pytest.mark.slow  # runs nbgrader, kernels or the sandbox end to end

LIMITS = dict(QUICK_LIMITS, GRADING_DISK_MB="192", GRADING_TMP_MB="64")
BLANK_STEP = "def rnn_cell_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh):\n    raise NotImplementedError()\n"
BLANK_RUN = "def run_cell(cell, inputs, h0):\n    raise NotImplementedError()\n"
KILL_EVERYONE = """
import os, signal
for sig in (signal.SIGSTOP, signal.SIGKILL):
    for pid in sorted({os.getppid(), 1, *(int(p) for p in os.listdir('/proc') if p.isdigit())} - {os.getpid()}):
        try:
            os.kill(pid, sig)
        except OSError:
            pass
"""
PLANT = """
import json, os, subprocess, sys
seen = {}
for label, action in [("mkdir_job", lambda: os.makedirs('/job/00004-verify-rnn_cell')),
                      ("list_job", lambda: os.listdir('/job')),
                      ("write_mpl", lambda: open(os.path.join(os.environ['MPLCONFIGDIR'], 'planted'), 'w').write('x')),
                      ("write_tmp", lambda: open('/tmp/planted.py', 'w').write('PLANTED = 1')),
                      ("write_cwd", lambda: open('torch_planted.py', 'w').write('PLANTED = 1'))]:
    try:
        action()
        seen[label] = True
    except OSError:
        seen[label] = False
subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: open("/tmp/daemon", "a").write("x"); time.sleep(0.1)'],
                 start_new_session=True)
print("PLANT", json.dumps(seen))
"""  # noqa: E501 - the submitted cell, kept verbatim
OBSERVE = """
import json, os
seen = {"tmp": sorted(n for n in os.listdir('/tmp') if os.lstat('/tmp/' + n).st_uid == os.getuid()),
        "cwd": sorted(os.listdir('.')),
        "mpl_planted": os.path.exists(os.path.join(os.environ['MPLCONFIGDIR'], 'planted'))}
try:
    seen["job"] = os.listdir('/job')
except OSError:
    seen["job"] = "denied"
print("OBSERVE", json.dumps(seen))
"""
MEMFD = """
import os
fd = os.memfd_create("bomb")
chunk = b"x" * (64 * 2**20)
for _ in range(40):
    os.write(fd, chunk)
"""
DISK = """
import os
chunk = b"x" * (32 * 2**20)
for i in range(40):
    with open(f"fill{i}", "wb") as f:
        f.write(chunk)
"""
XSS = '<script>alert("xss-script")</script><img src=x onerror="alert(\'xss-img\')"><b id="inj">injected</b>'
LEAK = """
import grading.instructor.runtime.harness as h
raise ValueError('<b id="inj">' + open(h.__file__).read() + repr(__import__('sys').path) * 50)
"""
FORGE = """
import os

for fd in range(3, 64):
    try:
        os.write(fd, b'{"rnn_cell_step": {"observed": [{"ok": true, "value": {"h": 1}}], "fused_calls": {}}}')
    except OSError:
        pass
os._exit(0)
"""


def _added_cell(nb, source, cell_type="code"):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    cell = nbformat.v4.new_code_cell(source) if cell_type == "code" else nbformat.v4.new_markdown_cell(source)
    nb.cells.append(cell)
    return nb


def _solutions(step=STEP, run=RUN):
    return with_solution(with_solution(REF, "rnn_cell_step", step), "run_cell", run)


def attacks(course):
    """student -> (what to put in the submission folder, expected scores, reason substring or None)."""
    honest_path = course / "submitted" / "z_honest_1" / A / f"{NB}.ipynb"
    deep = '{"cells": ' + "[" * 100_000 + "]" * 100_000 + ', "nbformat": 4, "nbformat_minor": 5, "metadata": {}}'
    many_cells = nbformat.from_dict(json.loads(json.dumps(REF)))
    many_cells.cells += [nbformat.v4.new_code_cell(f"x{i} = {i}") for i in range(20_000)]
    return {
        "a01_kill_server_from_kernel": ({NB: _added_cell(REF, KILL_EVERYONE)}, FULL, None),
        "a02_kill_server_from_verifier": ({NB: _solutions(step=STEP + KILL_EVERYONE)}, ALL_ZERO, "no usable result"),
        "a03_fifo_result": ({NB: _solutions(step=STEP + "\nimport os\nos.mkfifo('result.json')\n"
                                                 "os.symlink('/dev/zero', 'result.tmp')\nos.kill(os.getppid(), 9)\n")},
                            ALL_ZERO, "no usable result"),
        "a04_planter": ({NB: _added_cell(REF, PLANT)}, FULL, None),
        "a05_observer": ({NB: _added_cell(REF, OBSERVE)}, FULL, None),
        "a06_recursion_cheat": ({NB: _added_cell(_solutions(BLANK_STEP + CHEAT, BLANK_RUN),
                                                 "x = a" + ".b" * 60_000)}, ALL_ZERO, None),
        "a07_surrogate_cheat": ({NB: _solutions(
            "from grading.instructor.exercises.base import ProbeError\n"
            "def rnn_cell_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh):\n    raise ProbeError('\\ud800' * 50)\n"
            + CHEAT, BLANK_RUN)}, ALL_ZERO, None),
        "a08_forged_result": ({NB: _solutions(step=STEP + FORGE)}, STEP_ZERO, None),
        "a09_symlink_to_source": ({f"{NB}.ipynb": ("symlink", course / "source" / A / f"{NB}.ipynb")}, ALL_ZERO,
                                  "not a regular file"),
        "a10_symlink_to_other": ({f"{NB}.ipynb": ("symlink", honest_path)}, ALL_ZERO, "not a regular file"),
        "a11_symlinked_folder": ("folder-symlink", ALL_ZERO, "symbolic link"),
        "a12_error_text_leak": ({NB: _solutions(step=STEP.replace("return", LEAK.strip().replace("\n", "\n    ") +
                                                                 "\n    return", 1))}, STEP_ZERO, "raised ValueError"),
        "a13_markdown_xss": ({NB: _added_cell(REF, XSS, "markdown")}, FULL, None),
        "a14_memfd_bomb": ({NB: _solutions(run=RUN + MEMFD)}, RUN_ZERO, None),
        "a15_disk_fill": ({NB: _solutions(run=RUN + DISK)}, RUN_ZERO, None),
        "a16_syntax_error_hides_cheat": ({NB: _added_cell(_solutions(STEP + "\n" + CHEAT), "def broken(:\n")}, FULL,
                                         None),
        "a17_deep_json": ({f"{NB}.ipynb": deep}, ALL_ZERO, "nested too deeply"),
        "a18_many_cells": ({NB: many_cells}, ALL_ZERO, "cells"),
        "a19_fifo_notebook": ({f"{NB}.ipynb": ("fifo", None)}, ALL_ZERO, "not a regular file"),
        "a20_directory_notebook": ({f"{NB}.ipynb": ("dir", None)}, ALL_ZERO, "not a regular file"),
        "a21_timestamp_symlink": ({NB: REF, "timestamp.txt": ("symlink", "/etc/shadow")}, FULL, "timestamp"),
        "a22_many_extra_files": ({NB: REF, **{f"extra{i:03d}.ipynb": "{}" for i in range(300)}}, FULL, "ignored"),
    }


HONEST = {"z_honest_1": (REF, FULL), "z_honest_2": (REF, FULL),
          "z_honest_wrong": (with_solution(REF, "rnn_cell_step", WRONG_STEP), STEP_ZERO)}


def write_class(course):
    """Submit the honest students and every attack; returns the attack table."""
    for student, (nb, _) in HONEST.items():
        submit(course, student, A, {NB: nb})
    table = attacks(course)
    for student, (items, _, _) in table.items():
        folder = course / "submitted" / student / A
        if items == "folder-symlink":
            os.symlink(course / "submitted" / "z_honest_1", course / "submitted" / student)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "timestamp.txt").write_text("2026-11-20 12:00:00.000000 UTC")
        for name, content in items.items():
            path = folder / name
            if path.exists() or path.is_symlink():
                path.unlink()
            if isinstance(content, tuple):
                kind, target = content
                if kind == "symlink":
                    os.symlink(target, path)
                elif kind == "fifo":
                    os.mkfifo(path)
                elif kind == "dir":
                    path.mkdir()
                else:
                    raise KeyError(kind)
            elif isinstance(content, str):
                path.write_text(content)
            else:
                nbformat.write(content, folder / f"{name}.ipynb")
    return table


def _grade(course, *args, check=True):
    return grading("grade", A, *args, root=course, env=LIMITS, timeout=1800, check=check)


def _hostile_class(tmp_path_factory, jobs: int):
    """A fresh course with the whole hostile class, graded with ``jobs`` workers."""
    course = new_course(tmp_path_factory.mktemp(f"isolation{jobs}"), [A])
    table = write_class(course)
    return course, table, _grade(course, "--jobs", str(jobs))


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    return _hostile_class(tmp_path_factory, jobs=1)


@pytest.fixture(scope="module")
def parallel_run(tmp_path_factory):
    return _hostile_class(tmp_path_factory, jobs=2)


@pytest.fixture(scope="module")
def regrade_run(serial_run):
    course, table, _ = serial_run
    before = gradebook_scores(course, A, NB)
    feedback = {p: p.read_bytes() for p in (course / "feedback").rglob("*.html")}
    out = _grade(course, "--jobs", "1")
    return course, table, out, before, feedback


RUNS = ["serial_run", "parallel_run"]


def _grading_mounts_and_cgroups() -> set[str]:
    with open("/proc/mounts") as f:
        mounts = {line.split()[1] for line in f if "rnn-grading-" in line}
    groups = set()
    for hierarchy in ("memory", "pids"):
        base = f"/sys/fs/cgroup/{hierarchy}/rnn-grading"
        if os.path.isdir(base):
            groups |= {f"{base}/{n}" for n in os.listdir(base) if os.path.isdir(f"{base}/{n}")}
    return mounts | groups


BEFORE = _grading_mounts_and_cgroups()  # what other runs on this machine left: not ours to judge


def _expected(table):
    return {**{s: e for s, (_, e, _) in table.items()}, **{s: e for s, (_, e) in HONEST.items()}}


@pytest.mark.parametrize("run", RUNS)
def test_every_student_gets_exactly_the_expected_scores(run, request):
    course, table, out = request.getfixturevalue(run)
    assert out.returncode == 0 and "0 with grading errors" in out.stdout, out.stdout[-3000:]
    assert gradebook_scores(course, A, NB) == _expected(table), out.stdout[-3000:]


@pytest.mark.parametrize("run", RUNS)
def test_each_attack_is_reported_with_its_reason(run, request):
    course, table, _ = request.getfixturevalue(run)
    for student, (_, _, reason) in table.items():
        if reason:
            record = json.dumps(results(course, A, student))
            assert reason in record, f"{student}: {reason!r} not in {record[:1500]}"


def test_honest_students_graded_after_the_attackers_keep_full_marks(serial_run):
    course, _, out = serial_run
    workers = {json.loads((course / "reports" / "results" / A / f"{s}.json").read_text())["worker"] for s in HONEST}
    assert workers == {0}
    scores = gradebook_scores(course, A, NB)
    assert {s: scores[s] for s in HONEST} == {s: e for s, (_, e) in HONEST.items()}, out.stdout[-2000:]


def test_the_server_could_not_be_signalled(serial_run):
    course, _, _ = serial_run
    record = results(course, A, "a01_kill_server_from_kernel")
    assert record["notebooks"][NB]["incident"] is None


def _printed(course, student, marker):
    nb = nbformat.read(course / "autograded" / student / A / f"{NB}.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    return json.loads(text.split(marker + " ", 1)[1].splitlines()[0])


def test_nothing_persists_from_one_notebook_to_the_next(serial_run):
    course, _, _ = serial_run
    assert _printed(course, "a04_planter", "PLANT") == {"mkdir_job": False, "list_job": False, "write_mpl": False,
                                                          "write_tmp": True, "write_cwd": True}
    seen = _printed(course, "a05_observer", "OBSERVE")
    assert seen["tmp"] == [] and seen["job"] == "denied" and not seen["mpl_planted"]
    assert not any("planted" in name for name in seen["cwd"]), seen


def test_tampering_is_flagged_even_behind_a_broken_cell(serial_run):
    course, _, _ = serial_run
    for student in ("a06_recursion_cheat", "a16_syntax_error_hides_cheat", "a07_surrogate_cheat"):
        flags = " ".join(results(course, A, student)["notebooks"][NB]["flags"])
        assert "input transformer" in flags, f"{student}: {flags}"
    flags = " ".join(results(course, A, "a06_recursion_cheat")["notebooks"][NB]["flags"])
    assert "could not be parsed" in flags


def _student_visible(course, student):
    """Everything of this student's a student receives or an instructor's view renders from their data."""
    texts = [p.read_text(errors="replace") for p in (course / "feedback" / student).rglob("*.html")]
    db = sqlite3.connect(course / "gradebook.db")
    rows = db.execute(
        "select c.auto_comment, c.manual_comment from comment c join submitted_notebook n on c.notebook_id = n.id "
        "join submitted_assignment a on n.assignment_id = a.id where a.student_id = ?", (student,)).fetchall()
    assert all(manual is None for _, manual in rows), "the grader wrote a grader's (manual) comment"
    verifier = [auto for auto, _ in rows if auto and auto.startswith(VERIFIER_COMMENT)]
    assert verifier, "no verifier comment in the gradebook's auto_comment"
    return texts + [auto or "" for auto, _ in rows]


@pytest.mark.parametrize("student", ["a12_error_text_leak", "a07_surrogate_cheat", "a13_markdown_xss"])
def test_nothing_a_student_receives_carries_grader_internals_or_markup(serial_run, student):
    course, _, _ = serial_run
    texts = _student_visible(course, student)
    assert texts, "no feedback"
    for text in texts:
        assert '<b id="inj">' not in text and "def run_exercise" not in text and "def serve" not in text
        assert str(REPO) not in text and '<script>alert("xss-script")' not in text and "onerror=" not in text
    assert sum(len(t) for t in texts) < 2 * 2**20
    record = json.dumps(results(course, A, student))
    assert len(record) < 50_000 and "def run_exercise" not in record


def test_symlinked_submissions_never_show_the_solution(serial_run):
    course, _, _ = serial_run
    for student in ("a09_symlink_to_source", "a10_symlink_to_other", "a11_symlinked_folder"):
        for page in (course / "feedback" / student).rglob("*.html"):
            assert "BEGIN SOLUTION" not in page.read_text() and "torch.tanh" not in page.read_text()


def test_the_gradebook_is_intact_and_the_report_lists_everyone(serial_run):
    course, table, _ = serial_run
    db = sqlite3.connect(course / "gradebook.db")
    assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    assert db.execute("select count(*) from grade where manual_score is not null").fetchone() == (0,)
    assert db.execute("select count(*) from grade where auto_score is null").fetchone() == (0,)
    assert db.execute("select max(auto_score) from grade").fetchone()[0] <= 2
    report = (course / "reports" / "report.html").read_text()
    csv_text = (course / "reports" / "grades.csv").read_text()
    for student in [*table, *HONEST]:
        assert student in report and student in csv_text


def test_no_sandbox_process_mount_or_cgroup_outlives_the_run(serial_run, parallel_run):
    leftovers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    status = f.read()
            except OSError:
                continue
            if 61000 <= int(status.split("Uid:")[1].split()[0]) < 61100:
                leftovers.append(entry)
    assert not leftovers
    assert _grading_mounts_and_cgroups() <= BEFORE


def test_a_regrade_gives_the_same_scores_and_keeps_feedback_clean(regrade_run):
    course, table, out, before, _ = regrade_run
    assert out.returncode == 0, out.stdout[-3000:]
    assert gradebook_scores(course, A, NB) == before == _expected(table)
