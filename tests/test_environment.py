"""The environment, the entry points and the repository hygiene stay as documented."""

import re
import subprocess

from conftest import REPO


def pins():
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    return [line for line in lines if line]


def test_requirements_are_exact_pins():
    for line in pins():
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+]*", line), f"not an exact pin: {line}"
    assert "torch==2.13.0" in pins()
    names = {p.split("==")[0].lower() for p in pins()}
    assert {"nbgrader", "jupyterlab", "notebook", "ipywidgets", "matplotlib", "nbval", "pytest", "playwright"} <= names


def test_conda_environment_installs_the_same_pins():
    text = (REPO / "environment.yml").read_text()
    assert re.search(r"^name: rnn-course$", text, re.M)
    assert re.search(r"^\s*- python=3\.11$", text, re.M)
    assert re.search(r"^\s*- -r requirements\.txt$", text, re.M), "environment.yml must read requirements.txt"
    pinned_here = re.findall(r"^\s*- ([A-Za-z0-9_.\-]+)\s*[=<>]", text, re.M)
    assert set(pinned_here) <= {"python"}, f"pins belong in requirements.txt only: {pinned_here}"


def test_readme_starts_with_the_two_commands():
    first = [line.strip() for line in (REPO / "README.md").read_text().splitlines()[:5] if line.strip()]
    assert first[1].startswith("make demo") and first[2].startswith("make test")


def test_ci_only_runs_the_readme_test_command():
    script = (REPO / ".ci" / "run").read_text()
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert "make test" in commands
    assert not any("pytest" in c or "python" in c for c in commands)


def test_generated_files_are_ignored():
    for path in (".venv/x", "gradebook.db", "submitted/a", "autograded/a", "feedback/a", "reports/a",
                 "demo/a", "workspace/a", "bundle/a", "x/__pycache__/y.pyc", ".ipynb_checkpoints/a", ".grading_secret",
                 "hub/jupyterhub.sqlite"):
        proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert proc.returncode == 0, f"{path} is not ignored"
