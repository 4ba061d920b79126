"""The grading command fails clearly, with a non-zero exit, on the instructor's usual mistakes."""

import shutil

import pytest

from conftest import REPO, grading, new_course, source_nb, submit

pytestmark = pytest.mark.slow  # runs nbgrader, kernels or the sandbox end to end


def test_unknown_assignment(course):
    out = grading("grade", "no_such_assignment", root=course, check=False)
    assert out.returncode == 4 and "unknown assignment 'no_such_assignment'" in out.stderr
    assert "rnn_basics" in out.stderr


def test_empty_submitted_folder(tmp_path):
    root = new_course(tmp_path / "c", ["rnn_basics"])
    (root / "submitted").mkdir()
    out = grading("grade", "rnn_basics", root=root, check=False)
    assert out.returncode == 4 and "nothing to grade" in out.stderr


def test_missing_gradebook(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    shutil.copy2(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "source" / "rnn_basics", root / "source" / "rnn_basics")
    submit(root, "s", "rnn_basics", {"rnn_cell": source_nb("rnn_basics", "rnn_cell")})
    out = grading("grade", "rnn_basics", root=root, check=False)
    assert out.returncode == 4 and "no gradebook" in out.stderr and "python -m grading release" in out.stderr


def test_not_a_course_root(tmp_path):
    out = grading("grade", "rnn_basics", root=tmp_path, check=False)
    assert out.returncode == 4 and "error:" in out.stderr


def test_unknown_student(course):
    out = grading("grade", "rnn_basics", "--student", "nobody", root=course, check=False)
    assert out.returncode == 4


def test_root_is_accepted_after_the_command(course, tmp_path):
    import sys

    from conftest import run

    out = run([sys.executable, "-m", "grading", "grade", "no_such_assignment", "--root", str(course)], cwd=tmp_path,
              check=False)
    assert out.returncode == 4 and "unknown assignment 'no_such_assignment'" in out.stderr


def test_a_malformed_setting_is_a_course_error(course):
    out = grading("grade", "rnn_basics", root=course, check=False, env={"GRADING_CELL_TIMEOUT": "soon"})
    assert out.returncode == 4 and "GRADING_CELL_TIMEOUT='soon' is not a whole number" in out.stderr


def test_a_usage_error_is_argparse_s_exit_status(course):
    out = grading("grade", root=course, check=False)
    assert out.returncode == 2 and "usage:" in out.stderr


def test_help_shows_every_default_and_the_exit_status_table():
    from grading.instructor.cli import build_parser

    text = build_parser().format_help()
    for code in ("0", "2", "3", "4", "5", "130"):
        assert f"\n  {code} " in text
    sub = build_parser()._subparsers._group_actions[0].choices
    for name, parser in sub.items():
        helptext = parser.format_help()
        assert "--root" in helptext, name
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, "==SUPPRESS==") and action.dest != "help":
                shown = action.help and parser._get_formatter()._expand_help(action) or ""
                assert "(default:" in shown, (name, action.dest)
