"""Fail closed: a score counts only once the verifier's verdict is committed.

Grader-side failures are injected into real grading runs (real nbgrader, real sandbox, real
worker processes; the fault is patched into the grader before its workers fork): a crash
between nbgrader's save and the verdict, a worker that dies, a submission over its budget,
a kernel server that cannot start or is stopped, a gradebook held locked.

The machine's scores live in ``auto_score`` (a pending 0 until the verdict is committed), a
grader's in ``manual_score``, which no grading path writes: a regrade, a failed regrade and a
fail-closed zero all leave it, and it keeps counting.
"""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from conftest import gradebook_scores, grading, new_course, results, submit, with_solution
from grading.instructor import autograde, grader, sandbox
from grading.instructor.autograde import GradeOptions, grade
from grading.instructor.database import db_url
from grading.instructor.messages import VERIFIER_COMMENT
from grading.instructor.pending import SavePendingGrades
from rnn_cell_class import ALL_ZERO, CHEAT, FULL, NB, REF, A

pytestmark = pytest.mark.slow  # runs nbgrader, kernels or the sandbox end to end

BLANK_CHEAT = with_solution(
    with_solution(REF, "rnn_cell_step", "def rnn_cell_step(*args):\n    raise NotImplementedError()\n" + CHEAT),
    "run_cell", "def run_cell(*args):\n    raise NotImplementedError()\n")
OPTIONS = GradeOptions(jobs=1, quiet=True)
HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=0)
db.execute("begin exclusive")
print("locked", flush=True)
time.sleep(8)
db.rollback()
"""


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = new_course(tmp_path_factory.mktemp("failclosed"), [A])
    submit(root, "cheater", A, {NB: BLANK_CHEAT})
    submit(root, "honest", A, {NB: REF})
    return root


def _feedback(root, student):
    return {p.name: p.read_bytes() for p in (root / "feedback" / student / A).glob("*.html")}


def _crash(*args, **kwargs):
    raise RuntimeError("injected failure between nbgrader's save and the verdict")


def _grade_rows(root, assignment=A):
    """(student, notebook, cell) -> (auto_score, manual_score) of every graded cell in the gradebook."""
    with Gradebook(db_url(root), "rnn-course") as gb:
        return {(sub.student.id, nb.name, g.name): (g.auto_score, g.manual_score)
                for sub in gb.find_assignment(assignment).submissions for nb in sub.notebooks for g in nb.grades}


def _job_rows():
    """In a pool worker: (student, notebook, cell) -> (auto_score, manual_score) in the job's own gradebook."""
    [path] = (autograde._LOCAL["grader"].scratch / "jobs").glob("*/gradebook.db")
    with Gradebook(f"sqlite:///{path}", "rnn-course") as gb:
        return {(sub.student.id, nb.name, g.name): (g.auto_score, g.manual_score)
                for sub in gb.find_assignment(A).submissions for nb in sub.notebooks for g in nb.grades}


def test_a_crash_before_the_verdict_leaves_zeros_on_a_first_grading(course, monkeypatch, tmp_path):
    seen = tmp_path / "pending.jsonl"

    def look_then_crash(*args, **kwargs):
        """In the worker, between nbgrader's save and the verdict: what the gradebooks hold, and the kernel's say."""
        job_rows = {"/".join(k): v for k, v in _job_rows().items()}
        student = {k.split("/")[0] for k in job_rows}
        course_rows = {"/".join(k): v for k, v in _grade_rows(course).items() if k[0] in student}
        kernel = {"/".join(k): v for k, v in SavePendingGrades.kernel_scores.items()}
        with open(seen, "a") as f:
            f.write(json.dumps({"course": course_rows, "job": job_rows, "kernel": kernel}) + "\n")
        _crash()

    monkeypatch.setattr(grader, "verify_notebook", look_then_crash)
    results = {r.student: r for r in grade(course, A, options=OPTIONS)}
    assert gradebook_scores(course, A, NB) == {"cheater": ALL_ZERO, "honest": ALL_ZERO}
    for result in results.values():
        assert "grading error — regrade" in result.grading_error and not result.kept_previous
    assert not _feedback(course, "cheater") and not _feedback(course, "honest")
    # the pending state: the course's gradebook holds nothing of the attempt (workers never write it); in the job's
    # own gradebook each cell's auto_score is 0 and nothing is in manual_score, while the kernel (fooled by the
    # cheat, or right) had given full marks, kept aside for the results file only
    observed = [json.loads(line) for line in seen.read_text().splitlines()]
    assert len(observed) == 2
    for seen_now in observed:
        assert not seen_now["course"]
        assert seen_now["kernel"] == {f"{NB}/{cell}": points for cell, points in FULL.items()}
        pending = {k: v for k, v in seen_now["job"].items() if k.split("/")[1] == NB}
        assert pending and all(v == [0.0, None] for v in pending.values()), pending


def test_a_clean_regrade_then_gives_the_verified_grades(course):
    grade(course, A, options=OPTIONS)
    assert gradebook_scores(course, A, NB) == {"cheater": ALL_ZERO, "honest": FULL}
    assert _feedback(course, "honest")


def test_a_failed_regrade_keeps_the_earlier_verified_grade_and_its_feedback(course, monkeypatch):
    before = _feedback(course, "honest")
    monkeypatch.setattr(grader, "verify_notebook", _crash)
    results = {r.student: r for r in grade(course, A, options=OPTIONS)}
    assert gradebook_scores(course, A, NB) == {"cheater": ALL_ZERO, "honest": FULL}
    assert results["honest"].kept_previous and "grading error" in results["honest"].grading_error
    assert _feedback(course, "honest") == before
    record = json.loads((course / "reports" / "results" / A / "honest.json").read_text())
    assert record["kept_previous"] and record["notebooks"][NB]["score"] == 4


def test_a_dead_worker_is_replaced_and_the_class_goes_on(course, monkeypatch):
    real = grader.Grader._grade

    def die_on_honest(self, job, folder):
        if job.student == "honest":
            os._exit(9)
        return real(self, job, folder)

    monkeypatch.setattr(grader.Grader, "_grade", die_on_honest)
    results = {r.student: r for r in grade(course, A, options=OPTIONS)}
    assert "died twice" in results["honest"].grading_error and results["honest"].kept_previous
    assert results["cheater"].grading_error is None
    assert gradebook_scores(course, A, NB) == {"cheater": ALL_ZERO, "honest": FULL}


@contextlib.contextmanager
def _slowed(course, students):
    """The students' notebooks start with a 5 s sleep (first, so that no cheat installed by a later cell can turn it
    into ``pass``): a whole submission grades in less than the 1 s budget the tests give; restored afterwards."""
    submitted = [course / "submitted" / student / A / f"{NB}.ipynb" for student in students]
    kept = {path: path.read_bytes() for path in submitted}
    for path in submitted:
        nb = nbformat.read(path, as_version=4)
        nb.cells.insert(0, nbformat.v4.new_code_cell("import time\ntime.sleep(5)"))
        nbformat.write(nb, path)
    try:
        yield
    finally:
        for path, data in kept.items():
            path.write_bytes(data)


def test_a_submission_over_its_budget_is_a_grading_error_with_its_own_exit_status(course):
    """Both submissions start with a 5 s sleep, against a budget of 1 s."""
    with _slowed(course, ("cheater", "honest")):
        out = grading("grade", A, "--jobs", "1", root=course, check=False, env={"GRADING_SUBMISSION_TIMEOUT": "1"})
    assert out.returncode == 3, out.stdout[-2000:] + out.stderr[-2000:]
    assert "longer than its budget" in out.stdout and "exit status 3" in out.stdout
    assert gradebook_scores(course, A, NB) == {"cheater": ALL_ZERO, "honest": FULL}
    rows = (course / "reports" / "grades.csv").read_text().splitlines()
    assert "grading_error" in rows[0] and all(A in row for row in rows[1:])
    assert "Grading errors" in (course / "reports" / "report.html").read_text()


def test_a_server_that_cannot_start_is_a_clear_error_within_a_minute(course, monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_command",
                        lambda *a: ["sh", "-c", "echo grading-is-not-importable-here >&2; exit 1"])
    started = time.monotonic()
    with pytest.raises(sandbox.SandboxUnavailable, match="grading-is-not-importable-here"):
        grade(course, A, ["honest"], options=OPTIONS)
    assert time.monotonic() - started < 60


def test_a_stopped_server_is_replaced_before_the_next_notebook(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(scratch, 0o755)
    sandbox.build_mpl_cache(scratch / "mpl")
    server = sandbox.KernelServer(0, True, scratch / "w0")
    server.start(scratch / "mpl", sandbox.stage_package(scratch / "package"))
    try:
        pids = [int(p) for p in (server.cgroup.memory / "cgroup.procs").read_text().split()]
        commands = {p: Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0") for p in pids}
        zygote = [p for p, argv in commands.items() if b"zygote" in argv[-2] and b"bwrap" not in argv[0]]
        assert zygote
        os.kill(zygote[0], signal.SIGSTOP)
        job = server.new_job()
        assert server.restarts == 1 and server.healthy()
        server.finish_job(job)
    finally:
        server.stop()
        sandbox.cleanup_scratch(scratch)


def test_a_locked_gradebook_is_waited_for(course):
    """Another process (a second grader, formgrader) holds the gradebook for 8 s while a student is graded."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(course / "gradebook.db")], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    try:
        results = grade(course, A, ["honest"], options=OPTIONS)
    finally:
        holder.wait(60)
    assert results[0].grading_error is None
    assert gradebook_scores(course, A, NB)["honest"] == FULL


def _enter_manual(root, student, cell, score, comment_on=None, comment=None):
    """What a grader does in formgrader: a manual score on one test cell (and a comment on a solution cell)."""
    with Gradebook(db_url(root), "rnn-course") as gb:
        grade = gb.find_grade(cell, NB, A, student)
        grade.manual_score, grade.needs_manual_grade = score, False
        if comment_on:
            gb.find_comment(comment_on, NB, A, student).manual_comment = comment
        gb.db.commit()


def _cell(root, student, cell):
    with Gradebook(db_url(root), "rnn-course") as gb:
        g = gb.find_grade(cell, NB, A, student)
        return g.auto_score, g.manual_score, g.score


def _comment(root, student, cell):
    with Gradebook(db_url(root), "rnn-course") as gb:
        c = gb.find_comment(cell, NB, A, student)
        return c.auto_comment, c.manual_comment


def test_a_regrade_and_a_failed_regrade_keep_a_graders_manual_score(course):
    _enter_manual(course, "honest", "test_run_cell", 1.5, "run_cell", "Ask me about h0.")
    grading("grade", A, "--student", "honest", "--jobs", "1", root=course)
    assert _cell(course, "honest", "test_run_cell") == (2.0, 1.5, 1.5)  # verified 2, the grader's 1.5 counts
    assert _cell(course, "honest", "test_rnn_cell_step") == (2.0, None, 2.0)
    auto, manual = _comment(course, "honest", "run_cell")
    assert manual == "Ask me about h0." and auto.startswith(VERIFIER_COMMENT)
    assert results(course, A, "honest")["notebooks"][NB]["cells"]["test_run_cell"]["score"] == 2.0
    with open(course / "reports" / "grades.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["student"] == "honest")
    assert row[f"{A}/{NB}"] == "3.5" and row["grading_error"] == ""

    with _slowed(course, ("honest",)):
        out = grading("grade", A, "--student", "honest", "--jobs", "1", root=course, check=False,
                      env={"GRADING_SUBMISSION_TIMEOUT": "1"})
    assert out.returncode == 3 and results(course, A, "honest")["kept_previous"], out.stdout[-2000:]
    assert _cell(course, "honest", "test_run_cell") == (2.0, 1.5, 1.5)
    assert _comment(course, "honest", "run_cell")[1] == "Ask me about h0."


def test_a_fail_closed_zero_keeps_a_graders_manual_score(course, monkeypatch):
    submit(course, "newcomer", A, {NB: REF})
    monkeypatch.setattr(grader, "verify_notebook", _crash)
    grade(course, A, ["newcomer"], options=OPTIONS)  # a grading error on a first grading: zeros, nothing verified
    assert _cell(course, "newcomer", "test_rnn_cell_step") == (0.0, None, 0.0)
    _enter_manual(course, "newcomer", "test_rnn_cell_step", 1.0)
    [again] = grade(course, A, ["newcomer"], options=OPTIONS)
    assert again.grading_error and not again.kept_previous
    assert _cell(course, "newcomer", "test_rnn_cell_step") == (0.0, 1.0, 1.0)
    assert _cell(course, "newcomer", "test_run_cell") == (0.0, None, 0.0)
    monkeypatch.undo()
    [clean] = grade(course, A, ["newcomer"], options=OPTIONS)
    assert clean.grading_error is None
    assert _cell(course, "newcomer", "test_rnn_cell_step") == (2.0, 1.0, 1.0)
    assert _cell(course, "newcomer", "test_run_cell") == (2.0, None, 2.0)


def test_the_secret_is_never_readable_by_others(tmp_path):
    from grading.instructor.verifier import course_secret

    old = os.umask(0)
    try:
        course_secret(tmp_path)
    finally:
        os.umask(old)
    assert (tmp_path / ".grading_secret").stat().st_mode & 0o777 == 0o600
