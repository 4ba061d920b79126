"""The instructor's command line: ``python -m grading <command>``, run from a course root.

    release                 regenerate release/ from source/
    grade ASSIGNMENT        autograde submitted/ (sandboxed, parallel, verified), feedback, reports
    report                  rewrite reports/grades.csv and reports/report.html

  The term (course.yml: due dates, extensions, late policy; README, "The term"):
    regrade-late ASSIGNMENT recompute late penalties from course.yml and the current scores
    export --format F       grades for Canvas, Moodle or a plain CSV, in reports/
    similarity ASSIGNMENT   pairs of students whose own code is alike, for a human to review
    audit                   every grade change (who, when, why) into reports/audit.csv
    history STUDENT         one student's grade changes
    sample-class            write a synthetic class into submitted/
    demo                    the main job, in demo/: release, sample class, grade everything, report
    bundle                  build what students get, in bundle/
    solutions ASSIGNMENT    nbgrader generate_solution, after the deadline
    lab                     JupyterLab for students in workspace/
    bench                   plain nbgrader vs this grader on the same class
    bench-cluster           the local pool vs a 2-worker Dask cluster on this machine, same class
    calibrate               retrain references and known-bad variants on many seeds
    lectures [NOTEBOOK...]  re-execute lecture notebooks in place, without volatile metadata

  The class hub (as root, from the course root; README, "Teach a class"):
    hub                     prepare the class and run JupyterHub: PAM logins, one server per Unix user
    roster add CSV          create students' and instructors' accounts, register students, print passwords
    roster remove ID        lock a student's account mid-term (their grades stay)
    setup-exchange          the exchange's folders and permissions; the course root closed to students
    release-assignment A    release to the exchange (optionally with a due date)
    collect A               the latest submission per student into submitted/, late ones recorded
    release-feedback A      each student's trusted feedback, readable by that student only
    db init                 a PostgreSQL role, database and nbgrader's schema for a shared gradebook

  Grading on several machines (README, "Grade on a cluster"):
    scheduler               the Dask scheduler graders and workers join
    worker                  grading workers on this machine (as root): one sandboxed kernel server each
    worker-bundle           what a grading machine needs (no solutions, no catalogue, no secret)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

from .course import CourseError, assignments
from .runs import GradingInterrupted

EXIT_OK, EXIT_USAGE, EXIT_GRADING_ERRORS, EXIT_COURSE_ERROR, EXIT_CHECK_FAILED, EXIT_INCOMPLETE = 0, 2, 3, 4, 5, 6
EXIT_CODES = f"""exit status:
  {EXIT_OK}    done
  {EXIT_USAGE}    usage error (a wrong command or option)
  {EXIT_GRADING_ERRORS}    graded, but some submissions hit a grading error: they are marked in grades.csv and the
       report (an earlier verified grade is kept, else their cells are 0); regrade them
  {EXIT_COURSE_ERROR}    a problem with the course or this machine: unknown assignment or student, nothing
       submitted, no gradebook, not a course root, no sandbox, a kernel server that cannot start
  {EXIT_CHECK_FAILED}    a check failed: the benchmark's grades differ between graders, or a calibrated
       threshold does not separate the references from the known-bad variants
  {EXIT_INCOMPLETE}    the run stopped before every submission was recorded (the cluster's scheduler was lost):
       what was recorded stays; `grade A --resume` grades the rest
  130  interrupted (`grade A --resume` grades what was not recorded)
"""


def _root(args) -> Path:
    return Path(args.root).resolve()


def cmd_release(args: argparse.Namespace) -> int:
    from .build import build_release

    root = _root(args)
    for path in build_release(root):
        print(f"released {path.relative_to(root)}")
    return 0


def _grade_options(args):
    from .autograde import GradeOptions

    return GradeOptions(jobs=args.jobs, sandboxed=not args.unsandboxed, feedback=not args.no_feedback,
                        cluster=getattr(args, "cluster", ""), resume=getattr(args, "resume", False))


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


def cmd_grade(args: argparse.Namespace) -> int:
    from .autograde import grade

    root = _root(args)
    started = time.monotonic()
    results = grade(root, args.assignment, [args.student] if args.student else None, _grade_options(args))
    print(f"{len(results)} submissions of {args.assignment} graded in {time.monotonic() - started:.1f} s")
    errors = _summarise(results)
    _finish_reports(root)
    return EXIT_GRADING_ERRORS if errors else 0


def cmd_report(args: argparse.Namespace) -> int:
    _finish_reports(_root(args))
    return 0


def cmd_sample_class(args: argparse.Namespace) -> int:
    from .sample_class import roster, write_class

    root = _root(args)
    count = write_class(root, roster(assignments(root), args.size))
    print(f"wrote {args.size} students, {count} notebooks into {root / 'submitted'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .audit import write_audit_csv
    from .autograde import grade
    from .build import build_release
    from .course import make_demo_course
    from .demo_term import LATE_SUBMISSIONS, apply_demo_term
    from .sample_class import roster, write_class
    from .similarity import similarity_report

    repo = _root(args)
    demo = Path(args.out).resolve()
    started = time.monotonic()
    make_demo_course(repo, demo)
    print(f"demo course: {demo}")
    for path in build_release(demo):
        print(f"  released {path.relative_to(demo)}")
    names = assignments(demo)
    count = write_class(demo, roster(names, args.size))
    apply_demo_term(demo)
    print(f"  sample class: {args.size} students, {count} notebooks; the term: {demo / 'course.yml'}")
    for (assignment, student), (when, what) in LATE_SUBMISSIONS.items():
        print(f"    {assignment}/{student} submitted {when}: {what}")
    errors = 0
    for name in names:
        t = time.monotonic()
        results = grade(demo, name, None, _grade_options(args))
        print(f"\n{name}: {len(results)} submissions graded in {time.monotonic() - t:.1f} s")
        errors += _summarise(results)
    print()
    for name in names:
        found = similarity_report(demo, name)
        pairs = ", ".join(f"{p.first}+{p.second} ({p.score:.2f})" for p in found.pairs) or "none"
        print(f"similarity {name}: pairs to review: {pairs} ({found.path.relative_to(demo)})")
    print(f"audit trail: {write_audit_csv(demo).relative_to(demo)}")
    _finish_reports(demo)
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s")
    return EXIT_GRADING_ERRORS if errors else 0


def cmd_solutions(args: argparse.Namespace) -> int:
    import subprocess

    from .course import load_config

    root = _root(args)
    load_config(root)  # a clear error when this is not a course root
    code = subprocess.call([sys.executable, "-m", "nbgrader", "generate_solution", args.assignment, "--force"],
                           cwd=root)
    print(f"solutions in {root / 'solution' / args.assignment}" if code == 0 else "nbgrader generate_solution failed")
    return code


def cmd_bundle(args: argparse.Namespace) -> int:
    from .bundle import build_bundle

    out = build_bundle(_root(args), Path(args.out).resolve())
    print(f"student bundle: {out}")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    import secrets
    import subprocess

    from .bundle import lab_command, prepare_workspace

    workspace = prepare_workspace(_root(args), Path(args.out).resolve(),
                                  Path(args.exchange).resolve() if args.exchange else None)
    token = args.token or secrets.token_hex(16)
    cmd, env = lab_command(workspace, args.port, token)
    print(f"JupyterLab for students in {workspace}: http://127.0.0.1:{args.port}/lab?token={token}")
    return subprocess.call(cmd, cwd=workspace, env=env)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return EXIT_CHECK_FAILED if run_bench(_root(args), Path(args.out).resolve(), args.size) else EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Retrain the reference and the known-bad variants of every training exercise; print pass rates."""
    import torch

    from .exercises.registry import calibration_modules

    torch.set_num_threads(1)
    failures = 0
    for name, module in calibration_modules().items():
        started = time.monotonic()
        rows = module.calibrate(args.seeds)
        print(f"\n{name} ({time.monotonic() - started:.0f} s, one thread)")
        print(module.format_table(rows))
        for problem in module.problems(rows):
            failures += 1
            print(f"  PROBLEM: {problem}")
    print("\nevery threshold passes 100% of reference seeds and fails the known-bad variants" if not failures
          else f"\n{failures} problems: a threshold does not separate the references from the bad variants")
    return EXIT_CHECK_FAILED if failures else EXIT_OK


def cmd_lectures(args: argparse.Namespace) -> int:
    from .lectures import lecture_notebooks, refresh

    root = _root(args)
    paths = [Path(p).resolve() for p in args.notebooks] or lecture_notebooks(root)
    for path in refresh(paths):
        print(f"executed {path.relative_to(root) if path.is_relative_to(root) else path}")
    return EXIT_OK


def _delegate(module: str, function: str):
    """A command implemented in ``grading.instructor.<module>``, imported only when it runs."""
    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(f"grading.instructor.{module}"), function)(args)
    return run


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default in its help."""


def _add_grade_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=0, help="parallel workers (0: one per core)")
    p.add_argument("--unsandboxed", action="store_true",
                   help="run student code without the sandbox (it can then read solutions and write the gradebook)")
    p.add_argument("--no-feedback", action="store_true", help="skip the feedback HTML")


MAIN_OPTIONS = {"exit_without_teardown": False}


def exit_process(code: int) -> NoReturn:
    """Exit with ``code``. After ``grade``, without Python's teardown of torch, nbgrader and SQLAlchemy (about a
    second per run): by then its workers have stopped, its files are closed and its transactions committed, so
    only logging and the standard streams need flushing."""
    if not MAIN_OPTIONS["exit_without_teardown"]:
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _command(sub, name: str, func, help_text: str, root: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text, parents=[root], formatter_class=_HelpFormatter)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    """``python -m grading``: every command, with ``--root`` accepted before or after it."""
    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", default=argparse.SUPPRESS, help="course root (default: the current directory)")
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--root", default=".", help="course root")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(sub, "release", cmd_release, "regenerate release/ from source/", root)
    p = _command(sub, "grade", cmd_grade, "autograde submitted/ for one assignment (sandboxed, verified)", root)
    p.set_defaults(exit_without_teardown=True)
    p.add_argument("assignment", help="assignment id, a folder of source/")
    p.add_argument("--student", help="grade (or regrade) this student only")
    p.add_argument("--cluster", default="",
                   help="grade on a Dask cluster: tcp://HOST:8786 (python -m grading scheduler / worker), or local:N "
                        "to start N worker processes here (default: the local pool)")
    p.add_argument("--resume", action="store_true", help="grade only what the last, interrupted run did not record")
    _add_grade_flags(p)
    _command(sub, "report", cmd_report, "rewrite reports/grades.csv and reports/report.html", root)
    p = _command(sub, "sample-class", cmd_sample_class, "write a synthetic class into submitted/", root)
    p.add_argument("--size", type=int, default=32, help="students")
    p = _command(sub, "demo", cmd_demo, "the main job: release, sample class, grade, report, in a demo course", root)
    p.add_argument("--out", default="demo", help="the demo course folder (replaced)")
    p.add_argument("--size", type=int, default=32, help="students")
    _add_grade_flags(p)
    p = _command(sub, "bundle", cmd_bundle, "build what students get", root)
    p.add_argument("--out", default="bundle", help="the bundle folder (replaced)")
    p = _command(sub, "lab", cmd_lab, "JupyterLab for students, in a workspace copied from the bundle", root)
    p.add_argument("--out", default="workspace", help="the students' workspace folder")
    p.add_argument("--port", type=int, default=8888, help="port on 127.0.0.1")
    p.add_argument("--token", default="", help="the server's token (empty: a random one)")
    p.add_argument("--exchange", help="nbgrader exchange folder, for the Assignments panel (none: no exchange)")
    p = _command(sub, "bench", cmd_bench, "plain nbgrader vs this grader on the same honest class", root)
    p.add_argument("--out", default="build/bench", help="where the two benchmark courses are built (replaced)")
    p.add_argument("--size", type=int, default=12, help="students (each submits every notebook)")
    p = _command(sub, "bench-cluster", _delegate("bench_cluster", "cmd_bench_cluster"),
                 "the local pool vs a 2-worker Dask cluster on this machine, same class", root)
    p.add_argument("--out", default="build/bench-cluster", help="where the two courses are built (replaced)")
    p.add_argument("--size", type=int, default=12, help="students (each submits every notebook)")
    p = _command(sub, "calibrate", cmd_calibrate, "retrain references and known-bad variants on many seeds", root)
    p.add_argument("--seeds", type=int, default=200, help="seeds per reference and variant")
    p = _command(sub, "solutions", cmd_solutions, "nbgrader generate_solution for an assignment, after the deadline",
                 root)
    p.add_argument("assignment", help="assignment id, a folder of source/")
    # -- the term: late penalties, LMS export, similarity, audit trail --
    p = _command(sub, "regrade-late", _delegate("late", "cmd_regrade_late"),
                 "recompute an assignment's late penalties from course.yml and the current scores", root)
    p.add_argument("assignment", help="assignment id, a folder of source/")
    p = _command(sub, "export", _delegate("export", "cmd_export"),
                 "grades for an LMS: reports/export-<format>[-<assignment>].csv", root)
    p.add_argument("--format", required=True, choices=("csv", "canvas", "moodle"), help="the file's layout")
    p.add_argument("--assignment", help="one assignment only (default: all)")
    p.add_argument("--missing-as-zero", action="store_true", help="no submission counts 0 (default: an empty cell)")
    p = _command(sub, "similarity", _delegate("similarity", "cmd_similarity"),
                 "pairs of students whose own code is alike: reports/similarity-<assignment>.html", root)
    p.add_argument("assignment", help="assignment id, a folder of source/")
    p.add_argument("--threshold", type=float, default=None, help="flag pairs scoring at least this (default: the "
                                                                     "calibrated one)")
    _command(sub, "audit", _delegate("audit", "cmd_audit"), "every grade change: reports/audit.csv", root)
    p = _command(sub, "history", _delegate("audit", "cmd_history"), "one student's grade changes, oldest first",
                 root)
    p.add_argument("student", help="student id")
    # -- grading on a cluster (worker.py, bundle.py) --
    from .worker import add_cluster_commands

    add_cluster_commands(sub, _command, root)
    p = _command(sub, "worker-bundle", _delegate("worker_bundle", "cmd_worker_bundle"),
                 "what a grading machine needs: the worker's package parts, nbgrader_config.py, release/", root)
    p.add_argument("--out", default="worker-bundle", help="the bundle folder (replaced)")
    # -- class hub: roster and exchange (roster.py, exchange.py) --
    from .exchange import add_exchange_commands
    from .roster import add_roster_commands

    add_roster_commands(sub, _command, root)
    add_exchange_commands(sub, _command, root)
    # -- class hub: gradebook database (database.py) --
    from .database import add_db_commands

    add_db_commands(sub, _command, root)
    # -- class hub: student environment and JupyterHub (student_env.py, hub.py) --
    p = _command(sub, "hub", _delegate("hub", "cmd_hub"),
                 "run JupyterHub for the course (as root): PAM logins, one server per Unix user", root)
    p.add_argument("--ip", default="127.0.0.1", help="address the hub listens on (put TLS in front: see README)")
    p.add_argument("--port", type=int, default=8000, help="the hub's public port")
    p.add_argument("--hub-port", type=int, default=8081, help="the hub's internal API port (on 127.0.0.1)")
    p.add_argument("--proxy-api-port", type=int, default=8001, help="the proxy's API port (on 127.0.0.1)")
    p = _command(sub, "lectures", cmd_lectures,
                 "re-execute lecture notebooks in place (one thread), without volatile metadata", root)
    p.add_argument("notebooks", nargs="*", help="notebooks to execute (default: every notebooks/NN_*.ipynb)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .sandbox import SandboxUnavailable

    args = build_parser().parse_args(argv)
    MAIN_OPTIONS["exit_without_teardown"] = getattr(args, "exit_without_teardown", False)
    try:
        return args.func(args)
    except (CourseError, SandboxUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_COURSE_ERROR
    except GradingInterrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 130 if str(exc).startswith("interrupted") else EXIT_INCOMPLETE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
