"""Hostile inputs to the grader's own code, attacked directly (no sandbox, no kernels).

A hostile student has read the grader: odd files in the submission folder, notebooks built
to crash the parser, code built to crash or fool the tamper scan, text built to break storage.
Each attack must end as a short plain reason, never as an exception, a hang or a followed link.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, source_nb
from grading.instructor import messages, submissions, tamper
from grading.instructor.catalogue import ANSWERS
from grading.instructor.verifier import setup_imports

A, NB = "rnn_basics", "rnn_cell"
TIMESTAMP = "2026-11-20 12:00:00.000000 UTC"
NOT_PARSED = "a code cell could not be parsed (so it could not be scanned)"
DISPATCHER = "uses torch's dispatcher internals (torch._C / torch.ops / torch.library)"
FRAMES = "inspects the interpreter's stack frames"


@contextlib.contextmanager
def deadline(seconds: int = 10):
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""

    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def reasons(staged: submissions.StagedSubmission) -> list[str]:
    return [r for rs in staged.anomalies.values() for r in rs]


def assert_safe(staged: submissions.StagedSubmission, root: Path) -> None:
    """Every reason is short, storable plain text that names no host path."""
    for reason in reasons(staged):
        assert str(root) not in reason and "/tmp" not in reason, reason
        assert len(reason) <= 400 and "\n" not in reason, reason
        reason.encode("utf-8")
        sqlite3.connect(":memory:").execute("select ?", (reason,)).fetchone()


@pytest.fixture
def course(tmp_path):
    root = tmp_path / "course"
    (root / "release" / A).mkdir(parents=True)
    (root / "source" / A).mkdir(parents=True)
    for folder in ("release", "source"):
        shutil.copy2(REPO / "source" / A / f"{NB}.ipynb", root / folder / A / f"{NB}.ipynb")
    return root


def folder_of(root: Path, student: str) -> Path:
    folder = root / "submitted" / student / A
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def honest(root: Path, student: str) -> Path:
    folder = folder_of(root, student)
    nbformat.write(source_nb(A, NB), folder / f"{NB}.ipynb")
    (folder / "timestamp.txt").write_text(TIMESTAMP)
    return folder


def stage(root: Path, student: str) -> submissions.StagedSubmission:
    with deadline():
        staged = submissions.stage(root, root.parent / "staged", A, student)
    assert_safe(staged, root)
    return staged


def staged_dir(root: Path, student: str) -> Path:
    return root.parent / "staged" / student / A


# ---------------------------------------------------------------- submissions: files that are not files


def test_honest_submission_is_staged_with_a_fresh_timestamp(course):
    honest(course, "alice")
    staged = stage(course, "alice")
    assert staged.notebooks == [NB] and not staged.anomalies
    copied = staged_dir(course, "alice") / "timestamp.txt"
    assert not copied.is_symlink() and copied.read_text() == TIMESTAMP


def test_symlinked_notebook_is_never_followed(course):
    folder = folder_of(course, "eve")
    os.symlink(course / "source" / A / f"{NB}.ipynb", folder / f"{NB}.ipynb")
    staged = stage(course, "eve")
    assert staged.notebooks == []
    assert staged.anomalies[NB] == [f"ungradable: {NB}.ipynb is not a regular file (symlink)"]
    assert not (staged_dir(course, "eve") / f"{NB}.ipynb").exists()


def test_fifo_notebook_is_never_opened(course):
    folder = folder_of(course, "eve")
    os.mkfifo(folder / f"{NB}.ipynb")
    staged = stage(course, "eve")
    assert staged.notebooks == []
    assert staged.anomalies[NB] == [f"ungradable: {NB}.ipynb is not a regular file (FIFO)"]


def test_directory_socket_and_device_named_ipynb(course):
    folder = folder_of(course, "eve")
    (folder / "notes.ipynb").mkdir()
    expected = ["ungradable: notes.ipynb is not a regular file (directory)",
                "ungradable: sock.ipynb is not a regular file (socket)"]
    try:
        os.mknod(folder / "zero.ipynb", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        expected.append("ungradable: zero.ipynb is not a regular file (device)")
    except PermissionError:
        pass  # creating a device needs root; /dev/zero is still refused by test_read_notebook_refuses_devices...
    with contextlib.closing(socket.socket(socket.AF_UNIX)) as sock, contextlib.chdir(folder):
        sock.bind("sock.ipynb")
    staged = stage(course, "eve")
    assert sorted(staged.anomalies["*"]) == expected
    assert staged.anomalies[NB] == ["missing from the submission: scored zero"]


def test_read_notebook_refuses_devices_and_symlinks(tmp_path):
    assert submissions.read_notebook(Path("/dev/zero")) == (None, "zero is not a regular file (device)")
    link = tmp_path / "link.ipynb"
    link.symlink_to(REPO / "source" / A / f"{NB}.ipynb")
    assert submissions.read_notebook(link) == (None, "link.ipynb is not a regular file (symlink)")


@pytest.mark.parametrize("kind", ["student", "assignment"])
def test_symlinked_submission_folder_is_listed_but_not_graded(course, kind):
    honest(course, "alice")
    if kind == "student":
        os.symlink(course / "submitted" / "alice", course / "submitted" / "eve")
    else:
        (course / "submitted" / "eve").mkdir()
        os.symlink(Path("..") / ".." / "source" / A, course / "submitted" / "eve" / A)
    assert submissions.students_with(course, A) == ["alice", "eve"]
    staged = stage(course, "eve")
    assert staged.notebooks == []
    assert staged.anomalies == {"*": ["the submission folder is a symbolic link: not graded"]}
    assert list(staged_dir(course, "eve").iterdir()) == []


def test_students_with_ignores_files_and_dangling_names(course):
    honest(course, "alice")
    (course / "submitted" / "notes.txt").write_text("x")
    (course / "submitted" / "bob").mkdir()
    (course / "submitted" / "bob" / A).write_text("not a folder")
    assert submissions.students_with(course, A) == ["alice"]


@pytest.mark.parametrize("student", ["..", ".", "", "a/b", "x\x00y"])
def test_student_name_that_is_not_a_folder_name_stages_nothing(course, student):
    honest(course, "alice")
    staged = submissions.stage(course, course.parent / "staged", A, student)
    assert staged.notebooks == [] and staged.anomalies["*"]
    assert (course / "submitted" / "alice" / A / f"{NB}.ipynb").exists()


# ---------------------------------------------------------------- submissions: the timestamp


@pytest.mark.parametrize("attack, reason", [
    ("symlink", "timestamp.txt ignored: not a regular file (symlink)"),
    ("fifo", "timestamp.txt ignored: not a regular file (FIFO)"),
    ("large", "timestamp.txt ignored: larger than 1 kB"),
    ("binary", "timestamp.txt ignored: not UTF-8 text"),
    ("tz_path", "timestamp.txt ignored: not a date and time"),
    ("garbage", "timestamp.txt ignored: not a date and time"),
])
def test_timestamp_attacks(course, attack, reason):
    folder = honest(course, "eve")
    path = folder / "timestamp.txt"
    path.unlink()
    if attack == "symlink":
        path.symlink_to("/etc/passwd")
    elif attack == "fifo":
        os.mkfifo(path)
    elif attack == "large":
        path.write_text(TIMESTAMP + " " * 2000)
    elif attack == "binary":
        path.write_bytes(b"\xff\xfe2026")
    elif attack == "tz_path":
        path.write_text("2026-11-20 12:00:00 /etc/passwd")
    else:
        path.write_text("tomorrow, probably")
    staged = stage(course, "eve")
    assert staged.notebooks == [NB]
    assert staged.anomalies == {"*": [reason]}
    assert not (staged_dir(course, "eve") / "timestamp.txt").exists()


def test_timestamp_with_offset_is_kept(course):
    folder = honest(course, "bob")
    (folder / "timestamp.txt").write_text("2026-11-20T12:00:00+01:00\n")
    staged = stage(course, "bob")
    assert not staged.anomalies
    assert (staged_dir(course, "bob") / "timestamp.txt").read_text() == "2026-11-20T12:00:00+01:00"


# ---------------------------------------------------------------- submissions: sizes and counts


def test_many_notebooks_only_the_first_are_read_and_the_release_one_first(course):
    folder = honest(course, "eve")
    for i in range(100):
        (folder / f"a{i:03d}.ipynb").write_text("{}")
    staged = stage(course, "eve")
    assert staged.notebooks == [NB]
    extra = submissions.MAX_ENTRIES - 1
    ignored = f"{100 - extra} more files ignored (at most {submissions.MAX_ENTRIES} notebooks are read)"
    assert ignored in staged.anomalies["*"]
    assert sum(r.startswith("ungradable: a") for r in staged.anomalies["*"]) == extra


def test_notebook_size_cap(course):
    assert submissions.MAX_NOTEBOOK_BYTES == 8 * 2**20
    folder = folder_of(course, "eve")
    (folder / f"{NB}.ipynb").write_bytes(b" " * (submissions.MAX_NOTEBOOK_BYTES + 1))
    staged = stage(course, "eve")
    assert staged.anomalies[NB] == [f"ungradable: {NB}.ipynb is larger than 8 MB"]


def test_too_many_cells(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1") for _ in range(submissions.MAX_CELLS + 1)])
    path = tmp_path / "big.ipynb"
    nbformat.write(nb, path)
    assert submissions.read_notebook(path) == (None, f"big.ipynb has {submissions.MAX_CELLS + 1} cells; at most 2000 "
                                                     "can be graded")


@pytest.mark.parametrize("text", [
    '{"nbformat": 4, "cells": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"nbformat": 4, "metadata": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}",
    "[" * 100_000,
    '{"nbformat": 4, "nbformat_minor": 5, "cells": [], "metadata": ' + '{"a": ' * 70 + "1" + "}" * 70 + "}",
], ids=["cells", "metadata", "unclosed", "seventy"])
def test_deep_nesting_is_ungradable_and_never_raises(tmp_path, text):
    path = tmp_path / "deep.ipynb"
    path.write_text(text)
    with deadline(60):  # a hang guard, not a timing assert: recursion or backtracking would run for minutes
        nb, problem = submissions.read_notebook(path)
    assert nb is None and problem.startswith("deep.ipynb") and "nested too deeply" in problem


@pytest.mark.parametrize("text", [
    '"' + '\\"' * 2_000_000,
    '"' + '\\"' * 2_000_000 + "\\",
    '"' * 4_000_000,
    '{"nbformat": ' + "9" * 5000 + "}",
], ids=["escaped_quotes", "trailing_backslash", "quotes", "long_integer"])
def test_pathological_json_text_is_read_in_linear_time(tmp_path, text):
    path = tmp_path / "slow.ipynb"
    path.write_text(text)
    with deadline(60):
        nb, problem = submissions.read_notebook(path)
    assert nb is None and problem.startswith("slow.ipynb is not valid JSON")


def test_notebooks_of_one_submission_share_a_byte_budget(course, monkeypatch):
    monkeypatch.setattr(submissions, "MAX_SUBMISSION_BYTES", 100_000)
    folder = honest(course, "eve")
    for i in range(3):
        (folder / f"extra{i}.ipynb").write_text(" " * 40_000 + "{}")
    staged = stage(course, "eve")
    assert staged.notebooks == [NB]
    assert sum("was not read (the notebooks add up to more than" in r for r in staged.anomalies["*"]) >= 1


def test_brackets_inside_strings_are_not_nesting(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = "' + "[{" * 50_000 + '\\"]"')])
    path = tmp_path / "ok.ipynb"
    nbformat.write(nb, path)
    got, problem = submissions.read_notebook(path)
    assert problem is None and got.cells[0].source.startswith('x = "[{[{')


def test_malformed_nbgrader_metadata_does_not_crash_staging(course):
    nb = source_nb(A, NB)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.metadata["nbgrader"]["grade_id"] = ["unhashable"]
    nb.cells[0].metadata["nbgrader"] = "not a dict"
    folder = folder_of(course, "eve")
    nbformat.write(nb, folder / f"{NB}.ipynb")
    staged = stage(course, "eve")
    assert staged.notebooks == [NB]
    assert any("malformed nbgrader metadata" in r for r in staged.anomalies[NB])


def test_any_failure_while_staging_one_notebook_is_an_anomaly(course, monkeypatch):
    honest(course, "eve")

    def explode(*_):
        raise RuntimeError(f"boom in {course}")

    monkeypatch.setattr(submissions, "normalize", explode)
    staged = stage(course, "eve")
    assert staged.notebooks == []
    assert staged.anomalies[NB] == [f"ungradable: {NB}.ipynb could not be staged (RuntimeError)"]


def test_hostile_file_names_make_storable_reasons(course):
    folder = honest(course, "eve")
    raw = os.fsencode(folder)
    for name in (b"\xff\xfe.ipynb", b"line\nbreak\x1b[31m.ipynb"):
        with open(os.path.join(raw, name), "w") as fh:
            fh.write("{not json")
    staged = stage(course, "eve")
    assert staged.notebooks == [NB]
    assert len(staged.anomalies["*"]) == 2
    assert all("not valid JSON" in r for r in staged.anomalies["*"])


def test_not_json_and_version_reasons_unchanged(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_bytes(b"\xff\xfe{")
    assert submissions.read_notebook(bad)[1].startswith("bad.ipynb is not valid JSON")
    bad.write_text(json.dumps({"nbformat": 5, "cells": []}))
    assert "format version 5" in submissions.read_notebook(bad)[1]


# ---------------------------------------------------------------- tamper scan


def test_one_broken_cell_does_not_hide_the_others():
    findings = tamper.scan_cells(["x = (", "import ctypes", "def f(:\n    pass"], set())
    assert findings == [NOT_PARSED, "imports ctypes"]


@pytest.mark.parametrize("source", [
    "x = a" + ".b" * 60_000,
    "x = " + "-" * 100_000 + "1",
    "x = f" + "()" * 60_000,
    "x = 1\x00",
    "x = " + "[" * 10_000,
    "def f(:\n",
], ids=["attributes", "unary", "calls", "null_byte", "brackets", "syntax"])
def test_unparseable_cells_are_reported_and_never_raise(source):
    assert tamper.scan_cells([source], set()) == [NOT_PARSED]
    assert tamper.scan(source) == [NOT_PARSED]


def test_huge_cell_is_not_scanned():
    assert tamper.scan_cells(["x = 1\n" * 40_000], set()) == ["a code cell is too large to scan"]


def test_many_cells_are_scanned_up_to_a_total():
    with deadline(60):
        findings = tamper.scan_cells(["import torch\nh = torch.tanh(x @ w + b)\n" * 50] * 2000 + ["import gc"], set())
    assert findings == [tamper.TOO_MUCH]
    assert tamper.scan_cells(["import gc"] + ["#" * 150_000] * 10, set()) == [tamper.TOO_MUCH, "imports gc"]


def test_long_but_parseable_chains_are_scanned_in_linear_time():
    sources = ["x = torch" + ".b" * 500, "y = f" + "()" * 500, "z = torch._C" + ".b" * 500 + "()" * 50] * 20
    with deadline(60):
        assert tamper.scan_cells(sources, set()) == [DISPATCHER]


@pytest.mark.parametrize("source", [
    "%matplotlib inline\nimport torch\nx = torch.zeros(2)",
    "!pip list\nif True:\n    !ls",
    "%%time\nx = 1",
    "%%bash\necho $((1 + 1)) ) (",
    "def f():\n    %time g()\n    return 1",
    "torch.nn.LSTM?\nx = 1",
    "files = !ls\nx = %env HOME",
])
def test_ipython_syntax_is_not_unparseable(source):
    assert tamper.scan_cells([source], set()) == []


@pytest.mark.parametrize("source, finding", [
    ("check.__closure__[0].cell_contents", "reaches into function internals (__closure__)"),
    ("f = check.__wrapped__", "reaches into function internals (__wrapped__)"),
    ("g = check.__globals__['torch']", "reaches into function internals (__globals__)"),
    ("check.__code__ = other.__code__", "reaches into function internals (__code__)"),
    ("m = bound.__self__", "reaches into function internals (__self__)"),
    ("m = bound.__func__", "reaches into function internals (__func__)"),
    ("check_close.__defaults__ = (1e9,)", "reaches into function internals (__defaults__)"),
    ("v = getattr(check, '__closure__')", "reaches into function internals (__closure__)"),
    ("def f():\n    raise E\ntry:\n    f()\nexcept E as e:\n    e.__traceback__.tb_frame.f_back.f_locals",
     "reaches into stack frames (tb_frame)"),
    ("frame = gen.gi_frame", "reaches into stack frames (gi_frame)"),
    ("import sys\nsys._getframe(1).f_globals['x'] = 1", FRAMES),
    ("from sys import _getframe as g\ng(1)", FRAMES),
    ("import inspect\nouter = inspect.stack()[1]", FRAMES),
    ("from inspect import getouterframes\ngetouterframes(x)", FRAMES),
    ("import torch\ntorch._C._jit_get_operation('aten::allclose')", DISPATCHER),
    ("from torch import _C as C\nC._dispatch_has_kernel('x')", DISPATCHER),
    ("import torch as t\nop = t.ops.aten.allclose", DISPATCHER),
    ("t = torch\nt._C", DISPATCHER),
    ("import torch.library\nlib = torch.library.Library('aten', 'IMPL')", DISPATCHER),
    ("from torch.library import Library", DISPATCHER),
    ("from torch._C import _jit_get_operation", DISPATCHER),
    ("op = _jit_get_operation('aten::add')", DISPATCHER),
    ("lib._destroy()", "calls a private _destroy method (undoes registrations behind the tests)"),
    ("import gc", "imports gc"),
    ("c = __import__('ctypes')", "imports ctypes"),
    ("import importlib\nimportlib.import_module('gc')", "imports gc"),
    ("object.__subclasses__()", "walks the class hierarchy (__subclasses__)"),
])
def test_introspection_into_the_grader_is_flagged(source, finding):
    assert finding in tamper.scan(source), tamper.scan(source)


def test_aliases_carry_across_cells():
    assert tamper.scan_cells(["import torch as t", "t._C._jit_get_operation('x')"], set()) == [DISPATCHER]


def test_patching_a_protected_module_is_flagged():
    assert tamper.scan("checks.check_close = lambda *a: None", {"checks"}) == ["patches checks.check_close"]


def test_scan_never_raises_on_odd_arguments():
    assert tamper.scan(None) == [NOT_PARSED]
    assert tamper.scan_cells([b"x = 1", 3], set()) == [NOT_PARSED]


@functools.cache
def protected_names() -> frozenset[str]:
    import ast

    names = set()
    for path in sorted((REPO / "source").glob("*/*.ipynb")):
        for node in ast.walk(ast.parse(setup_imports(nbformat.read(path, as_version=4)) or "pass")):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


@pytest.mark.parametrize("answer", [a for a in ANSWERS if a.correct], ids=lambda a: f"{a.exercise}-{a.key}")
def test_correct_catalogue_answers_are_not_flagged(answer):
    assert tamper.scan_cells([answer.source], protected_names()) == []


@pytest.mark.parametrize("path", sorted((REPO / "source").glob("*/*.ipynb")), ids=lambda p: p.stem)
def test_reference_solutions_are_not_flagged(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
    assert cells and tamper.scan_cells(cells, protected_names()) == []


# ---------------------------------------------------------------- messages


class Unprintable:
    def __str__(self):
        raise RuntimeError("no")


class NotAString:
    def __str__(self):
        return 42


class SneakyStr(str):
    def __str__(self):
        return self

    def __len__(self):
        return 0


def storable(text: str) -> bool:
    text.encode("utf-8")
    return sqlite3.connect(":memory:").execute("select ?", (text,)).fetchone()[0] == text


@pytest.mark.parametrize("value", ["\ud800", "a\udcffb", b"\xff", Unprintable(), NotAString(), SneakyStr("x" * 500),
                                   10 ** 100_000, "x" * 2**20, "\x1b[31mred\r\x00", None, ["\ud800"]],
                         ids=lambda v: type(v).__name__)
def test_clean_text_is_always_storable(value):
    text = messages.clean_text(value)
    assert type(text) is str and len(text) <= 300 and storable(text)
    assert not any(ord(c) < 32 and c != "\n" for c in text)


def test_clean_text_cases():
    assert messages.clean_text("\ud800x") == "\ufffdx"
    assert messages.clean_text(b"\xff") == "\ufffd"
    assert messages.clean_text(b"ok") == "ok"
    assert messages.clean_text(Unprintable()) == "<unprintable Unprintable>"
    assert messages.clean_text("\x1b[31mred\ttab\r\nnext") == " [31mred tab \nnext"
    assert messages.clean_text("\u202eevil") == " evil"
    big = messages.clean_text("x" * 2**20)
    assert len(big) == 300 and big.endswith("…")
    assert messages.clean_text("abcdef", limit=4) == "abc…"
    assert messages.clean_text("abcd", limit=4) == "abcd"
    ten = "\n".join(f"line{i}" for i in range(10))
    assert messages.clean_text(ten) == "line0\nline1\nline2\nline3\nline4…"
    assert messages.clean_text(ten, lines=2) == "line0\nline1…"
    assert messages.clean_text(ten, 1000, lines=20) == ten


def test_exception_summary():
    assert messages.exception_summary("ValueError") == "raised ValueError"
    assert messages.exception_summary("torch.linalg.LinAlgError") == "raised torch.linalg.LinAlgError"
    assert messages.exception_summary("ValueError", "rnn_cell_step") == "rnn_cell_step raised ValueError"
    assert messages.exception_summary("ValueError", "a\nb\x1b\ud800") == "a b \ufffd raised ValueError"
    for bad in ("ValueError\n", "Value Error", "x" * 100, "<script>", "\ud800", "", None, 3, "1abc"):
        assert messages.exception_summary(bad) == "raised an exception"
