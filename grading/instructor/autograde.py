"""Grade a class: nbgrader's autograde on every submission, in parallel workers, each with its
own sandboxed kernel server, then the out-of-kernel verifier, the gradebook reconciled, and
feedback written. The parent process shows progress and collects one record per submission.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from .course import CourseError, open_api, working_directory
from .feedback import results_path
from .sandbox import (UNSANDBOXED_EXPOSURE, KernelServer, SandboxUnavailable, build_mpl_cache, sandbox_problem,
                      stage_package)
from .settings import grading_config
from .submissions import stage, students_with
from .tamper import scan
from .verifier import course_secret, submission_seed, verify_notebook

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", re.S)


@dataclass
class SubmissionResult:
    """Everything the reports need about one (student, assignment)."""

    student: str
    assignment: str
    notebooks: dict = field(default_factory=dict)  # name -> {score, max_score, cells, flags, anomalies, incident}
    error: str | None = None
    seconds: dict = field(default_factory=dict)  # autograde / verify / feedback / total
    worker: int = 0

    @property
    def score(self) -> float:
        return sum(n["score"] for n in self.notebooks.values())

    @property
    def max_score(self) -> float:
        return sum(n["max_score"] for n in self.notebooks.values())


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
    if not (root / "gradebook.db").exists():
        raise CourseError(f"no gradebook at {root / 'gradebook.db'}: run `python -m grading release` first")
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


def hidden_lines(root: Path, assignment: str) -> set[str]:
    """Lines of the hidden tests of an assignment (to keep them out of every message)."""
    lines = set()
    for path in (root / "source" / assignment).glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            for block in HIDDEN.findall(cell.source):
                lines.update(line.strip() for line in block.splitlines() if len(line.strip()) >= 8)
    return lines


def scrub(message: str, secret_lines: set[str]) -> str:
    if any(line in message for line in secret_lines):
        return "the test failed (its details quote hidden tests and are withheld)"
    return message


# ---------------------------------------------------------------- worker side

_WORKER: dict = {}


def _worker_init(root: str, index_queue, options: GradeOptions, mpl: str, staged_pkg: str | None, scratch: str) -> None:
    index = index_queue.get()
    os.environ["OMP_NUM_THREADS"] = "1"
    import warnings

    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)  # nbgrader 0.9.6's API with SQLAlchemy 2.x
    server = KernelServer(index, options.sandboxed, Path(scratch) / f"w{index}")
    server.start(Path(mpl), Path(staged_pkg) if staged_pkg else None)
    from .kernels import SandboxedExecute

    SandboxedExecute.server = server
    staged = Path(scratch) / "submitted"
    _WORKER.update(index=index, server=server, mpl=Path(mpl), staged_pkg=Path(staged_pkg) if staged_pkg else None, root=Path(root), options=options, staged=staged,
                   api=open_api(Path(root), grading_config(staged)), secret=course_secret(Path(root)), hidden={})


def _worker_task(task: tuple[str, str]) -> SubmissionResult:
    assignment, student = task
    w = _WORKER
    started = time.monotonic()
    result = SubmissionResult(student, assignment, worker=w["index"])
    try:
        _grade_one(w, result)
    except Exception as exc:  # noqa: BLE001 - one broken submission never stops the class
        result.error = f"{type(exc).__name__}: {exc}"
        (w["root"] / "reports" / "errors").mkdir(parents=True, exist_ok=True)
        (w["root"] / "reports" / "errors" / f"{assignment}-{student}.txt").write_text(traceback.format_exc())
        if not w["server"].alive():
            w["server"].start(w["mpl"], w["staged_pkg"])
    result.seconds["total"] = round(time.monotonic() - started, 3)
    return result


def _grade_one(w: dict, result: SubmissionResult) -> None:
    from .kernels import SandboxedExecute

    root, assignment, student = w["root"], result.assignment, result.student
    staged = stage(root, w["staged"], assignment, student)
    t0 = time.monotonic()
    SandboxedExecute.incidents = incidents = {}
    SandboxedExecute.durations = durations = {}
    outcome = {"success": True}
    if staged.notebooks:
        with working_directory(root):
            for attempt in range(4):
                outcome = w["api"].autograde(assignment, student, force=True, create=True)
                if outcome["success"] or "database is locked" not in (outcome.get("log", "") + outcome.get("error", "")):
                    break
                time.sleep(0.5 * (attempt + 1))
    else:
        with Gradebook(w["api"].coursedir.db_url, w["api"].coursedir.course_id) as gb:
            gb.update_or_create_student(student)
    result.seconds["autograde"] = round(time.monotonic() - t0, 3)
    if not outcome["success"]:
        result.error = "nbgrader could not grade this submission: " + _last_error(outcome)
    t1 = time.monotonic()
    if assignment not in w["hidden"]:
        w["hidden"][assignment] = hidden_lines(root, assignment)
    secret_lines = w["hidden"][assignment]
    with Gradebook(w["api"].coursedir.db_url, w["api"].coursedir.course_id) as gb:
        submission = gb.update_or_create_submission(assignment, student)
        for sub_nb in submission.notebooks:
            name = sub_nb.name
            autograded = root / "autograded" / student / assignment / f"{name}.ipynb"
            nb = nbformat.read(autograded, as_version=4) if autograded.exists() and name in staged.notebooks else None
            kernel_errors = _kernel_errors(nb, secret_lines) if nb is not None else {}
            verdicts = None
            if w["options"].verify and nb is not None:
                seed = submission_seed(w["secret"], assignment, student, name)
                verdicts = verify_notebook(w["server"], assignment, name, nb, seed)
            cells, flags = {}, []
            for grade in sub_nb.grades:
                max_score = float(grade.max_score)
                kernel = grade.auto_score
                if nb is None:
                    grade.auto_score, grade.manual_score, grade.needs_manual_grade = 0.0, None, False
                    reason = "; ".join(staged.anomalies.get(name, [])) or "not graded"
                    cells[grade.name] = {"score": 0.0, "max_score": max_score, "message": reason, "kernel_score": None}
                    continue
                if verdicts is not None and grade.name in verdicts.verdicts:
                    message = verdicts.verdicts[grade.name]
                    final = max_score if message is None else 0.0
                    if kernel is None or abs(kernel - final) > 1e-9:
                        grade.manual_score = final
                        flags.append(f"{grade.name}: the notebook's own tests gave {_pts(kernel)}/{_pts(max_score)}, "
                                     f"the out-of-kernel check {_pts(final)}/{_pts(max_score)} (which counts)")
                    else:
                        grade.manual_score = None
                else:
                    final = float(grade.score)
                    message = kernel_errors.get(grade.name) if final < max_score else None
                if final < max_score and not message:
                    message = kernel_errors.get(grade.name) or incidents.get(name) or "this test failed"
                cells[grade.name] = {"score": final, "max_score": max_score, "message": message, "kernel_score": kernel}
            if verdicts is not None:
                _comment_on_solutions(gb, assignment, student, name, verdicts, cells)
            student_code = _student_code(nb) if nb is not None else ""
            for finding in scan(student_code, _protected_names(nb) if nb is not None else set()):
                flags.append(f"tampering: {finding}")
            result.notebooks[name] = {
                "score": sum(c["score"] for c in cells.values()),
                "max_score": sum(c["max_score"] for c in cells.values()),
                "cells": cells,
                "flags": flags,
                "anomalies": staged.anomalies.get(name, []),
                "incident": incidents.get(name),
                "verify_seconds": round(verdicts.seconds, 3) if verdicts else None,
                "execute_seconds": durations.get(name),
            }
        gb.db.commit()
    if staged.anomalies.get("*"):
        result.notebooks.setdefault("*", {"score": 0, "max_score": 0, "cells": {}, "flags": [], "incident": None,
                                          "anomalies": staged.anomalies["*"]})
    result.seconds["verify"] = round(time.monotonic() - t1, 3)
    path = results_path(root, assignment, student)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result), indent=1))
    if w["options"].feedback and any(n in staged.notebooks for n in result.notebooks):
        t2 = time.monotonic()
        with working_directory(root):
            w["api"].generate_feedback(assignment, student, force=True)
        result.seconds["feedback"] = round(time.monotonic() - t2, 3)


def _pts(value) -> str:
    return "none" if value is None else f"{value:g}"


def _last_error(outcome: dict) -> str:
    text = (outcome.get("error") or outcome.get("log") or "").strip().splitlines()
    return text[-1][:300] if text else "unknown error"


def _kernel_errors(nb: nbformat.NotebookNode, secret_lines: set[str]) -> dict[str, str]:
    """test cell grade_id -> 'ename: evalue' of its error (scrubbed of hidden test text)."""
    errors = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                text = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"[:1500]
                errors[meta["grade_id"]] = scrub(text, secret_lines)
            elif out.get("output_type") == "stream" and out.get("name") == "stderr" and meta["grade_id"] not in errors:
                errors[meta["grade_id"]] = "the test cell wrote to stderr (nbgrader scores such a cell zero)"
    return errors


def _protected_names(nb: nbformat.NotebookNode) -> set[str]:
    """Names the notebook's read-only cells import for the tests (checks, torch, ...)."""
    import ast

    from .verifier import setup_imports

    names = set()
    for node in ast.walk(ast.parse(setup_imports(nb) or "pass")):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _student_code(nb: nbformat.NotebookNode) -> str:
    """Every code cell the student could write: solution cells and cells they added."""
    parts = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if cell.cell_type == "code" and (not isinstance(meta, dict) or meta.get("solution")):
            parts.append(cell.source)
    return "\n\n".join(parts)


def _comment_on_solutions(gb, assignment, student, notebook, verdicts, cells) -> None:
    """Put the out-of-kernel verdicts on each exercise's solution cell, where nbgrader's views show comments."""
    from nbgrader.api import MissingEntry

    by_exercise: dict[str, list[str]] = {}
    for tid, exercise in verdicts.exercise_of.items():
        cell = cells.get(tid, {})
        line = f"{tid}: {_pts(cell.get('score'))}/{_pts(cell.get('max_score'))}"
        if verdicts.verdicts.get(tid):
            line += f" ({verdicts.verdicts[tid]})"
        by_exercise.setdefault(exercise, []).append(line)
    for exercise, lines in by_exercise.items():
        try:
            comment = gb.find_comment(exercise, notebook, assignment, student)
        except MissingEntry:
            continue
        comment.manual_comment = "Checked outside the notebook: " + "; ".join(lines)


# ---------------------------------------------------------------- parent side

def grade(root: Path, assignment: str, students: list[str] | None = None, options: GradeOptions | None = None,
          scratch: Path | None = None) -> list[SubmissionResult]:
    """Grade ``assignment`` for ``students`` (default: everyone in submitted/); returns one record each."""
    options = options or GradeOptions()
    root = root.resolve()
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
    try:
        mpl = scratch / "mpl"
        build_mpl_cache(mpl)
        staged_pkg = stage_package(scratch / "package") if options.sandboxed else None
        course_secret(root)
        ctx = multiprocessing.get_context("fork")
        indices = ctx.Queue()
        for i in range(jobs):
            indices.put(i)
        results: list[SubmissionResult] = []
        progress = Progress(len(todo), quiet=options.quiet)
        with ctx.Pool(jobs, initializer=_worker_init,
                      initargs=(str(root), indices, options, str(mpl), str(staged_pkg) if staged_pkg else None,
                                str(scratch))) as pool:
            for result in pool.imap_unordered(_worker_task, [(assignment, s) for s in todo]):
                results.append(result)
                progress.update(result)
            pool.close()
            pool.join()
        progress.finish()
        return sorted(results, key=lambda r: r.student)
    finally:
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
        status = "ERROR" if result.error else f"{result.score:g}/{result.max_score:g}"
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}  "
                f"{result.assignment}/{result.student}: {status}  elapsed {elapsed:5.1f}s  ETA {eta:5.1f}s")
        if self.tty:
            print("\r" + line.ljust(110), end="", flush=True)
        else:
            print(line, flush=True)

    def finish(self) -> None:
        if self.tty and not self.quiet:
            print()
