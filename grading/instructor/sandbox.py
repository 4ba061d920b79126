"""The grading sandbox: where student code runs, and what it can see.

Each grading worker owns one kernel server (``runtime/zygote.py``) running

* in a bubblewrap sandbox with its own mount, PID, network, IPC and UTS namespaces: the
  filesystem is an empty tmpfs with read-only binds of /usr, the Python install, the
  virtualenv and a *staged* copy of the course package (student checks, hidden checks and
  the runtime only: no catalogue, no pipeline, no source/, no gradebook), a private /tmp
  and one writable job directory; no network at all;
* as a dedicated unprivileged user (uid 61000 + worker), with no capabilities and
  ``no_new_privs``. bwrap is started by the grader (root), which lets it bind paths that
  only root can traverse, then ``setpriv`` drops to that uid *before* any Python starts,
  so the code inside is that uid for real (no user namespace mapping it back to root);
* with limits on address space, processes, CPU time and file size per notebook (set by
  the server on each child), and wall-clock limits enforced from outside.

Without bwrap, or without root, grading refuses to run unless ``--unsandboxed`` is given.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grading

PACKAGE_ROOT = Path(grading.__file__).resolve().parent.parent
# The parts of the course package the sandbox may see.
STAGED = ("__init__.py", "student", "instructor/__init__.py", "instructor/exercises", "instructor/runtime")
BASE_UID = 61000
# Per-notebook limits read by the kernel server (see runtime/zygote.py for the defaults).
LIMIT_VARIABLES = ("GRADING_MEMORY_MB", "GRADING_NPROC", "GRADING_CPU_SECONDS", "GRADING_FILE_MB",
                   "GRADING_EXERCISE_TIMEOUT")


class SandboxUnavailable(Exception):
    """The sandbox cannot be built here; the message says why and what --unsandboxed exposes."""


UNSANDBOXED_EXPOSURE = (
    "Without the sandbox, student code runs as the grader's user: it can read source/ (solutions and hidden "
    "tests), other students' submissions and the gradebook, write the gradebook, use the network, and leave "
    "processes behind. Only the out-of-kernel verifier, the time limits and the per-notebook limits still apply."
)


def sandbox_problem() -> str | None:
    """Why the sandbox cannot run here, or None when it can."""
    if sys.platform != "linux":
        return f"the sandbox needs Linux namespaces; this is {sys.platform}"
    if os.geteuid() != 0:
        return "the sandbox needs root to build its mounts and drop to a dedicated user"
    for tool in ("bwrap", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install bubblewrap util-linux)"
    return None


def stage_package(dest: Path) -> Path:
    """Copy the sandbox-visible parts of the course package to ``dest/grading``."""
    target = dest / "grading"
    for rel in STAGED:
        src = PACKAGE_ROOT / "grading" / rel
        if src.is_dir():
            shutil.copytree(src, target / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / rel)
    venv = Path(sys.prefix)
    if venv.is_relative_to(PACKAGE_ROOT):
        (dest / venv.relative_to(PACKAGE_ROOT)).mkdir(parents=True, exist_ok=True)  # mount point of the venv
    for path in [dest, *dest.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return dest


def _dirs_for(path: str) -> list[str]:
    """bwrap --dir arguments (mode 0755) for every ancestor of ``path``."""
    args, parts = [], Path(path).parts
    for i in range(2, len(parts)):
        args += ["--perms", "0755", "--dir", str(Path(*parts[:i]))]
    return args


def bwrap_command(uid: int, staged: Path, job_host: Path, mpl_host: Path, python: str) -> list[str]:
    """The command line that starts the kernel server inside the sandbox."""
    prefix = os.path.realpath(sys.base_prefix)
    venv = sys.prefix
    cmd = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--hostname", "grading",
           "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "sbin"):
        target = os.readlink(f"/{name}") if os.path.islink(f"/{name}") else None
        if target:
            cmd += ["--symlink", target, f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            cmd += ["--ro-bind", f"/{name}", f"/{name}"]
    cmd += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
            "--ro-bind-try", "/etc/localtime", "/etc/localtime",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    binds = sorted([(prefix, prefix), (venv, venv), (str(staged), str(PACKAGE_ROOT))], key=lambda b: len(b[1]))
    bound: list[str] = []
    for src, dest in binds:
        inside_earlier = any(dest.startswith(b + "/") for b in bound)
        cmd += ([] if inside_earlier else _dirs_for(dest)) + ["--ro-bind", src, dest]
        bound.append(dest)
    cmd += ["--bind", str(job_host), "/job", "--bind", str(mpl_host), "/tmp/mplconfig", "--chdir", "/job"]
    for key, value in sandbox_env(sandboxed=True).items():
        cmd += ["--setenv", key, value]
    cmd += ["--", "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
            python, "-m", "grading.instructor.runtime.zygote"]
    return cmd


def sandbox_env(sandboxed: bool, mpl_dir: str = "/tmp/mplconfig") -> dict[str, str]:
    return {
        "PATH": f"{sys.prefix}/bin:/usr/bin:/bin",
        "HOME": "/job" if sandboxed else tempfile.gettempdir(),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "MPLCONFIGDIR": mpl_dir,
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "GRADING_SANDBOXED": "1" if sandboxed else "0",
        "LANG": "C.UTF-8",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        **{k: v for k, v in os.environ.items() if k in LIMIT_VARIABLES},
    }


def build_mpl_cache(dest: Path) -> None:
    """Matplotlib writes its font cache (and a warning on stderr) on first import: do it here, once."""
    dest.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MPLCONFIGDIR=str(dest), MPLBACKEND="Agg")
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class Job:
    """A per-notebook working directory, as seen from outside (host) and inside the sandbox."""

    host: Path
    inside: str


@dataclass
class KernelServer:
    """One warm kernel server, sandboxed or not; every call is one line of JSON each way."""

    index: int
    sandboxed: bool
    workdir: Path
    proc: subprocess.Popen | None = None
    uid: int = 0
    _jobs: int = 0
    log_path: Path | None = None
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, mpl_cache: Path, staged: Path | None) -> "KernelServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        job_root = self.workdir / "job"
        mpl = self.workdir / "mplconfig"
        shutil.rmtree(job_root, ignore_errors=True)
        shutil.rmtree(mpl, ignore_errors=True)
        job_root.mkdir()
        shutil.copytree(mpl_cache, mpl)
        self.log_path = self.workdir / "server.log"
        if self.sandboxed:
            self.uid = BASE_UID + self.index
            for path in (job_root, mpl, *mpl.rglob("*")):
                os.chown(path, self.uid, self.uid)
            os.chmod(self.workdir, 0o755)
            cmd = bwrap_command(self.uid, staged, job_root, mpl, sys.executable)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            cmd = [sys.executable, "-m", "grading.instructor.runtime.zygote"]
            env = dict(os.environ, **sandbox_env(False, str(mpl)), GRADING_SCRATCH=str(job_root))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                                         preexec_fn=lambda: os.umask(0o022))
        reply = self._read(timeout=120)
        if not reply.get("ready"):
            raise SandboxUnavailable(f"the kernel server did not start: {self.log_path.read_text()[-2000:]}")
        return self

    @property
    def job_root_inside(self) -> str:
        return "/job" if self.sandboxed else str(self.workdir / "job")

    def new_job(self, name: str) -> Job:
        """A fresh directory for one notebook, writable only by the sandbox user."""
        self._jobs += 1
        leaf = f"{self._jobs:05d}-{name}"
        host = self.workdir / "job" / leaf
        host.mkdir(mode=0o700)
        if self.sandboxed:
            os.chown(host, self.uid, self.uid)
        return Job(host, f"{self.job_root_inside}/{leaf}")

    def finish_job(self, job: Job) -> None:
        """Kill whatever the notebook left running and delete its directory."""
        try:
            self.call(cmd="sweep", reply_timeout=30)
        finally:
            shutil.rmtree(job.host, ignore_errors=True)

    def call(self, reply_timeout: float = 30, **request) -> dict:
        with self._lock:
            if not self.alive():
                raise SandboxUnavailable(f"the kernel server died: {self.log_tail()}")
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            return self._read(reply_timeout)

    def _read(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise SandboxUnavailable(f"the kernel server did not answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise SandboxUnavailable(f"the kernel server exited: {self.log_tail()}")
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-1500:] if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.alive():
            try:
                self.proc.stdin.write(b'{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc = None
