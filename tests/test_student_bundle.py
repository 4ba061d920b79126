"""The student bundle works on its own: set up as its README says, in a clean venv, it validates solved notebooks.

The venv gets only the bundle's requirements (no pytest, nbval or playwright, no instructor modules),
so a check that leans on anything else fails here, as it would on a student's laptop.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, assignment_names, grading, notebook_names, run, source_nb
from grading.instructor.bundle import INSTRUCTOR_ONLY_PACKAGES, requirement_name, student_requirements

pytestmark = pytest.mark.slow  # installs a venv, then runs nbgrader validate on every assignment

SOLUTION_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)


def setup_commands(readme: str) -> list[list[str]]:
    """The indented commands of the README's "Set up (once)" section."""
    section = readme.split("## Set up (once)", 1)[1].split("\n## ", 1)[0]
    return [shlex.split(line) for line in section.splitlines() if line.startswith("    ") and line.strip()]


def solved(release: nbformat.NotebookNode, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The release notebook with every solution cell holding the instructor's solution, markers removed."""
    answers = {c.metadata["nbgrader"]["grade_id"]: SOLUTION_MARKERS.sub("", c.source)
               for c in source.cells if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in release.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[grade_id]
    return release


def test_student_requirements_drop_only_the_instructors_packages():
    instructor = (REPO / "requirements.txt").read_text()
    student = student_requirements(instructor)
    names = {requirement_name(line) for line in student.splitlines()} - {None}
    assert names and not names & INSTRUCTOR_ONLY_PACKAGES
    assert {"torch", "nbgrader", "jupyterlab", "ipywidgets", "matplotlib"} <= names
    for line in student.splitlines():
        if requirement_name(line):
            assert line in instructor.splitlines(), f"{line!r} is not pinned as in requirements.txt"


@pytest.fixture(scope="module")
def installed_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """(bundle folder, its venv's bin), set up by the README's own commands."""
    work = tmp_path_factory.mktemp("student")
    bundle = work / "bundle"
    grading("bundle", "--out", str(bundle), root=REPO)
    for cmd in setup_commands((bundle / "README.md").read_text()):
        if cmd[0].startswith("python3"):
            cmd[0] = sys._base_executable  # the course's own Python 3.11, outside any venv
        run(cmd, cwd=bundle, timeout=900)
    return bundle, bundle / ".venv" / "bin"


def test_bundle_venv_holds_no_test_tools_and_no_instructor_code(installed_bundle):
    bundle, bin_dir = installed_bundle
    for module in ("pytest", "nbval", "playwright", "grading.instructor"):
        out = run([str(bin_dir / "python"), "-c", f"import {module}"], cwd=bundle, check=False)
        assert out.returncode != 0, f"{module} is importable in the students' venv"
    out = run([str(bin_dir / "python"), "-c", "import torch, sys; print(torch.__version__, sys.version_info[:2])"],
              cwd=bundle)
    assert out.stdout.startswith("2.13.0") and "(3, 11)" in out.stdout, out.stdout
    assert "torch 2.13.0" in (bundle / "README.md").read_text() and "Python 3.11" in (bundle / "README.md").read_text()


def test_solved_release_notebooks_validate_in_the_bundle(installed_bundle):
    bundle, bin_dir = installed_bundle
    paths = []
    for assignment in assignment_names():
        for name in notebook_names(assignment):
            path = bundle / "assignments" / assignment / f"{name}.ipynb"
            nbformat.write(solved(nbformat.read(path, as_version=4), source_nb(assignment, name)), path)
            paths.append(str(path.relative_to(bundle)))
    out = run([str(bin_dir / "nbgrader"), "validate", *paths], cwd=bundle, check=False, timeout=900,
              env={"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": ""})
    text = out.stdout + out.stderr
    assert text.count("Success! Your notebook passes all the tests.") == len(paths), text[-6000:]
