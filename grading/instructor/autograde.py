"""Grade a class: the coordinator. It stages every submission into a job, sends the jobs to
grading workers (a local pool of processes, or a Dask cluster: ``cluster.py``), and records
each finished job: the gradebook rows in one transaction, then the autograded notebooks, the
feedback and the results file. Workers (``grader.py``) run nbgrader's autograde, the
out-of-kernel verifier and the feedback in a throwaway course folder, and never write here.

Fail closed (see ``attempts.py``): a cell's score counts only once the verifier's verdict for it
is committed, as its ``auto_score``. A job that breaks changed nothing: the submission keeps its
earlier verified grade, or its cells are set to 0 and it is marked "grading error — regrade". The
run goes on and the command's exit status says so.

Machine and human scores stay apart: the grader writes ``auto_score`` (and the verifier's
``auto_comment``); ``manual_score`` and ``manual_comment`` are the graders' (formgrader), which no
grading path writes, so a regrade never erases them and nbgrader's ``score`` prefers them.

Every run is journaled (``runs.py``): ``--resume`` grades only what an interrupted run did not record.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import MissingEntry

from .attempts import gradebook_write, record_grading_error
from .audit import set_context
from .course import CourseError, load_config, open_api
from .database import check_gradebook
from .exercises.data import data_files
from .grader import Grader, GradingError, settings_values
from .job_gradebook import assignment_template, student_rows, write_machine_rows
from .jobs import GradingJob, JobResult, TaskFailure, worker_version
from .late import sync_term
from .messages import clean_text
from .pool import PoolStartError, WorkerPool
from .records import SubmissionResult, write_result
from .runs import GradingInterrupted, RunJournal
from .sandbox import (
    PACKAGE_ROOT,
    UNSANDBOXED_EXPOSURE,
    SandboxUnavailable,
    build_mpl_cache,
    cleanup_scratch,
    sandbox_problem,
    stage_package,
)
from .settings import GradingSettings, load_settings
from .submissions import stage, students_with
from .term import Term, load_term
from .verifier import course_secret, submission_key

__all__ = ["GradeOptions", "GradingError", "GradingInterrupted", "check_can_grade", "grade"]


@dataclass
class GradeOptions:
    jobs: int = 0
    sandboxed: bool = True
    verify: bool = True
    feedback: bool = True
    quiet: bool = False
    cluster: str = ""  # "" (local pool), "local:N", or a scheduler address tcp://HOST:PORT
    resume: bool = False


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


# ---------------------------------------------------------------- jobs out, results in

@dataclass
class Coordinator:
    """What the coordinator knows for one assignment's run: where to write, and what every job shares."""

    root: Path
    assignment: str
    db_url: str
    course_id: str
    options: GradeOptions
    settings: GradingSettings
    staging: Path
    journal: RunJournal
    version: str = ""
    template: bytes = b""
    secret: bytes = b""
    prepare_seconds: dict[str, float] = field(default_factory=dict)  # the coordinator's cost per job, for the bench
    term: Term | None = None  # course.yml: due dates, extensions, late policy (term.py)

    def job(self, student: str) -> GradingJob:
        """Stage one submission (defensively: submissions.py) and wrap it with what the worker needs."""
        started = time.monotonic()
        staged = stage(self.root, self.staging, self.assignment, student)
        folder = self.staging / student / self.assignment
        try:
            notebooks = {name: (folder / f"{name}.ipynb").read_bytes() for name in staged.notebooks}
            stamp = folder / "timestamp.txt"
            timestamp = stamp.read_text(encoding="utf-8") if stamp.is_file() else None
        finally:
            shutil.rmtree(self.staging / student, ignore_errors=True)
        manual = gradebook_write(self.db_url, self.course_id,
                                 lambda gb: student_rows(gb, self.assignment, student))
        if self.term is not None:  # course.yml decides this student's extension
            manual = [row for row in manual if row["kind"] != "extension"]
            extension = self.term.extension_delta(student, self.assignment)
            if extension is not None:
                manual.append({"kind": "extension", "seconds": extension.total_seconds()})
        budget = self.settings.submission_budget(len(list((self.root / "release" / self.assignment).glob("*.ipynb"))))
        self.prepare_seconds[student] = round(time.monotonic() - started, 4)
        return GradingJob(self.assignment, student, self.course_id, notebooks, timestamp, staged.anomalies,
                          submission_key(self.secret, self.assignment, student), self.template, manual,
                          settings_values(self.settings), self.options.verify, self.options.feedback, self.version,
                          budget, self.term.policy.as_dict() if self.term and self.term.policy else None,
                          data_files(self.root / "release" / self.assignment))

    def commit(self, done: JobResult) -> SubmissionResult:
        """Record a finished job: the gradebook in one transaction, then the files, the results file last."""
        started = time.monotonic()
        result = done.result
        if result.assignment != self.assignment:
            raise GradingError(f"a result for another assignment came back: {result.assignment}")
        gradebook_write(self.db_url, self.course_id, lambda gb: self._record(gb, done), why="autograde")
        for kind, files in (("autograded", done.autograded), ("feedback", done.feedback)):
            _replace_tree(self.root / kind / result.student / self.assignment, files)
        result.run = self.journal.run
        result.seconds["prepare"] = self.prepare_seconds.get(result.student, 0.0)
        result.seconds["record"] = round(time.monotonic() - started, 4)
        write_result(self.root, result)
        self.journal.record(result.student)
        return result

    def _record(self, gb, done: JobResult) -> None:
        """The job's rows. The audit trail sees the notebook's own test scores, then the verifier's
        reconciliation, then the late penalty, each with its reason."""
        student, run = done.result.student, self.journal.run
        set_context(gb, f"{'regrade' if _graded_before(gb, self.assignment, student) else 'autograde'} "
                        f"(run {run}): the notebook's own tests")
        if self.options.verify:
            kernel_rows = [{**row, "auto_score": kernel} for row in done.grades
                           if (kernel := _kernel_score(done.result, row)) is not None]
            write_machine_rows(gb, self.assignment, student, done.timestamp, kernel_rows, [], {})
            set_context(gb, f"verifier (run {run}): the out-of-kernel check decides")
        write_machine_rows(gb, self.assignment, student, done.timestamp, done.grades, done.comments, {})
        if self.term is not None:
            sync_term(gb, self.term, self.assignment, [student])
        policy = self.term.policy.describe() if self.term and self.term.policy else "no late policy"
        set_context(gb, f"late penalty (run {run}): {policy}")
        write_machine_rows(gb, self.assignment, student, done.timestamp, [], [], done.late_penalties)

    def fail(self, student: str, reason: str, details: str = "") -> SubmissionResult:
        """Record a job that did not finish: the earlier verified grade stays, else zeros (attempts.py)."""
        if details:
            errors = self.root / "reports" / "errors"
            errors.mkdir(parents=True, exist_ok=True)
            (errors / f"{self.assignment}-{student}.txt").write_text(clean_text(details, 20000, lines=400))
        result = record_grading_error(self.root, self.db_url, self.course_id, self.assignment, student,
                                      clean_text(reason, 300), run=self.journal.run)
        self.journal.record(student)
        return result


def _graded_before(gb, assignment: str, student: str) -> bool:
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        return False
    return any(g.auto_score is not None for nb in submission.notebooks for g in nb.grades)


def _kernel_score(result: SubmissionResult, row: dict) -> float | None:
    """What the notebook's own test cell gave (before the verifier), if it ran."""
    cell = result.notebooks.get(row["notebook"], {}).get("cells", {}).get(row["name"], {})
    return cell.get("kernel_score")


def _replace_tree(target: Path, files: dict[str, bytes]) -> None:
    """Make ``target`` hold exactly ``files`` (relative paths checked: nothing is written outside it)."""
    fresh = target.with_name(f".{target.name}.new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    for rel, data in files.items():
        path = (fresh / rel).resolve()
        if not path.is_relative_to(fresh.resolve()) or rel.startswith("/"):
            raise GradingError(f"a graded file has an unsafe name: {rel!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    shutil.rmtree(target, ignore_errors=True)
    if files:
        os.replace(fresh, target)
    else:
        shutil.rmtree(fresh, ignore_errors=True)


# ---------------------------------------------------------------- the local pool

_LOCAL: dict = {}


def _local_init(index: int, course: str, scratch: str, sandboxed: bool, mpl: str, staged: str | None,
                version: str, settings: GradingSettings) -> None:
    grader = Grader(index, Path(course), Path(scratch), sandboxed, mpl=Path(mpl),
                    staged_package=Path(staged) if staged else None, version=version)
    _LOCAL["grader"] = grader
    grader.start(settings)


def _local_run(job: GradingJob) -> JobResult | TaskFailure:
    """Grade one job in a pool worker; a grader-side error comes back as a TaskFailure with its traceback."""
    import traceback

    try:
        return _LOCAL["grader"].run(job)
    except Exception as exc:  # noqa: BLE001 - one broken submission never stops the class
        return TaskFailure(job, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _local_shutdown() -> None:
    if "grader" in _LOCAL:
        _LOCAL["grader"].close()


def _local_pool(c: Coordinator, count: int, scratch: Path) -> WorkerPool:
    """``count`` local grading workers, forked now: their kernel servers start while the coordinator stages the jobs."""
    mpl = scratch / "mpl"
    build_mpl_cache(mpl)
    staged = stage_package(scratch / "package") if c.options.sandboxed else None

    def init(index: int) -> None:
        _local_init(index, str(c.root), str(scratch), c.options.sandboxed, str(mpl), str(staged) if staged else None,
                    c.version, c.settings)

    pool = WorkerPool(count, init, _local_run, deadline=lambda job: job.budget, shutdown=_local_shutdown)
    pool.start(count)
    return pool


def _local_results(pool: WorkerPool, jobs: list[GradingJob]) -> Iterator[JobResult | TaskFailure]:
    try:
        yield from pool.map(jobs)
    except PoolStartError as exc:
        raise SandboxUnavailable(f"a grading worker could not start: {exc}") from None


# ---------------------------------------------------------------- the run

def grade(root: Path, assignment: str, students: list[str] | None = None, options: GradeOptions | None = None,
          scratch: Path | None = None) -> list[SubmissionResult]:
    """Grade ``assignment`` for ``students`` (default: everyone in submitted/); returns one record each.

    With ``options.resume``, only the students the last run did not record (and only their records are returned).
    """
    import warnings

    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)  # nbgrader 0.9.6's API with SQLAlchemy 2.x
    options = options or GradeOptions()
    root = root.resolve()
    settings = load_settings(root)
    term = load_term(root)  # a malformed course.yml stops the run before anything is graded
    if options.resume:
        journal = RunJournal.resume(root, assignment)
        check_can_grade(root, assignment, journal.students)
        todo = journal.remaining()
    else:
        todo = check_can_grade(root, assignment, students)
        journal = RunJournal.start(root, assignment, todo)
    if options.sandboxed:
        problem = sandbox_problem()
        if problem:
            raise SandboxUnavailable(f"cannot sandbox student code: {problem}. To grade anyway, pass --unsandboxed. "
                                     + UNSANDBOXED_EXPOSURE)
    own_scratch = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="rnn-grading-")) if own_scratch else scratch
    os.chmod(scratch, 0o755)
    api = open_api(root)
    c = Coordinator(root, assignment, api.coursedir.db_url, api.coursedir.course_id, options, settings,
                    scratch / "staging", journal)
    c.staging.mkdir(parents=True, exist_ok=True)
    c.secret = course_secret(root)
    c.version = worker_version(PACKAGE_ROOT, root)
    c.term = term
    results: list[SubmissionResult] = []
    progress = Progress(len(todo), quiet=options.quiet)
    pool = None
    try:
        if todo and not options.cluster:
            pool = _local_pool(c, max(1, min(options.jobs or os.cpu_count() or 1, len(todo))), scratch / "local")
        if c.term is not None:  # the due date the jobs' gradebook carries
            gradebook_write(c.db_url, c.course_id, lambda gb: sync_term(gb, c.term, assignment, []))
        c.template = assignment_template(c.db_url, c.course_id, assignment)
        jobs = [c.job(student) for student in todo]
        if options.cluster:
            from .cluster import cluster_results

            outcomes = cluster_results(c, jobs, options.cluster)
        else:
            outcomes = _local_results(pool, jobs)
        if jobs:
            for outcome in outcomes:
                if isinstance(outcome, TaskFailure):
                    result = c.fail(outcome.task.student, outcome.reason, outcome.details)
                else:
                    result = c.commit(outcome)
                results.append(result)
                progress.update(result)
        journal.finish()
    except KeyboardInterrupt:
        raise GradingInterrupted(_interrupted(journal, "interrupted")) from None
    except GradingInterrupted as exc:
        raise GradingInterrupted(_interrupted(journal, str(exc))) from None
    finally:
        if pool is not None:
            pool.close()
        progress.finish()
        cleanup_scratch(scratch)
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return sorted(results, key=lambda r: r.student)


def _interrupted(journal: RunJournal, what: str) -> str:
    recorded = len(journal.recorded())
    return (f"{what}: {recorded} of {len(journal.students)} submissions of {journal.assignment} were recorded; "
            f"`python -m grading grade {journal.assignment} --resume` grades the other "
            f"{len(journal.students) - recorded}")


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
        if self.tty and not self.quiet and self.done:
            print()
