"""reports/grades.csv and reports/report.html, from the gradebook and the grader's results files.

A results file (``reports/results/<assignment>/<student>.json``) is written per graded submission; its
``grading_error`` (a grader-side failure: regrade) and ``kept_previous`` (the earlier grade was restored)
keys may be absent in files from older runs. Every student, from the gradebook or from a results file,
appears in the report; every value put into the HTML page is escaped.
"""

from __future__ import annotations

import base64
import collections
import csv
import html
import io
import json
from pathlib import Path

from nbgrader.api import MissingEntry

from .database import open_gradebook
from .messages import cut_at_sentence

SLOWEST = 10


def gradebook_table(root: Path) -> tuple[list[str], list[dict], dict[str, float]]:
    """Columns ``assignment/notebook`` and one row per student: {student, <column>: score|None, total}.

    Scores are nbgrader's: a grader's manual score where there is one, else the verified automatic score,
    less the notebook's late penalty (never below 0), as the feedback and the LMS exports state them."""
    with open_gradebook(root) as gb:
        columns = [f"{a.name}/{n.name}" for a in sorted(gb.assignments, key=lambda a: a.name)
                   for n in sorted(a.notebooks, key=lambda n: n.name)]
        rows = []
        for student in sorted(gb.students, key=lambda s: s.id):
            row = {"student": student.id}
            for column in columns:
                assignment, notebook = column.split("/")
                try:
                    nb = gb.find_submission_notebook(notebook, assignment, student.id)
                    row[column] = max(0.0, float(nb.score) - float(nb.late_submission_penalty or 0.0))
                except MissingEntry:
                    row[column] = None
            row["total"] = sum(v for k, v in row.items() if k in columns and v is not None)
            rows.append(row)
        maxima = {f"{a.name}/{n.name}": float(n.max_score) for a in gb.assignments for n in a.notebooks}
    return columns, rows, maxima


def load_results(root: Path) -> list[dict]:
    """Every results file, sorted by assignment then student; an unreadable one becomes a grading error."""
    base = root / "reports" / "results"
    return [read_result(p) for p in sorted(base.glob("*/*.json"))] if base.is_dir() else []


def read_result(path: Path) -> dict:
    """One results file with its optional keys filled in (old files lack ``grading_error`` and ``kept_previous``)."""
    try:
        res = json.loads(path.read_text())
        if not isinstance(res, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        res = {"grading_error": f"unreadable results file {path.name}: {exc}"}
    res.setdefault("student", path.stem)
    res.setdefault("assignment", path.parent.name)
    res["notebooks"] = res.get("notebooks") if isinstance(res.get("notebooks"), dict) else {}
    res["seconds"] = res.get("seconds") if isinstance(res.get("seconds"), dict) else {}
    res["grading_error"] = res.get("grading_error") or None
    res["kept_previous"] = bool(res.get("kept_previous"))
    return res


def error_assignments(results: list[dict]) -> dict[str, list[str]]:
    """student -> the assignments whose results file records a grading error."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    for res in results:
        if res["grading_error"]:
            found[str(res["student"])].append(str(res["assignment"]))
    return found


def all_students(rows: list[dict], results: list[dict]) -> list[str]:
    """Students in the gradebook or in any results file, sorted."""
    return sorted({row["student"] for row in rows} | {str(res["student"]) for res in results})


def write_grades_csv(root: Path) -> Path:
    """reports/grades.csv: one row per student, a column per notebook, the total and the grading errors.

    A student known only from a results file (not in the gradebook) gets empty scores and total.
    """
    columns, rows, _ = gradebook_table(root)
    errors = error_assignments(load_results(root))
    by_student = {row["student"]: row for row in rows}
    path = root / "reports" / "grades.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *columns, "total", "grading_error"])
        for student in sorted(set(by_student) | set(errors)):
            row = by_student.get(student)
            scores = [_csv_number(row[c]) if row else "" for c in columns]
            total = _csv_number(row["total"]) if row else ""
            writer.writerow([student, *scores, total, " ".join(errors.get(student, []))])
    return path


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def grade_table_text(root: Path) -> str:
    """The grade table printed at the end of a run."""
    columns, rows, maxima = gradebook_table(root)
    short = [c.split("/")[1] for c in columns]
    widths = [max(len(s), 7) for s in short]
    header = f"{'student':<14}" + "".join(f"{s:>{w + 2}}" for s, w in zip(short, widths, strict=True)) + f"{'total':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = "".join(f"{'-' if row[c] is None else format(row[c], 'g'):>{w + 2}}"
                        for c, w in zip(columns, widths, strict=True))
        lines.append(f"{row['student']:<14}{cells}{row['total']:>9g}")
    total_max = sum(maxima.values())
    maxima_cells = "".join(f"{maxima[c]:>{w + 2}g}" for c, w in zip(columns, widths, strict=True))
    lines.append(f"{'max':<14}{maxima_cells}{total_max:>9g}")
    return "\n".join(lines)


# ---------------------------------------------------------------- report.html

def write_report(root: Path) -> Path:
    """reports/report.html: grading errors first, then every student's grades, plots and tables."""
    import matplotlib

    matplotlib.use("Agg")
    results = load_results(root)
    columns, rows, maxima = gradebook_table(root)
    stats = collect(results)
    parts = ["<h1>RNN course: grading report</h1>", summary_paragraph(rows, results),
             *errors_section(results), *students_section(columns, rows, maxima, results), *term_section(root),
             *histograms_section(columns, rows, maxima), *pass_rate_section(stats),
             "<h2>Most frequent failures</h2>",
             _table(["test cell", "message", "students"],
                    [(k, m, n) for (k, m), n in stats["failures"].most_common(15)]),
             "<h2>Tampering and disagreements (flagged)</h2>",
             _table(["student", "notebook", "what was detected"], stats["flags"]) if stats["flags"] else _none(),
             "<h2>Ungradable or repaired submissions</h2>",
             _table(["student", "notebook", "reason"], stats["problems"]) if stats["problems"] else _none(),
             *slowest_section(stats["timings"])]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Grading report</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%;text-align:left}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    path = root / "reports" / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path


def term_section(root: Path) -> list[str]:
    """Late submissions per assignment (with the penalty taken), the extensions granted, similarity reports."""
    from .scores import assignment_scores
    from .term import TERM_FILE, TermError, late_days, load_term

    names, _, table = assignment_scores(root)
    try:
        term = load_term(root)
        problem = None
    except TermError as exc:
        term, problem = None, str(exc)
    parts = ["<h2>Late submissions</h2>"]
    if problem:
        parts.append(f"<p><b>{html.escape(TERM_FILE)} cannot be read:</b> {html.escape(problem)}</p>")
    elif term is None:
        parts.append(f"<p>No {TERM_FILE}: due dates and extensions are the gradebook's, and no late policy applies."
                     "</p>")
    elif term.policy:
        parts.append(f"<p>Late policy ({TERM_FILE}): {html.escape(term.policy.describe())}.</p>")
    rows = []
    for name in names:
        late = sorted(s for (s, a), score in table.items()
                      if a == name and score.submitted and score.seconds_late > 0)
        due = term.due[name].isoformat() if term and name in term.due else "-"
        who = ", ".join(f"{s} ({late_days(table[s, name].seconds_late)} d, -{table[s, name].late_penalty:g})"
                        for s in late)
        rows.append((name, due, len(late), who or "-"))
    parts.append(_table(["assignment", "due", "late submissions", "student (days late, points off)"], rows))
    parts.append("<h2>Extensions granted</h2>")
    granted = term.granted() if term else []
    parts.append(_table(["student", "assignment", "new due date", "reason"],
                        [(s, a, e.due.isoformat(), e.reason) for s, a, e in granted]) if granted else _none())
    links = sorted((root / "reports").glob("similarity-*.html")) if (root / "reports").is_dir() else []
    parts.append("<h2>Similarity of students' code</h2>")
    parts.append("<ul>" + "".join(f'<li><a href="{html.escape(p.name)}">{html.escape(p.stem)}</a></li>'
                                  for p in links) + "</ul>" if links else
                 "<p>No similarity report yet: <code>python -m grading similarity ASSIGNMENT</code>.</p>")
    return parts


def summary_paragraph(rows: list[dict], results: list[dict]) -> str:
    """Counts of students, graded submissions and grading errors."""
    errors = [res for res in results if res["grading_error"]]
    kept = sum(res["kept_previous"] for res in errors)
    text = (f"{len(all_students(rows, results))} students, {len(results)} graded submissions, "
            f"{len(errors)} grading errors (regrade these)")
    if kept:
        text += f", of which {kept} kept an earlier grade"
    return f"<p>{html.escape(text)}.</p>"


def errors_section(results: list[dict]) -> list[str]:
    """Submissions the grader failed on: regrade them."""
    rows = [(res["student"], res["assignment"], res["grading_error"], "earlier grade kept" if res["kept_previous"]
             else "graded cells set to 0") for res in results if res["grading_error"]]
    body = _table(["student", "assignment", "grading error", "grade now"], rows) if rows else _none()
    return ["<h2>Grading errors (regrade these)</h2>", body]


def students_section(columns: list[str], rows: list[dict], maxima: dict[str, float],
                     results: list[dict]) -> list[str]:
    """Every student (gradebook and results files): points per assignment, total, and what went wrong."""
    assignments = sorted({c.split("/")[0] for c in columns})
    by_student = {row["student"]: row for row in rows}
    notes = student_notes(results)
    table_rows = []
    for student in all_students(rows, results):
        row = by_student.get(student)
        points = [_assignment_points(row, columns, a) for a in assignments]
        total = f"{row['total']:g}" if row else "-"
        extra = notes.get(student, []) + ([] if row else ["not in the gradebook"])
        table_rows.append((student, *points, total, "; ".join(extra)))
    header = ["student", *(f"{a} (max {sum(maxima[c] for c in columns if c.startswith(a + '/')):g})"
                           for a in assignments), "total", "notes"]
    return ["<h2>Grades per student</h2>", _table(header, table_rows)]


def student_notes(results: list[dict]) -> dict[str, list[str]]:
    """student -> short notes: grading errors, errors, flags, repairs."""
    notes: dict[str, list[str]] = collections.defaultdict(list)
    for res in results:
        student, assignment = str(res["student"]), res["assignment"]
        if res["grading_error"]:
            notes[student].append(f"{assignment}: grading error"
                                  + (" (earlier grade kept)" if res["kept_previous"] else ""))
        if _own_error(res):
            notes[student].append(f"{assignment}: not graded ({res['error']})")
        notebooks = [nb for nb in res["notebooks"].values() if isinstance(nb, dict)]
        if any(nb.get("flags") for nb in notebooks):
            notes[student].append(f"{assignment}: flagged")
        if any(nb.get("anomalies") or nb.get("incident") for nb in notebooks):
            notes[student].append(f"{assignment}: ungradable or repaired")
    return notes


def _assignment_points(row: dict | None, columns: list[str], assignment: str) -> str:
    """A student's points on one assignment, or '-' when nothing of it is in the gradebook."""
    scores = [row[c] for c in columns if c.startswith(assignment + "/")] if row else []
    return f"{sum(s for s in scores if s is not None):g}" if any(s is not None for s in scores) else "-"


def collect(results: list[dict]) -> dict:
    """Per-test-cell pass counts and failure messages, flags, problems and one timing per executed notebook."""
    stats = {"passed": collections.Counter(), "tried": collections.Counter(), "failures": collections.Counter(),
             "flags": [], "problems": [], "timings": []}
    for res in results:
        zeroed = res["grading_error"] and not res["kept_previous"]  # its cells hold no verdict, only the error
        for name, nb in res["notebooks"].items():
            if isinstance(nb, dict) and not zeroed:
                _collect_notebook(stats, res, name, nb)
        if _own_error(res):
            stats["problems"].append((res["student"], res["assignment"], res["error"]))
    return stats


def _own_error(res: dict) -> str | None:
    """The submission's error, unless it only repeats the grading error (listed in its own section)."""
    return res["error"] if res.get("error") and res["error"] != res["grading_error"] else None


def _collect_notebook(stats: dict, res: dict, name: str, nb: dict) -> None:
    where = f"{res['assignment']}/{name}"
    cells = nb.get("cells") if isinstance(nb.get("cells"), dict) else {}
    for tid, cell in cells.items():
        if not isinstance(cell, dict):
            continue
        key = f"{where}/{tid}"
        stats["tried"][key] += 1
        if (cell.get("score") or 0) >= (cell.get("max_score") or 0):
            stats["passed"][key] += 1
        elif cell.get("message"):
            stats["failures"][(key, cut_at_sentence(str(cell["message"])))] += 1
    stats["flags"].extend((res["student"], where, flag) for flag in nb.get("flags") or [])
    problems = list(nb.get("anomalies") or []) + ([nb["incident"]] if nb.get("incident") else [])
    stats["problems"].extend((res["student"], where, problem) for problem in problems)
    if nb.get("execute_seconds") is not None:
        kernel, verifier = float(nb["execute_seconds"]), float(nb.get("verify_seconds") or 0)
        stats["timings"].append((kernel + verifier, res["student"], where, {"kernel": kernel, "verifier": verifier}))


def histograms_section(columns: list[str], rows: list[dict], maxima: dict[str, float]) -> list[str]:
    """One histogram of total points per assignment (gradebook scores)."""
    import matplotlib.pyplot as plt

    assignments = sorted({c.split("/")[0] for c in columns})
    fig, axes = plt.subplots(1, max(1, len(assignments)), figsize=(4 * max(1, len(assignments)), 2.8), squeeze=False)
    for ax, assignment in zip(axes[0], assignments, strict=False):
        cols = [c for c in columns if c.startswith(assignment + "/")]
        totals = [sum(r[c] or 0 for c in cols) for r in rows if any(r[c] is not None for c in cols)]
        top = sum(maxima[c] for c in cols)
        ax.hist(totals, bins=[x - 0.5 for x in range(int(top) + 2)], color="#4878a8", edgecolor="white")
        ax.set_title(_plain(f"{assignment} (max {top:g})"))
        ax.set_xlabel("points")
        ax.set_ylabel("students")
    return ["<h2>Scores per assignment</h2>", f'<img alt="score histograms" src="{_png(fig)}">']


def pass_rate_section(stats: dict) -> list[str]:
    """Bar chart and table: the share of submissions passing each test cell."""
    import matplotlib.pyplot as plt

    passed, tried = stats["passed"], stats["tried"]
    keys = sorted(tried)
    parts = ["<h2>Pass rate per test cell</h2>"]
    if keys:
        fig, ax = plt.subplots(figsize=(7, 0.28 * len(keys) + 0.8))
        ax.barh(range(len(keys)), [100 * passed[k] / tried[k] for k in keys], color="#59a14f")
        ax.set_yticks(range(len(keys)), [_plain(k.split("/", 1)[1]) for k in keys], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of submissions passing")
        parts.append(f'<img alt="pass rates" src="{_png(fig)}">')
    parts.append(_table(["test cell", "passed", "submissions"], [(k, passed[k], tried[k]) for k in keys]))
    return parts


def slowest_section(timings: list[tuple]) -> list[str]:
    """The slowest executed notebooks, kernel and out-of-kernel verifier time apart."""
    rows = [(f"{t:.2f}", s, a, ", ".join(f"{k} {v:.2f}" for k, v in split.items()))
            for t, s, a, split in sorted(timings, key=lambda t: t[0], reverse=True)[:SLOWEST]]
    return ["<h2>Slowest notebooks</h2>",
            f"<p>The {len(rows)} slowest of {len(timings)} notebooks run (seconds).</p>",
            _table(["seconds", "student", "notebook", "split"], rows)]


def _plain(text: str) -> str:
    """Text for a matplotlib label: a '$' is shown, not read as the start of math."""
    return text.replace("$", r"\$")


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _none() -> str:
    return "<p>None.</p>"


def _table(header: list[str], rows) -> str:
    """An HTML table; every header and cell is escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
