"""The grading worker's side: one process, one sandboxed kernel server, one job at a time.

``Grader.run(job)`` grades one submission in a throwaway course folder: nbgrader's autograde against
the job's own gradebook (``job_gradebook.py``), with the kernel scores held at pending zeros
(``pending.py``); the out-of-kernel verifier, whose verdicts decide each cell; the feedback. It
returns a ``JobResult`` and leaves nothing behind. The same code runs in the local pool's worker
processes and in Dask workers on other machines (``worker.py``): it needs the worker's package
parts, the course's ``nbgrader_config.py`` and ``release/``, and nothing secret.
"""

from __future__ import annotations

import ast
import os
import re
import secrets
import shutil
import time
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from .exercises.data import data_folder, write_data
from .job_gradebook import machine_rows, put_student_rows
from .jobs import GradingJob, JobResult, check_version, worker_version
from .late import apply_penalties, plugin_config
from .messages import VERIFIER_COMMENT, clean_text
from .pending import SavePendingGrades
from .records import CellRecord, NotebookRecord, SubmissionResult, write_result
from .sandbox import KernelServer, build_mpl_cache, cleanup_scratch, stage_package
from .settings import GradingSettings, grading_config
from .tamper import scan_cells
from .term import LatePolicy
from .verifier import checked_code, submission_seed, verify_notebook

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", re.S)
INSTRUCTOR_SOURCES = ("instructor/exercises", "instructor/runtime")
MESSAGE_LIMIT = 1000
SLOWEST_CELLS = 5  # per notebook, kept in the results for the benchmark's split
FILE_LIMIT_BYTES = 64 * 2**20  # all the files one job sends back


class GradingError(Exception):
    """A grader-side failure on one submission (not the student's fault)."""


def settings_values(settings: GradingSettings) -> dict:
    """The settings as plain values, to send with a job."""
    return {name: getattr(settings, name) for name in settings.trait_names(config=True)}


def settings_from(values: dict) -> GradingSettings:
    config = Config()
    for name, value in values.items():
        config.GradingSettings[name] = value
    return GradingSettings(config=config)


def scrub(message: str, secrets_: set[str]) -> str:
    if any(line in message for line in secrets_):
        return "the test failed (its details quote hidden tests and are withheld)"
    return message


def student_message(value: object, secrets_: set[str], limit: int = MESSAGE_LIMIT) -> str:
    """A message a student may read: bounded, valid UTF-8, and quoting nothing hidden."""
    return scrub(clean_text(value, limit), secrets_)


def secret_lines(gb: Gradebook, assignment: str, package_root: Path) -> set[str]:
    """Lines no student-visible message may quote: the hidden tests, and the hidden checks' own source."""
    lines = set()
    for nb in gb.find_assignment(assignment).notebooks:
        for cell in nb.source_cells:
            for block in HIDDEN.findall(cell.source or ""):
                lines.update(line.strip() for line in block.splitlines() if len(line.strip()) >= 8)
    for rel in INSTRUCTOR_SOURCES:
        for path in (package_root / "grading" / rel).rglob("*.py"):
            lines.update(line.strip() for line in path.read_text().splitlines() if len(line.strip()) >= 24)
    return lines


class Grader:
    """A grading process's kernel server and scratch space.

    ``course`` holds the course's ``nbgrader_config.py`` and ``release/`` (the coordinator's course root,
    or a worker bundle). The server starts with the first job's settings, and again when they change.
    """

    def __init__(self, index: int, course: Path, scratch: Path, sandboxed: bool = True, name: str = "",
                 mpl: Path | None = None, staged_package: Path | None = None, version: str | None = None):
        from .sandbox import PACKAGE_ROOT

        self.index, self.course, self.scratch, self.sandboxed = index, Path(course), Path(scratch), sandboxed
        self.name = name or f"worker {index}"
        self.package_root = PACKAGE_ROOT
        self.version = version or worker_version(PACKAGE_ROOT, self.course)
        self._mpl, self._staged = mpl, staged_package
        self.server: KernelServer | None = None
        self.group = None
        self._settings: dict | None = None

    # ------------------------------------------------------------ lifetime

    def start(self, settings: GradingSettings) -> None:
        """Join the grader's cgroup and start the kernel server (SandboxUnavailable, quoting its log, if it cannot)."""
        os.environ["OMP_NUM_THREADS"] = "1"
        import warnings

        from sqlalchemy.exc import SAWarning

        warnings.filterwarnings("ignore", category=SAWarning)  # nbgrader 0.9.6's API with SQLAlchemy 2.x
        self.scratch.mkdir(parents=True, exist_ok=True)
        os.chmod(self.scratch, 0o755)
        if self._mpl is None:
            self._mpl = self.scratch / "mpl"
            build_mpl_cache(self._mpl)
        if self._staged is None and self.sandboxed:
            self._staged = stage_package(self.scratch / "package")
        if self.sandboxed and self.group is None:
            from .cgroups import Cgroup

            self.group = Cgroup.create(f"{self.scratch.name}-grader{self.index}")
            if self.group is not None:
                self.group.join()
                self.group.limit(memory_bytes=self.group.usage_bytes() + settings.grader_memory_mb * 2**20)
        self.stop_server()
        server = KernelServer(self.index, self.sandboxed, self.scratch / f"w{self.index}", settings)
        server.start(self._mpl, self._staged)
        self.server, self._settings = server, settings_values(settings)
        from .kernels import SandboxedExecute

        SandboxedExecute.server = server

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def close(self) -> None:
        self.stop_server()
        if self.group is not None:
            self.group.remove()
            self.group = None

    def close_scratch(self) -> None:
        """Stop everything and remove the scratch folder (a worker that owns it)."""
        self.close()
        cleanup_scratch(self.scratch)
        shutil.rmtree(self.scratch, ignore_errors=True)

    # ------------------------------------------------------------ one job

    def run(self, job: GradingJob) -> JobResult:
        """Grade one submission. A grader-side error raises (the coordinator records it, failing closed)."""
        check_version(job.version, self.version, self.name)
        if not job.verify:  # the kernels leave training checks to the verifier (sandbox_env)
            raise GradingError("grading without the out-of-kernel verifier is not supported")
        if self.server is None or self._settings != job.settings:
            self.start(settings_from(job.settings))
        elif not self.server.healthy():
            self.server.restart()  # SandboxUnavailable, quoting the server's log, when it cannot come back
        started = time.monotonic()
        folder = self.scratch / "jobs" / secrets.token_hex(8)
        try:
            done = self._grade(job, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        done.result.seconds["total"] = round(time.monotonic() - started, 3)
        return done

    def _api(self, folder: Path, job: GradingJob):
        from nbgrader.apps.api import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory

        config = PyFileConfigLoader("nbgrader_config.py", str(self.course)).load_config()
        config.CourseDirectory.root = str(folder)
        config.CourseDirectory.course_id = job.course_id
        config.CourseDirectory.db_url = f"sqlite:///{folder / 'gradebook.db'}"
        # the release is the layout RestoreLayout rebuilds, and the non-notebook files autograde copies
        config.CourseDirectory.release_directory = str(self.course / "release")
        config.CourseDirectory.source_directory = str(self.course / "release")
        config.merge(grading_config(folder / "submitted", settings_from(job.settings), verify=job.verify))
        plugin_config(config, _policy(job))
        api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
        import logging

        api.log.setLevel(logging.ERROR)
        return api

    def _grade(self, job: GradingJob, folder: Path) -> JobResult:
        from .course import working_directory
        from .kernels import SandboxedExecute

        assignment, student = job.assignment, job.student
        result = SubmissionResult(student, assignment, worker=self.index)
        staged = folder / "submitted" / student / assignment
        staged.mkdir(parents=True)
        for name, data in job.notebooks.items():
            (staged / f"{name}.ipynb").write_bytes(data)
        if job.timestamp:
            (staged / "timestamp.txt").write_text(job.timestamp, encoding="utf-8")
        (folder / "gradebook.db").write_bytes(job.gradebook)
        db_url = f"sqlite:///{folder / 'gradebook.db'}"
        api = self._api(folder, job)
        t0 = time.monotonic()
        SandboxedExecute.incidents = incidents = {}
        SandboxedExecute.durations = durations = {}
        SandboxedExecute.kernel_starts, SandboxedExecute.cell_times = {}, {}
        SandboxedExecute.data_files = job.data
        write_data(job.data, folder / "data")
        SavePendingGrades.kernel_scores = kernels = {}
        if job.notebooks:
            with working_directory(folder):
                outcome = api.autograde(assignment, student, force=True, create=True)
            if not outcome["success"]:
                raise GradingError("nbgrader could not grade this submission: " + _last_error(outcome))
        result.seconds["autograde"] = round(time.monotonic() - t0, 3)
        t1 = time.monotonic()
        notebooks = {}
        for name in job.notebooks:
            nb = nbformat.read(folder / "autograded" / student / assignment / f"{name}.ipynb", as_version=4)
            verdicts = None
            if job.verify:
                seed = submission_seed(job.seed_key, name, checked_code(nb))
                with data_folder(folder / "data"):
                    verdicts = verify_notebook(self.server, assignment, name, nb, seed)
            notebooks[name] = (nb, verdicts)
        with Gradebook(db_url, job.course_id) as gb:
            gb.update_or_create_student(student)
            put_student_rows(gb, assignment, student, job.manual)
            hidden = secret_lines(gb, assignment, self.package_root)
            submission = gb.update_or_create_submission(assignment, student)
            for sub_nb in submission.notebooks:
                nb, verdicts = notebooks.get(sub_nb.name, (None, None))
                result.notebooks[sub_nb.name] = _reconcile(gb, job, sub_nb, nb, verdicts, incidents, durations,
                                                           hidden, kernels)
            apply_penalties(gb, assignment, student, _policy(job))  # from the verified scores: late.py
            gb.db.commit()
            timestamp, grades, comments, penalties = machine_rows(gb, assignment, student)
        if job.anomalies.get("*"):
            result.notebooks.setdefault("*", {"score": 0, "max_score": 0, "cells": {}, "flags": [],
                                              "incident": None, "anomalies": job.anomalies["*"]})
        result.seconds["verify"] = round(time.monotonic() - t1, 3)
        write_result(folder, result)
        if job.feedback and job.notebooks:
            t2 = time.monotonic()
            with working_directory(folder):
                done = api.generate_feedback(assignment, student, force=True)
            if not done.get("success"):
                raise GradingError("feedback could not be written: " + _last_error(done))
            result.seconds["feedback"] = round(time.monotonic() - t2, 3)
        return JobResult(result, timestamp, grades, comments, penalties,
                         autograded=_read_tree(folder / "autograded" / student / assignment),
                         feedback=_read_tree(folder / "feedback" / student / assignment))


def _policy(job: GradingJob) -> LatePolicy | None:
    return LatePolicy(**job.late_policy) if job.late_policy else None


def _read_tree(base: Path) -> dict[str, bytes]:
    """Every regular file under ``base`` (relative path -> content), within FILE_LIMIT_BYTES in all."""
    files, total = {}, 0
    if not base.is_dir():
        return files
    for path in sorted(base.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        total += path.stat().st_size
        if total > FILE_LIMIT_BYTES:
            raise GradingError(f"the graded files exceed {FILE_LIMIT_BYTES // 2**20} MB")
        files[path.relative_to(base).as_posix()] = path.read_bytes()
    return files


def _reconcile(gb, job: GradingJob, sub_nb, nb, verdicts, incidents, durations, hidden: set[str],
               kernels: dict[tuple[str, str], float | None]) -> NotebookRecord:
    """Set every graded cell's ``auto_score`` of one notebook to its verified score (a grader's manual score,
    if any, stays and keeps counting); return the notebook's record for the reports."""
    from .kernels import SandboxedExecute

    name, verify = sub_nb.name, job.verify
    anomalies = job.anomalies.get(name, [])
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
            reason = "; ".join(anomalies) or "not graded"
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
        _comment_on_solutions(gb, job.assignment, job.student, name, verdicts, cells)
    if nb is not None:
        for finding in scan_cells(_student_cells(nb), _protected_names(nb)):
            flags.append(f"tampering: {finding}")
    return {
        "score": sum(c["score"] for c in cells.values()),
        "max_score": sum(c["max_score"] for c in cells.values()),
        "cells": cells,
        "flags": flags,
        "anomalies": [clean_text(a, 300) for a in anomalies],
        "incident": incidents.get(name),
        "verify_seconds": round(verdicts.seconds, 3) if verdicts else None,
        "verify_start_seconds": round(verdicts.start_seconds, 3) if verdicts else None,
        "execute_seconds": durations.get(name),
        "kernel_start_seconds": SandboxedExecute.kernel_starts.get(name),
        "slowest_cells": sorted(SandboxedExecute.cell_times.get(name, []), key=lambda c: -c[1])[:SLOWEST_CELLS],
    }


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

