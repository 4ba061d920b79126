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


def grading_config(staged_submissions: Path) -> Config:
    """Autograde from the staged copy of submitted/, in forked sandboxed kernels; feedback without raw outputs."""
    c = Config()
    c.CourseDirectory.submitted_directory = str(staged_submissions)
    c.Autograde.autograde_preprocessors = [
        "grading.instructor.kernels.SandboxedExecute",
        "nbgrader.preprocessors.IgnorePattern",
        "nbconvert.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput",
        "nbgrader.preprocessors.SaveAutoGrades",
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
