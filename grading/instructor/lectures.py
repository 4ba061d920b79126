"""Execute the lecture notebooks and commit them clean.

Lecture notebooks are committed with their outputs (strict nbval compares against them), but
without what changes at every run and says nothing to a reader:

* cell ``metadata.execution`` (nbclient's timestamps of every message);
* widget models that no committed output displays (the saved widget state keeps only the
  models reachable from a ``widget-view`` output, through ``IPY_MODEL_`` references).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import nbformat

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled")
MODEL_REFERENCE = re.compile(r"IPY_MODEL_([0-9a-f]+)")


def lecture_notebooks(root: Path) -> list[Path]:
    """``notebooks/NN_*.ipynb`` of the course at ``root``, in order."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def displayed_models(nb: nbformat.NotebookNode) -> set[str]:
    """Model ids that a committed output displays."""
    ids = set()
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if isinstance(view, dict) and "model_id" in view:
                ids.add(view["model_id"])
    return ids


def reachable_models(state: dict, roots: Iterable[str]) -> set[str]:
    """The models in ``state`` (model id -> saved model) that ``roots`` refer to, directly or not."""
    seen: set[str] = set()
    todo = [model_id for model_id in roots if model_id in state]
    while todo:
        model_id = todo.pop()
        if model_id in seen:
            continue
        seen.add(model_id)
        todo.extend(ref for ref in MODEL_REFERENCE.findall(json.dumps(state[model_id])) if ref in state)
    return seen


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop volatile cell metadata and undisplayed widget models from ``nb``, in place; return it."""
    for cell in nb.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
    widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE)
    if widgets is not None:
        keep = reachable_models(widgets["state"], displayed_models(nb))
        widgets["state"] = {model_id: widgets["state"][model_id] for model_id in sorted(keep)}
        if not keep:
            del nb.metadata["widgets"]
    return nb


def widget_state_bytes(nb: nbformat.NotebookNode) -> int:
    """Size of the saved widget state, as committed (compact JSON)."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return len(json.dumps(state, separators=(",", ":")))


def execute(path: Path, timeout: int = 300) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` top to bottom in its folder, one thread, widget state saved; return it cleaned."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return clean(nb)


def refresh(paths: Iterable[Path]) -> list[Path]:
    """Execute and clean each notebook in place; the paths written."""
    written = []
    for path in paths:
        nbformat.write(execute(path), path)
        written.append(path)
    return written
