"""What a grading machine gets: ``python -m grading worker-bundle``.

The bundle holds the package's worker parts (``jobs.WORKER_PARTS``: the sandbox's part, that is the
student checks, the hidden checks and the runtime, and the worker's own code), the course's
``nbgrader_config.py`` and ``release/``, the pinned requirements, and a README. Never ``source/``,
the answer catalogue, the calibration, the gradebook or the course's secret. Its ``VERSION`` is
the hash the coordinator checks (``jobs.worker_version``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from .jobs import COURSE_PARTS, WORKER_PARTS, worker_version
from .sandbox import PACKAGE_ROOT

README = """# Grading worker bundle (version {version})

Run on each grading machine, as root (the sandbox needs it), with Python 3.11:

    apt-get install -y bubblewrap util-linux python3.11-venv
    python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt
    .venv/bin/python -m grading worker --root . --scheduler tcp://SCHEDULER:8786 --nworkers N --worker-port 8790

Open ports 8790 to 8790 + 2N - 1 to the scheduler (workers, then their nannies). The coordinator
refuses workers whose version differs from its own: rebuild this bundle after every change to the
grader or the release.
"""


def build_worker_bundle(root: Path, out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for part in WORKER_PARTS:
        src, dst = PACKAGE_ROOT / "grading" / part, out / "grading" / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        else:
            shutil.copy2(src, dst)
    for part in COURSE_PARTS:
        src = root / part
        if src.is_dir():
            shutil.copytree(src, out / part, ignore=ignore)
        else:
            shutil.copy2(src, out / part)
    shutil.copy2(PACKAGE_ROOT / "requirements.txt", out / "requirements.txt")
    version = worker_version(out, out)
    (out / "VERSION").write_text(version + "\n")
    (out / "README.md").write_text(README.format(version=version))
    return out


def cmd_worker_bundle(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve()
    out = build_worker_bundle(root, Path(args.out).resolve())
    print(f"worker bundle: {out} (version {(out / 'VERSION').read_text().strip()})")
    return 0
