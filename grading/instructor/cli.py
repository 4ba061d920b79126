"""The instructor's command line: ``python -m grading <command>``, run from a course root."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .course import CourseError


def cmd_release(args) -> int:
    from .build import build_release

    for path in build_release(Path(args.root).resolve()):
        print(f"released {path.relative_to(Path(args.root).resolve())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__)
    parser.add_argument("--root", default=".", help="course root (default: the current directory)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="regenerate release/ from source/").set_defaults(func=cmd_release)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
