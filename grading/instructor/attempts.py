"""Fail closed: a grading attempt that breaks never leaves a score the verifier did not decide.

Before a submission is graded again, its earlier *verified* grade is saved to disk: its
gradebook rows (the machine's scores and comments), its feedback, its autograded notebooks and
its results file. ``nbgrader autograde --force`` rewrites all of these before the verifier has run, so:

* if the attempt succeeds, the snapshot is discarded;
* if it fails (an exception, a dead worker, a blown budget), the snapshot is restored and the
  results file says that the earlier grade was kept;
* if there was no earlier verified grade, every graded cell is set to 0, the stale feedback is
  removed, and the submission is marked "grading error — regrade".

The snapshot lives on disk, so a worker killed mid-attempt is handled the same way by the
parent process. Only the machine's columns are ever written (``auto_score``, ``auto_comment``, and
``needs_manual_grade`` by nbgrader's rule): a grader's ``manual_score`` and ``manual_comment``,
entered in formgrader at any time, even during the attempt, survive both the restore and the zeros.
Gradebook transactions are tried again while sqlite reports "database is locked" or PostgreSQL a
deadlock between two writers.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.exc import OperationalError

from .database import is_transient
from .records import GRADING_ERROR, SubmissionResult, is_verified, read_result, results_path, write_result

T = TypeVar("T")
LOCK_RETRY_SECONDS = 120.0


def gradebook_write(db_url: str, course_id: str, change: Callable[[Gradebook], T]) -> T:
    """Run ``change(gb)`` and commit, retrying the whole transaction while the database is locked (or, on
    PostgreSQL, while it aborts the transaction as one side of a deadlock)."""
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    delay = 0.1
    while True:
        try:
            with Gradebook(db_url, course_id) as gb:
                try:
                    value = change(gb)
                    gb.db.commit()
                    return value
                except BaseException:
                    gb.db.rollback()
                    raise
        except OperationalError as exc:
            if not is_transient(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _snapshot_dir(root: Path, assignment: str, student: str) -> Path:
    return root / "reports" / ".attempts" / assignment / student


def _owned_paths(root: Path, assignment: str, student: str) -> dict[str, Path]:
    return {"feedback": root / "feedback" / student / assignment,
            "autograded": root / "autograded" / student / assignment,
            "results.json": results_path(root, assignment, student)}


def save_snapshot(root: Path, db_url: str, course_id: str, assignment: str, student: str) -> bool:
    """Keep the earlier verified grade of this submission, if any; True when one is kept.

    A snapshot left by an interrupted attempt is kept as it is: it is the last good state.
    """
    target = _snapshot_dir(root, assignment, student)
    if (target / "complete").exists():
        return True
    if not is_verified(read_result(root, assignment, student)):
        return False
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    rows = gradebook_write(db_url, course_id, lambda gb: _gradebook_rows(gb, assignment, student))
    if rows is None:
        return False
    (target / "gradebook.json").write_text(json.dumps(rows))
    for name, path in _owned_paths(root, assignment, student).items():
        if path.is_dir():
            shutil.copytree(path, target / name, symlinks=True)
        elif path.is_file():
            shutil.copy2(path, target / name)
    (target / "complete").write_text("")
    return True


def _gradebook_rows(gb: Gradebook, assignment: str, student: str) -> list[dict] | None:
    """The machine's scores and comments of one submission (and the manual score they were saved next to), or None
    when it has none."""
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        return None
    rows = []
    for nb in submission.notebooks:
        for grade in nb.grades:
            rows.append({"kind": "grade", "notebook": nb.name, "name": grade.name, "auto": grade.auto_score,
                         "manual": grade.manual_score, "needs_manual": grade.needs_manual_grade})
        for comment in nb.comments:
            rows.append({"kind": "comment", "notebook": nb.name, "name": comment.name, "auto": comment.auto_comment})
    return rows


def discard_snapshot(root: Path, assignment: str, student: str) -> None:
    shutil.rmtree(_snapshot_dir(root, assignment, student), ignore_errors=True)


def record_grading_error(root: Path, db_url: str, course_id: str, assignment: str, student: str,
                         reason: str, worker: int = 0) -> SubmissionResult:
    """Fail closed after a broken attempt: restore the earlier verified grade, or set every cell's ``auto_score``
    to 0 (a grader's manual score stays, and still counts)."""
    reason = f"{GRADING_ERROR}: {reason}"[:500]
    snapshot = _snapshot_dir(root, assignment, student)
    if (snapshot / "complete").exists():
        return _restore(root, db_url, course_id, assignment, student, reason, snapshot)
    result = SubmissionResult(student, assignment, worker=worker, grading_error=reason, error=reason)

    def zero(gb: Gradebook) -> None:
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(assignment, student)
        for nb in submission.notebooks:
            cells = {}
            for grade in nb.grades:
                grade.auto_score = 0.0
                grade.needs_manual_grade = grade.manual_score is not None
                cells[grade.name] = {"score": 0.0, "max_score": float(grade.max_score), "message": reason,
                                     "kernel_score": None}
            result.notebooks[nb.name] = {"score": 0.0, "max_score": sum(c["max_score"] for c in cells.values()),
                                         "cells": cells, "flags": [], "anomalies": [], "incident": None}

    gradebook_write(db_url, course_id, zero)
    shutil.rmtree(root / "feedback" / student / assignment, ignore_errors=True)
    write_result(root, result)
    return result


def _restore(root: Path, db_url: str, course_id: str, assignment: str, student: str, reason: str,
             snapshot: Path) -> SubmissionResult:
    rows = json.loads((snapshot / "gradebook.json").read_text())

    def put_back(gb: Gradebook) -> None:
        for row in rows:
            try:
                if row["kind"] == "grade":
                    grade = gb.find_grade(row["name"], row["notebook"], assignment, student)
                    grade.auto_score = row["auto"]
                    if grade.manual_score == row["manual"]:  # else a grader has scored it since: theirs stands
                        grade.needs_manual_grade = row["needs_manual"]
                else:
                    comment = gb.find_comment(row["name"], row["notebook"], assignment, student)
                    comment.auto_comment = row["auto"]
            except MissingEntry:
                continue

    gradebook_write(db_url, course_id, put_back)
    for name, path in _owned_paths(root, assignment, student).items():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        saved = snapshot / name
        if saved.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(saved, path, symlinks=True)
        elif saved.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(saved, path)
    data = read_result(root, assignment, student) or {}
    fields = SubmissionResult.__dataclass_fields__
    result = SubmissionResult(**{k: v for k, v in data.items() if k in fields and k not in ("student", "assignment")},
                              student=student, assignment=assignment)
    result.grading_error, result.kept_previous = reason + " (the earlier verified grade was kept)", True
    write_result(root, result)
    discard_snapshot(root, assignment, student)
    return result
