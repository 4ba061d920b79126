"""What students get: the student bundle, and the JupyterLab workspace made from it.

The bundle holds the release notebooks, the lecture notebooks and their figures, the
student-facing checks (``grading/__init__.py`` and ``grading/student/``), the pinned
requirements and setup instructions. Never ``source/``, ``tests/``, the instructor-only
modules or the answer catalogue.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from .course import load_config
from .sandbox import PACKAGE_ROOT

STUDENT_CONFIG = '''"""nbgrader settings for students: what the Validate button and the Assignments panel read."""

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
c.Execute.timeout = {timeout}
{exchange}'''
INSTRUCTOR_ONLY_PACKAGES = frozenset({"nbval", "pytest", "ruff", "playwright", "bleach", "tinycss2", "jupyterhub",
                                      "psycopg2-binary", "dask", "distributed", "copydetect"})
STUDENT_README = """# RNN course: student bundle

Recurrent neural networks in PyTorch: RNNCell, nn.RNN, batch_first, embeddings, LSTM and GRU.

The checks in the notebooks are tested with **Python {python}** and **torch {torch}** (CPU), the versions
`requirements.txt` pins. Other versions may print slightly different numbers or messages.

## Set up (once)

    python3.11 -m venv .venv
    .venv/bin/pip install -r requirements.txt
    .venv/bin/pip install -e .

## Work

    .venv/bin/jupyter lab

- `lectures/`: read and run these first (01 to 06).
- `assignments/<assignment>/`: fill in every cell that says `raise NotImplementedError()`,
  then run all cells. The test cells below each exercise tell you what is wrong.
- Press **Validate** in the notebook toolbar before you hand in.
- A solution cell must be self-contained: it may use the names the notebook's setup cell imports.
"""
PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "rnn-course-student"
version = "0.1.0"
requires-python = ">=3.11,<3.12"

[tool.setuptools]
packages = ["grading", "grading.student"]
"""
LAB_PAGE_CONFIG = {"disabledExtensions": {
    "@jupyter/nbgrader:formgrader": True,
    "@jupyter/nbgrader:create-assignment": True,
    "@jupyter/nbgrader:course-list": True,
}}
LAB_SERVER_EXTENSIONS = {
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.course_list": False,
    "nbgrader.server_extensions.assignment_list": True,
    "nbgrader.server_extensions.validate_assignment": True,
}


def requirement_name(line: str) -> str | None:
    """The normalised package name of a ``name==version`` requirement line, None for comments and blanks."""
    line = line.split("#", 1)[0].strip()
    if not line:
        return None
    name = re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def student_requirements(instructor_requirements: str) -> str:
    """The course's pinned requirements without the instructor's and the tests' own packages."""
    kept = [line for line in instructor_requirements.splitlines()
            if (name := requirement_name(line)) is not None and name not in INSTRUCTOR_ONLY_PACKAGES]
    header = "# What the notebooks and their checks need, pinned as in the course's requirements.txt.\n"
    return header + "\n".join(kept) + "\n"


def pinned_version(requirements: str, package: str) -> str:
    """The version pinned for ``package`` (``package==version``) in a requirements text."""
    for line in requirements.splitlines():
        if requirement_name(line) == package and "==" in line:
            return line.split("==", 1)[1].split("#", 1)[0].strip()
    raise ValueError(f"requirements.txt pins no version of {package}")


def python_version(repo: Path) -> str:
    """The Python minor version the course runs on, from pyproject.toml's requires-python (">=3.11,<3.12")."""
    import tomllib

    spec = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["requires-python"]
    found = re.search(r">=\s*(\d+\.\d+)", spec)
    if not found:
        raise ValueError(f"pyproject.toml: requires-python {spec!r} names no lower bound")
    return found.group(1)


def build_bundle(repo: Path, out: Path, exchange: Path | None = None) -> Path:
    """Write the student bundle to ``out`` (replacing it)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copytree(repo / "release", out / "assignments", ignore=ignore)
    shutil.copytree(repo / "notebooks", out / "lectures", ignore=shutil.ignore_patterns(
        "__pycache__", ".ipynb_checkpoints", "*.cfg"))
    shutil.copytree(PACKAGE_ROOT / "grading" / "student", out / "grading" / "student", ignore=ignore)
    (out / "grading" / "__init__.py").write_text(
        '"""The RNN course\'s checks and lecture widgets (grading.student)."""\n')
    requirements = (repo / "requirements.txt").read_text()
    (out / "requirements.txt").write_text(student_requirements(requirements))
    (out / "pyproject.toml").write_text(PYPROJECT)
    (out / "README.md").write_text(STUDENT_README.format(python=python_version(repo),
                                                         torch=pinned_version(requirements, "torch")))
    exchange_line = f'c.Exchange.root = "{exchange}"\n' if exchange else ""
    course = load_config(repo)  # the students' Validate runs with the instructor's course id and cell timeout
    (out / "nbgrader_config.py").write_text(STUDENT_CONFIG.format(
        course_id=course.CourseDirectory.course_id, timeout=course.Execute.timeout, exchange=exchange_line))
    return out


def prepare_workspace(repo: Path, workspace: Path, exchange: Path | None = None) -> Path:
    """Create (or top up, never overwriting a student's files) the lab workspace from a fresh bundle."""
    staging = workspace.parent / f".{workspace.name}-bundle"
    build_bundle(repo, staging, exchange)
    for src in sorted(staging.rglob("*")):
        dest = workspace / src.relative_to(staging)
        if src.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif not dest.exists() or src.name == "nbgrader_config.py" or "grading" in src.relative_to(staging).parts[:1]:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    shutil.rmtree(staging)
    config = workspace / ".jupyter"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(LAB_PAGE_CONFIG, indent=1))
    news = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True, exist_ok=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    return workspace


def lab_command(workspace: Path, port: int, token: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment that start the students' JupyterLab on 127.0.0.1:port."""
    state = workspace / ".jupyter"
    env = dict(os.environ)
    env.update({
        "JUPYTER_CONFIG_DIR": str(state),
        "JUPYTER_DATA_DIR": str(state / "data"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "IPYTHONDIR": str(state / "ipython"),
        "PYTHONPATH": str(workspace),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
    })
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           f"--ServerApp.root_dir={workspace}"]
    cmd += [f"--ServerApp.jpserver_extensions={name}={enabled}" for name, enabled in LAB_SERVER_EXTENSIONS.items()]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd, env
