"""The grading sandbox: where student code runs, and what it can see.

Each grading worker owns one kernel server (``runtime/zygote.py``) running

* in a bubblewrap sandbox with its own mount, PID, network, IPC and UTS namespaces: the
  filesystem is an empty tmpfs with read-only binds of /usr, the Python install, the
  virtualenv and a *staged* copy of the course package (student checks, hidden checks and
  the runtime only: no catalogue, no pipeline, no source/, no gradebook), a private /tmp
  and one writable job directory; no network at all;
* as a dedicated unprivileged user (uid 61000 + 2 * worker) that keeps only the setuid,
  setgid and kill capabilities, under ``no_new_privs``. bwrap is started by the grader
  (root), which lets it bind paths that only root can traverse, then ``setpriv`` drops to
  that uid *before* any Python starts (no user namespace mapping it back to root);
* while every kernel and verifier process it forks drops to a *second* uid (61001 + 2 *
  worker) with no capability at all, so student code cannot signal, trace or stop the
  server;
* in a memory and pids cgroup (``cgroups.py``) that also counts memfd, tmpfs and /tmp pages,
  with a size-limited tmpfs as /tmp and another as the job area, where root creates one
  directory per notebook at an unguessable path (the area itself cannot be listed);
* with limits on address space, processes, CPU time and file size per notebook (set by
  the server on each child), and wall-clock limits enforced from outside. Every read from
  the server has a deadline and a size cap; a server that does not answer a ping is replaced.

Without bwrap, or without root, grading refuses to run unless ``--unsandboxed`` is given.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grading

from .cgroups import Cgroup
from .settings import GradingSettings

PACKAGE_ROOT = Path(grading.__file__).resolve().parent.parent
# The parts of the course package the sandbox may see.
STAGED = ("__init__.py", "student", "instructor/__init__.py", "instructor/exercises", "instructor/runtime")
BASE_UID = 61000
# Where the staged package and the matplotlib cache appear inside the sandbox.
COURSE_INSIDE = "/opt/course"
MPL_INSIDE = "/opt/mplconfig"
# Room above the per-notebook address-space limit, so that plain allocations meet RLIMIT_AS (a clear
# MemoryError) first and the cgroup stops what RLIMIT_AS cannot see (memfd, tmpfs).
CGROUP_HEADROOM_MB = 256
PING_TIMEOUT = 5.0
REPLY_LIMIT_BYTES = 16 * 2**20
SERVER_CAPS = "+setuid,+setgid,+kill"


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
    for path in [dest, *dest.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return dest


def _dirs_for(path: str) -> list[str]:
    """bwrap --dir arguments (mode 0755) for every ancestor of ``path``."""
    args, parts = [], Path(path).parts
    for i in range(2, len(parts)):
        args += ["--perms", "0755", "--dir", str(Path(*parts[:i]))]
    return args


def bwrap_command(server_uid: int, child_uid: int, staged: Path, job_host: Path, mpl_host: Path,
                  python: str, settings: GradingSettings) -> list[str]:
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
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(settings.tmp_mb * 2**20), "--tmpfs", "/tmp"]
    binds = sorted({(prefix, prefix), (venv, venv), (str(staged), COURSE_INSIDE)}, key=lambda b: len(b[1]))
    bound: list[str] = []
    for src, dest in binds:
        inside_earlier = any(dest.startswith(b + "/") for b in bound)
        cmd += ([] if inside_earlier else _dirs_for(dest)) + ["--ro-bind", src, dest]
        bound.append(dest)
    cmd += ["--bind", str(job_host), "/job", "--bind", str(mpl_host), MPL_INSIDE, "--chdir", "/"]
    for key, value in sandbox_env(True, settings).items():
        cmd += ["--setenv", key, value]
    cmd += ["--setenv", "GRADING_CHILD_UID", str(child_uid)]
    cmd += ["--", "setpriv", f"--reuid={server_uid}", f"--regid={server_uid}", "--clear-groups",
            f"--inh-caps=-all,{SERVER_CAPS}", f"--ambient-caps=-all,{SERVER_CAPS}",
            f"--bounding-set=-all,{SERVER_CAPS}", "--no-new-privs",
            python, "-m", "grading.instructor.runtime.zygote"]
    return cmd


def sandbox_env(sandboxed: bool, settings: GradingSettings, mpl_dir: str = MPL_INSIDE) -> dict[str, str]:
    """The environment of the kernel server (explicit: nothing else of the grader's leaks in)."""
    return {
        "PATH": f"{sys.prefix}/bin:/usr/bin:/bin",
        "HOME": "/tmp" if sandboxed else tempfile.gettempdir(),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "MPLCONFIGDIR": mpl_dir,
        "TORCHINDUCTOR_CACHE_DIR": f"{mpl_dir}/torchinductor",  # the server's own, kept out of the shared /tmp
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "GRADING_SANDBOXED": "1" if sandboxed else "0",
        "GRADING_VERIFIER_DECIDES": "1",  # training checks leave it to the verifier (student.checks.grader_trains)
        "LANG": "C.UTF-8",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        **({"PYTHONPATH": COURSE_INSIDE} if sandboxed else {}),
        **settings.sandbox_environment(),
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
    """One warm kernel server, sandboxed or not; every call is one line of JSON each way.

    Every read has a deadline and a size cap. Before each job the server must answer a ping;
    one that is dead, stopped or silent is replaced.
    """

    index: int
    sandboxed: bool
    workdir: Path
    settings: GradingSettings = field(default_factory=GradingSettings)
    proc: subprocess.Popen | None = None
    uid: int = 0
    child_uid: int = 0
    log_path: Path | None = None
    cgroup: Cgroup | None = None
    limits_note: str = ""
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)
    _buffer: bytes = b""
    _mpl_cache: Path | None = None
    _staged: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def job_root(self) -> Path:
        return self.workdir / "job"

    def start(self, mpl_cache: Path, staged: Path | None) -> KernelServer:
        """Start the server; a clear SandboxUnavailable (quoting its log) within its start timeout if it cannot."""
        self._mpl_cache, self._staged = mpl_cache, staged
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self._fresh_job_area()
        mpl = self.workdir / "mplconfig"
        shutil.rmtree(mpl, ignore_errors=True)
        shutil.copytree(mpl_cache, mpl)
        self.log_path = self.workdir / "server.log"
        self._buffer = b""
        if self.sandboxed:
            self.uid, self.child_uid = BASE_UID + 2 * self.index, BASE_UID + 2 * self.index + 1
            for path in (mpl, *mpl.rglob("*")):
                os.chown(path, self.uid, self.uid)  # the server may write it; its children may only read it
            self.cgroup = Cgroup.create(f"{self.workdir.parent.name}-{self.workdir.name}")
            self.limits_note = "" if self.cgroup else ("no writable cgroups here: memory is bounded by address "
                                                       "space only (memfd and tmpfs pages are not counted)")
            cmd = bwrap_command(self.uid, self.child_uid, staged, self.job_root, mpl, sys.executable, self.settings)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            cmd = [sys.executable, "-m", "grading.instructor.runtime.zygote"]
            env = dict(os.environ, **sandbox_env(False, self.settings, str(mpl)), GRADING_SCRATCH=str(self.job_root))
        group = self.cgroup

        def enter() -> None:
            os.umask(0o022)
            if group is not None:
                group.join()

        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                                         preexec_fn=enter, start_new_session=True)
        deadline = self.settings.server_start_timeout
        try:
            reply = self._read(timeout=deadline)
        except SandboxUnavailable as exc:
            self.stop()
            raise SandboxUnavailable(f"the kernel server did not start within {deadline} s ({exc}); "
                                     f"its log says: {self.log_tail() or '(nothing)'}") from None
        if not reply.get("ready"):
            self.stop()
            raise SandboxUnavailable(f"the kernel server did not start: {self.log_tail()}")
        if self.cgroup is not None:
            headroom = (self.settings.memory_mb + CGROUP_HEADROOM_MB) * 2**20
            self.cgroup.limit(memory_bytes=self.cgroup.usage_bytes() + headroom, pids=self.settings.nproc + 16)
        return self

    def _fresh_job_area(self) -> None:
        """The job area: a size-limited tmpfs owned by root that nobody else can list or write."""
        _unmount(self.job_root)
        shutil.rmtree(self.job_root, ignore_errors=True)
        self.job_root.mkdir()
        if self.sandboxed:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.settings.disk_mb}m,mode=0711,nosuid,nodev",
                            "tmpfs", str(self.job_root)], check=False, capture_output=True, timeout=30)
        os.chmod(self.job_root, 0o711)

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start(self._mpl_cache, self._staged)

    def healthy(self) -> bool:
        """Alive and answering (a stopped or hung server fails the ping)."""
        if not self.alive():
            return False
        try:
            return bool(self.call(cmd="ping", reply_timeout=PING_TIMEOUT).get("pong"))
        except SandboxUnavailable:
            return False

    @property
    def job_root_inside(self) -> str:
        return "/job" if self.sandboxed else str(self.job_root)

    def new_job(self) -> Job:
        """A fresh directory for one notebook at an unguessable path, writable only by the children's uid.

        The path is random, never named after the notebook: a predictable name is what let one student
        plant files for the next.
        """
        if not self.healthy():
            self.restart()
        leaf = secrets.token_hex(16)
        host = self.job_root / leaf
        host.mkdir(mode=0o700)
        if self.sandboxed:
            os.chown(host, self.child_uid, self.child_uid)
        return Job(host, f"{self.job_root_inside}/{leaf}")

    def finish_job(self, job: Job) -> None:
        """Kill whatever the notebook left running and delete its directory."""
        try:
            self.call(cmd="sweep", reply_timeout=30)
        except SandboxUnavailable:
            self.stop()  # replaced before the next job
        finally:
            shutil.rmtree(job.host, ignore_errors=True)

    def call(self, reply_timeout: float = 30, **request: object) -> dict:
        with self._lock:
            if not self.alive():
                raise SandboxUnavailable(f"the kernel server died: {self.log_tail()}")
            try:
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
            except OSError as exc:
                raise SandboxUnavailable(f"the kernel server is gone ({exc})") from None
            return self._read(reply_timeout)

    def _read(self, timeout: float) -> dict:
        """One reply line, within ``timeout`` seconds and REPLY_LIMIT_BYTES."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxUnavailable(f"the kernel server did not answer within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(fd, 1 << 16)
            if not data:
                raise SandboxUnavailable(f"the kernel server exited: {self.log_tail()}")
            self._buffer += data
            if len(self._buffer) > REPLY_LIMIT_BYTES:
                self._buffer = b""
                raise SandboxUnavailable("the kernel server sent an oversized reply")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            raise SandboxUnavailable("the kernel server sent an unreadable reply") from None
        if not isinstance(reply, dict):
            raise SandboxUnavailable("the kernel server sent an unreadable reply")
        return reply

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-1500:].decode("utf-8", "replace").strip()

    def stop(self) -> None:
        """Stop the server and everything it started; remove its cgroup and unmount its job area."""
        if self.proc is not None:
            if self.alive():
                try:
                    self.proc.stdin.write(b'{"cmd": "quit"}\n')
                    self.proc.stdin.flush()
                    self.proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.proc = None
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        _unmount(self.job_root)


def _unmount(path: Path) -> None:
    """Unmount ``path`` if something is mounted there (the job tmpfs)."""
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)


def cleanup_scratch(scratch: Path) -> None:
    """After a run: unmount the job areas and remove the cgroups its workers left (killed workers included)."""
    from .cgroups import PARENT, ROOT

    prefix = str(scratch.resolve()) + "/"
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        mounts = []
    for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        _unmount(Path(point))
    for hierarchy in (ROOT / "memory" / PARENT, ROOT / "pids" / PARENT, ROOT / PARENT):
        if hierarchy.is_dir():
            for group in hierarchy.glob(f"{scratch.name}-*"):
                Cgroup(group, group, v2=False).remove()
