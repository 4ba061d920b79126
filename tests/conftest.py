"""Shared fixtures: the repository, a scratch course built from it, and helpers to run nbgrader."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("OMP_NUM_THREADS", "1")


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command, returning its output; on an unexpected exit code, fail with its output."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def grading(*args: str, root: Path, check: bool = True, timeout: float = 900,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m grading ARGS`` run from the course root."""
    return run([sys.executable, "-m", "grading", *args], cwd=root, check=check, timeout=timeout, env=env)


# Short limits so that hostile notebooks cost seconds, not minutes.
QUICK_LIMITS = {"GRADING_CELL_TIMEOUT": "6", "GRADING_NOTEBOOK_TIMEOUT": "25", "GRADING_MEMORY_MB": "1024",
                "GRADING_EXERCISE_TIMEOUT": "6", "GRADING_NPROC": "64"}
# The capstone trains a model in its notebook and again in the verifier (a few seconds each, more on a loaded
# machine): its honest submissions need the production limits' order of magnitude, not the quick ones.
CAPSTONE_LIMITS = {**QUICK_LIMITS, "GRADING_CELL_TIMEOUT": "30", "GRADING_NOTEBOOK_TIMEOUT": "90",
                   "GRADING_EXERCISE_TIMEOUT": "30"}


def limits_for(assignment: str) -> dict[str, str]:
    """The grading limits a test gives ``assignment``: quick, or the capstone's own."""
    from grading.instructor.exercises.registry import CAPSTONES

    return CAPSTONE_LIMITS if assignment in CAPSTONES else QUICK_LIMITS


def with_solution(nb: nbformat.NotebookNode, grade_id: str, source: str) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose solution cell ``grade_id`` holds ``source``."""
    import copy

    nb = copy.deepcopy(nb)
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    assert cells, f"no cell {grade_id}"
    cells[0].source = source
    return nb


def solution_source(nb: nbformat.NotebookNode, grade_id: str) -> str:
    return next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def gradebook_scores(root: Path, assignment: str, notebook: str | None = None) -> dict[str, dict[str, float]]:
    """student -> {test cell grade_id: score}, one notebook or all, from the course's gradebook (its URL resolved
    as the grader does). No grader has scored anything by hand here: every ``manual_score`` must be empty and each
    score is the machine's ``auto_score`` (the verified one, or a pending or fail-closed zero)."""
    from grading.instructor.database import open_gradebook

    out: dict[str, dict[str, float]] = {}
    with open_gradebook(root) as gb:
        for sub in gb.find_assignment(assignment).submissions:
            grades = [g for nb in sub.notebooks for g in nb.grades if notebook is None or nb.name == notebook]
            manual = {g.name: g.manual_score for g in grades if g.manual_score is not None}
            assert not manual, f"{sub.student.id}: the grader wrote manual scores {manual}"
            assert all(g.auto_score is not None and g.score == g.auto_score for g in grades), sub.student.id
            out[sub.student.id] = {g.name: float(g.auto_score) for g in grades}
    return out


def results(root: Path, assignment: str, student: str) -> dict:
    import json

    return json.loads((root / "reports" / "results" / assignment / f"{student}.json").read_text())


def nbgrader(*args: str, root: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "nbgrader", *args], cwd=root, check=check)


def new_course(dest: Path, assignments: list[str] | None = None) -> Path:
    """A course root with this repository's config and source/ (all or some assignments), release built."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "nbgrader_config.py", dest / "nbgrader_config.py")
    for src in sorted((REPO / "source").iterdir()):
        if src.is_dir() and (assignments is None or src.name in assignments):
            shutil.copytree(src, dest / "source" / src.name)
    grading("release", root=dest)
    return dest


def submit(root: Path, student: str, assignment: str, notebooks: dict[str, nbformat.NotebookNode]) -> Path:
    """Put notebooks into submitted/<student>/<assignment>/, as nbgrader collect would."""
    folder = root / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    (folder / "timestamp.txt").write_text("2026-11-20 12:00:00.000000 UTC")
    return folder


def source_nb(assignment: str, name: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "source" / assignment / f"{name}.ipynb", as_version=4)


def release_nb(root: Path, assignment: str, name: str) -> nbformat.NotebookNode:
    return nbformat.read(root / "release" / assignment / f"{name}.ipynb", as_version=4)


def assignment_names() -> list[str]:
    return sorted(p.name for p in (REPO / "source").iterdir() if p.is_dir())


def notebook_names(assignment: str) -> list[str]:
    return sorted(p.stem for p in (REPO / "source" / assignment).glob("*.ipynb"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def course(tmp_path_factory) -> Path:
    """A scratch course with every assignment released (shared: tests add their own students)."""
    return new_course(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A sandboxed kernel server of one worker, for suites that drive the verifier directly (one per module)."""
    from grading.instructor import sandbox

    scratch = tmp_path_factory.mktemp("server")
    scratch.chmod(0o755)
    scratch.parent.chmod(0o755)
    sandbox.build_mpl_cache(scratch / "mpl")
    kernel_server = sandbox.KernelServer(0, True, scratch / "w0")
    kernel_server.start(scratch / "mpl", sandbox.stage_package(scratch / "package"))
    yield kernel_server
    kernel_server.stop()
    sandbox.cleanup_scratch(scratch)
