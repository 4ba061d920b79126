"""What each student earned on each assignment, as the reports and the LMS exports state it.

One place computes it so that ``grades.csv``, the report and every export agree: nbgrader's score (a
grader's manual score where there is one, else the verified automatic score, plus extra credit), minus the
late penalty, never below zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import MissingEntry

from .database import open_gradebook


@dataclass(frozen=True)
class AssignmentScore:
    """One student's result on one assignment; ``submitted`` False means no submission (score 0, not graded)."""

    student: str
    assignment: str
    submitted: bool
    score: float  # before the late penalty
    max_score: float
    late_penalty: float
    seconds_late: float

    @property
    def final(self) -> float:
        """The score that counts: ``score - late_penalty``, at least 0."""
        return max(0.0, self.score - self.late_penalty)


@dataclass(frozen=True)
class StudentInfo:
    """A student as the gradebook knows them (``roster add`` fills the names and the email)."""

    id: str
    first_name: str
    last_name: str
    email: str


def assignment_scores(root: Path) -> tuple[list[str], list[StudentInfo], dict[tuple[str, str], AssignmentScore]]:
    """The gradebook's assignments (sorted), students (sorted by id) and (student, assignment) -> score."""
    with open_gradebook(root) as gb:
        names = sorted(a.name for a in gb.assignments)
        maxima = {a.name: float(a.max_score) for a in gb.assignments}
        students = [StudentInfo(s.id, s.first_name or "", s.last_name or "", s.email or "")
                    for s in sorted(gb.students, key=lambda s: s.id)]
        table = {}
        for student in students:
            for name in names:
                try:
                    sub = gb.find_submission(name, student.id)
                except MissingEntry:
                    table[student.id, name] = AssignmentScore(student.id, name, False, 0.0, maxima[name], 0.0, 0.0)
                    continue
                table[student.id, name] = AssignmentScore(
                    student.id, name, True, float(sub.score), maxima[name], float(sub.late_submission_penalty or 0.0),
                    float(sub.total_seconds_late))
    return names, students, table
