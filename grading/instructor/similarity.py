"""Pairs of students whose own code is alike, for a human to review: ``reports/similarity-<assignment>.html``.

``python -m grading similarity A`` compares what each student wrote in assignment A. The report flags pairs;
it is no verdict. Honest students write alike code (an exercise has only a few natural answers, and everyone
read the same lecture), so a flagged pair is a reason to look, side by side, and nothing more.

**Own code.** A student's own code is their solution cells: the release's code cells marked
``solution: true`` that are exercises of the registry (every code solution cell when the assignment has no
registered exercise), with the release's starter code removed: every line that is also a line of the release's
cell (the ``def``/``class`` lines, the docstring, ``# YOUR CODE HERE``, ``raise NotImplementedError()``, the
lines the release provides) is dropped, and so are blank lines. Submissions are read as grading reads them
(:func:`grading.instructor.submissions.stage`: links not followed, reads capped, notebooks validated, a split or
duplicated solution cell merged); a malformed, missing or unreadable notebook is noted in the report and
skipped, never fatal. At most ``MAX_CELL_CHARS`` characters of a cell are compared.

**Fingerprints (copydetect).** Each exercise's own code is fingerprinted on its own by
``copydetect.CodeFingerprint``: pygments tokens, filtered (every name becomes ``V``, function names ``F``, class
names ``O``, strings ``S``; comments and whitespace are dropped), so renamed variables and changed comments
change nothing; the fingerprints are the hashes of the filtered text's k-grams of ``K`` characters, winnowed
with a window of ``WINDOW``. A window of 1 keeps every k-gram: the cells are short, so there is nothing to save,
and copydetect hashes k-grams with Python's ``hash()``, whose seed changes with every process: with a larger
window, which k-grams are kept would change from run to run, and so would the scores. With every k-gram kept
the scores are the same on every run. A reordered statement keeps the fingerprints that lie inside it.

**What is no evidence (copydetect's ``boilerplate``).** The fingerprints of the release's starter cell, and the
fingerprints found in the own code of more than ``common`` students (the ``-m`` of MOSS: a passage that many
wrote is how the exercise is solved, not a copy). By default ``common`` is the larger of ``MIN_COMMON`` (3: a
pair, or three students who shared their work, stay visible) and ``COMMON_SHARE`` (10%) of the students compared:
a fragment shared by up to ``common`` students still counts. The rest are a student's *distinctive* fingerprints.

**Score.** For students A and B and one exercise, the fingerprints they share are the distinctive
fingerprints found in both. A's share of the exercise is that count over all of A's own fingerprints of the
exercise (the common ones included: code that many others wrote dilutes the share rather than adding to it).
A's share of the assignment is the average over the assignment's exercises (an exercise A left blank counts 0);
B's likewise; the pair's score is the smaller of the two shares. Each exercise weighs the same whatever its
length: two honest students who happen to write the same rare answer to one exercise score at most one
exercise's part (1/3 of an assignment of three exercises), while a copy of the whole work scores high in every
exercise and in both directions. Both shares are in the report. A student with fewer than ``MIN_OWN`` own
fingerprints (about two lines of code: a blank or nearly blank submission) is not compared, and is listed.

**Threshold.** ``THRESHOLD`` = 0.5: half of the assignment or more, both ways. Calibrated (``K`` = 20) on

* the sample class of ``make demo`` (32 students per assignment, the catalogue's answers in every student's own
  hand, one planted copy in lstm_gru): the highest honest pair scores 0.25 in rnn_basics (one exercise of four
  shared), 0.33 in hello_ohlol (one of three), 0.17 in lstm_gru; the planted copy scores 0.68;
* the test class of tests/test_similarity.py (9 and 12 independently written correct answers in the catalogue's
  styles, each pair sharing at most one exercise's style, and one disguised copy): honest pairs at most 0.33 in
  hello_ohlol and in lstm_gru; the copies 0.93 and 0.68.

A real class writes more varied code than a catalogue of a few answers per exercise, so honest pairs score
lower there; the histogram of all pairs in the report shows where a class stands.
"""

from __future__ import annotations

import argparse
import html
import io
import itertools
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .course import CourseError, assignments

K = 20  # k-gram length, in filtered characters (copydetect's noise threshold)
WINDOW = 1  # copydetect's winnowing window: 1 keeps every k-gram (see the module docstring)
MIN_COMMON = 3
COMMON_SHARE = 0.10
MIN_OWN = 30  # own fingerprints below which a student is not compared
THRESHOLD = 0.5
MAX_CELL_CHARS = 20_000
TOP_ROWS = 15  # highest-scoring pairs listed in the report, flagged or not
STATEMENT = ("This report flags pairs of students for a human to review. It is no verdict: honest students often "
             "write alike code, and a high score only says that two students' own code shares fragments that few "
             "others in the class wrote. Read the two submissions side by side, and talk to the students, before "
             "concluding anything.")


@dataclass(frozen=True)
class PairScore:
    """Two students' similarity; ``score`` is the smaller of the two shares (see the module docstring)."""

    first: str
    second: str
    score: float
    first_share: float  # of first's own code, the part second also wrote (distinctive), averaged over exercises
    second_share: float
    shared: int  # distinctive fingerprints in common
    exercises: tuple[str, ...]  # the exercises with shared fragments


@dataclass
class SimilarityResult:
    assignment: str
    path: Path
    threshold: float
    pairs: list[PairScore]  # flagged (score >= threshold), highest first
    scores: list[PairScore]  # every pair compared, highest first
    compared: list[str]  # students compared
    not_compared: dict[str, str] = field(default_factory=dict)  # student -> why not
    notes: list[str] = field(default_factory=list)  # what could not be read
    common: int = 0


@dataclass
class _Exercise:
    grade_id: str
    notebook: str
    starter: str


@dataclass
class _Student:
    student: str
    code: dict[str, str] = field(default_factory=dict)  # grade_id -> own code
    own: dict = field(default_factory=dict)  # grade_id -> CodeFingerprint (starter removed)
    distinctive: dict = field(default_factory=dict)  # grade_id -> CodeFingerprint (common ones removed too)

    def own_count(self) -> int:
        return sum(len(fp.hashes) for fp in self.own.values())


# ---------------------------------------------------------------- own code


def own_code(source: str, starter: str) -> str:
    """The student's cell without the release's lines (compared stripped) and without blank lines."""
    provided = {line.strip() for line in starter.splitlines() if line.strip()}
    return "\n".join(line.rstrip() for line in source.splitlines() if line.strip() and line.strip() not in provided)


def exercise_cells(root: Path, assignment: str) -> list[_Exercise]:
    """The release's solution cells that are exercises, in notebook order."""
    from .exercises import EXERCISES

    registered = {gid for gid, ex in EXERCISES.items() if ex.assignment == assignment}
    found = []
    for path in sorted((root / "release" / assignment).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            gid = meta.get("grade_id")
            if cell.cell_type == "code" and meta.get("solution") and gid and (not registered or gid in registered):
                found.append(_Exercise(gid, path.stem, cell.source))
    return found


def read_own_code(root: Path, assignment: str,
                  exercises: list[_Exercise]) -> tuple[dict[str, dict[str, str]], list[str], set[str]]:
    """student -> {grade_id: own code}, notes on what could not be read, and the students of whom nothing could
    be read (never raises on a submission)."""
    from .submissions import stage, students_with

    by_notebook: dict[str, list[_Exercise]] = {}
    for ex in exercises:
        by_notebook.setdefault(ex.notebook, []).append(ex)
    code: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    unreadable: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="similarity-") as tmp:
        for student in students_with(root, assignment):
            staged = stage(root, Path(tmp), assignment, student)
            for name in by_notebook:
                if name not in staged.notebooks:
                    reasons = staged.anomalies.get(name) or ["not read"]
                    notes += [f"{student}: {name}.ipynb skipped: {reason}" for reason in reasons]
            notes += [f"{student}: {reason}" for reason in staged.anomalies.get("*", [])]
            if not staged.notebooks:
                unreadable.add(student)
            cells: dict[str, str] = {}
            for name in staged.notebooks:
                try:
                    nb = nbformat.read(Path(tmp) / student / assignment / f"{name}.ipynb", as_version=4)
                except Exception as exc:  # noqa: BLE001 - one odd notebook never stops the report
                    notes.append(f"{student}: {name}.ipynb skipped: could not be read ({type(exc).__name__})")
                    continue
                sources = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id"): c.get("source", "")
                           for c in nb.cells if c.get("cell_type") == "code"}
                for ex in by_notebook.get(name, []):
                    text = sources.get(ex.grade_id)
                    if isinstance(text, str):
                        if len(text) > MAX_CELL_CHARS:
                            notes.append(f"{student}: {ex.grade_id}: only the first {MAX_CELL_CHARS:,} characters "
                                         "were compared")
                        cells[ex.grade_id] = own_code(text[:MAX_CELL_CHARS], ex.starter)
            code[student] = cells
    return code, notes, unreadable


# ---------------------------------------------------------------- fingerprints and scores


def fingerprint(code: str, name: str, boilerplate=None):
    """copydetect's fingerprint of one exercise's code (Python tokens, names normalised)."""
    import numpy as np
    from copydetect import CodeFingerprint

    plate = np.array(sorted(boilerplate), dtype=np.int64) if boilerplate else None
    return CodeFingerprint(f"{name}.py", K, WINDOW, boilerplate=plate, fp=io.StringIO(code), language="python")


def _hashes(fp) -> set[int]:
    return {int(h) for h in fp.hashes}


def common_limit(compared: int) -> int:
    """Fingerprints found in more than this many students are no evidence."""
    return max(MIN_COMMON, math.ceil(COMMON_SHARE * compared))


def score_pairs(students: dict[str, _Student], exercises: list[_Exercise]) -> list[PairScore]:
    """Every pair of the given students, highest score first (ties by name)."""
    scores = []
    n = max(1, len(exercises))
    for a, b in itertools.combinations(sorted(students), 2):
        sa, sb = students[a], students[b]
        shared, where, share_a, share_b = 0, [], 0.0, 0.0
        for ex in exercises:
            fa, fb = sa.distinctive.get(ex.grade_id), sb.distinctive.get(ex.grade_id)
            if fa is None or fb is None:
                continue
            common = len(_hashes(fa) & _hashes(fb))
            if common:
                shared += common
                where.append(ex.grade_id)
                share_a += common / max(1, len(sa.own[ex.grade_id].hashes)) / n
                share_b += common / max(1, len(sb.own[ex.grade_id].hashes)) / n
        scores.append(PairScore(a, b, min(share_a, share_b), share_a, share_b, shared, tuple(where)))
    return sorted(scores, key=lambda p: (-p.score, p.first, p.second))


def analyse(code: dict[str, dict[str, str]], exercises: list[_Exercise], common: int | None = None,
            notes: list[str] | None = None) -> tuple[dict[str, _Student], dict[str, str], int]:
    """Fingerprint every student's own code; returns (students compared, not compared with the reason, common)."""
    notes = [] if notes is None else notes
    starters = {ex.grade_id: _hashes(fingerprint(ex.starter, ex.grade_id)) for ex in exercises}
    everyone: dict[str, _Student] = {}
    for student, cells in code.items():
        s = _Student(student)
        for g, text in cells.items():
            if g not in starters or not text:
                continue
            try:
                s.own[g] = fingerprint(text, g, starters[g])
            except Exception as exc:  # noqa: BLE001 - one odd cell never stops the report
                notes.append(f"{student}: {g}: not compared (the code could not be fingerprinted: "
                             f"{type(exc).__name__})")
                continue
            s.code[g] = text
        everyone[student] = s
    compared = {name: s for name, s in everyone.items() if s.own_count() >= MIN_OWN}
    skipped = {name: f"too little own code to compare ({s.own_count()} fingerprints, fewer than {MIN_OWN})"
               for name, s in everyone.items() if name not in compared}
    limit = common if common is not None else common_limit(len(compared))
    for ex in exercises:
        counts: dict[int, int] = {}
        for s in compared.values():
            if ex.grade_id in s.own:
                for h in _hashes(s.own[ex.grade_id]):
                    counts[h] = counts.get(h, 0) + 1
        plate = starters[ex.grade_id] | {h for h, n in counts.items() if n > limit}
        for s in compared.values():
            if ex.grade_id in s.own:
                s.distinctive[ex.grade_id] = fingerprint(s.code[ex.grade_id], ex.grade_id, plate)
    return compared, skipped, limit


def similarity_report(root: Path, assignment: str, threshold: float | None = None,
                      common: int | None = None) -> SimilarityResult:
    """Compare the own code of every student who submitted ``assignment``; write reports/similarity-<A>.html."""
    root = Path(root)
    if assignment not in assignments(root):
        raise CourseError(f"unknown assignment {assignment!r}: the assignments are the folders of "
                          f"{root / 'source'} ({', '.join(assignments(root)) or 'none'})")
    if not (root / "release" / assignment).is_dir():
        raise CourseError(f"{assignment} has no release in {root / 'release'}: run python -m grading release")
    threshold = THRESHOLD if threshold is None else float(threshold)
    exercises = exercise_cells(root, assignment)
    code, notes, unreadable = read_own_code(root, assignment, exercises)
    students, skipped, limit = analyse(code, exercises, common, notes)
    skipped.update({s: "no notebook of the submission could be read (see the notes)" for s in unreadable})
    scores = score_pairs(students, exercises)
    result = SimilarityResult(assignment, root / "reports" / f"similarity-{assignment}.html", threshold,
                              [p for p in scores if p.score >= threshold], scores, sorted(students), skipped, notes,
                              limit)
    result.path.parent.mkdir(parents=True, exist_ok=True)
    # errors="replace": a lone surrogate in a notebook string cannot stop the page
    result.path.write_text(render(result, students, exercises), encoding="utf-8", errors="replace")
    return result


# ---------------------------------------------------------------- the page


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def highlighted(code: str, slices) -> str:
    """``code`` escaped, with the character ranges ``slices`` (copydetect's 2xN starts/ends) in <mark>."""
    ranges = []
    if slices is not None and len(slices) == 2 and len(slices[0]):
        ranges = sorted((max(0, int(s)), min(len(code), int(e))) for s, e in zip(slices[0], slices[1], strict=True))
    out, pos = [], 0
    for start, end in ranges:
        start = max(start, pos)
        if end <= start:
            continue
        out += [_e(code[pos:start]), "<mark>", _e(code[start:end]), "</mark>"]
        pos = end
    out.append(_e(code[pos:]))
    return "".join(out)


def _pair_section(pair: PairScore, students: dict[str, _Student], exercises: list[_Exercise]) -> list[str]:
    from copydetect import compare_files

    a, b = students[pair.first], students[pair.second]
    parts = [f"<h3>{_e(pair.first)} and {_e(pair.second)}: score {pair.score:.2f}</h3>",
             f"<p>{pair.shared} distinctive fingerprints in common: {pair.first_share:.0%} of {_e(pair.first)}'s own "
             f"code, {pair.second_share:.0%} of {_e(pair.second)}'s (averaged over the exercises). Below, each "
             "exercise's own code (the release's lines left out); highlighted: the fragments found in both. "
             "Fragments that many students wrote are not highlighted.</p>"]
    for ex in exercises:
        if ex.grade_id not in pair.exercises:
            continue
        _, _, (slices_a, slices_b) = compare_files(a.distinctive[ex.grade_id], b.distinctive[ex.grade_id])
        parts.append(f"<h4>{_e(ex.grade_id)} ({_e(ex.notebook)}.ipynb)</h4>"
                     f"<table class='side'><tr><th>{_e(pair.first)}</th><th>{_e(pair.second)}</th></tr><tr>"
                     f"<td><pre>{highlighted(a.code[ex.grade_id], slices_a)}</pre></td>"
                     f"<td><pre>{highlighted(b.code[ex.grade_id], slices_b)}</pre></td></tr></table>")
    return parts


def _histogram(result: SimilarityResult) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _png

    fig, ax = plt.subplots(figsize=(7, 2.8))
    values = [p.score for p in result.scores]
    ax.hist(values, bins=[i / 40 for i in range(41)], color="#4878a8", edgecolor="white")
    ax.axvline(result.threshold, color="#c0392b", linestyle="--", label=f"threshold {result.threshold:g}")
    ax.set_xlim(0, 1)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("pair score (smaller share of own code found in the other student)")
    ax.set_ylabel("pairs of students")
    ax.legend(loc="upper right")
    return f'<img alt="distribution of pair scores" src="{_png(fig)}">'


def render(result: SimilarityResult, students: dict[str, _Student], exercises: list[_Exercise]) -> str:
    from copydetect import __version__ as copydetect_version

    from .report import _none, _table

    pairs = len(result.scores)
    params = [("threshold (flag pairs scoring at least)", f"{result.threshold:g}"),
              ("k-gram length (filtered characters)", K), ("winnowing window", WINDOW),
              ("common fragments: ignored when found in more than", f"{result.common} students"),
              ("minimum own code to be compared", f"{MIN_OWN} fingerprints"),
              ("students compared", f"{len(result.compared)} ({pairs} pairs)"),
              ("exercises", ", ".join(ex.grade_id for ex in exercises) or "none"),
              ("fingerprints", f"copydetect {copydetect_version}")]
    flagged = [(p.first, p.second, f"{p.score:.2f}", f"{p.first_share:.0%}", f"{p.second_share:.0%}",
                ", ".join(p.exercises)) for p in result.pairs]
    top = [(p.first, p.second, f"{p.score:.2f}", f"{p.first_share:.0%}", f"{p.second_share:.0%}",
            ", ".join(p.exercises) or "-", "flagged" if p.score >= result.threshold else "")
           for p in result.scores[:TOP_ROWS]]
    header = ["student", "student", "score", "share of the first's own code", "share of the second's", "exercises"]
    parts = [f"<h1>Similarity of students' own code: {_e(result.assignment)}</h1>",
             f"<p class='statement'><b>{_e(STATEMENT)}</b></p>",
             "<h2>Parameters</h2>", _table(["parameter", "value"], params),
             f"<h2>Pairs to review ({len(result.pairs)})</h2>",
             _table(header, flagged) if flagged else _none()]
    for pair in result.pairs:
        parts += _pair_section(pair, students, exercises)
    parts += ["<h2>The whole class</h2>",
              f"<p>Scores of all {pairs} pairs; the dashed line is the threshold.</p>",
              _histogram(result) if pairs else _none(),
              f"<h3>The {min(TOP_ROWS, pairs)} highest-scoring pairs</h3>",
              _table([*header, ""], top) if top else _none(),
              "<h2>Not compared</h2>",
              _table(["student", "why"], sorted(result.not_compared.items())) if result.not_compared else _none(),
              "<h2>Notes: what could not be read or compared</h2>",
              _table(["note"], [(n,) for n in result.notes]) if result.notes else _none()]
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Similarity: {_e(result.assignment)}</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%;text-align:left;vertical-align:top}"
            "table.side td{width:50%}pre{margin:0;white-space:pre-wrap;font-size:85%}mark{background:#ffd54f}"
            ".statement{border-left:4px solid #c0392b;padding-left:1em}</style></head><body>"
            + "\n".join(parts) + "</body></html>")


# ---------------------------------------------------------------- command line


def cmd_similarity(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve()
    result = similarity_report(root, args.assignment, args.threshold)
    print(f"{len(result.compared)} students compared ({len(result.scores)} pairs), "
          f"threshold {result.threshold:g}: {len(result.pairs)} {'pair' if len(result.pairs) == 1 else 'pairs'} "
          "to review")
    for p in result.pairs:
        print(f"  {p.first} + {p.second}: {p.score:.2f} ({', '.join(p.exercises)})")
    for student, why in sorted(result.not_compared.items()):
        print(f"  not compared: {student}: {why}")
    if result.notes:
        print(f"  {len(result.notes)} notebooks could not be read (listed in the report)")
    print(f"report: {result.path} (pairs for a human to review, no verdict)")
    return 0


def add_similarity_command(sub, command, root_parser) -> None:
    """``similarity ASSIGNMENT [--threshold T]``."""
    p = command(sub, "similarity", cmd_similarity,
                "pairs of students whose own code is alike, for a human to review: "
                "reports/similarity-<assignment>.html", root_parser)
    p.add_argument("assignment", help="assignment id, a folder of source/")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"flag pairs scoring at least this (default {THRESHOLD:g}, calibrated on the sample class)")


__all__ = ["PairScore", "SimilarityResult", "add_similarity_command", "cmd_similarity", "similarity_report"]
