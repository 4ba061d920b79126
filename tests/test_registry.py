"""The registry of assignments and exercises agrees with source/, the catalogue and the calibration.

Every graded test cell belongs to exactly one exercise, every contract solution cell has an exercise,
every cell an exercise names exists, every assignment in source/ is declared and every declared one
exists; a declared module that is missing fails loudly. No kernel runs here.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from conftest import REPO
from grading.instructor.catalogue import ANSWERS
from grading.instructor.exercises import EXERCISES, Exercise, registry
from grading.instructor.sandbox import stage_package

SOURCE = REPO / "source"


@dataclass(frozen=True)
class Cell:
    assignment: str
    notebook: str
    source: str


def _nbgrader_cells() -> list[tuple[Cell, nbformat.NotebookNode, dict]]:
    out = []
    for path in sorted(SOURCE.glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade_id"):
                out.append((Cell(path.parent.name, path.stem, cell.source), cell, meta))
    return out


# grade_id -> cell. Test cells: nbgrader's grade=true, solution=false. Contract solution cells: autograded
# answers (code, solution=true, grade=false); a manually graded answer is no contract exercise.
TEST_CELLS = {m["grade_id"]: c for c, cell, m in _nbgrader_cells() if m.get("grade") and not m.get("solution")}
SOLUTION_CELLS = {m["grade_id"]: c for c, cell, m in _nbgrader_cells()
                  if cell.cell_type == "code" and m.get("solution") and not m.get("grade")}
# Every registered exercise, duplicates included (EXERCISES, a dict, would hide them).
ALL_EXERCISES = [ex for module in registry.exercise_modules().values() for ex in module.EXERCISES]


def claim_problems(exercises: list[Exercise], test_cells: dict[str, Cell]) -> list[str]:
    """Graded test cells claimed by no exercise or by several."""
    claims = Counter(tid for ex in exercises for tid in ex.test_ids)
    owners = {tid: [ex.grade_id for ex in exercises if tid in ex.test_ids] for tid in claims}
    problems = [f"test cell {tid!r} ({c.assignment}/{c.notebook}) is claimed by no Exercise.test_ids"
                for tid, c in test_cells.items() if not claims[tid]]
    problems += [f"test cell {tid!r} is claimed by {owners[tid]}" for tid, n in claims.items() if n > 1]
    return problems


def reference_problems(exercise: Exercise, test_cells: dict[str, Cell], solution_cells: dict[str, Cell]) -> list[str]:
    """What the exercise names that source/ does not have where it says."""
    where = f"{exercise.assignment}/{exercise.notebook}"
    if not (SOURCE / exercise.assignment).is_dir():
        return [f"{exercise.grade_id}: assignment {exercise.assignment!r} is not a folder of source/"]
    if not (SOURCE / exercise.assignment / f"{exercise.notebook}.ipynb").is_file():
        return [f"{exercise.grade_id}: notebook {where}.ipynb does not exist"]
    problems = []
    solution = solution_cells.get(exercise.grade_id)
    if solution is None or (solution.assignment, solution.notebook) != (exercise.assignment, exercise.notebook):
        problems.append(f"{exercise.grade_id}: {where} has no solution cell with grade_id {exercise.grade_id!r}")
    for tid in exercise.test_ids:
        cell = test_cells.get(tid)
        if cell is None or (cell.assignment, cell.notebook) != (exercise.assignment, exercise.notebook):
            problems.append(f"{exercise.grade_id}: test id {tid!r} is not a graded test cell of {where}")
    return problems


def test_every_graded_test_cell_is_claimed_by_exactly_one_exercise():
    assert TEST_CELLS
    problems = claim_problems(ALL_EXERCISES, TEST_CELLS)
    assert not problems, "\n".join(problems)


def test_grade_ids_are_unique_across_assignments():
    counts = Counter(ex.grade_id for ex in ALL_EXERCISES)
    assert not [g for g, n in counts.items() if n > 1], counts


def test_every_contract_solution_cell_has_an_exercise():
    assert SOLUTION_CELLS
    missing = [f"{c.assignment}/{c.notebook}: {gid}" for gid, c in SOLUTION_CELLS.items() if gid not in EXERCISES]
    assert not missing, f"solution cells without an Exercise: {missing}"


@pytest.mark.parametrize("grade_id", sorted(EXERCISES))
def test_exercise_names_cells_that_exist(grade_id):
    problems = reference_problems(EXERCISES[grade_id], TEST_CELLS, SOLUTION_CELLS)
    assert not problems, "\n".join(problems)


def test_a_mistyped_test_id_is_named():
    class Typo(Exercise):
        grade_id, name, assignment, notebook = "rnn_cell_step", "rnn_cell_step", "rnn_basics", "rnn_cell"
        test_ids = ("test_rnn_cell_stpe",)

    problems = reference_problems(Typo(), TEST_CELLS, SOLUTION_CELLS)
    assert problems and "'test_rnn_cell_stpe'" in problems[0]
    others = [ex for ex in ALL_EXERCISES if ex.grade_id != "rnn_cell_step"] + [Typo()]
    assert any("'test_rnn_cell_step'" in p and "no Exercise" in p for p in claim_problems(others, TEST_CELLS))


@pytest.mark.parametrize("grade_id", sorted(EXERCISES))
def test_solution_defines_the_name_and_hidden_tests_call_their_own_id(grade_id):
    exercise = EXERCISES[grade_id]
    solution = SOLUTION_CELLS.get(grade_id, Cell("", "", ""))
    defined = {n.name for n in ast.parse(solution.source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert exercise.name in defined, f"solution cell {grade_id!r} defines {sorted(defined)}, not {exercise.name!r}"
    for tid in exercise.test_ids:
        call = f'hidden_check("{tid}", {exercise.name})'
        assert call in TEST_CELLS.get(tid, Cell("", "", "")).source, f"test cell {tid!r} does not call {call}"


def test_each_exercise_is_registered_under_its_own_assignment():
    for assignment, module in registry.exercise_modules().items():
        wrong = [ex.grade_id for ex in module.EXERCISES if ex.assignment != assignment]
        assert not wrong, f"{module.__name__} holds exercises of other assignments: {wrong}"


def test_assignments_in_source_are_the_declared_ones():
    in_source = sorted(p.name for p in SOURCE.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert sorted(registry.ASSIGNMENTS) == in_source, f"ASSIGNMENTS {registry.ASSIGNMENTS}, source/ has {in_source}"
    assert len(set(registry.ASSIGNMENTS)) == len(registry.ASSIGNMENTS)


def test_calibration_modules_are_the_declared_ones():
    on_disk = sorted(p.stem for p in (REPO / "grading" / "instructor" / "calibration").glob("*.py")
                     if p.stem != "__init__")
    assert sorted(registry.CALIBRATED) == on_disk, f"CALIBRATED {registry.CALIBRATED}, calibration/ has {on_disk}"
    for module in registry.calibration_modules().values():
        for function in ("calibrate", "problems", "format_table"):
            assert callable(getattr(module, function, None)), f"{module.__name__} has no {function}()"


@pytest.mark.parametrize("grade_id", sorted(EXERCISES))
def test_every_exercise_has_correct_and_wrong_answers(grade_id):
    kinds = {a.correct for a in ANSWERS if a.exercise == grade_id}
    assert kinds == {True, False}, f"{grade_id}: the catalogue needs correct and wrong answers"


def test_catalogue_answers_name_real_exercises_and_test_cells():
    problems = [f"{a.exercise}/{a.key}: no such exercise" for a in ANSWERS if a.exercise not in EXERCISES]
    problems += [f"{a.exercise}/{a.key}: fails {sorted(set(a.fails) - set(EXERCISES[a.exercise].test_ids))}, "
                 f"not test cells of {a.exercise}" for a in ANSWERS
                 if a.exercise in EXERCISES and not set(a.fails) <= set(EXERCISES[a.exercise].test_ids)]
    problems += [f"{a.exercise}/{a.key}: a wrong answer must fail a test cell and name the fault"
                 for a in ANSWERS if not a.correct and not (a.fails and a.message)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("load", [registry.exercise_modules, registry.catalogue_modules])
def test_a_declared_assignment_without_its_module_fails_loudly(monkeypatch, load):
    monkeypatch.setattr(registry, "ASSIGNMENTS", (*registry.ASSIGNMENTS, "no_such_assignment"))
    missing = r"'no_such_assignment'.*grading\.instructor\.\w+\.no_such_assignment"
    with pytest.raises(registry.RegistryError, match=missing):
        load()


def test_a_calibrated_assignment_without_its_module_fails_loudly(monkeypatch):
    monkeypatch.setattr(registry, "CALIBRATED", (*registry.CALIBRATED, "rnn_basics"))
    with pytest.raises(registry.RegistryError, match=r"'rnn_basics'.*grading\.instructor\.calibration\.rnn_basics"):
        registry.calibration_modules()
    monkeypatch.setattr(registry, "CALIBRATED", ("no_such_assignment",))
    with pytest.raises(registry.RegistryError, match=r"\['no_such_assignment'\].*not in ASSIGNMENTS"):
        registry.calibration_modules()


def test_the_sandbox_copy_loads_every_exercise_without_the_catalogue(tmp_path):
    """The sandbox stages only part of the package: the registry and the hidden checks must load from it alone."""
    staged = stage_package(tmp_path / "pkg")
    code = ("import grading, grading.instructor.exercises as ex, importlib.util as u\n"
            "print(grading.__file__)\nprint(' '.join(sorted(ex.EXERCISES)))\n"
            "print(u.find_spec('grading.instructor.catalogue'))")
    env = dict(os.environ, PYTHONPATH=str(staged), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    location, grade_ids, catalogue = proc.stdout.splitlines()
    assert Path(location).is_relative_to(staged), location
    assert grade_ids.split() == sorted(EXERCISES)
    assert catalogue == "None"
