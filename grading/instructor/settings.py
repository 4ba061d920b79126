"""Grading-only nbgrader settings, merged in by ``python -m grading grade``.

Kept out of nbgrader_config.py on purpose: the students' Validate button reads that file.
"""

from __future__ import annotations

import os
from pathlib import Path

from traitlets.config import Config

# Overridable for a course with slower notebooks (and by the tests, to keep hostile cases quick).
CELL_TIMEOUT = int(os.environ.get("GRADING_CELL_TIMEOUT", "30"))
NOTEBOOK_TIMEOUT = int(os.environ.get("GRADING_NOTEBOOK_TIMEOUT", "120"))
EXERCISE_TIMEOUT = int(os.environ.get("GRADING_EXERCISE_TIMEOUT", "30"))
# The grader's own work on one submission (staging, scan, nbgrader's bookkeeping, feedback).
GRADER_MEMORY_MB = int(os.environ.get("GRADING_GRADER_MEMORY_MB", "4096"))
GRADER_OVERHEAD_SECONDS = int(os.environ.get("GRADING_GRADER_SECONDS", "120"))
EXERCISES_PER_NOTEBOOK = 3


def submission_budget(notebooks: int) -> float:
    """Wall-clock seconds one submission may take in all; past it, it is a grading error.

    ``GRADING_SUBMISSION_TIMEOUT`` overrides the computed value.
    """
    override = os.environ.get("GRADING_SUBMISSION_TIMEOUT")
    if override:
        return float(override)
    per_notebook = NOTEBOOK_TIMEOUT + EXERCISES_PER_NOTEBOOK * EXERCISE_TIMEOUT + 30
    return max(1, notebooks) * per_notebook + GRADER_OVERHEAD_SECONDS


def grading_config(staged_submissions: Path, verify: bool = True) -> Config:
    """Autograde from the staged copy of submitted/, in forked sandboxed kernels; feedback without raw outputs.

    With the verifier on, the kernel's scores are saved as pending zeros (``pending.py``).
    """
    c = Config()
    c.CourseDirectory.submitted_directory = str(staged_submissions)
    c.Autograde.autograde_preprocessors = [
        "grading.instructor.kernels.SandboxedExecute",
        "nbgrader.preprocessors.IgnorePattern",
        "nbconvert.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput",
        "grading.instructor.pending.SavePendingGrades" if verify else "nbgrader.preprocessors.SaveAutoGrades",
        "nbgrader.preprocessors.AssignLatePenalties",
        "nbgrader.preprocessors.CheckCellMetadata",
    ]
    c.SandboxedExecute.timeout = CELL_TIMEOUT
    c.SandboxedExecute.notebook_timeout = NOTEBOOK_TIMEOUT
    c.SandboxedExecute.interrupt_on_timeout = True
    c.GenerateFeedback.preprocessors = [
        "nbgrader.preprocessors.GetGrades",
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
        "nbgrader.preprocessors.ClearHiddenTests",
        "grading.instructor.feedback.TrustedOutputs",
    ]
    return c
