"""Grades for an LMS: ``python -m grading export --format csv|canvas|moodle [--assignment A] [--missing-as-zero]``.

Writes ``reports/export-<format>.csv`` (every assignment) or ``reports/export-<format>-<A>.csv`` (one) under the
course root and prints its path. Every score is ``scores.AssignmentScore.final``: nbgrader's score (a grader's
manual score where there is one, else the verified automatic score, plus extra credit) minus the late penalty,
never below zero, written with at most 2 decimals (``7.5``, ``10``, ``3.25``). A student with no submission gets
an empty cell, not 0, unless ``--missing-as-zero``. The rows are the gradebook's students, sorted by id.

``csv``: ``student,first_name,last_name,email``, then per assignment ``<A>`` (the final score) and
``<A> late penalty`` (the points taken off; 0 when on time), then ``total`` (the sum of the final scores; empty
only when the student submitted nothing). UTF-8 without a byte order mark, like ``reports/grades.csv``: for
scripts and spreadsheets.

``canvas``: the gradebook import file of Canvas (Grades > Import). Header
``Student,ID,SIS User ID,SIS Login ID,Section``, then one column per assignment, titled with the assignment's
name; second row ``Points Possible`` with each assignment's maximum score. We fill ``Student`` with
"Last, First" (Canvas's sortable name), leave ``ID`` (Canvas's internal user id, unknown here) and ``Section``
empty, and put the roster's ``id`` in ``SIS User ID`` and its ``email`` in ``SIS Login ID``. How Canvas reads
it (its importer, ``app/models/gradebook_importer.rb`` in instructure/canvas-lms, and the exporter that writes
the same layout, ``lib/gradebook_exporter.rb``; Canvas's guide "How do I import grades in the Gradebook?",
https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807):

- the header is recognised by ``Student`` and ``ID`` in the first two columns, ``SIS User ID`` and
  ``SIS Login ID`` in the next two and ``Section`` last among the student columns;
- a student is found by ``ID``; ours is empty, so by the ``SIS User ID`` among the SIS ids of the course's
  account, else by the ``SIS Login ID`` among its logins, else by ``Student`` equal to the user's name or sortable
  name. So the roster's ids must be the SIS user ids Canvas has for these students (or its emails their Canvas
  logins); a student Canvas cannot find is shown as not found on the import page, before anything is saved;
- an assignment column titled ``Name (123)`` updates Canvas assignment 123; a title without an id updates the
  published assignment with exactly that title, and otherwise creates a new assignment of that name. Name the
  Canvas assignments like ours (or put ``(<canvas id>)`` after the names in the header) to fill existing ones;
- a row whose first cell contains ``Points Possible`` sets the assignments' points possible (Canvas's own export
  writes it as the second row). Keep the points of an existing Canvas assignment equal to our maximum;
- Canvas compares every cell with the score it holds and shows only the changes on its import page (an empty cell
  where Canvas has a score is one of them: check it there before saving).

The file is UTF-8 with a byte order mark, so that Excel shows accented names right when an instructor opens it
first: Canvas's exporter writes one too when the user asks for it, and its importer finds the header columns by
substring, so the mark before ``Student`` does not disturb it.

``moodle``: Moodle's "Import grades from CSV file" (Grades > Import > CSV file): ``First name,Last name,
ID number,Email address``, then one column per assignment, titled with its name. Moodle matches nothing by
itself: on its preview page the instructor picks "Map from" = ``Email address`` and "Map to" = Email address
(or ``ID number`` to ID number, when the Moodle profiles' ID numbers are the roster's ids), then, for each
assignment column, the grade item it fills (or "New grade item"), and "Ignore" for the name columns. How Moodle
reads it (``grade/import/csv`` and ``lib/csvlib.class.php`` in moodle/moodle; MoodleDocs "Grade import",
https://docs.moodle.org/en/Grade_import): a byte order mark is removed; a row whose user is not found stops the
whole import, nothing is saved; an empty cell (or ``-``) sets "no grade" for that item, removing a grade Moodle
had; the grade is not rescaled, so each grade item's maximum grade must be our maximum score; grades above 100
need the site's ``unlimitedgrades``.
The file is UTF-8 with a byte order mark (Moodle's import form defaults to UTF-8).

Spreadsheet formula injection: a text cell from the roster (id, names, email, Canvas's "Last, First") that
begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``, so that a spreadsheet
opening the file shows it as text instead of running it (OWASP, "CSV Injection",
https://owasp.org/www-community/attacks/CSV_Injection). Scores are numbers we format ourselves and are never
changed. A student whose name is protected so will not be found by name in Canvas (by the SIS ids they still
are); an email beginning with one of these characters no longer matches in Moodle.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .course import CourseError
from .scores import AssignmentScore, StudentInfo, assignment_scores

FORMATS = ("csv", "canvas", "moodle")
CANVAS_STUDENT_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_POINTS_POSSIBLE = "Points Possible"
MOODLE_STUDENT_COLUMNS = ("First name", "Last name", "ID number", "Email address")
CSV_STUDENT_COLUMNS = ("student", "first_name", "last_name", "email")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"


def number(value: float) -> str:
    """A score as a CSV cell: at most 2 decimals, no float noise, no trailing zeros (``7.5``, ``10``, ``0.3``)."""
    text = f"{round(float(value), 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def text_cell(value: str) -> str:
    """A roster text as a cell that no spreadsheet runs as a formula: a leading ``'`` before ``= + - @``,
    a tab or a carriage return."""
    value = value or ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def sortable_name(student: StudentInfo) -> str:
    """Canvas's "Last, First" (one of them when the other is empty; the id when both are)."""
    return ", ".join(part for part in (student.last_name, student.first_name) if part) or student.id


def _score(entry: AssignmentScore | None, missing_as_zero: bool) -> str:
    if entry is not None and entry.submitted:
        return number(entry.final)
    return "0" if missing_as_zero else ""


def _maxima(assignments: Sequence[str], table: Mapping[tuple[str, str], AssignmentScore]) -> dict[str, float]:
    maxima: dict[str, float] = {}
    for entry in table.values():
        maxima.setdefault(entry.assignment, entry.max_score)
    return {name: maxima[name] for name in assignments if name in maxima}


def export_rows(fmt: str, assignments: Sequence[str], students: Sequence[StudentInfo],
                table: Mapping[tuple[str, str], AssignmentScore],
                missing_as_zero: bool = False) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of an export (the module's docstring describes each format).

    ``assignments``, ``students`` and ``table`` are what ``scores.assignment_scores`` returns (``assignments``
    may be a subset); a (student, assignment) pair missing from ``table`` counts as not submitted. Canvas's
    rows start with its Points Possible row."""
    if fmt not in FORMATS:
        raise CourseError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    rows: list[list[str]] = []
    if fmt == "csv":
        header = [*CSV_STUDENT_COLUMNS]
        for name in assignments:
            header += [name, f"{name} late penalty"]
        header.append("total")
        for student in students:
            row = [text_cell(student.id), text_cell(student.first_name), text_cell(student.last_name),
                   text_cell(student.email)]
            submitted = [table.get((student.id, name)) for name in assignments]
            for entry in submitted:
                row.append(_score(entry, missing_as_zero))
                row.append(number(entry.late_penalty) if entry is not None and entry.submitted
                           else ("0" if missing_as_zero else ""))
            finals = [entry.final for entry in submitted if entry is not None and entry.submitted]
            row.append(number(sum(finals)) if finals or missing_as_zero else "")
            rows.append(row)
        return header, rows
    if fmt == "canvas":
        header = [*CANVAS_STUDENT_COLUMNS, *assignments]
        maxima = _maxima(assignments, table)
        blank = [""] * (len(CANVAS_STUDENT_COLUMNS) - 1)
        rows.append([CANVAS_POINTS_POSSIBLE, *blank,
                     *(number(maxima[name]) if name in maxima else "" for name in assignments)])
        for student in students:
            rows.append([text_cell(sortable_name(student)), "", text_cell(student.id), text_cell(student.email), "",
                         *(_score(table.get((student.id, name)), missing_as_zero) for name in assignments)])
        return header, rows
    header = [*MOODLE_STUDENT_COLUMNS, *assignments]
    for student in students:
        rows.append([text_cell(student.first_name), text_cell(student.last_name), text_cell(student.id),
                     text_cell(student.email),
                     *(_score(table.get((student.id, name)), missing_as_zero) for name in assignments)])
    return header, rows


def export_text(fmt: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The file's text: RFC 4180 CSV (fields quoted when needed, CRLF line ends), with a byte order mark for
    Canvas and Moodle."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return (BOM if fmt in ("canvas", "moodle") else "") + out.getvalue()


def export_path(root: Path, fmt: str, assignment: str | None = None) -> Path:
    """``reports/export-<format>.csv``, or ``reports/export-<format>-<assignment>.csv`` for one assignment."""
    suffix = f"-{assignment}" if assignment else ""
    return Path(root) / "reports" / f"export-{fmt}{suffix}.csv"


def write_export(root: Path, fmt: str, assignment: str | None = None, missing_as_zero: bool = False) -> Path:
    """Write the export of the course at ``root`` (every assignment, or ``assignment``); return its path.

    A CourseError for an unknown format or assignment, or a course without a gradebook."""
    if fmt not in FORMATS:
        raise CourseError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    names, students, table = assignment_scores(Path(root))
    if assignment is not None:
        if assignment not in names:
            raise CourseError(f"unknown assignment {assignment!r} (known: {', '.join(names) or 'none'})")
        names = [assignment]
    header, rows = export_rows(fmt, names, students, table, missing_as_zero)
    path = export_path(Path(root), fmt, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(export_text(fmt, header, rows), encoding="utf-8", newline="")
    os.replace(partial, path)  # never a half-written file where an instructor looks for the export
    return path


def cmd_export(args) -> int:
    path = write_export(Path(args.root).resolve(), args.format, args.assignment, args.missing_as_zero)
    print(path)
    return 0


def add_export_command(sub, command, root_parser) -> None:
    """``export``: the grades as a CSV file for Canvas, Moodle or a spreadsheet."""
    p = command(sub, "export", cmd_export, "write the grades (with late penalties and manual scores) as a CSV for "
                "Canvas's or Moodle's grade import, or a plain CSV, into reports/; prints its path", root_parser)
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="csv: id, names, email, score and late penalty per assignment, total; canvas: Canvas's "
                        "gradebook import (students matched by SIS User ID = roster id, SIS Login ID = email); "
                        "moodle: Moodle's CSV grade import (map Email address or ID number)")
    p.add_argument("--assignment", help="one assignment only (default: every assignment in the gradebook)")
    p.add_argument("--missing-as-zero", action="store_true",
                   help="0 for a student who submitted nothing (default: an empty cell, which the LMS reads as "
                        "no grade)")
