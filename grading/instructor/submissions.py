"""Read what students handed in, defensively, into a staged copy that nbgrader grades.

The instructor's ``submitted/`` is never modified. Each submission is copied to a staging
folder with only what can be graded: readable notebooks (older nbformat versions are
upgraded), under their release names (a renamed notebook is recognised by its solution
cells), plus nbgrader's timestamp. Everything odd is recorded as an anomaly with a reason.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .normalize import normalize

MAX_NOTEBOOK_BYTES = 20 * 2**20


@dataclass
class StagedSubmission:
    student: str
    assignment: str
    notebooks: list[str] = field(default_factory=list)  # notebook names that will be graded
    anomalies: dict[str, list[str]] = field(default_factory=dict)  # notebook (or "*") -> reasons

    def note(self, notebook: str, reason: str) -> None:
        self.anomalies.setdefault(notebook, []).append(reason)


def read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str | None]:
    """The notebook as nbformat v4, or None and the reason it cannot be graded."""
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        return None, f"{path.name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name} is not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]})"
    if not isinstance(raw, dict) or not isinstance(raw.get("nbformat"), int):
        return None, f"{path.name} is not a Jupyter notebook (no nbformat version)"
    if raw["nbformat"] not in (3, 4):
        return None, f"{path.name} has notebook format version {raw['nbformat']}; only versions 3 and 4 can be graded"
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds
        return None, f"{path.name} is not a valid notebook ({str(exc).splitlines()[0][:120]})"
    return nb, None


def _solution_ids(nb: nbformat.NotebookNode) -> set[str]:
    return {c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if isinstance(c.get("metadata", {}).get("nbgrader"), dict) and c.metadata["nbgrader"].get("solution")
            and c.metadata["nbgrader"].get("grade_id")}


def stage(root: Path, staged_root: Path, assignment: str, student: str) -> StagedSubmission:
    """Copy one submission into ``staged_root/<student>/<assignment>/``, ready for nbgrader."""
    result = StagedSubmission(student, assignment)
    src = root / "submitted" / student / assignment
    dst = staged_root / student / assignment
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    releases = {p.stem: nbformat.read(p, as_version=4) for p in sorted((root / "release" / assignment).glob("*.ipynb"))}
    readable: dict[str, nbformat.NotebookNode] = {}
    for path in sorted(src.glob("*.ipynb")) if src.is_dir() else []:
        nb, problem = read_notebook(path)
        name = path.stem if path.stem in releases else "*"
        if problem:
            result.note(name, f"ungradable: {problem}")
            continue
        readable[path.stem] = nb
    for name, release in releases.items():
        nb = readable.pop(name, None)
        if nb is None:
            wanted = _solution_ids(release)
            renamed = [k for k, v in readable.items() if wanted and wanted <= _solution_ids(v)]
            if renamed:
                nb = readable.pop(renamed[0])
                result.note(name, f"the notebook was renamed to {renamed[0]}.ipynb: graded under its release name")
            else:
                if not any(r.startswith(f"ungradable: {name}.ipynb") for r in result.anomalies.get(name, [])):
                    result.note(name, "missing from the submission: scored zero")
                continue
        _, repairs = normalize(nb, release)
        for repair in repairs:
            result.note(name, repair)
        nbformat.write(nb, dst / f"{name}.ipynb")
        result.notebooks.append(name)
    for extra in readable:
        result.note("*", f"extra notebook {extra}.ipynb ignored")
    if (src / "timestamp.txt").is_file():
        shutil.copy2(src / "timestamp.txt", dst / "timestamp.txt")
    return result


def students_with(root: Path, assignment: str) -> list[str]:
    """Students who have a folder for ``assignment`` in submitted/."""
    base = root / "submitted"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / assignment).is_dir())
