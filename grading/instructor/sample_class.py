"""A synthetic class built from the source notebooks and the answer catalogue.

Every student submits every assignment. The class holds correct answers in several styles,
blank and partial submissions, and each common bug of every exercise (the LSTM of Liu Er's notes among
them), so a grading run shows what a real class would: and because each synthetic student
is made of catalogue answers, what each one deserves is known in advance (``expected``).

Students do not hand in the catalogue's text verbatim. Each answer is written in the student's own hand
(:func:`vary`, seeded by the student id): local variables renamed, independent statements of correct answers
reordered where that provably changes nothing, comments changed or added. The catalogue answer, and so its
grade, stays the same. Answers are handed out so that honest students' combinations differ: each student takes,
exercise by exercise, the answer that shares a second exercise with the fewest earlier students (bugs: among the
least-used ones, so that every bug of the catalogue is in the class). An answer only a few students share is
then rarely shared with the same student twice; the bugs of an exercise with few bugs are common to many
students, which is no sign of copying.

One copy is planted (:data:`PLANTED_COPY`): in lstm_gru, student04 hands in student02's work, disguised
(variables renamed again, statements reordered, comments changed). student02 wrote the two correct answers
of :data:`PLANTED_STYLES`, which have the least in common with the rest of the catalogue and which nobody else
in the class wrote: a copy of code that many others wrote would be no evidence. ``python -m grading similarity``
flags that pair and no other pair of the sample class, in any assignment (tests/test_similarity.py).
"""

from __future__ import annotations

import copy
import datetime
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .catalogue import ANSWERS, Answer
from .exercises import EXERCISES
from .exercises.data import data_files
from .variation import vary

#: (assignment, source, copier): the copier hands in the source's work, disguised
PLANTED_COPY = ("lstm_gru", "student02", "student04")
#: the source's answers: correct styles with little in common with the rest of the catalogue
PLANTED_STYLES = {"lstm_cell": "per_gate_weights", "gru_cell": "per_gate_slices"}


@dataclass
class SyntheticStudent:
    student_id: str
    kind: str  # correct / blank / partial / bug
    # exercise grade_id -> Answer (missing: left blank, the release stub)
    answers: dict[str, Answer] = field(default_factory=dict)
    # exercise grade_id -> the code handed in (the answer in the student's hand); missing: the answer's source
    sources: dict[str, str] = field(default_factory=dict)

    def code(self) -> dict[str, str]:
        """grade_id -> the solution cell this student hands in."""
        return {g: self.sources.get(g, a.source) for g, a in self.answers.items()}


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


def _pick(pool: list[Answer], grade_id: str, chosen: dict[str, str], previous: list[dict[str, str]],
          uses: Counter, cover_first: bool) -> Answer:
    """The answer of ``pool`` that makes no student share two exercises with an earlier one, where possible.

    ``cover_first``: the least-used answer first (so every bug of the catalogue is in the class), then the fewest
    such clashes; otherwise the fewest clashes first, then the least-used. Ties: catalogue order.
    """
    def cost(item: tuple[int, Answer]) -> tuple:
        index, answer = item
        same = [p for p in previous if p.get(grade_id) == answer.key]
        clash = sum(1 for p in same if any(p.get(g) == k for g, k in chosen.items()))
        used = uses[grade_id, answer.key]
        return (used, clash, index) if cover_first else (clash, used, index)

    return min(enumerate(pool), key=cost)[1]


def roster(assignments: list[str], size: int = 32) -> dict[str, list[SyntheticStudent]]:
    """assignment -> the class's students (the same ids in every assignment)."""
    classes = {}
    for assignment in assignments:
        table = _by_exercise(assignment)
        exercises = sorted(table)
        planted = assignment == PLANTED_COPY[0]
        # The notes' own mistakes first, so that even a small class has them.
        bad = {g: sorted(table[g][1], key=lambda a: "seed" not in a.key) for g in exercises}
        good = {g: [a for a in table[g][0] if not (planted and PLANTED_STYLES.get(g) == a.key)] for g in exercises}
        previous: list[dict[str, str]] = []
        uses: Counter = Counter()
        students = []
        for i in range(size):
            sid = f"student{i + 1:02d}"
            kind = "correct" if i < 4 else "blank" if i == 4 else "partial" if i in (5, 6) else "bug"
            if kind == "blank":
                wanted = []
            elif kind == "partial":  # student06 leaves the even exercises blank, student07 the odd ones
                wanted = [g for k, g in enumerate(exercises) if k % 2 != i - 5]
            else:
                wanted = exercises
            answers: dict[str, Answer] = {}
            for g in wanted:
                chosen = {h: a.key for h, a in answers.items()}
                if planted and sid == PLANTED_COPY[1] and g in PLANTED_STYLES:
                    answers[g] = next(a for a in table[g][0] if a.key == PLANTED_STYLES[g])
                elif kind == "bug" and bad[g]:  # one bug in every exercise: every bug of the catalogue is in the class
                    answers[g] = _pick(bad[g], g, chosen, previous, uses, cover_first=True)
                else:
                    answers[g] = _pick(good[g], g, chosen, previous, uses, cover_first=False)
                uses[g, answers[g].key] += 1
            previous.append({g: a.key for g, a in answers.items()})
            students.append(SyntheticStudent(sid, kind, answers))
        for student in students:
            student.sources = {g: vary(a.source, f"{student.student_id}/{g}", reorder=a.correct,
                                       keep=set(re.findall(r"\w+", a.message)))
                               for g, a in student.answers.items()}
        if planted:
            by_id = {s.student_id: s for s in students}
            source, copier = by_id.get(PLANTED_COPY[1]), by_id.get(PLANTED_COPY[2])
            if source is not None and copier is not None:
                copier.answers = dict(source.answers)
                copier.sources = {g: vary(text, f"{copier.student_id}/{g}/copy", reorder=source.answers[g].correct,
                                          another_order=True) for g, text in source.sources.items()}
        classes[assignment] = students
    return classes


def submission_notebook(release: nbformat.NotebookNode, answers: dict[str, Answer | str]) -> nbformat.NotebookNode:
    """The release notebook with each answered solution cell filled in (an Answer's source, or the given code)."""
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in answers:
            answer = answers[gid]
            cell.source = answer if isinstance(answer, str) else answer.source
    return nb


def write_class(root: Path, classes: dict[str, list[SyntheticStudent]],
                timestamps: dict[tuple[str, str], datetime.datetime] | None = None) -> int:
    """Write submitted/<student>/<assignment>/ for every synthetic student; returns the count of notebooks.

    ``timestamps``: (assignment, student) -> when that submission was handed in (default: 2026-11-20 12:00 UTC;
    a naive time is read as UTC), written in UTC as nbgrader's ``timestamp.txt``.
    """
    count = 0
    default = datetime.datetime(2026, 11, 20, 12, 0, tzinfo=datetime.UTC)
    for assignment, students in classes.items():
        releases = {p.stem: nbformat.read(p, as_version=4)
                    for p in sorted((root / "release" / assignment).glob("*.ipynb"))}
        data = data_files(root / "release" / assignment)  # a student's folder holds the release's data too
        for student in students:
            folder = root / "submitted" / student.student_id / assignment
            folder.mkdir(parents=True, exist_ok=True)
            for name, release in releases.items():
                nbformat.write(submission_notebook(release, student.code()), folder / f"{name}.ipynb")
                count += 1
            for name, content in data.items():
                (folder / name).write_bytes(content)
            when = (timestamps or {}).get((assignment, student.student_id), default)
            when = when.replace(tzinfo=datetime.UTC) if when.tzinfo is None else when.astimezone(datetime.UTC)
            (folder / "timestamp.txt").write_text(when.isoformat())
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
