"""The students' Python environment on the class hub.

The course's own ``.venv`` belongs to the instructor (its Python may live under a directory other
accounts cannot enter, and it holds the hidden checks). Students' servers run from a separate,
world-readable virtual environment (``GradingSettings.student_env``, ``/opt/rnn-course/venv``)
built from Debian's Python 3.11 with the student bundle's pinned requirements, JupyterHub's
single-user server, psycopg2 (formgrader on a PostgreSQL gradebook, for instructors) and a
*non-editable* install of the student package (``grading`` and ``grading.student`` only): no path
leads back into the instructor's checkout.

Configuration it carries (``<env>/etc/jupyter``, read by every server started from it):

* nbgrader's formgrader and course-list server extensions off, the instructor-only lab
  extensions disabled: a student's server has the Assignments panel and Validate only;
* an *instructor* overlay (``<env>/../instructor-config``, put first on ``JUPYTER_CONFIG_PATH``
  for instructors only by the hub) that turns formgrader back on for the course root.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from .bundle import LAB_PAGE_CONFIG, build_bundle, pinned_version
from .settings import GradingSettings

SYSTEM_PYTHON = Path("/usr/bin/python3.11")
LOGIN_PATH_SCRIPT = Path("/etc/profile.d/rnn-course.sh")
STAMP = ".rnn-course-installed"
STUDENT_SERVER_EXTENSIONS = {
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.course_list": False,
    "nbgrader.server_extensions.assignment_list": True,
    "nbgrader.server_extensions.validate_assignment": True,
}
INSTRUCTOR_SERVER_EXTENSIONS = {**STUDENT_SERVER_EXTENSIONS, "nbgrader.server_extensions.formgrader": True}
INSTRUCTOR_PAGE_CONFIG = {"disabledExtensions": {name: False for name in LAB_PAGE_CONFIG["disabledExtensions"]}}
PIP_TIMEOUT = 1800


def instructor_config_dir(settings: GradingSettings) -> Path:
    """The instructors' configuration overlay, next to the students' environment."""
    return Path(settings.student_env).parent / "instructor-config"


def _fingerprint(bundle: Path, hub_pin: str) -> str:
    """What the environment was built from: the bundle's requirements and package files, and the hub's pin."""
    digest = hashlib.sha256(hub_pin.encode())
    for path in sorted([bundle / "requirements.txt", bundle / "pyproject.toml", *(bundle / "grading").rglob("*.py")]):
        digest.update(str(path.relative_to(bundle)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _pip(env: Path, *args: str) -> None:
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *args], check=True, timeout=PIP_TIMEOUT)


def _write_world_readable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)


def write_server_config(env: Path, settings: GradingSettings) -> None:
    """Students' server defaults inside the environment; the instructors' overlay beside it."""
    etc = env / "etc" / "jupyter"
    _write_world_readable(etc / "jupyter_server_config.d" / "rnn-course-students.json",
                          json.dumps({"ServerApp": {"jpserver_extensions": STUDENT_SERVER_EXTENSIONS}}, indent=1))
    _write_world_readable(etc / "labconfig" / "page_config.json", json.dumps(LAB_PAGE_CONFIG, indent=1))
    overlay = instructor_config_dir(settings)
    _write_world_readable(overlay / "jupyter_server_config.json",
                          json.dumps({"ServerApp": {"jpserver_extensions": INSTRUCTOR_SERVER_EXTENSIONS}}, indent=1))
    _write_world_readable(overlay / "labconfig" / "page_config.json", json.dumps(INSTRUCTOR_PAGE_CONFIG, indent=1))


def build_student_env(repo: Path, settings: GradingSettings, python: Path = SYSTEM_PYTHON,
                      log: Callable[[str], None] = print) -> Path:
    """Create or update the students' environment (idempotent: nothing is reinstalled when nothing changed)."""
    env = Path(settings.student_env)
    requirements = (repo / "requirements.txt").read_text()
    # JupyterHub's single-user server; psycopg2 for instructors' formgrader on a PostgreSQL gradebook.
    hub_pin = " ".join(f"{name}=={pinned_version(requirements, name)}" for name in ("jupyterhub", "psycopg2-binary"))
    with tempfile.TemporaryDirectory(prefix="rnn-course-bundle-") as tmp:
        bundle = build_bundle(repo, Path(tmp) / "bundle")
        fingerprint = _fingerprint(bundle, hub_pin)
        stamp = env / STAMP
        if stamp.is_file() and stamp.read_text() == fingerprint:
            log(f"students' environment {env} is up to date")
        else:
            if not (env / "bin" / "python").exists():
                log(f"creating the students' environment {env} from {python}")
                env.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run([str(python), "-m", "venv", str(env)], check=True, timeout=300)
            log("installing the students' requirements, JupyterHub's single-user server and grading.student")
            _pip(env, "-r", str(bundle / "requirements.txt"), *hub_pin.split())
            shutil.rmtree(bundle / "build", ignore_errors=True)
            _pip(env, "--no-deps", "--force-reinstall", str(bundle))
            stamp.write_text(fingerprint)
    write_server_config(env, settings)
    _open_to_everyone(env)
    return env


def _open_to_everyone(env: Path) -> None:
    """Every account can read and run the environment; only root can change it."""
    for parent in [env, *env.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode & 0o777
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)
    for dirpath, dirnames, filenames in os.walk(env):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            mode = path.stat().st_mode & 0o7777
            wanted = (mode | (0o005 if path.is_dir() or mode & 0o100 else 0o004)) & ~0o022
            if wanted != mode:
                path.chmod(wanted)


def install_login_path(settings: GradingSettings, script: Path = LOGIN_PATH_SCRIPT) -> Path:
    """Put the students' environment on every login shell's PATH, so that ``nbgrader fetch_assignment`` and
    ``nbgrader submit`` work from a terminal as they do from the Assignments panel."""
    bin_dir = Path(settings.student_env) / "bin"
    _write_world_readable(script, f'# The RNN course\'s students\' environment (python -m grading hub).\n'
                                  f'case ":$PATH:" in *":{bin_dir}:"*) ;; *) PATH="$PATH:{bin_dir}" ;; esac\n'
                                  f'export PATH\n')
    return script
