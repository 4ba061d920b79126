"""Put a submission back into the release's cell layout before nbgrader grades it.

Students delete, duplicate, split, reorder and edit cells. nbgrader restores test cells
only with ``OverwriteCells.add_missing_cells``, which raises ``KeyError`` when a deleted
cell's neighbour is read-only. Instead, rebuild the notebook on the release's layout:

* every release cell comes back, in the release's order (deleted and edited read-only
  cells are restored from the release; OverwriteCells then restores hidden tests);
* a solution cell takes the student's source; a solution cell that appears several times
  (split or duplicated) is merged in the student's order, as it would run;
* cells the student added keep their place after the release cell they followed.

Every repair is recorded in ``nb.metadata["grading"]["anomalies"]`` for the report.
"""

from __future__ import annotations

import copy
import os

import nbformat
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor


def _grade_id(cell) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _is_solution(cell) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def normalize(submission: nbformat.NotebookNode,
              release: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[str]]:
    """Return the submission rebuilt on the release's layout, and the list of repairs made.

    Both notebooks are nbformat v4 nodes; the submission is not modified.
    """
    anomalies: list[str] = []
    known = {_grade_id(c): c for c in release.cells if _grade_id(c)}
    solutions: dict[str, list[str]] = {}
    seen: dict[str, object] = {}
    extras: dict[str | None, list] = {}
    anchor = None
    for cell in submission.cells:
        gid = _grade_id(cell)
        if gid in known:
            if _is_solution(known[gid]):
                solutions.setdefault(gid, []).append(_source(cell))
            elif gid in seen:
                anomalies.append(f"cell {gid} appears more than once: kept one copy")
            seen.setdefault(gid, cell)
            anchor = gid
            continue
        extra = copy.deepcopy(cell)
        if gid is not None:
            extra.metadata.pop("nbgrader", None)
            anomalies.append(f"cell with unknown grade_id {gid!r}: kept as an ordinary cell")
        extras.setdefault(anchor, []).append(extra)
    for gid, sources in solutions.items():
        if len(sources) > 1:
            anomalies.append(f"solution cell {gid} was split or duplicated into {len(sources)} cells: merged")

    cells = list(extras.get(None, []))
    for cell in release.cells:
        gid = _grade_id(cell)
        restored = copy.deepcopy(cell)
        if gid is None:
            cells.append(restored)
            continue
        if _is_solution(cell):
            if gid in solutions:
                restored.source = "\n".join(solutions[gid])
            else:
                anomalies.append(f"solution cell {gid} is missing: graded as unanswered")
        elif gid not in seen:
            anomalies.append(f"cell {gid} was deleted: restored")
        elif _source(seen[gid]) != _source(cell) and not cell.metadata["nbgrader"].get("grade"):
            anomalies.append(f"read-only cell {gid} was edited: restored")
        cells.append(restored)
        cells.extend(extras.get(gid, []))

    used_ids = set()
    for i, cell in enumerate(cells):
        if "id" in cell and cell["id"] in used_ids:
            cell["id"] = f"extra-{i}"
        used_ids.add(cell.get("id"))
    result = copy.deepcopy(submission)
    result.cells = cells
    result.metadata.setdefault("grading", {})["anomalies"] = anomalies
    return result, anomalies


class RestoreLayout(NbGraderPreprocessor):
    """nbgrader sanitize step: rebuild the submission on ``release/<assignment>/<notebook>.ipynb``."""

    def preprocess(self, nb: nbformat.NotebookNode, resources: dict) -> tuple[nbformat.NotebookNode, dict]:
        info = resources.get("nbgrader", {})
        coursedir = CourseDirectory(config=self.config)
        path = os.path.join(
            coursedir.format_path(coursedir.release_directory, ".", info.get("assignment", "")),
            f"{info.get('notebook', '')}.ipynb",
        )
        if not os.path.exists(path):
            self.log.warning("No release notebook at %s: cell layout not restored", path)
            return nb, resources
        release = nbformat.read(path, as_version=4)
        nb, anomalies = normalize(nb, release)
        for anomaly in anomalies:
            self.log.warning("%s/%s: %s", info.get("student"), info.get("notebook"), anomaly)
        return nb, resources
