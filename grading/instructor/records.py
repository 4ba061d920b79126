"""What the grader records about one submission, shared by the workers, the pool and the reports."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict

GRADING_ERROR = "grading error — regrade"


class CellRecord(TypedDict):
    """One graded test cell: its verified score (the gradebook's ``auto_score``), and the kernel's, which never
    counts by itself and is kept only here (to flag a disagreement), never in the gradebook."""

    score: float
    max_score: float
    message: str | None  # what the student reads when the cell fails
    kernel_score: float | None


class NotebookRecord(TypedDict, total=False):
    """One notebook of a submission ("*" holds what concerns the whole submission)."""

    score: float
    max_score: float
    cells: dict[str, CellRecord]  # test cell grade_id -> record
    flags: list[str]  # tampering and kernel/verifier disagreements, for the instructor
    anomalies: list[str]  # what staging repaired or could not read
    incident: str | None  # what stopped the notebook (kernel death, deadline)
    verify_seconds: float | None
    verify_start_seconds: float | None  # of verify_seconds: until the harness process ran
    execute_seconds: float | None
    kernel_start_seconds: float | None  # of execute_seconds: until the first cell started
    slowest_cells: list[tuple[str, float]]  # the notebook's 5 slowest code cells (grade_id or "cell N", seconds)


@dataclass
class SubmissionResult:
    """Everything the reports need about one (student, assignment)."""

    student: str
    assignment: str
    notebooks: dict[str, NotebookRecord] = field(default_factory=dict)
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # autograde / verify / feedback / total
    worker: int = 0
    grading_error: str | None = None  # a grader-side failure: the cells were set to 0, or the earlier grade kept
    kept_previous: bool = False  # the failed attempt left the earlier verified grade in place
    run: str = ""  # the grading run that recorded this result (see runs.py)

    @property
    def score(self) -> float:
        return sum(n["score"] for n in self.notebooks.values())

    @property
    def max_score(self) -> float:
        return sum(n["max_score"] for n in self.notebooks.values())


def results_path(root: Path, assignment: str, student: str) -> Path:
    """Where the grader keeps its verdicts for one submission."""
    return Path(root) / "reports" / "results" / assignment / f"{student}.json"


def write_result(root: Path, result: SubmissionResult) -> Path:
    """Write the results file atomically (a crash never leaves half a file)."""
    path = results_path(root, result.assignment, result.student)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1, ensure_ascii=True))
    os.replace(tmp, path)
    return path


def read_result(root: Path, assignment: str, student: str) -> dict | None:
    """The results file of a submission, or None when there is none or it cannot be read."""
    try:
        data = json.loads(results_path(root, assignment, student).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_verified(data: dict | None) -> bool:
    """Whether a results file holds a grade the verifier decided (kept grades included)."""
    return bool(data) and (not data.get("grading_error") or bool(data.get("kept_previous")))
