"""reports/grades.csv and reports/report.html, from the gradebook and the grader's results files."""

from __future__ import annotations

import base64
import collections
import csv
import html
import io
import json
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from .course import open_api


def gradebook_table(root: Path) -> tuple[list[str], list[dict], dict[str, float]]:
    """Columns ``assignment/notebook`` and one row per student: {student, <column>: score|None, total}."""
    api = open_api(root)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        columns = [f"{a.name}/{n.name}" for a in sorted(gb.assignments, key=lambda a: a.name)
                   for n in sorted(a.notebooks, key=lambda n: n.name)]
        rows = []
        for student in sorted(gb.students, key=lambda s: s.id):
            row = {"student": student.id}
            for column in columns:
                assignment, notebook = column.split("/")
                try:
                    row[column] = float(gb.find_submission_notebook(notebook, assignment, student.id).score)
                except MissingEntry:
                    row[column] = None
            row["total"] = sum(v for k, v in row.items() if k in columns and v is not None)
            rows.append(row)
        maxima = {f"{a.name}/{n.name}": float(n.max_score) for a in gb.assignments for n in a.notebooks}
    return columns, rows, maxima


def write_grades_csv(root: Path) -> Path:
    columns, rows, _ = gradebook_table(root)
    path = root / "reports" / "grades.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *columns, "total"])
        for row in rows:
            writer.writerow([row["student"], *("" if row[c] is None else f"{row[c]:g}" for c in columns), f"{row['total']:g}"])
    return path


def load_results(root: Path) -> list[dict]:
    base = root / "reports" / "results"
    return [json.loads(p.read_text()) for p in sorted(base.glob("*/*.json"))] if base.is_dir() else []


def grade_table_text(root: Path) -> str:
    """The grade table printed at the end of a run."""
    columns, rows, maxima = gradebook_table(root)
    short = [c.split("/")[1] for c in columns]
    widths = [max(len(s), 7) for s in short]
    header = f"{'student':<14}" + "".join(f"{s:>{w + 2}}" for s, w in zip(short, widths)) + f"{'total':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = "".join(f"{'-' if row[c] is None else format(row[c], 'g'):>{w + 2}}" for c, w in zip(columns, widths))
        lines.append(f"{row['student']:<14}{cells}{row['total']:>9g}")
    total_max = sum(maxima.values())
    lines.append(f"{'max':<14}" + "".join(f"{maxima[c]:>{w + 2}g}" for c, w in zip(columns, widths)) + f"{total_max:>9g}")
    return "\n".join(lines)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def write_report(root: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = load_results(root)
    columns, rows, maxima = gradebook_table(root)
    assignments = sorted({c.split("/")[0] for c in columns})
    parts = ["<h1>RNN course: grading report</h1>",
             f"<p>{len(rows)} students, {len(results)} graded submissions.</p>"]

    parts.append("<h2>Scores per assignment</h2>")
    fig, axes = plt.subplots(1, max(1, len(assignments)), figsize=(4 * max(1, len(assignments)), 2.8), squeeze=False)
    for ax, assignment in zip(axes[0], assignments):
        cols = [c for c in columns if c.startswith(assignment + "/")]
        totals = [sum(r[c] or 0 for c in cols) for r in rows if any(r[c] is not None for c in cols)]
        top = sum(maxima[c] for c in cols)
        ax.hist(totals, bins=[x - 0.5 for x in range(int(top) + 2)], color="#4878a8", edgecolor="white")
        ax.set_title(f"{assignment} (max {top:g})")
        ax.set_xlabel("points")
        ax.set_ylabel("students")
    parts.append(f'<img alt="score histograms" src="{_png(fig)}">')

    passed, tried, failures = collections.Counter(), collections.Counter(), collections.Counter()
    flags, problems, timings = [], [], []
    for res in results:
        for name, nb in res["notebooks"].items():
            for tid, cell in nb.get("cells", {}).items():
                key = f"{res['assignment']}/{name}/{tid}"
                tried[key] += 1
                if cell["score"] >= cell["max_score"]:
                    passed[key] += 1
                elif cell.get("message"):
                    failures[(key, cell["message"][:160])] += 1
            for flag in nb.get("flags", []):
                flags.append((res["student"], f"{res['assignment']}/{name}", flag))
            for anomaly in nb.get("anomalies", []) + ([nb["incident"]] if nb.get("incident") else []):
                problems.append((res["student"], f"{res['assignment']}/{name}", anomaly))
        if res.get("error"):
            problems.append((res["student"], res["assignment"], res["error"]))
            if nb.get("execute_seconds") is not None:
                timings.append((nb["execute_seconds"] + (nb.get("verify_seconds") or 0), res["student"],
                                f"{res['assignment']}/{name}",
                                {"kernel": nb["execute_seconds"], "verifier": nb.get("verify_seconds") or 0}))

    parts.append("<h2>Pass rate per test cell</h2>")
    keys = sorted(tried)
    if keys:
        fig, ax = plt.subplots(figsize=(7, 0.28 * len(keys) + 0.8))
        rates = [100 * passed[k] / tried[k] for k in keys]
        ax.barh(range(len(keys)), rates, color="#59a14f")
        ax.set_yticks(range(len(keys)), [k.split("/", 1)[1] for k in keys], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of submissions passing")
        parts.append(f'<img alt="pass rates" src="{_png(fig)}">')
    parts.append(_table(["test cell", "passed", "submissions"], [(k, passed[k], tried[k]) for k in keys]))

    parts.append("<h2>Most frequent failures</h2>")
    parts.append(_table(["test cell", "message", "students"], [(k, m, n) for (k, m), n in failures.most_common(15)]))
    parts.append("<h2>Tampering and disagreements (flagged)</h2>")
    parts.append(_table(["student", "notebook", "what was detected"], flags) if flags else "<p>None.</p>")
    parts.append("<h2>Ungradable or repaired submissions</h2>")
    parts.append(_table(["student", "notebook", "reason"], problems) if problems else "<p>None.</p>")
    parts.append("<h2>Slowest notebooks</h2>")
    parts.append(_table(["seconds", "student", "notebook", "split"],
                        [(f"{t:.2f}", s, a, ", ".join(f"{k} {v:.2f}" for k, v in split.items()))
                         for t, s, a, split in sorted(timings, reverse=True)[:10]]))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Grading report</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%;text-align:left}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    path = root / "reports" / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path


def _table(header: list[str], rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
