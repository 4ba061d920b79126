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


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command, returning its output; on an unexpected exit code, fail with its output."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def grading(*args: str, root: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m grading ARGS`` run from the course root."""
    return run([sys.executable, "-m", "grading", *args], cwd=root, check=check, timeout=timeout)


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
