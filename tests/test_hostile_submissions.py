"""Hostile submissions: none may read what it shouldn't, touch the gradebook, or stop the class run.

One class run grades honest students beside every attack (rnn_basics/rnn_cell: two test
cells, test_rnn_cell_step and test_run_cell, 2 points each); a second run grades the honest
students alone. Each attack's outcome is asserted exactly.
"""

import json
import os
import shutil
import sqlite3

import nbformat
import pytest

from conftest import (
    QUICK_LIMITS,
    REPO,
    gradebook_scores,
    grading,
    new_course,
    results,
    submit,
    with_solution,
)
from rnn_cell_class import ALL_ZERO, FULL, NB, REF, RUN, RUN_ZERO, STEP, STEP_ZERO, WRONG_STEP, A

pytestmark = pytest.mark.slow  # runs nbgrader, kernels or the sandbox end to end


SNOOP = '''
import os, socket, sqlite3
seen = {}
for label, path in [("source", SOURCE), ("course", COURSE), ("other_student", OTHER), ("gradebook", GRADEBOOK),
                    ("instructor_modules", INSTRUCTOR), ("shadow", "/etc/shadow")]:
    try:
        seen[label] = bool(os.listdir(path)) if os.path.isdir(path) else open(path, "rb").read(1) is not None
    except OSError:
        seen[label] = False
try:
    sqlite3.connect(GRADEBOOK).execute("update grade set manual_score = 1000")
    seen["gradebook_write"] = True
except Exception:
    seen["gradebook_write"] = False
try:
    socket.create_connection(("127.0.0.1", 22), timeout=1)
    seen["network"] = True
except OSError as exc:
    seen["network"] = "refused" in str(exc).lower() and "unreachable" not in str(exc).lower() and False
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        import time
        time.sleep(600)
    os._exit(0)
print("SNOOP", __import__("json").dumps(seen))
'''


def hostile_notebooks(course):
    """student -> (notebooks to submit, or raw files), expected test cell scores, expected reason substring."""
    paths = {"SOURCE": str(course / "source"), "COURSE": str(course), "OTHER": str(course / "submitted" / "honest_a"),
             "GRADEBOOK": str(course / "gradebook.db"),
             "INSTRUCTOR": str(REPO / "grading" / "instructor" / "catalogue")}
    snoop = "".join(f"{k} = {v!r}\n" for k, v in paths.items()) + SNOOP
    dup = nbformat.from_dict(json.loads(json.dumps(REF)))
    step_cell = next(c for c in dup.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "rnn_cell_step")
    tests = [c for c in dup.cells if c.metadata.get("nbgrader", {}).get("grade")]
    first = nbformat.from_dict(json.loads(json.dumps(step_cell)))
    first.source, step_cell.source = "import math", STEP
    dup.cells.insert(dup.cells.index(step_cell), first)
    dup.cells.insert(dup.cells.index(tests[0]) + 1, nbformat.from_dict(json.loads(json.dumps(tests[0]))))
    deleted = nbformat.from_dict(json.loads(json.dumps(REF)))
    deleted.cells = [c for c in deleted.cells if not c.metadata.get("nbgrader", {}).get("grade")][:-1]
    edited = with_solution(REF, "rnn_cell_step", WRONG_STEP)
    for cell in edited.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") or (meta.get("locked") and cell.cell_type == "code"):
            cell.source = "pass"
    return {
        "loop": ({NB: with_solution(REF, "rnn_cell_step", STEP + "\nwhile True:\n    pass\n")}, STEP_ZERO,
                 "did not finish"),
        "unkillable_loop": ({NB: with_solution(REF, "rnn_cell_step", STEP + "\nwhile True:\n    try:\n"
                                              "        while True:\n            pass\n"
                                              "    except BaseException:\n        pass\n")},
                            STEP_ZERO, "did not finish"),
        "memory_bomb": ({NB: with_solution(REF, "run_cell", RUN + "\nblobs = []\nwhile True:\n"
                                           "    blobs.append(bytearray(64 * 2**20))\n")}, RUN_ZERO, "MemoryError"),
        "os_exit": ({NB: with_solution(REF, "rnn_cell_step", STEP + "\nimport os\nos._exit(3)\n")}, STEP_ZERO,
                    "ended the process"),
        "system_exit": ({NB: with_solution(REF, "rnn_cell_step", STEP + "\nraise SystemExit(1)\n")}, STEP_ZERO,
                        "SystemExit"),
        "keyboard_interrupt": ({NB: with_solution(REF, "run_cell", RUN + "\nraise KeyboardInterrupt\n")}, RUN_ZERO,
                               "KeyboardInterrupt"),
        "fork_storm": ({NB: with_solution(REF, "rnn_cell_step", STEP + "\nimport os, time\nfor _ in range(1000):\n"
                                          "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
                                          "    if pid == 0:\n        time.sleep(300)\n        os._exit(0)\n"
                                          "raise RuntimeError('fork storm over')\n")},
                       STEP_ZERO, "raised RuntimeError"),
        "huge_output": ({NB: with_solution(REF, "rnn_cell_step", STEP + "\nprint('x' * (16 * 2**20))\n")}, FULL, None),
        "stderr_spam": ({NB: with_solution(REF, "rnn_cell_step",
                                           STEP + "\nimport sys\nsys.stderr.write('noise\\n' * 200000)\n")},
                        FULL, None),
        "invalid_json": ({f"{NB}.ipynb": json.dumps(REF)[:-300]}, ALL_ZERO, "not valid JSON"),
        "format_version": ({f"{NB}.ipynb": json.dumps(dict(json.loads(nbformat.writes(REF)), nbformat=5))}, ALL_ZERO,
                           "format version 5"),
        "deleted_cells": ({NB: deleted}, FULL, "was deleted: restored"),
        "duplicated_split_cells": ({NB: dup}, FULL, "merged"),
        "edited_locked_cells": ({NB: edited}, STEP_ZERO, "was edited: restored"),
        "renamed": ({"rnn_cell (1)": REF}, FULL, "renamed"),
        "extra_files": ({NB: REF, "notes": REF, "junk.bin": "x" * (5 * 2**20)}, FULL, "extra notebook"),
        "snooper": ({NB: with_solution(REF, "run_cell", RUN + "\n" + snoop)}, FULL, None),
    }


def write_submission(course, student, items):
    folder = course / "submitted" / student / A
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in items.items():
        if isinstance(content, str):
            (folder / name).write_text(content)
        else:
            nbformat.write(content, folder / f"{name}.ipynb")
    (folder / "timestamp.txt").write_text("2026-11-20 12:00:00.000000 UTC")


HONEST = {"honest_a": (REF, FULL), "honest_wrong": (with_solution(REF, "rnn_cell_step", WRONG_STEP), STEP_ZERO)}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("hostile"), [A])
    for student, (nb, _) in HONEST.items():
        submit(course, student, A, {NB: nb})
    cases = hostile_notebooks(course)
    for student, (items, _, _) in cases.items():
        write_submission(course, student, items)
    before = sqlite3.connect(course / "gradebook.db").execute("pragma integrity_check").fetchone()
    out = grading("grade", A, root=course, env=QUICK_LIMITS, timeout=1200)
    return course, cases, out, before


@pytest.fixture(scope="module")
def honest_run(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("honest"), [A])
    for student, (nb, _) in HONEST.items():
        submit(course, student, A, {NB: nb})
    grading("grade", A, root=course, env=QUICK_LIMITS)
    return course


def test_the_class_run_finishes_and_grades_everyone(hostile_run):
    course, cases, out, _ = hostile_run
    scores = gradebook_scores(course, A, NB)
    assert set(scores) == set(cases) | set(HONEST), out.stdout[-3000:]
    assert "0 with grading errors" in out.stdout, out.stdout[-3000:]


@pytest.mark.parametrize("student", sorted([
    "loop", "unkillable_loop", "memory_bomb", "os_exit", "system_exit", "keyboard_interrupt", "fork_storm",
    "huge_output", "stderr_spam", "invalid_json", "format_version", "deleted_cells", "duplicated_split_cells",
    "edited_locked_cells", "renamed", "extra_files", "snooper"]))
def test_each_attack_gets_exactly_its_outcome(hostile_run, student):
    course, cases, _, _ = hostile_run
    _, expected, reason = cases[student]
    assert gradebook_scores(course, A, NB)[student] == expected
    if reason:
        record = json.dumps(results(course, A, student))
        assert reason in record, f"{student}: {reason!r} not reported in {record[:2000]}"


def test_honest_students_get_the_same_grades_as_in_a_run_without_attackers(hostile_run, honest_run):
    course, _, _, _ = hostile_run
    hostile_scores, honest_scores = gradebook_scores(course, A, NB), gradebook_scores(honest_run, A, NB)
    for student, (_, expected) in HONEST.items():
        assert hostile_scores[student] == honest_scores[student] == expected


def test_gradebook_is_intact(hostile_run):
    course, _, _, before = hostile_run
    db = sqlite3.connect(course / "gradebook.db")
    assert db.execute("pragma integrity_check").fetchone() == before == ("ok",)
    assert db.execute("select max(coalesce(manual_score, auto_score)) from grade").fetchone()[0] <= 2


def test_the_sandbox_hid_the_course_and_cut_the_network(hostile_run):
    course, _, _, _ = hostile_run
    nb = nbformat.read(course / "autograded" / "snooper" / A / f"{NB}.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    seen = json.loads(text.split("SNOOP ", 1)[1].splitlines()[0])
    assert seen == {"source": False, "course": False, "other_student": False, "gradebook": False,
                    "instructor_modules": False, "shadow": False, "gradebook_write": False, "network": False}


def test_no_student_process_outlives_the_run(hostile_run):
    leftovers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    status = f.read()
            except OSError:
                continue
            uid = int(status.split("Uid:")[1].split()[0])
            if 61000 <= uid < 61100:
                leftovers.append(entry)
    assert not leftovers


def test_huge_output_is_truncated(hostile_run):
    course, _, _, _ = hostile_run
    size = (course / "autograded" / "huge_output" / A / f"{NB}.ipynb").stat().st_size
    assert size < 2 * 2**20


def test_regrading_one_student_gives_the_same_score(hostile_run):
    course, _, _, _ = hostile_run
    before = gradebook_scores(course, A, NB)
    grading("grade", A, "--student", "fork_storm", root=course, env=QUICK_LIMITS)
    grading("grade", A, "--student", "honest_wrong", root=course, env=QUICK_LIMITS)
    assert gradebook_scores(course, A, NB) == before


def test_refuses_to_grade_unsandboxed_without_being_told(tmp_path, monkeypatch):
    from grading.instructor import sandbox

    monkeypatch.setattr(sandbox.shutil, "which", lambda tool: None)
    assert "bwrap is not installed" in sandbox.sandbox_problem()
    course = new_course(tmp_path / "c", [A])
    submit(course, "s", A, {NB: REF})
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("alembic", "python3"):
        if shutil.which(tool):
            os.symlink(shutil.which(tool), fake_bin / tool)
    out = grading("grade", A, root=course, check=False, env={"PATH": str(fake_bin)})
    assert out.returncode == 4
    assert "--unsandboxed" in out.stderr and "read source/" in out.stderr
