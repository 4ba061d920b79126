"""Fail closed: a grading attempt that breaks never leaves a score the verifier did not decide.

Workers never write the course's gradebook or folders: the coordinator writes a submission's rows,
autograded notebooks, feedback and results file only from a finished, verified job
(``autograde.commit``). So an attempt that breaks (an exception, a dead worker, a blown budget, a
lost scheduler) has changed nothing, and:

* if the submission has an earlier verified grade, it stays, and its results file says that the
  earlier grade was kept;
* if it has none, every graded cell's ``auto_score`` is set to 0, stale feedback is removed, and
  the submission is marked "grading error — regrade".

Only the machine's columns are ever written (``auto_score``, ``auto_comment``, and
``needs_manual_grade`` by nbgrader's rule): a grader's ``manual_score`` and ``manual_comment``,
entered in formgrader at any time, survive. Gradebook transactions are tried again while sqlite
reports "database is locked" or PostgreSQL a deadlock between two writers.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from nbgrader.api import Gradebook
from sqlalchemy.exc import OperationalError

from .database import is_transient
from .records import GRADING_ERROR, SubmissionResult, is_verified, read_result, write_result

T = TypeVar("T")
LOCK_RETRY_SECONDS = 120.0


def gradebook_write(db_url: str, course_id: str, change: Callable[[Gradebook], T], why: str | None = None,
                    who: str | None = None) -> T:
    """Run ``change(gb)`` and commit, retrying the whole transaction while the database is locked (or, on
    PostgreSQL, while it aborts the transaction as one side of a deadlock).

    With ``why``, the grade changes are recorded in the gradebook's audit trail as made by ``who`` (default: the
    hub or OS user) for that reason (``audit.py``); ``change`` may switch the reason with ``audit.set_context``."""
    from .audit import clear_context, ensure_audit_once, set_context

    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    delay = 0.1
    while True:
        try:
            with Gradebook(db_url, course_id) as gb:
                if why is not None:
                    ensure_audit_once(db_url, gb.engine)
                try:
                    if why is not None:
                        set_context(gb, why, who)
                    value = change(gb)
                    if why is not None:
                        clear_context(gb)
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


def record_grading_error(root: Path, db_url: str, course_id: str, assignment: str, student: str,
                         reason: str, worker: int = 0, run: str = "") -> SubmissionResult:
    """Fail closed after a broken attempt: keep the earlier verified grade, or set every cell's ``auto_score``
    to 0 (a grader's manual score stays, and still counts)."""
    reason = f"{GRADING_ERROR}: {reason}"[:500]
    earlier = read_result(root, assignment, student)
    if is_verified(earlier):
        fields = SubmissionResult.__dataclass_fields__
        kept = SubmissionResult(student=student, assignment=assignment,
                                **{k: v for k, v in earlier.items() if k in fields and k not in ("student",
                                                                                                 "assignment")})
        kept.grading_error, kept.kept_previous = reason + " (the earlier verified grade was kept)", True
        kept.run = run
        write_result(root, kept)
        return kept
    result = SubmissionResult(student, assignment, worker=worker, grading_error=reason, error=reason, run=run)

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

    gradebook_write(db_url, course_id, zero, why=f"{reason} (fail closed: 0 until regraded)"[:300])
    shutil.rmtree(root / "feedback" / student / assignment, ignore_errors=True)
    write_result(root, result)
    return result
