"""Open a course root (a directory with nbgrader_config.py, source/, release/) in-process."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from nbgrader.apps.api import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader


class CourseError(Exception):
    """A problem with the course root or its inputs; the message says what and where."""


def load_config(root: Path) -> Config:
    """The course's nbgrader_config.py as a traitlets Config, with its root and its gradebook URL resolved
    (``database.db_url``: GRADING_DB_URL, else the file's db_url, else sqlite in the root)."""
    from .database import db_url

    path = root / "nbgrader_config.py"
    if not path.exists():
        raise CourseError(f"{root} is not a course root: no nbgrader_config.py there")
    config = PyFileConfigLoader(path.name, str(root)).load_config()
    config.CourseDirectory.db_url = db_url(root, config)
    config.CourseDirectory.root = str(root.resolve())
    return config


def open_api(root: Path, extra: Config | None = None) -> NbGraderAPI:
    """nbgrader's Python API bound to the course at ``root`` (quiet logs); every app it runs (generate_assignment,
    autograde, generate_feedback) uses the course's gradebook URL."""
    config = load_config(root)
    if extra is not None:
        config.merge(extra)
    coursedir = CourseDirectory(config=config)
    api = NbGraderAPI(coursedir=coursedir, config=config)
    api.log.setLevel(logging.ERROR)
    return api


def assignments(root: Path) -> list[str]:
    """Assignment ids: the folders of source/."""
    source = root / "source"
    if not source.exists():
        return []
    return sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """nbgrader resolves some paths against the working directory: run inside the course root."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def make_demo_course(repo: Path, demo: Path) -> None:
    """A fresh course folder with this repository's config and source/ (never touches a real class): its
    gradebook is its own sqlite file, whatever the class uses, and GRADING_DB_URL is dropped from this
    process's environment (the demo's and the benchmark's runs, and their nbgrader subprocesses, inherit that)."""
    from .database import ENV_URL

    if demo.exists():
        shutil.rmtree(demo)
    demo.mkdir(parents=True)
    os.environ.pop(ENV_URL, None)
    config = (repo / "nbgrader_config.py").read_text()
    demo_db = f"sqlite:///{demo.resolve() / 'gradebook.db'}"
    (demo / "nbgrader_config.py").write_text(
        config + f"\n# A demo course: its own gradebook, never the class's.\nc.CourseDirectory.db_url = {demo_db!r}\n")
    shutil.copytree(repo / "source", demo / "source",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
