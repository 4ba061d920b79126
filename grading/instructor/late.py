"""Late penalties: the course's policy as nbgrader's late-submission plugin, recomputed where it counts.

nbgrader's ``AssignLatePenalties`` runs the plugin during autograde, on the scores the notebook's own
tests gave; with the out-of-kernel verifier those are pending zeros, and the verifier may change them.
So the worker recomputes every penalty after reconciliation (``apply_penalties``), and
``python -m grading regrade-late A`` recomputes them in the course's gradebook from the current
scores (manual ones included) and the current ``course.yml``, without running any notebook. A
penalty is always recomputed from scratch: a submission that is no longer late (an extension was
granted) has none (nbgrader issue #723).
"""

from __future__ import annotations

from pathlib import Path

from nbgrader.api import Gradebook
from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Enum, Float, Integer

from .term import NO_PENALTY, LatePolicy, Term, late_days, utc_naive


class CourseLatePolicy(LateSubmissionPlugin):
    """nbgrader's plugin interface for the course's policy (``c.CourseLatePolicy.per_day`` etc.)."""

    per_day = Float(0.0, help="Percent off per started day late.").tag(config=True)
    max_days = Integer(0, help="Days late after which the score is 0.").tag(config=True)
    applies_to = Enum(("score", "max_score"), default_value="score", help="What the percentage is of.").tag(
        config=True)
    grace_minutes = Float(0.0, help="Minutes late that still count as on time.").tag(config=True)

    def policy(self) -> LatePolicy:
        return LatePolicy(self.per_day, self.max_days, self.applies_to, self.grace_minutes)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        # nbgrader passes no maximum: the preprocessor that owns this plugin knows the notebook
        parent = self.parent
        max_score = score
        if self.applies_to == "max_score" and parent is not None:
            max_score = parent.gradebook.find_submission_notebook(
                parent.notebook_id, parent.assignment_id, parent.student_id).max_score
        return self.policy().penalty(float(score or 0.0), float(max_score or 0.0), total_seconds_late)


def plugin_config(config, policy: LatePolicy | None) -> None:
    """Make nbgrader's ``AssignLatePenalties`` use ``policy`` (none: no penalty)."""
    policy = policy or NO_PENALTY
    config.AssignLatePenalties.plugin_class = "grading.instructor.late.CourseLatePolicy"
    for name, value in policy.as_dict().items():
        config.CourseLatePolicy[name] = value


def apply_penalties(gb: Gradebook, assignment: str, student: str, policy: LatePolicy | None) -> dict[str, float]:
    """Recompute every notebook's ``late_submission_penalty`` of one submission from its current scores;
    returns notebook -> penalty (0 when on time or without a policy)."""
    policy = policy or NO_PENALTY
    gb.db.flush()
    gb.db.expire_all()  # nbgrader's scores are SQL expressions: read them after the latest writes
    submission = gb.find_submission(assignment, student)
    seconds = float(submission.total_seconds_late or 0.0)
    penalties = {}
    for nb in submission.notebooks:
        penalty = policy.penalty(float(nb.score or 0.0), float(nb.max_score or 0.0), seconds)
        nb.late_submission_penalty = penalty or None
        penalties[nb.name] = penalty
    return penalties


def sync_term(gb: Gradebook, term: Term, assignment: str, students: list[str] | None = None) -> None:
    """Enter ``course.yml``'s due date of ``assignment`` and the extensions of ``students`` (default: every
    submission) into the gradebook; an extension no longer in ``course.yml`` is withdrawn."""
    if assignment in term.due:
        gb.update_or_create_assignment(assignment, duedate=utc_naive(term.due[assignment]))
    ids = students if students is not None else [s.student.id for s in gb.find_assignment(assignment).submissions]
    for student in ids:
        try:
            submission = gb.find_submission(assignment, student)
        except Exception:  # noqa: BLE001 - MissingEntry: not submitted yet, nothing to extend
            continue
        submission.extension = term.extension_delta(student, assignment)


def regrade_late(root: Path, assignment: str) -> list[tuple[str, float, float, float]]:
    """Recompute the late penalties of every submission of ``assignment`` in the course's gradebook;
    returns (student, days late, old penalty, new penalty) for every submission whose penalty changed."""
    from .attempts import gradebook_write
    from .course import CourseError, load_config
    from .database import db_url
    from .term import load_term

    term = load_term(root)
    if term is None:
        raise CourseError(f"no course.yml in {root}: nothing says what is late (see README, \"The term\")")
    config = load_config(root)
    course_id = str(config.CourseDirectory.course_id)

    def change(gb: Gradebook) -> list[tuple[str, float, float, float]]:
        if assignment not in {a.name for a in gb.assignments}:
            raise CourseError(f"the gradebook has no assignment {assignment!r}: grade it first")
        sync_term(gb, term, assignment)
        changed = []
        for submission in gb.find_assignment(assignment).submissions:
            student = submission.student.id
            old = float(submission.late_submission_penalty or 0.0)
            new = sum(apply_penalties(gb, assignment, student, term.policy).values())
            if abs(new - old) > 1e-9:
                changed.append((student, late_days(float(submission.total_seconds_late or 0.0)), old, new))
        return changed

    return gradebook_write(db_url(root), course_id, change, why=f"late penalty: regrade-late ({_policy_text(term)})")


def _policy_text(term: Term) -> str:
    return term.policy.describe() if term.policy else "no late policy"


def cmd_regrade_late(args) -> int:
    root = Path(args.root).resolve()
    changed = regrade_late(root, args.assignment)
    for student, days, old, new in sorted(changed):
        print(f"  {student}: {days} day(s) late, penalty {old:g} -> {new:g}")
    print(f"late penalties of {args.assignment} recomputed: {len(changed)} changed")
    return 0
