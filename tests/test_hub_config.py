"""The hub's generated configuration, without starting anything (the hub itself: tests/test_hub.py)."""

from __future__ import annotations

import json
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from conftest import REPO
from grading.instructor.hub import hub_config, instructors_db_url
from grading.instructor.settings import load_settings
from grading.instructor.student_env import (
    INSTRUCTOR_SERVER_EXTENSIONS,
    STUDENT_SERVER_EXTENSIONS,
    install_login_path,
    write_server_config,
)


def load(text: str, tmp_path: Path) -> Config:
    (tmp_path / "jupyterhub_config.py").write_text(text)
    return PyFileConfigLoader("jupyterhub_config.py", str(tmp_path)).load_config()


def test_hub_logs_in_course_members_by_pam_and_spawns_each_as_themselves(tmp_path):
    settings = load_settings(None, {"GRADING_STUDENT_ENV": "/opt/x/venv"})
    c = load(hub_config(REPO, settings, ip="10.0.0.5", port=8443, hub_port=9081, proxy_api_port=9001), tmp_path)
    assert c.JupyterHub.authenticator_class == "pam" and c.JupyterHub.spawner_class == "localprocess"
    assert c.PAMAuthenticator.allowed_groups == {"students", "instructors"} and not c.Authenticator.admin_users
    assert c.Spawner.cmd == ["/opt/x/venv/bin/jupyterhub-singleuser"]
    assert c.Spawner.environment["PATH"].startswith("/opt/x/venv/bin:")
    assert c.JupyterHub.bind_url == "http://10.0.0.5:8443" and c.JupyterHub.hub_bind_url == "http://127.0.0.1:9081"
    assert c.JupyterHub.db_url.startswith(f"sqlite:///{REPO / 'hub'}")


def test_only_instructors_get_the_formgrader_overlay(tmp_path, monkeypatch):
    import grp

    c = load(hub_config(REPO, load_settings(None, {"GRADING_STUDENT_ENV": "/opt/x/venv"})), tmp_path)
    groups = {"instructors": type("Group", (), {"gr_mem": ["teacher"]})()}
    monkeypatch.setattr(grp, "getgrnam", lambda name: groups[name])

    def spawn(name: str) -> dict:
        spawner = type("Spawner", (), {"user": type("User", (), {"name": name})(), "environment": {}})()
        c.Spawner.pre_spawn_hook(spawner)
        return spawner.environment

    assert spawn("teacher")["JUPYTER_CONFIG_PATH"] == "/opt/x/instructor-config"
    assert "JUPYTER_CONFIG_PATH" not in spawn("student")
    groups.clear()  # no instructors group at all: nobody gets formgrader
    assert "JUPYTER_CONFIG_PATH" not in spawn("teacher")


def test_students_servers_have_no_formgrader_and_instructors_do(tmp_path):
    settings = load_settings(None, {"GRADING_STUDENT_ENV": str(tmp_path / "env" / "venv")})
    write_server_config(tmp_path / "env" / "venv", settings)
    students = json.loads((tmp_path / "env" / "venv" / "etc" / "jupyter" / "jupyter_server_config.d" /
                           "rnn-course-students.json").read_text())["ServerApp"]["jpserver_extensions"]
    instructors = json.loads((tmp_path / "env" / "instructor-config" / "jupyter_server_config.json").read_text())
    assert students == STUDENT_SERVER_EXTENSIONS and not students["nbgrader.server_extensions.formgrader"]
    assert not students["nbgrader.server_extensions.course_list"]
    assert instructors["ServerApp"]["jpserver_extensions"] == INSTRUCTOR_SERVER_EXTENSIONS
    assert INSTRUCTOR_SERVER_EXTENSIONS["nbgrader.server_extensions.formgrader"]


def test_formgrader_never_gets_a_password(monkeypatch):
    monkeypatch.setenv("GRADING_DB_URL", "postgresql://rnn_course:s3cret@db.example.org/rnn_course")
    assert instructors_db_url(REPO) == "postgresql+psycopg2://rnn_course@db.example.org/rnn_course"


def test_login_path_puts_the_students_environment_on_path(tmp_path):
    script = install_login_path(load_settings(None, {"GRADING_STUDENT_ENV": "/opt/x/venv"}), tmp_path / "p.sh")
    text = script.read_text()
    assert 'PATH="$PATH:/opt/x/venv/bin"' in text and script.stat().st_mode & 0o777 == 0o644
