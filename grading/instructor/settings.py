"""Every grading limit, defined once: ``GradingSettings``.

Grading-only: the students' Validate button reads ``nbgrader_config.py``, so these live
elsewhere. ``course_id`` and ``db_url`` stay nbgrader's ``CourseDirectory`` settings in
``nbgrader_config.py``; everything below is read, in order of precedence, from

1. environment variables ``GRADING_<NAME>`` (e.g. ``GRADING_CELL_TIMEOUT=60``), read here and
   nowhere else;
2. ``grading_config.py`` at the course root (``c.GradingSettings.cell_timeout = 60``);
3. the defaults below.

The sandbox gets what it needs passed explicitly (``sandbox_environment``), never the
grader's environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from traitlets import Integer, Unicode
from traitlets.config import Config, Configurable
from traitlets.config.loader import PyFileConfigLoader

CONFIG_FILE = "grading_config.py"
ENV_PREFIX = "GRADING_"
EXERCISES_PER_NOTEBOOK = 3


class GradingSettings(Configurable):
    """Limits of the sandbox, the verifier and the grader's own work."""

    cell_timeout = Integer(30, help="Seconds one notebook cell may run before it is interrupted.").tag(config=True)
    notebook_timeout = Integer(120, help="Seconds a whole notebook may run; then its kernel is killed.").tag(
        config=True)
    exercise_timeout = Integer(30, help="Seconds the verifier gives one exercise (its solution cell and probes).").tag(
        config=True)
    memory_mb = Integer(2048, help="Address space a kernel may add (MB); its cgroup allows 256 MB more.").tag(
        config=True)
    nproc = Integer(128, help="Processes the sandbox uid may have at once.").tag(config=True)
    cpu_seconds = Integer(120, help="CPU seconds of one kernel or verifier process.").tag(config=True)
    file_mb = Integer(64, help="Largest file student code may write (MB).").tag(config=True)
    disk_mb = Integer(512, help="Size of the tmpfs holding the notebooks' working directories (MB).").tag(config=True)
    tmp_mb = Integer(256, help="Size of the sandbox's /tmp (MB).").tag(config=True)
    output_limit_bytes = Integer(200_000, help="Output kept per cell; the rest is dropped with a note.").tag(
        config=True)
    server_start_timeout = Integer(60, help="Seconds a kernel server may take to start; then a clear error.").tag(
        config=True)
    grader_memory_mb = Integer(4096, help="Memory of one grading worker's own work (MB): nbgrader, feedback.").tag(
        config=True)
    grader_seconds = Integer(120, help="Seconds added to each submission's budget for the grader's own work.").tag(
        config=True)
    submission_timeout = Integer(0, help="Wall-clock budget of one submission in seconds; 0 computes it from the "
                                          "notebook, exercise and grader limits.").tag(config=True)

    exchange_root = Unicode("/srv/nbgrader/exchange", help="nbgrader's file exchange on the class hub; the course "
                            "keeps its files in a folder named after its course id.").tag(config=True)
    student_env = Unicode("/opt/rnn-course/venv", help="The students' Python environment on the hub (world-readable: "
                          "JupyterLab, nbgrader's student extensions, torch, grading.student).").tag(config=True)

    def submission_budget(self, notebooks: int) -> float:
        """Seconds one submission of ``notebooks`` notebooks may take in all; past it, a grading error."""
        if self.submission_timeout:
            return float(self.submission_timeout)
        per_notebook = self.notebook_timeout + EXERCISES_PER_NOTEBOOK * self.exercise_timeout + 30
        return max(1, notebooks) * per_notebook + self.grader_seconds

    def sandbox_environment(self) -> dict[str, str]:
        """The limits the kernel server and the verifier's harness read inside the sandbox."""
        return {"GRADING_MEMORY_MB": str(self.memory_mb), "GRADING_NPROC": str(self.nproc),
                "GRADING_CPU_SECONDS": str(self.cpu_seconds), "GRADING_FILE_MB": str(self.file_mb),
                "GRADING_EXERCISE_TIMEOUT": str(self.exercise_timeout)}


def load_settings(root: Path | None = None, environ: Mapping[str, str] | None = None) -> GradingSettings:
    """The course's settings: ``grading_config.py`` at ``root`` (if any), then ``GRADING_*`` overrides."""
    config = Config()
    if root is not None and (Path(root) / CONFIG_FILE).is_file():
        config.merge(PyFileConfigLoader(CONFIG_FILE, str(root)).load_config())
    environ = os.environ if environ is None else environ
    for name in GradingSettings.class_trait_names(config=True):
        value = environ.get(ENV_PREFIX + name.upper())
        if value is None or not value.strip():
            continue
        if isinstance(GradingSettings.class_traits()[name], Unicode):
            config.GradingSettings[name] = value.strip()
            continue
        try:
            config.GradingSettings[name] = int(value)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={value!r} is not a whole number") from None
    return GradingSettings(config=config)


def grading_config(staged_submissions: Path, settings: GradingSettings, verify: bool = True) -> Config:
    """nbgrader's config for grading: autograde from the staged copy of submitted/ in forked sandboxed kernels,
    feedback without raw outputs. With the verifier on, kernel scores are saved as pending zeros (``pending.py``)."""
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
    c.SandboxedExecute.timeout = settings.cell_timeout
    c.SandboxedExecute.notebook_timeout = settings.notebook_timeout
    c.SandboxedExecute.max_output_bytes = settings.output_limit_bytes
    c.SandboxedExecute.interrupt_on_timeout = True
    c.GenerateFeedback.exporter_class = "grading.instructor.feedback.FeedbackExporter"
    c.GenerateFeedback.preprocessors = [
        "nbgrader.preprocessors.GetGrades",
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
        "nbgrader.preprocessors.ClearHiddenTests",
        "grading.instructor.feedback.TrustedOutputs",
    ]
    return c
