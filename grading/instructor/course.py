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
    """The course's nbgrader_config.py as a traitlets Config (empty if the file is absent)."""
    path = root / "nbgrader_config.py"
    if not path.exists():
        raise CourseError(f"{root} is not a course root: no nbgrader_config.py there")
    config = PyFileConfigLoader(path.name, str(root)).load_config()
    config.CourseDirectory.root = str(root.resolve())
    return config


def open_api(root: Path, extra: Config | None = None) -> NbGraderAPI:
    """nbgrader's Python API bound to the course at ``root`` (quiet logs)."""
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
    """A fresh course folder with this repository's config and source/ (never touches a real class)."""
    if demo.exists():
        shutil.rmtree(demo)
    demo.mkdir(parents=True)
    shutil.copy2(repo / "nbgrader_config.py", demo / "nbgrader_config.py")
    shutil.copytree(repo / "source", demo / "source",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
