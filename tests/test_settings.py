"""Grading settings are defined once, read from one grading-only file and from GRADING_* overrides."""

import pytest

from conftest import REPO
from grading.instructor.settings import CONFIG_FILE, GradingSettings, grading_config, load_settings


def test_defaults_apply_without_a_config_file(tmp_path):
    settings = load_settings(tmp_path, environ={})
    assert (settings.cell_timeout, settings.notebook_timeout, settings.exercise_timeout) == (30, 120, 30)
    assert settings.memory_mb == 2048 and settings.output_limit_bytes == 200_000


def test_the_environment_overrides_the_file_which_overrides_the_defaults(tmp_path):
    (tmp_path / CONFIG_FILE).write_text("c.GradingSettings.cell_timeout = 45\nc.GradingSettings.memory_mb = 1500\n")
    settings = load_settings(tmp_path, environ={"GRADING_MEMORY_MB": "1024", "GRADING_UNRELATED": "x"})
    assert settings.cell_timeout == 45 and settings.memory_mb == 1024


def test_a_malformed_override_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="GRADING_CELL_TIMEOUT='soon' is not a whole number"):
        load_settings(tmp_path, environ={"GRADING_CELL_TIMEOUT": "soon"})


def test_every_setting_has_help_text():
    for name, trait in GradingSettings.class_traits(config=True).items():
        assert len(trait.help) > 20, name


def test_the_sandbox_gets_its_limits_explicitly():
    env = GradingSettings(memory_mb=900, exercise_timeout=7).sandbox_environment()
    assert env["GRADING_MEMORY_MB"] == "900" and env["GRADING_EXERCISE_TIMEOUT"] == "7"
    assert set(env) == {"GRADING_MEMORY_MB", "GRADING_NPROC", "GRADING_CPU_SECONDS", "GRADING_FILE_MB",
                        "GRADING_EXERCISE_TIMEOUT"}


def test_nbgrader_gets_the_same_limits(tmp_path):
    config = grading_config(tmp_path, GradingSettings(cell_timeout=11, notebook_timeout=99))
    assert config.SandboxedExecute.timeout == 11 and config.SandboxedExecute.notebook_timeout == 99


def test_the_submission_budget_follows_the_limits():
    settings = GradingSettings(notebook_timeout=100, exercise_timeout=10, grader_seconds=50)
    assert settings.submission_budget(2) == 2 * (100 + 3 * 10 + 30) + 50
    assert GradingSettings(submission_timeout=7).submission_budget(5) == 7


def test_the_students_validate_never_reads_grading_settings():
    assert "c.GradingSettings" not in (REPO / "nbgrader_config.py").read_text()
    assert not (REPO / CONFIG_FILE).exists() or "CourseDirectory" not in (REPO / CONFIG_FILE).read_text()
