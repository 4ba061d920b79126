"""Grade a class: nbgrader's autograde on every submission, in parallel workers, each with its
own sandboxed kernel server, then the out-of-kernel verifier, the gradebook reconciled, and
feedback written. The parent process shows progress and collects one record per submission.

Fail closed (see ``attempts.py``): nbgrader records every graded cell's ``auto_score`` as a
pending zero (``pending.py``), and a cell's score counts only once the verifier's verdict for it
is committed, as its ``auto_score``. Any grader-side error on a submission restores its earlier
verified grade, or sets its cells to 0 and marks it "grading error — regrade"; the run goes on
and the command's exit status says so.

Machine and human scores stay apart: the grader writes ``auto_score`` (and the verifier's
``auto_comment``); ``manual_score`` and ``manual_comment`` are the graders' (formgrader), which no
grading path writes, so a regrade never erases them and nbgrader's ``score`` prefers them.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from .attempts import discard_snapshot, gradebook_write, record_grading_error, save_snapshot
from .course import CourseError, load_config, open_api, working_directory
from .database import check_gradebook, is_transient
from .messages import VERIFIER_COMMENT, clean_text
from .pending import SavePendingGrades
from .pool import TaskFailure, WorkerPool
from .records import CellRecord, NotebookRecord, SubmissionResult, write_result
from .sandbox import (
    UNSANDBOXED_EXPOSURE,
    KernelServer,
    SandboxUnavailable,
    build_mpl_cache,
    cleanup_scratch,
    sandbox_problem,
    stage_package,
)
from .settings import GradingSettings, grading_config, load_settings
from .submissions import stage, students_with
from .tamper import scan_cells
from .verifier import checked_code, course_secret, submission_seed, verify_notebook

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", re.S)
INSTRUCTOR_SOURCES = ("instructor/exercises", "instructor/runtime")
MESSAGE_LIMIT = 1000


class GradingError(Exception):
    """A grader-side failure on one submission (not the student's fault)."""


@dataclass
class GradeOptions:
    jobs: int = 0
    sandboxed: bool = True
    verify: bool = True
    feedback: bool = True
    quiet: bool = False


def check_can_grade(root: Path, assignment: str, students: list[str] | None) -> list[str]:
    """Students to grade, or a CourseError that says what is missing."""
    if not (root / "source" / assignment).is_dir():
        known = sorted(p.name for p in (root / "source").iterdir() if p.is_dir()) if (root / "source").is_dir() else []
        raise CourseError(f"unknown assignment {assignment!r} (known: {', '.join(known) or 'none'})")
    config = load_config(root)
    check_gradebook(str(config.CourseDirectory.db_url), str(config.CourseDirectory.course_id), assignment)
    if not (root / "release" / assignment).is_dir():
        raise CourseError(f"no release/{assignment}: run `python -m grading release` first")
    found = students_with(root, assignment)
    if not found:
        raise CourseError(f"nothing to grade: no submitted/<student>/{assignment}/ folders in {root / 'submitted'}")
    if students:
        missing = sorted(set(students) - set(found))
        if missing:
            raise CourseError(f"no submission of {assignment} from {', '.join(missing)}")
        return sorted(students)
    return found


def secret_lines(root: Path, assignment: str) -> set[str]:
    """Lines no student-visible message may quote: the hidden tests, and the hidden checks' own source."""
    lines = set()
    for path in (root / "source" / assignment).glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            for block in HIDDEN.findall(cell.source):
                lines.update(line.strip() for line in block.splitlines() if len(line.strip()) >= 8)
    package = Path(__file__).resolve().parent.parent
    for rel in INSTRUCTOR_SOURCES:
        for path in (package / rel).rglob("*.py"):
            lines.update(line.strip() for line in path.read_text().splitlines() if len(line.strip()) >= 24)
    return lines


def scrub(message: str, secrets_: set[str]) -> str:
    if any(line in message for line in secrets_):
        return "the test failed (its details quote hidden tests and are withheld)"
    return message


def student_message(value: object, secrets_: set[str], limit: int = MESSAGE_LIMIT) -> str:
    """A message a student may read: bounded, valid UTF-8, and quoting nothing hidden."""
    return scrub(clean_text(value, limit), secrets_)


# ---------------------------------------------------------------- worker side

_WORKER: dict = {}


def _worker_init(index: int, root: str, options: GradeOptions, settings: GradingSettings, mpl: str,
                 staged_pkg: str | None, scratch: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import warnings

    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)  # nbgrader 0.9.6's API with SQLAlchemy 2.x
    from .cgroups import Cgroup

    group = Cgroup.create(f"{Path(scratch).name}-grader{index}") if options.sandboxed else None
    if group is not None:
        group.join()
        group.limit(memory_bytes=group.usage_bytes() + settings.grader_memory_mb * 2**20)
    server = KernelServer(index, options.sandboxed, Path(scratch) / f"w{index}", settings)
    server.start(Path(mpl), Path(staged_pkg) if staged_pkg else None)
    from .kernels import SandboxedExecute

    SandboxedExecute.server = server
    staged = Path(scratch) / "submitted"
    api = open_api(Path(root), grading_config(staged, settings, verify=options.verify))
    _WORKER.update(index=index, server=server, root=Path(root), options=options, staged=staged, api=api,
                   db_url=api.coursedir.db_url, course_id=api.coursedir.course_id, secret=course_secret(Path(root)),
                   secrets={}, cgroup=group)


def _worker_shutdown() -> None:
    server = _WORKER.get("server")
    if server is not None:
        server.stop()
    if _WORKER.get("cgroup") is not None:
        _WORKER["cgroup"].remove()


def _worker_task(task: tuple[str, str]) -> SubmissionResult:
    """Grade one submission; never raises (a grader-side error is recorded, failing closed)."""
    assignment, student = task
    w = _WORKER
    root = w["root"]
    started = time.monotonic()
    result = SubmissionResult(student, assignment, worker=w["index"])
    try:
        save_snapshot(root, w["db_url"], w["course_id"], assignment, student)
        _grade_one(w, result)
        discard_snapshot(root, assignment, student)
    except Exception as exc:  # noqa: BLE001 - one broken submission never stops the class
        (root / "reports" / "errors").mkdir(parents=True, exist_ok=True)
        (root / "reports" / "errors" / f"{assignment}-{student}.txt").write_text(
            clean_text(traceback.format_exc(), 20000, lines=400))
        reason = clean_text(f"{type(exc).__name__}: {exc}", 300)
        try:
            result = record_grading_error(root, w["db_url"], w["course_id"], assignment, student, reason, w["index"])
        except Exception as again:  # noqa: BLE001 - the parent records it instead
            raise GradingError(f"{reason}; recording it failed too: {again}") from None
    result.seconds["total"] = round(time.monotonic() - started, 3)
    return result


def _grade_one(w: dict, result: SubmissionResult) -> None:
    from .kernels import SandboxedExecute

    root, assignment, student = w["root"], result.assignment, result.student
    staged = stage(root, w["staged"], assignment, student)
    t0 = time.monotonic()
    SandboxedExecute.incidents = incidents = {}
    SandboxedExecute.durations = durations = {}
    SavePendingGrades.kernel_scores = kernels = {}
    if staged.notebooks:
        with working_directory(root):
            outcome = _nbgrader(lambda: w["api"].autograde(assignment, student, force=True, create=True))
        if not outcome["success"]:
            raise GradingError("nbgrader could not grade this submission: " + _last_error(outcome))
    result.seconds["autograde"] = round(time.monotonic() - t0, 3)
    t1 = time.monotonic()
    if assignment not in w["secrets"]:
        w["secrets"][assignment] = secret_lines(root, assignment)
    hidden = w["secrets"][assignment]
    notebooks = {}
    for name in staged.notebooks:
        autograded = root / "autograded" / student / assignment / f"{name}.ipynb"
        nb = nbformat.read(autograded, as_version=4)
        verdicts = None
        if w["options"].verify:
            seed = submission_seed(w["secret"], assignment, student, name, checked_code(nb))
            verdicts = verify_notebook(w["server"], assignment, name, nb, seed)
        notebooks[name] = (nb, verdicts)

    def commit(gb: Gradebook) -> dict:
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(assignment, student)
        records = {}
        for sub_nb in submission.notebooks:
            nb, verdicts = notebooks.get(sub_nb.name, (None, None))
            records[sub_nb.name] = _reconcile(gb, w["options"].verify, assignment, student, sub_nb, nb, verdicts,
                                              staged, incidents, durations, hidden, kernels)
        return records

    result.notebooks = gradebook_write(w["db_url"], w["course_id"], commit)
    if staged.anomalies.get("*"):
        result.notebooks.setdefault("*", {"score": 0, "max_score": 0, "cells": {}, "flags": [], "incident": None,
                                          "anomalies": staged.anomalies["*"]})
    result.seconds["verify"] = round(time.monotonic() - t1, 3)
    write_result(root, result)
    if w["options"].feedback and staged.notebooks:
        t2 = time.monotonic()
        with working_directory(root):
            done = _nbgrader(lambda: w["api"].generate_feedback(assignment, student, force=True))
        if not done.get("success"):
            raise GradingError("feedback could not be written: " + _last_error(done))
        result.seconds["feedback"] = round(time.monotonic() - t2, 3)


def _reconcile(gb, verify: bool, assignment: str, student: str, sub_nb, nb, verdicts, staged, incidents, durations,
               hidden: set[str], kernels: dict[tuple[str, str], float | None]) -> NotebookRecord:
    """Set every graded cell's ``auto_score`` of one notebook to its verified score (a grader's manual score,
    if any, stays and keeps counting); return the notebook's record for the reports."""
    name = sub_nb.name
    kernel_errors = _kernel_errors(nb) if nb is not None else {}
    cells: dict[str, CellRecord] = {}
    flags: list[str] = []
    for grade in sub_nb.grades:
        max_score = float(grade.max_score)
        # with the verifier on, auto_score holds the pending zero and the kernel's score was kept aside
        kernel = kernels.get((name, grade.name)) if verify else grade.auto_score
        if nb is None:
            grade.auto_score = 0.0
            grade.needs_manual_grade = grade.manual_score is not None
            reason = "; ".join(staged.anomalies.get(name, [])) or "not graded"
            cells[grade.name] = {"score": 0.0, "max_score": max_score, "message": clean_text(reason, MESSAGE_LIMIT),
                                 "kernel_score": None}
            continue
        if verdicts is not None and grade.name in verdicts.verdicts:
            message = verdicts.verdicts[grade.name]
            final = max_score if message is None else 0.0
            if kernel is None or abs(kernel - final) > 1e-9:
                flags.append(f"{grade.name}: the notebook's own tests gave {_pts(kernel)}/{_pts(max_score)}, "
                             f"the out-of-kernel check {_pts(final)}/{_pts(max_score)} (which counts)")
        elif not verify:
            final = float(kernel or 0.0)
            message = kernel_errors.get(grade.name) if final < max_score else None
        else:
            final, message = 0.0, "this test cell has no out-of-kernel check, so it cannot count: ask your instructor"
        grade.auto_score = final
        if final < max_score and not message:
            message = kernel_errors.get(grade.name) or incidents.get(name) or "this test failed"
        cells[grade.name] = {"score": final, "max_score": max_score,
                             "message": None if message is None else student_message(message, hidden),
                             "kernel_score": kernel}
    if verdicts is not None:
        _comment_on_solutions(gb, assignment, student, name, verdicts, cells)
    if nb is not None:
        for finding in scan_cells(_student_cells(nb), _protected_names(nb)):
            flags.append(f"tampering: {finding}")
    return {
        "score": sum(c["score"] for c in cells.values()),
        "max_score": sum(c["max_score"] for c in cells.values()),
        "cells": cells,
        "flags": flags,
        "anomalies": [clean_text(a, 300) for a in staged.anomalies.get(name, [])],
        "incident": incidents.get(name),
        "verify_seconds": round(verdicts.seconds, 3) if verdicts else None,
        "execute_seconds": durations.get(name),
    }


def _nbgrader(call: Callable[[], dict], attempts: int = 8) -> dict:
    """Run an nbgrader API call, again while the database reports a lock or a deadlock (another grader writing)."""
    outcome: dict = {"success": False}
    for attempt in range(attempts):
        outcome = call()
        if outcome["success"] or not is_transient(outcome.get("log", "") + outcome.get("error", "")):
            return outcome
        time.sleep(min(0.5 * 2**attempt, 8.0))
    return outcome


def _pts(value) -> str:
    return "none" if value is None else f"{value:g}"


def _last_error(outcome: dict) -> str:
    text = (outcome.get("error") or outcome.get("log") or "").strip().splitlines()
    return clean_text(text[-1], 300) if text else "unknown error"


def _kernel_errors(nb: nbformat.NotebookNode) -> dict[str, str]:
    """test cell grade_id -> 'ename: evalue' of its error, as the kernel reported it (student-controlled)."""
    errors = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not isinstance(meta, dict) or not meta.get("grade"):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors[meta["grade_id"]] = clean_text(f"{out.get('ename', 'Error')}: {out.get('evalue', '')}", 300)
            elif out.get("output_type") == "stream" and out.get("name") == "stderr" and meta["grade_id"] not in errors:
                errors[meta["grade_id"]] = "the test cell wrote to stderr (nbgrader scores such a cell zero)"
    return errors


def _protected_names(nb: nbformat.NotebookNode) -> set[str]:
    """Names the notebook's read-only cells import for the tests (checks, torch, ...)."""
    from .verifier import setup_imports

    names = set()
    try:
        tree = ast.parse(setup_imports(nb) or "pass")
    except (SyntaxError, RecursionError, ValueError):
        return names
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _student_cells(nb: nbformat.NotebookNode) -> list[str]:
    """Every code cell the student could write: solution cells and cells they added."""
    sources = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if cell.cell_type == "code" and (not isinstance(meta, dict) or meta.get("solution")):
            sources.append(cell.source)
    return sources


def _comment_on_solutions(gb, assignment, student, notebook, verdicts, cells) -> None:
    """Put the out-of-kernel verdicts on each exercise's solution cell, where nbgrader's views show comments."""
    from nbgrader.api import MissingEntry

    by_exercise: dict[str, list[str]] = {}
    for tid, exercise in verdicts.exercise_of.items():
        cell = cells.get(tid, {})
        line = f"{tid}: {_pts(cell.get('score'))}/{_pts(cell.get('max_score'))}"
        if cell.get("message") and cell.get("score", 0) < cell.get("max_score", 0):
            line += f" ({cell['message']})"
        by_exercise.setdefault(exercise, []).append(line)
    for exercise, lines in by_exercise.items():
        try:
            comment = gb.find_comment(exercise, notebook, assignment, student)
        except MissingEntry:
            continue
        comment.auto_comment = clean_text(VERIFIER_COMMENT + "; ".join(lines), 2000)


# ---------------------------------------------------------------- parent side

def grade(root: Path, assignment: str, students: list[str] | None = None, options: GradeOptions | None = None,
          scratch: Path | None = None) -> list[SubmissionResult]:
    """Grade ``assignment`` for ``students`` (default: everyone in submitted/); returns one record each."""
    options = options or GradeOptions()
    root = root.resolve()
    settings = load_settings(root)
    todo = check_can_grade(root, assignment, students)
    if options.sandboxed:
        problem = sandbox_problem()
        if problem:
            raise SandboxUnavailable(f"cannot sandbox student code: {problem}. To grade anyway, pass --unsandboxed. "
                                     + UNSANDBOXED_EXPOSURE)
    jobs = options.jobs or min(os.cpu_count() or 1, len(todo))
    jobs = max(1, min(jobs, len(todo)))
    own_scratch = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="rnn-grading-")) if own_scratch else scratch
    os.chmod(scratch, 0o755)
    api = open_api(root)
    db_url, course_id = api.coursedir.db_url, api.coursedir.course_id
    budget = settings.submission_budget(len(list((root / "release" / assignment).glob("*.ipynb"))))
    try:
        mpl = scratch / "mpl"
        build_mpl_cache(mpl)
        staged_pkg = stage_package(scratch / "package") if options.sandboxed else None
        course_secret(root)

        def init(index: int) -> None:
            _worker_init(index, str(root), options, settings, str(mpl), str(staged_pkg) if staged_pkg else None,
                         str(scratch))

        pool = WorkerPool(jobs, init, _worker_task, deadline=lambda task: budget, shutdown=_worker_shutdown)
        results: list[SubmissionResult] = []
        progress = Progress(len(todo), quiet=options.quiet)
        try:
            for outcome in pool.map([(assignment, s) for s in todo]):
                if isinstance(outcome, TaskFailure):
                    _, student = outcome.task
                    outcome = record_grading_error(root, db_url, course_id, assignment, student, outcome.reason)
                results.append(outcome)
                progress.update(outcome)
        except Exception as exc:
            from .pool import PoolStartError

            if isinstance(exc, PoolStartError):
                raise SandboxUnavailable(f"a grading worker could not start: {exc}") from None
            raise
        progress.finish()
        return sorted(results, key=lambda r: r.student)
    finally:
        cleanup_scratch(scratch)
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


class Progress:
    """A one-line progress bar with ETA on a terminal; one line per submission otherwise."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.done, self.quiet = total, 0, quiet
        self.started = time.monotonic()
        self.tty = sys.stdout.isatty()

    def update(self, result: SubmissionResult) -> None:
        self.done += 1
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        width = 24
        filled = int(width * self.done / self.total)
        status = f"{result.score:g}/{result.max_score:g}"
        if result.grading_error:
            status = "GRADING ERROR (earlier grade kept)" if result.kept_previous else "GRADING ERROR"
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}  "
                f"{result.assignment}/{result.student}: {status}  elapsed {elapsed:5.1f}s  ETA {eta:5.1f}s")
        if self.tty:
            print("\r" + line.ljust(110), end="", flush=True)
        else:
            print(line, flush=True)

    def finish(self) -> None:
        if self.tty and not self.quiet:
            print()
