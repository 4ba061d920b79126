"""A synthetic class built from the source notebooks and the answer catalogue.

Every student submits every assignment. The class holds correct answers in several styles,
blank and partial submissions, and each common bug of every exercise (the LSTM of Liu Er's notes among
them), so a grading run shows what a real class would: and because each synthetic student
is made of catalogue answers, what each one deserves is known in advance (``expected``).
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .catalogue import ANSWERS, Answer
from .exercises import EXERCISES


@dataclass
class SyntheticStudent:
    student_id: str
    kind: str  # correct / blank / partial / bug
    # exercise grade_id -> Answer (missing: left blank, the release stub)
    answers: dict[str, Answer] = field(default_factory=dict)


def _by_exercise(assignment: str) -> dict[str, tuple[list[Answer], list[Answer]]]:
    table = {}
    for grade_id, exercise in EXERCISES.items():
        if exercise.assignment != assignment:
            continue
        good = [a for a in ANSWERS if a.exercise == grade_id and a.correct]
        bad = [a for a in ANSWERS if a.exercise == grade_id and not a.correct]
        if good:
            table[grade_id] = (good, bad)
    return table


def roster(assignments: list[str], size: int = 32) -> dict[str, list[SyntheticStudent]]:
    """assignment -> the class's students (the same ids in every assignment)."""
    classes = {}
    for assignment in assignments:
        table = _by_exercise(assignment)
        exercises = sorted(table)
        # The notes' own mistakes first, so that even a small class has them.
        bad = {g: sorted(table[g][1], key=lambda a: "seed" not in a.key) for g in exercises}
        students = []
        for i in range(size):
            sid = f"student{i + 1:02d}"
            answers = {g: table[g][0][(i + k) % len(table[g][0])] for k, g in enumerate(exercises)}
            if i < 4:
                kind = "correct"
            elif i == 4:
                kind, answers = "blank", {}
            elif i in (5, 6):
                kind = "partial"
                for g in exercises[(i - 5)::2]:
                    answers.pop(g)
            else:
                kind = "bug"
                for g in exercises:  # one bug in every exercise: each exercise's bugs cycle through the class
                    if bad[g]:
                        answers[g] = bad[g][(i - 7) % len(bad[g])]
            students.append(SyntheticStudent(sid, kind, answers))
        classes[assignment] = students
    return classes


def submission_notebook(release: nbformat.NotebookNode, answers: dict[str, Answer]) -> nbformat.NotebookNode:
    """The release notebook with each answered solution cell filled in."""
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid].source
    return nb


def write_class(root: Path, classes: dict[str, list[SyntheticStudent]]) -> int:
    """Write submitted/<student>/<assignment>/ for every synthetic student; returns the count of notebooks."""
    count = 0
    stamp = datetime.datetime(2026, 11, 20, 12, 0, tzinfo=datetime.UTC).isoformat()
    for assignment, students in classes.items():
        releases = {p.stem: nbformat.read(p, as_version=4)
                    for p in sorted((root / "release" / assignment).glob("*.ipynb"))}
        for student in students:
            folder = root / "submitted" / student.student_id / assignment
            folder.mkdir(parents=True, exist_ok=True)
            for name, release in releases.items():
                nbformat.write(submission_notebook(release, student.answers), folder / f"{name}.ipynb")
                count += 1
            (folder / "timestamp.txt").write_text(stamp)
    return count


def test_points(root: Path, assignment: str) -> dict[str, tuple[str, float]]:
    """test cell grade_id -> (notebook, points), read from the source notebooks."""
    points = {}
    for path in sorted((root / "source" / assignment).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and cell.cell_type == "code":
                points[meta["grade_id"]] = (path.stem, float(meta.get("points", 0)))
    return points


def expected_scores(root: Path, assignment: str, student: SyntheticStudent) -> dict[str, float]:
    """notebook -> the score this synthetic student deserves."""
    points = test_points(root, assignment)
    owner = {tid: ex.grade_id for ex in EXERCISES.values() if ex.assignment == assignment for tid in ex.test_ids}
    scores: dict[str, float] = {}
    for tid, (notebook, pts) in points.items():
        answer = student.answers.get(owner.get(tid, ""))
        earned = pts if answer is not None and tid not in answer.fails else 0.0
        scores[notebook] = scores.get(notebook, 0.0) + earned
    return scores
