"""nbgrader's SaveAutoGrades, with the kernel's scores recorded as *pending*.

The notebook's own tests run in the student's kernel and can be fooled, so their scores
must not count before the out-of-kernel verifier has decided. nbgrader commits each
cell's ``auto_score`` as soon as the notebook has run; here the same commit also sets
``manual_score`` to 0, which nbgrader's ``score`` prefers. A crash at any point after that
leaves zeros, never the kernel's scores. The grader replaces the pending zeros with the
verifier's verdicts in one transaction.
"""

from __future__ import annotations

from nbgrader import utils
from nbgrader.preprocessors import SaveAutoGrades


class SavePendingGrades(SaveAutoGrades):
    """Record the kernel's score as ``auto_score`` and hold the cell at 0 until verified."""

    def _add_score(self, cell, resources) -> None:
        grade = self.gradebook.find_grade(cell.metadata["nbgrader"]["grade_id"], self.notebook_id,
                                          self.assignment_id, self.student_id)
        grade.auto_score, _ = utils.determine_grade(cell, self.log)
        grade.manual_score = 0.0
        grade.needs_manual_grade = False
        self.gradebook.db.commit()
