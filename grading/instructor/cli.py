"""The instructor's command line: ``python -m grading <command>``, run from a course root.

    release                 regenerate release/ from source/
    grade ASSIGNMENT        autograde submitted/ (sandboxed, parallel, verified), feedback, reports
    report                  rewrite reports/grades.csv and reports/report.html
    sample-class            write a synthetic class into submitted/
    demo                    the main job, in demo/: release, sample class, grade everything, report
    bundle                  build what students get, in bundle/
    solutions ASSIGNMENT    nbgrader generate_solution, after the deadline
    lab                     JupyterLab for students in workspace/
    bench                   plain nbgrader vs this grader on the same class
    calibrate               retrain references and known-bad variants on many seeds
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from .course import CourseError, assignments

EXIT_OK, EXIT_COURSE_ERROR, EXIT_GRADING_ERRORS = 0, 2, 3
EXIT_CODES = f"""exit status:
  {EXIT_OK}  done
  {EXIT_COURSE_ERROR}  usage error, or a problem with the course (unknown assignment, no gradebook, no sandbox...)
  {EXIT_GRADING_ERRORS}  graded, but some submissions hit a grading error: they are marked in grades.csv and the
     report (an earlier verified grade is kept, else their cells are 0); regrade them
"""


def _root(args) -> Path:
    return Path(args.root).resolve()


def cmd_release(args) -> int:
    from .build import build_release

    root = _root(args)
    for path in build_release(root):
        print(f"released {path.relative_to(root)}")
    return 0


def _grade_options(args):
    from .autograde import GradeOptions

    return GradeOptions(jobs=args.jobs, sandboxed=not args.unsandboxed, feedback=not args.no_feedback)


def _finish_reports(root: Path) -> None:
    from .report import grade_table_text, write_grades_csv, write_report

    csv_path, html_path = write_grades_csv(root), write_report(root)
    print()
    print(grade_table_text(root))
    print()
    print(f"grades:   {csv_path}")
    print(f"report:   {html_path}")
    print(f"feedback: {root / 'feedback'}/<student>/<assignment>/<notebook>.html")


def _summarise(results) -> int:
    """Print what happened; return the number of submissions with a grading error."""
    errors = [r for r in results if r.grading_error]
    flagged = [(r, n) for r in results for n, nb in r.notebooks.items() if nb.get("flags")]
    ungradable = [(r, n) for r in results for n, nb in r.notebooks.items() if nb.get("anomalies") or nb.get("incident")]
    print(f"graded {len(results)} submissions: {len(errors)} with grading errors, {len(flagged)} notebooks flagged, "
          f"{len(ungradable)} repaired or partly ungradable (details in the report)")
    for r in errors:
        print(f"  {r.assignment}/{r.student}: {r.grading_error}")
    if errors:
        print(f"{len(errors)} submissions hit a grading error: regrade them (exit status {EXIT_GRADING_ERRORS})")
    return len(errors)


def cmd_grade(args) -> int:
    from .autograde import grade

    root = _root(args)
    started = time.monotonic()
    results = grade(root, args.assignment, [args.student] if args.student else None, _grade_options(args))
    print(f"{len(results)} submissions of {args.assignment} graded in {time.monotonic() - started:.1f} s")
    errors = _summarise(results)
    _finish_reports(root)
    return EXIT_GRADING_ERRORS if errors else 0


def cmd_report(args) -> int:
    _finish_reports(_root(args))
    return 0


def cmd_sample_class(args) -> int:
    from .sample_class import roster, write_class

    root = _root(args)
    count = write_class(root, roster(assignments(root), args.size))
    print(f"wrote {args.size} students, {count} notebooks into {root / 'submitted'}")
    return 0


def make_demo_course(repo: Path, demo: Path) -> None:
    """A fresh course folder with this repository's config and source/ (never touches a real class)."""
    if demo.exists():
        shutil.rmtree(demo)
    demo.mkdir(parents=True)
    shutil.copy2(repo / "nbgrader_config.py", demo / "nbgrader_config.py")
    shutil.copytree(repo / "source", demo / "source", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))


def cmd_demo(args) -> int:
    from .autograde import grade
    from .build import build_release
    from .sample_class import roster, write_class

    repo = _root(args)
    demo = Path(args.dir).resolve()
    started = time.monotonic()
    make_demo_course(repo, demo)
    print(f"demo course: {demo}")
    for path in build_release(demo):
        print(f"  released {path.relative_to(demo)}")
    names = assignments(demo)
    count = write_class(demo, roster(names, args.size))
    print(f"  sample class: {args.size} students, {count} notebooks")
    errors = 0
    for name in names:
        t = time.monotonic()
        results = grade(demo, name, None, _grade_options(args))
        print(f"\n{name}: {len(results)} submissions graded in {time.monotonic() - t:.1f} s")
        errors += _summarise(results)
    _finish_reports(demo)
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s")
    return EXIT_GRADING_ERRORS if errors else 0


def cmd_solutions(args) -> int:
    from .course import open_api, working_directory

    root = _root(args)
    api = open_api(root)
    from nbgrader.apps.generatesolutionapp import GenerateSolutionApp  # noqa: F401 - clear error if missing

    with working_directory(root):
        import subprocess

        out = root / "solution"
        code = subprocess.call([sys.executable, "-m", "nbgrader", "generate_solution", args.assignment, "--force"], cwd=root)
    print(f"solutions in {out / args.assignment}" if code == 0 else "nbgrader generate_solution failed")
    del api
    return code


def cmd_bundle(args) -> int:
    from .bundle import build_bundle

    out = build_bundle(_root(args), Path(args.out).resolve())
    print(f"student bundle: {out}")
    return 0


def cmd_lab(args) -> int:
    import secrets
    import subprocess

    from .bundle import lab_command, prepare_workspace

    workspace = prepare_workspace(_root(args), Path(args.workspace).resolve(),
                                  Path(args.exchange).resolve() if args.exchange else None)
    token = args.token or secrets.token_hex(16)
    cmd, env = lab_command(workspace, args.port, token)
    print(f"JupyterLab for students in {workspace}: http://127.0.0.1:{args.port}/lab?token={token}")
    return subprocess.call(cmd, cwd=workspace, env=env)


def cmd_bench(args) -> int:
    from .bench import run_bench

    return run_bench(_root(args), Path(args.dir).resolve(), args.size)


def cmd_calibrate(args) -> int:
    """Retrain the reference and the known-bad variants of every training exercise; print pass rates."""
    import importlib

    import torch

    torch.set_num_threads(1)
    failures = 0
    for name in ("hello_ohlol", "lstm_gru"):
        module = importlib.import_module(f"grading.instructor.calibration.{name}")
        started = time.monotonic()
        rows = module.calibrate(args.seeds)
        print(f"\n{name} ({time.monotonic() - started:.0f} s, one thread)")
        print(module.format_table(rows))
        for problem in module.problems(rows):
            failures += 1
            print(f"  PROBLEM: {problem}")
    print("\nevery threshold passes 100% of reference seeds and fails the known-bad variants" if not failures
          else f"\n{failures} problems: a threshold does not separate the references from the bad variants")
    return 0 if not failures else 1


def _add_grade_flags(p) -> None:
    p.add_argument("--jobs", type=int, default=0, help="parallel workers (default: the machine's cores)")
    p.add_argument("--unsandboxed", action="store_true",
                   help="run student code without the sandbox (it can then read solutions and write the gradebook)")
    p.add_argument("--no-feedback", action="store_true", help="skip the feedback HTML")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="course root (default: the current directory)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="regenerate release/ from source/").set_defaults(func=cmd_release)
    p = sub.add_parser("grade", help="autograde submitted/ for one assignment")
    p.add_argument("assignment")
    p.add_argument("--student", help="grade (or regrade) one student only")
    _add_grade_flags(p)
    p.set_defaults(func=cmd_grade)
    sub.add_parser("report", help="rewrite grades.csv and report.html").set_defaults(func=cmd_report)
    p = sub.add_parser("sample-class", help="write a synthetic class into submitted/")
    p.add_argument("--size", type=int, default=32)
    p.set_defaults(func=cmd_sample_class)
    p = sub.add_parser("demo", help="release, sample class, grade, report in a demo folder")
    p.add_argument("--dir", default="demo")
    p.add_argument("--size", type=int, default=32)
    _add_grade_flags(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("bundle", help="build what students get")
    p.add_argument("--out", default="bundle")
    p.set_defaults(func=cmd_bundle)
    p = sub.add_parser("lab", help="JupyterLab for students, in a workspace copied from the bundle")
    p.add_argument("--workspace", default="workspace")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--token", default="")
    p.add_argument("--exchange", help="nbgrader exchange folder (for the Assignments panel)")
    p.set_defaults(func=cmd_lab)
    p = sub.add_parser("bench", help="plain nbgrader vs this grader on the same honest class")
    p.add_argument("--dir", default="build/bench")
    p.add_argument("--size", type=int, default=12, help="students (each submits every notebook)")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("calibrate", help="retrain references and known-bad variants on many seeds")
    p.add_argument("--seeds", type=int, default=200)
    p.set_defaults(func=cmd_calibrate)
    p = sub.add_parser("solutions", help="nbgrader generate_solution for an assignment")
    p.add_argument("assignment")
    p.set_defaults(func=cmd_solutions)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .sandbox import SandboxUnavailable

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CourseError, SandboxUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
