"""What travels between the coordinator and a grading worker, and the version both must share.

A ``GradingJob`` holds one submission and everything needed to grade it, and nothing more: the
staged notebooks, a key that derives this submission's verifier seeds (never the course secret),
and a throwaway gradebook with only this assignment's release and test cells (no solutions, no
other student). A ``JobResult`` holds what the coordinator writes: the verified scores and
comments, the late penalties, the autograded notebooks and the feedback. Workers never write
the course's gradebook, reports or folders.

``worker_version`` hashes what a worker runs: the package parts a grading machine gets
(``WORKER_PARTS``), the course's ``nbgrader_config.py`` and its ``release/``. A worker refuses a job
whose version differs from its own.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import SubmissionResult

# The package a grading machine gets (paths under grading/): the sandbox's part (student checks, hidden
# checks, runtime) and the worker's own code. Never the catalogue, the calibration or the coordinator.
WORKER_PARTS = (
    "__init__.py", "__main__.py", "student",
    "instructor/__init__.py", "instructor/exercises", "instructor/runtime",
    "instructor/cgroups.py", "instructor/cli.py", "instructor/course.py", "instructor/feedback.py",
    "instructor/grader.py", "instructor/job_gradebook.py", "instructor/jobs.py", "instructor/kernels.py",
    "instructor/late.py", "instructor/messages.py", "instructor/normalize.py", "instructor/pending.py",
    "instructor/records.py",
    "instructor/runs.py", "instructor/sandbox.py", "instructor/settings.py", "instructor/tamper.py",
    "instructor/term.py", "instructor/verifier.py", "instructor/worker.py",
    # the command line's parser registers these commands (they hold no course data)
    "instructor/database.py", "instructor/exchange.py", "instructor/roster.py",
)
COURSE_PARTS = ("nbgrader_config.py", "release")
_SKIPPED = {"__pycache__", ".ipynb_checkpoints"}


class VersionMismatch(Exception):
    """A worker runs another version of the grader or of the release than the coordinator."""


@dataclass
class GradingJob:
    """One submission to grade, as the coordinator sends it."""

    assignment: str
    student: str
    course_id: str
    notebooks: dict[str, bytes]  # release name -> the staged notebook's JSON
    timestamp: str | None  # nbgrader's timestamp.txt, as staged
    anomalies: dict[str, list[str]]  # notebook (or "*") -> what staging repaired or could not read
    seed_key: bytes  # derives this submission's verifier seeds (verifier.submission_key)
    gradebook: bytes  # sqlite file: this assignment's cells only (job_gradebook.assignment_template)
    manual: list[dict] = field(default_factory=list)  # this student's manual scores and comments, for feedback
    settings: dict = field(default_factory=dict)  # GradingSettings trait values of the course
    verify: bool = True
    feedback: bool = True
    version: str = ""
    budget: float = 0.0  # seconds the whole submission may take
    late_policy: dict | None = None  # term.LatePolicy.as_dict() of course.yml; None: no penalty
    data: dict[str, bytes] = field(default_factory=dict)  # the assignment's data files, the course's own copies

    @property
    def key(self) -> str:
        return f"{self.assignment}/{self.student}"


@dataclass
class TaskFailure:
    """A task that did not return a result: its worker died twice, it ran past its deadline, or it raised."""

    task: Any
    reason: str
    details: str = ""  # a traceback, for reports/errors/


@dataclass
class JobResult:
    """What a worker sends back: the record for the reports, the gradebook rows and the files to write."""

    result: SubmissionResult
    timestamp: str | None = None
    grades: list[dict] = field(default_factory=list)  # notebook, name, auto_score, needs_manual
    comments: list[dict] = field(default_factory=list)  # notebook, name, auto_comment
    late_penalties: dict[str, float | None] = field(default_factory=dict)  # notebook -> points off
    autograded: dict[str, bytes] = field(default_factory=dict)  # relative path -> content
    feedback: dict[str, bytes] = field(default_factory=dict)  # relative path -> content


def _files(base: Path) -> list[Path]:
    if base.is_file():
        return [base]
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED and not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if not f.endswith(".pyc")]
    return found


def worker_version(package_root: Path, course: Path) -> str:
    """A short hash of the worker's package parts, the course's nbgrader_config.py and release/."""
    digest = hashlib.sha256()
    for base, parts in ((package_root / "grading", WORKER_PARTS), (course, COURSE_PARTS)):
        for part in parts:
            top = base / part
            if not top.exists():
                digest.update(f"missing {part}\n".encode())
                continue
            for path in _files(top):
                digest.update(path.relative_to(base).as_posix().encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def check_version(expected: str, own: str, where: str) -> None:
    if expected != own:
        raise VersionMismatch(f"{where} runs grader version {own}, the coordinator {expected}: install the same "
                              "worker bundle on every grading machine (python -m grading worker-bundle)")
