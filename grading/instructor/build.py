"""Build the student release from source/, refusing malformed source notebooks with a clear message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat

from .course import CourseError, assignments, open_api, working_directory

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def source_problems(path: Path) -> list[str]:
    """What is wrong with one source notebook, each problem prefixed by the file name; [] if nothing."""
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [f"{path}: not valid JSON ({exc})"]
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds
        return [f"{path}: not a valid notebook ({str(exc).splitlines()[0]})"]
    problems = []
    seen: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        if not gid:
            continue
        if gid in seen:
            problems.append(f"{path}: grade_id {gid!r} is used by cells {seen[gid]} and {index}")
        seen.setdefault(gid, index)
        if meta.get("grade") and cell.cell_type == "code":
            if not meta.get("points"):
                problems.append(f"{path}: test cell {gid!r} has no points")
            visible = cell.source.split(HIDDEN_BEGIN)[0]
            if not any(line.strip() and not line.strip().startswith(("#", '"""')) for line in visible.splitlines()):
                problems.append(f"{path}: test cell {gid!r} has no visible check "
                                "(the unanswered release would pass it)")
        if meta.get("solution") and cell.cell_type == "code" and "### BEGIN SOLUTION" not in cell.source:
            problems.append(f"{path}: solution cell {gid!r} has no '### BEGIN SOLUTION' region")
    return problems


def build_release(root: Path, only: list[str] | None = None, audit: bool = True) -> list[Path]:
    """Regenerate release/<assignment>/ for every assignment; returns the release notebooks written. With
    ``audit``, the gradebook's audit trail is set up too, so that formgrader's first change is recorded."""
    names = only or assignments(root)
    if not names:
        raise CourseError(f"no assignments in {root / 'source'}")
    problems = [p for a in names for nb in sorted((root / "source" / a).glob("*.ipynb")) for p in source_problems(nb)]
    if problems:
        raise CourseError("the source notebooks have problems:\n  " + "\n  ".join(problems))
    api = open_api(root)
    written = []
    with working_directory(root):
        for name in names:
            target = root / "release" / name
            if target.exists():
                shutil.rmtree(target)
            result = api.generate_assignment(name, force=True, create=True)
            if not result["success"]:
                raise CourseError(f"nbgrader generate_assignment {name} failed:\n"
                                  f"{result.get('log', '')}{result.get('error', '')}")
            for leftover in target.rglob("__pycache__"):
                shutil.rmtree(leftover)
            written += sorted(target.glob("*.ipynb"))
    if audit:
        from .audit import ensure_audit

        ensure_audit(api.coursedir.db_url)
    return written
