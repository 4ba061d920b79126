"""The release is generated from source/, up to date, clean, and gives nothing away."""

import filecmp
import json
import os
import re
import subprocess
import sys

import nbformat
import pytest

from conftest import REPO, assignment_names, grading, nbgrader, new_course, notebook_names

pytestmark = pytest.mark.slow  # runs nbgrader, kernels or the sandbox end to end

# A data file travels with its provenance and licence (source/char_lm/tang300-PROVENANCE.md).
ALLOWED_DATA = {".ipynb", ".svg", ".png", ".csv", ".txt", ".md"}


def test_release_is_up_to_date(tmp_path):
    fresh = new_course(tmp_path / "course")
    diff = filecmp.dircmp(fresh / "release", REPO / "release")
    problems = []

    def walk(d, prefix=""):
        problems.extend(f"only in the fresh build: {prefix}{x}" for x in d.left_only)
        problems.extend(f"only in the committed release: {prefix}{x}" for x in d.right_only)
        problems.extend(f"differs: {prefix}{x}" for x in d.diff_files)
        for name, sub in d.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(diff)
    assert not problems, "release/ is stale, run `make release` and commit:\n" + "\n".join(problems)


def test_every_assignment_is_released():
    assert sorted(p.name for p in (REPO / "release").iterdir() if p.is_dir()) == assignment_names()


@pytest.mark.parametrize("path", sorted((REPO / "release").rglob("*")), ids=lambda p: str(p.relative_to(REPO)))
def test_release_holds_only_notebooks_and_declared_data(path):
    assert "__pycache__" not in path.parts and ".ipynb_checkpoints" not in path.parts
    if path.is_file():
        assert path.suffix in ALLOWED_DATA, f"{path} is not a notebook or declared data"


@pytest.mark.parametrize("path", sorted((REPO / "release").rglob("*.ipynb")), ids=lambda p: p.name)
def test_release_contains_no_solution_and_no_hidden_test(path):
    text = path.read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "hidden_check",
                   "grading.instructor"):
        assert marker not in text, f"{path.name} leaks {marker!r}"
    nb = json.loads(text)
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            assert "raise NotImplementedError()" in "".join(cell["source"]), f"{meta['grade_id']} has no stub"


@pytest.mark.parametrize("path", sorted((REPO / "release").rglob("*.ipynb")), ids=lambda p: p.name)
def test_points_are_in_metadata_and_headings(path):
    nb = json.loads(path.read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("grade"):
            assert meta.get("points", 0) > 0, f"{meta['grade_id']} has no points"
    assert re.search(r"\(\d+ points?\)", text), f"{path.name}: no heading says how many points a part is worth"


def test_unanswered_release_passes_no_test(course):
    """`nbgrader validate --invert`: every graded test cell fails on the stubs."""
    paths = [f"release/{a}/{n}.ipynb" for a in assignment_names() for n in notebook_names(a)]
    out = nbgrader("validate", "--invert", *paths, root=course, check=False)
    text = out.stdout + out.stderr
    assert "The following cell passed" not in text, text[-5000:]
    assert text.count("Success! The notebook does not pass any tests.") == len(paths), text[-5000:]


def test_source_notebooks_pass_nbval_lax():
    """Every source notebook (solutions, visible and hidden tests) runs top to bottom without an error, under
    nbval as CI runs it (``--nbval-lax``: source notebooks are committed without outputs)."""
    paths = [str((REPO / "source" / a / f"{n}.ipynb").relative_to(REPO))
             for a in assignment_names() for n in notebook_names(a)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTEST_ADDOPTS="", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", *paths,
                           "-p", "no:cacheprovider", "--noconftest", "-o", "addopts=", "-q"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"nbval-lax failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    cells = sum(1 for p in paths for c in nbformat.read(REPO / p, as_version=4).cells if c.cell_type == "code")
    assert f"{cells} passed" in proc.stdout, proc.stdout[-2000:]


def test_malformed_source_notebook_is_refused_with_file_and_problem(tmp_path):
    course = new_course(tmp_path / "course", ["rnn_basics"])
    nb_path = course / "source" / "rnn_basics" / "rnn_cell.ipynb"
    original = nb_path.read_text()
    nb_path.write_text(original[:-40])
    out = grading("release", root=course, check=False)
    assert out.returncode != 0
    assert "rnn_cell.ipynb" in out.stderr and "not valid JSON" in out.stderr, out.stderr

    nb = json.loads(original)
    ids = [c["metadata"]["nbgrader"]["grade_id"] for c in nb["cells"] if "nbgrader" in c["metadata"]]
    nb["cells"][-1]["metadata"]["nbgrader"]["grade_id"] = "rnn_cell_step"
    nb_path.write_text(json.dumps(nb))
    out = grading("release", root=course, check=False)
    assert out.returncode != 0
    assert "rnn_cell.ipynb" in out.stderr and "grade_id 'rnn_cell_step' is used by cells" in out.stderr, out.stderr
    assert ids
