"""Feedback a student can trust and that gives nothing away.

nbgrader's feedback shows every cell's raw outputs: tracebacks of hidden tests quote their
source, and a submission can make the kernel print anything during the tests. Here every
code cell's outputs are dropped and each test cell shows the course's own verdict instead
(pass or fail, points, the diagnosis), read from the results file the grader wrote.
Hidden test source is removed from the cells by nbgrader's ClearHiddenTests, which runs first.
"""

from __future__ import annotations

import json
from pathlib import Path

from nbformat import NotebookNode
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor


def results_path(root: Path, assignment: str, student: str) -> Path:
    """Where the grader keeps its verdicts for one submission."""
    return Path(root) / "reports" / "results" / assignment / f"{student}.json"


def verdict_text(cell: dict) -> str:
    """One test cell's line in the feedback."""
    score, points = cell.get("score") or 0, cell.get("max_score") or 0
    if score >= points:
        return f"PASSED ({_num(score)} / {_num(points)} points)"
    message = cell.get("message") or "this test failed"
    return f"FAILED ({_num(score)} / {_num(points)} points): {message}"


def _num(value: float) -> str:
    return f"{value:g}"


class TrustedOutputs(NbGraderPreprocessor):
    """Replace every code cell's outputs: the course's verdict on test cells, nothing elsewhere."""

    def preprocess(self, nb: NotebookNode, resources):
        info = resources.get("nbgrader", {})
        root = Path(CourseDirectory(config=self.config).root)
        path = results_path(root, info.get("assignment", ""), info.get("student", ""))
        cells = {}
        if path.exists():
            cells = json.loads(path.read_text()).get("notebooks", {}).get(info.get("notebook", ""), {}).get("cells", {})
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            cell.outputs = []
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid in cells:
                cell.outputs = [NotebookNode(output_type="stream", name="stdout", text=verdict_text(cells[gid]) + "\n")]
        return nb, resources
