"""The course's assignments, and the modules each one must provide.

``ASSIGNMENTS`` is the one place an assignment is declared. Every assignment has

* ``grading.instructor.exercises.<assignment>``: its hidden checks (``EXERCISES``);
* ``grading.instructor.catalogue.<assignment>``: its answer catalogue (``ANSWERS``);

and every assignment in ``CALIBRATED`` (it has training tests with calibrated thresholds) also has

* ``grading.instructor.calibration.<assignment>``: ``calibrate``, ``problems`` and ``format_table``.

A declared module that does not exist is an error (:class:`RegistryError`), never a skipped assignment.

The registry lives in the exercises package because the grading sandbox stages only ``grading.student``,
``grading.instructor.exercises`` and ``grading.instructor.runtime``: the hidden checks load their modules
from here inside the sandbox. Nothing is imported until a function is called, so the sandbox never
reaches for the catalogue or the calibration, which it does not have.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ASSIGNMENTS: tuple[str, ...] = ("rnn_basics", "hello_ohlol", "lstm_gru", "char_lm")
CALIBRATED: tuple[str, ...] = ("hello_ohlol", "lstm_gru", "char_lm")
# Assignments that train a model on real data while they are graded (an authorised exception to "a hidden test runs
# well under a second"): the benchmark reports them apart from the speed-up of the others.
CAPSTONES: tuple[str, ...] = ("char_lm",)


class RegistryError(ImportError):
    """A declared assignment lacks one of the modules the registry requires of it."""


def load(package: str, assignment: str) -> ModuleType:
    """``grading.instructor.<package>.<assignment>``; RegistryError naming both when it does not exist."""
    name = f"grading.instructor.{package}.{assignment}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise RegistryError(
            f"assignment {assignment!r} is declared in {__name__} but its module {name} does not exist: "
            f"create grading/instructor/{package}/{assignment}.py") from None


def exercise_modules() -> dict[str, ModuleType]:
    """assignment -> its hidden-check module, in ``ASSIGNMENTS`` order."""
    return {a: load("exercises", a) for a in ASSIGNMENTS}


def catalogue_modules() -> dict[str, ModuleType]:
    """assignment -> its answer-catalogue module, in ``ASSIGNMENTS`` order."""
    return {a: load("catalogue", a) for a in ASSIGNMENTS}


def calibration_modules() -> dict[str, ModuleType]:
    """assignment -> its calibration module, for the assignments in ``CALIBRATED``."""
    undeclared = [a for a in CALIBRATED if a not in ASSIGNMENTS]
    if undeclared:
        raise RegistryError(f"CALIBRATED names {undeclared}, which are not in ASSIGNMENTS ({__name__})")
    return {a: load("calibration", a) for a in CALIBRATED}
