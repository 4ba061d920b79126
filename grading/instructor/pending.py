"""nbgrader's SaveAutoGrades, with the cells held at a *pending* zero until the verifier has decided.

The notebook's own tests run in the student's kernel and can be fooled, so their scores must not
count before the out-of-kernel verifier has decided. nbgrader commits each cell's ``auto_score``
as soon as the notebook has run; here that commit writes 0 instead, and the kernel's own score is
kept in ``kernel_scores`` (in the grading worker's memory) for the results file, where a
disagreement with the verifier is flagged. A crash at any point after that leaves zeros, never
the kernel's scores. The grader replaces the pending zeros with the verified scores, in
``auto_score`` too, in one transaction.

``manual_score`` belongs to the graders (formgrader): nothing here reads it to decide a score or
ever writes it. ``needs_manual_grade`` follows nbgrader's rule: set when a grader's manual score
is there to review again, or when the cell has no automatic score.
"""

from __future__ import annotations

from typing import ClassVar

from nbgrader import utils
from nbgrader.preprocessors import SaveAutoGrades

PENDING = 0.0


class SavePendingGrades(SaveAutoGrades):
    """Hold every graded cell at ``auto_score = 0`` and remember the kernel's score for the grader."""

    #: (notebook, grade_id) -> the kernel's score, for the current submission (reset by the grader per task)
    kernel_scores: ClassVar[dict[tuple[str, str], float | None]] = {}

    def _add_score(self, cell, resources) -> None:
        grade = self.gradebook.find_grade(cell.metadata["nbgrader"]["grade_id"], self.notebook_id,
                                          self.assignment_id, self.student_id)
        kernel, _ = utils.determine_grade(cell, self.log)
        SavePendingGrades.kernel_scores[(self.notebook_id, grade.name)] = None if kernel is None else float(kernel)
        grade.auto_score = PENDING
        grade.needs_manual_grade = grade.manual_score is not None or kernel is None
        self.gradebook.db.commit()
