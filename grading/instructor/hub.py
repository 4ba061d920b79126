"""``python -m grading hub``: a JupyterHub for the course, run as root.

* Accounts are real Unix users (``python -m grading roster add``), authenticated by PAM with their
  passwords; only members of the ``students`` and ``instructors`` groups may log in.
* ``LocalProcessSpawner``: every server runs as its own user, from the students' environment
  (``student_env.py``), in that user's home. Instructors' servers get the instructor overlay
  (formgrader on, for this course root) through ``JUPYTER_CONFIG_PATH``; students' servers do not.
* The hub's own state (its database, cookie secret, the proxy's pid) lives in a root-only folder.

Before starting, the command makes the class ready: the students' environment, the system-wide
students' nbgrader settings, the exchange, and the course root closed to students.
"""

from __future__ import annotations

import grp
import os
import subprocess
import sys
from pathlib import Path

from .audit import FORMGRADER_HOOK
from .course import load_config
from .settings import GradingSettings
from .student_env import instructor_config_dir

STUDENTS, INSTRUCTORS = "students", "instructors"
SPAWN_TIMEOUT = 180

HUB_CONFIG = '''"""JupyterHub for the RNN course (written by python -m grading hub; regenerated at every start)."""

import grp

c = get_config()  # noqa: F821

c.JupyterHub.bind_url = {bind_url!r}
c.JupyterHub.hub_bind_url = {hub_bind_url!r}
c.ConfigurableHTTPProxy.api_url = {proxy_api_url!r}
c.ConfigurableHTTPProxy.command = ["configurable-http-proxy"]
c.ConfigurableHTTPProxy.pid_file = {proxy_pid!r}
c.JupyterHub.db_url = {hub_db!r}
c.JupyterHub.cookie_secret_file = {cookie_secret!r}
c.JupyterHub.pid_file = {hub_pid!r}

c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.allowed_groups = {groups!r}
c.Authenticator.admin_users = set()

c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {environment!r}
c.Spawner.start_timeout = {timeout}
c.Spawner.http_timeout = {timeout}


def instructors_get_formgrader(spawner):
    """Instructors' servers read the instructor overlay first; students' servers never see it."""
    try:
        members = set(grp.getgrnam({instructors!r}).gr_mem)
    except KeyError:
        members = set()
    if spawner.user.name in members:
        spawner.environment["JUPYTER_CONFIG_PATH"] = {overlay!r}


c.Spawner.pre_spawn_hook = instructors_get_formgrader
'''

INSTRUCTOR_NBGRADER_CONFIG = '''"""nbgrader for instructors on the hub: formgrader opens this course."""

c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.db_url = {db_url!r}
c.Exchange.root = {exchange!r}
''' + FORMGRADER_HOOK  # the audit trail's formgrader hook (audit.py)


def state_dir(root: Path) -> Path:
    """The hub's own files (database, cookie secret, pids): root only."""
    return root / "hub"


def instructors_db_url(root: Path) -> str:
    """The gradebook URL formgrader uses, without any password (PostgreSQL passwords come from ~/.pgpass)."""
    from sqlalchemy.engine import make_url

    from .database import db_url

    return make_url(db_url(root)).render_as_string(hide_password=True).replace(":***@", "@")


def hub_config(root: Path, settings: GradingSettings, ip: str = "127.0.0.1", port: int = 8000,
               hub_port: int = 8081, proxy_api_port: int = 8001) -> str:
    """The text of jupyterhub_config.py for this course."""
    state = state_dir(root)
    env = Path(settings.student_env)
    return HUB_CONFIG.format(
        bind_url=f"http://{ip}:{port}", hub_bind_url=f"http://127.0.0.1:{hub_port}",
        proxy_api_url=f"http://127.0.0.1:{proxy_api_port}", proxy_pid=str(state / "proxy.pid"),
        hub_db=f"sqlite:///{state / 'jupyterhub.sqlite'}", cookie_secret=str(state / "jupyterhub_cookie_secret"),
        hub_pid=str(state / "jupyterhub.pid"), groups={STUDENTS, INSTRUCTORS},
        singleuser=str(env / "bin" / "jupyterhub-singleuser"),
        environment={"PATH": f"{env / 'bin'}:/usr/local/bin:/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        timeout=SPAWN_TIMEOUT, instructors=INSTRUCTORS, overlay=str(instructor_config_dir(settings)))


def write_instructor_config(root: Path, settings: GradingSettings) -> Path:
    """Formgrader's settings for instructors' servers: this course root, its gradebook, the exchange."""
    course = load_config(root)
    path = instructor_config_dir(settings) / "nbgrader_config.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(INSTRUCTOR_NBGRADER_CONFIG.format(
        root=str(root), course_id=str(course.CourseDirectory.course_id), db_url=instructors_db_url(root),
        exchange=str(settings.exchange_root)))
    path.chmod(0o644)
    return path


def ensure_groups() -> None:
    """The two course groups exist (the roster creates them too)."""
    for group in (STUDENTS, INSTRUCTORS):
        try:
            grp.getgrnam(group)
        except KeyError:
            subprocess.run(["groupadd", group], check=True, timeout=60)


def prepare_class(repo: Path, root: Path, settings: GradingSettings) -> None:
    """Everything the hub needs before it starts; each step is idempotent."""
    from .exchange import course_id_of, install_students_config, secure_course_root, setup_exchange
    from .student_env import build_student_env, install_login_path

    ensure_groups()
    build_student_env(repo, settings)
    install_login_path(settings)
    install_students_config(settings, root=root)
    setup_exchange(settings, course_id_of(root))
    write_instructor_config(root, settings)
    secure_course_root(root)


def hub_command(root: Path, settings: GradingSettings, **ports) -> tuple[list[str], dict[str, str], Path]:
    """The command that runs JupyterHub for the course, its environment, and its working folder."""
    state = state_dir(root)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.chmod(0o700)
    config = state / "jupyterhub_config.py"
    config.write_text(hub_config(root, settings, **ports))
    config.chmod(0o600)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    # Debian's configurable-http-proxy finds its modules there; a Node.js from elsewhere does not look by itself.
    env["NODE_PATH"] = ":".join(p for p in ("/usr/share/nodejs", env.get("NODE_PATH", "")) if p)
    return [sys.executable, "-m", "jupyterhub", "-f", str(config)], env, state


def close_checkout(repo: Path) -> bool:
    """Close the instructor's checkout (hidden checks, answer catalogue) to other accounts; True if it changed."""
    mode = repo.stat().st_mode & 0o777
    if not mode & 0o007:
        return False
    repo.chmod(mode & ~0o007)
    return True


def cmd_hub(args) -> int:
    """``python -m grading hub``: prepare the class, then run JupyterHub in the foreground."""
    from .course import CourseError
    from .settings import load_settings

    if os.geteuid() != 0:
        raise CourseError("the hub spawns every user's server as that user: run `python -m grading hub` as root")
    root = Path(args.root).resolve()
    settings = load_settings(root)
    repo = Path(__file__).resolve().parents[2]
    if close_checkout(repo):
        print(f"closed {repo} to other accounts (it holds the hidden checks and the answer catalogue)")
    prepare_class(repo, root, settings)
    cmd, env, state = hub_command(root, settings, ip=args.ip, port=args.port, hub_port=args.hub_port,
                                  proxy_api_port=args.proxy_api_port)
    print(f"JupyterHub for {root} on http://{args.ip}:{args.port} (state in {state}); Ctrl-C stops it", flush=True)
    return subprocess.call(cmd, cwd=state, env=env)
