"""A warm process that forks a fresh kernel (or verifier harness) for each notebook.

Starting a Python kernel costs ~2 CPU-seconds (interpreter, ipykernel, torch); forking a
process that already imported them costs milliseconds. Every notebook still gets a fresh
process that no other student's code ran in: children are forked from this pristine parent,
which never runs student code, and between notebooks it kills every process left in its
sandbox and wipes the scratch space.

In the sandbox this server runs as its own uid with three capabilities (setuid, setgid,
kill) and nothing else. Each child drops, before any student code exists, to a *second*
uid with no capability at all: student code cannot signal, trace or stop the server, whose
uid differs from its own, while the server can still kill whatever the child leaves behind.

Protocol: one JSON object per line on stdin, one JSON reply per line on stdout.

    {"cmd": "ping"}                                     -> {"pong": true}
    {"cmd": "kernel", "dir": D, "connection_file": F}  -> {"pid": P}
    {"cmd": "harness", "dir": D, "request": {...}}     -> {"pid": P}
    {"cmd": "collect", "pid": P, "timeout": S, "limit": N}
                                -> {"exited": bool, "data": str|None, "problem": str|None}
    {"cmd": "wait", "pid": P, "timeout": S}            -> {"exited": bool, "status": int|None}
    {"cmd": "alive", "pid": P}                          -> {"alive": bool}
    {"cmd": "signal", "pid": P, "signal": N}           -> {"ok": bool}
    {"cmd": "sweep"}                                    -> {"killed": N}
    {"cmd": "quit"}

The harness answers through a pipe that this server holds (never a file in the job
directory, which the student's code could replace). Limits (address space, processes, CPU
seconds, file size) apply to every child.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import sys
import time

# Passed explicitly by the grader (GradingSettings.sandbox_environment): no defaults of their own here.
LIMITS = {name: int(os.environ[f"GRADING_{name.upper()}"]) for name in ("memory_mb", "nproc", "cpu_seconds", "file_mb")}
SCRATCH = os.environ.get("GRADING_SCRATCH", "/tmp")
# The uid every child drops to (sandbox only); the server's own uid is another one.
CHILD_UID = int(os.environ.get("GRADING_CHILD_UID", "0") or 0)
RESULT_FD = 3


def preload() -> None:
    """Import what every notebook needs, before any student code exists."""
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    import torch

    torch.set_num_threads(1)
    # Imported only to be loaded; F401 flags just the last import of each top-level package.
    import ipykernel.ipkernel
    import ipykernel.kernelapp  # noqa: F401
    import IPython  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import numpy  # noqa: F401
    import torch.nn.functional

    # The first optimizer in a process imports torch._dynamo (~1 s): pay it here, once.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.1).step()
    _warm_plotting()

    import grading.instructor.exercises
    import grading.instructor.runtime.harness
    import grading.student.checks  # noqa: F401
    from grading.instructor.exercises.registry import ASSIGNMENTS

    # What IPKernelApp.initialize imports on first use (measured: ~0.3 s per kernel otherwise).
    kernel_modules = ("ipykernel.debugger", "IPython.core.debugger", "IPython.extensions", "pdb", "debugpy",
                      "tornado.gen", "tornado.locks", "tornado.queues", "http.server", "xmlrpc.client",
                      "mimetypes", "faulthandler", "stringprep", "encodings.idna", "code", "pydoc",
                      *(f"grading.student.{name}" for name in ASSIGNMENTS), "grading.student.widgets", "ipywidgets")
    for name in kernel_modules:
        try:
            __import__(name)
        except ModuleNotFoundError:
            pass


def _warm_plotting() -> None:
    """Render one figure the way a notebook's plots are rendered (log axis, mathtext labels, legend, PNG with a tight
    bounding box), so that fonts, the mathtext parser and the PNG writer are loaded once here instead of in every
    kernel (about 0.1 s of each notebook's first plot). The figure is not pyplot's: kernels start with no figure
    and the same figure numbers, and the inline backend is left for each kernel to set up."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.semilogy([1, 2, 3], [1.0, 0.1, 0.001], "o-", label="a")
    axes.plot([1, 2, 3], [0.5, 0.05, 0.002], "x--", label="b")
    axes.set_xlabel("$T - t$: steps")
    axes.set_ylabel(r"$\|\partial\, \mathrm{output}_T / \partial x_t\|$")
    axes.set_title("warm-up")
    axes.legend()
    figure.savefig(io.BytesIO(), format="png", bbox_inches="tight")


def _not_dumpable() -> None:
    """Children run as the same user: forbid them to ptrace or read this process's memory."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except OSError:
        pass


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_to_child_uid() -> None:
    """Become the unprivileged child uid and give up every capability (sandbox only)."""
    if not CHILD_UID:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: own /proc files again, for the next line only
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")  # under the memory cgroup's limit, student processes go first, never the server
    except OSError:
        pass
    os.setgroups([])
    os.setresgid(CHILD_UID, CHILD_UID, CHILD_UID)
    os.setresuid(CHILD_UID, CHILD_UID, CHILD_UID)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    if libc.capset(ctypes.byref(header), (_CapData * 2)()) != 0:
        os._exit(70)
    if os.getuid() != CHILD_UID or os.geteuid() != CHILD_UID:
        os._exit(70)


def _enter_child(job_dir: str, keep_fd: int | None = None) -> None:
    """In a freshly forked child: new session, own uid, quiet std streams, limits, own directory."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if keep_fd is not None:
        os.dup2(keep_fd, RESULT_FD)
        os.closerange(RESULT_FD + 1, 65536)
    else:
        os.closerange(3, 65536)
    _drop_to_child_uid()
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the child
    sys.stdout = sys.__stdout__ = open(os.devnull, "w")  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(os.devnull, "w")  # noqa: SIM115
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    mem = _vm_bytes() + LIMITS["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_NPROC, (LIMITS["nproc"], LIMITS["nproc"]))
    resource.setrlimit(resource.RLIMIT_CPU, (LIMITS["cpu_seconds"], LIMITS["cpu_seconds"] + 5))
    size = LIMITS["file_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.chdir(job_dir)
    os.environ["HOME"] = job_dir
    os.environ["TMPDIR"] = job_dir


def _run_kernel(job_dir: str, connection_file: str) -> None:
    _enter_child(job_dir)
    os.environ["NBGRADER_EXECUTION"] = "autograde"  # what nbgrader's own kernels see
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize([
        "-f", connection_file,
        "--HistoryManager.enabled=False",
        "--IPKernelApp.log_level=CRITICAL",
        "--IPKernelApp.quiet=True",
    ])
    app.start()


def _run_harness(job_dir: str, request: dict, write_fd: int) -> None:
    _enter_child(job_dir, keep_fd=write_fd)
    from grading.instructor.runtime.harness import serve

    serve(request, RESULT_FD)


SANDBOXED = os.environ.get("GRADING_SANDBOXED") == "1"
CHILDREN: set[int] = set()


def _sweep(own: int) -> int:
    """Kill what the children left behind and wipe the scratch dir.

    In the sandbox (own PID namespace) that is every process but this one and its
    ancestors; unsandboxed, only the children's process groups (a child that left its
    group escapes: one of the exposures of running without the sandbox).
    """
    killed = 0
    for pid in CHILDREN:
        try:
            os.killpg(pid, signal.SIGKILL)
            killed += 1
        except (ProcessLookupError, PermissionError):
            pass
    CHILDREN.clear()
    _reap()
    keep = {own, os.getppid(), 1}
    for _ in range(50 if SANDBOXED else 0):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in keep:
                continue
            try:
                os.kill(int(entry), signal.SIGKILL)
                found = True
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        _reap()
        if not found:
            break
        time.sleep(0.01)
    _wipe_scratch()
    return killed


def _wipe_scratch() -> None:
    """Empty the shared scratch space (/tmp in the sandbox) as the uid that wrote it."""
    if not SCRATCH or not os.path.isdir(SCRATCH):
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            _drop_to_child_uid()
            for name in os.listdir(SCRATCH):
                _remove_tree(os.path.join(SCRATCH, name))
        finally:
            os._exit(0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _remove_tree(path: str) -> None:
    """rmtree that also gets through directories their owner made unreadable."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            for name in os.listdir(path):
                _remove_tree(os.path.join(path, name))
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError:
        pass


EXITED: dict[int, int] = {}


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        EXITED[pid] = status


def _alive(pid: int) -> bool:
    _reap()
    if pid in EXITED:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


HARNESS_PIPES: dict[int, int] = {}


def _collect(pid: int, timeout: float, limit: int) -> dict:
    """Read a harness child's answer from its pipe, with a deadline and a size cap."""
    fd = HARNESS_PIPES.pop(pid, None)
    if fd is None:
        return {"exited": True, "data": None, "problem": "no such check"}
    chunks, size, problem = [], 0, None
    deadline = time.monotonic() + timeout
    os.set_blocking(fd, False)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                problem = "timeout"
                break
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.2))
            if not ready:
                continue
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                break
            size += len(data)
            if size > limit:
                problem = "too large"
                break
            chunks.append(data)
    finally:
        os.close(fd)
    if problem:
        _kill_group(pid)
    exited = _wait(pid, 0 if problem else max(0.0, deadline - time.monotonic()))
    if not exited:
        _kill_group(pid)
        _wait(pid, 5)
        problem = problem or "timeout"
    data = b"".join(chunks).decode("utf-8", "replace") if not problem else None
    return {"exited": True, "data": data, "problem": problem}


def _kill_group(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _wait(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    return not _alive(pid)


def _fork_child(request: dict) -> int:
    """A fresh kernel or harness process, forked from this pristine server."""
    read_fd = write_fd = None
    if request["cmd"] == "harness":
        read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if request["cmd"] == "kernel":
                _run_kernel(request["dir"], request["connection_file"])
            else:
                os.close(read_fd)
                _run_harness(request["dir"], request["request"], write_fd)
        finally:
            os._exit(0)
    CHILDREN.add(pid)
    if write_fd is not None:
        os.close(write_fd)
        HARNESS_PIPES[pid] = read_fd
    return pid


def _answer(request: dict) -> dict | None:
    cmd = request.get("cmd")
    if cmd == "ping":
        return {"pong": True}
    if cmd in ("kernel", "harness"):
        return {"pid": _fork_child(request)}
    if cmd == "collect":
        return _collect(int(request["pid"]), float(request.get("timeout", 30)), int(request.get("limit", 1 << 20)))
    if cmd == "wait":
        exited = _wait(request["pid"], float(request.get("timeout", 0)))
        return {"exited": exited, "status": EXITED.get(request["pid"]) if exited else None}
    if cmd == "alive":
        return {"alive": _alive(request["pid"])}
    if cmd == "signal":
        try:
            (os.killpg if request.get("group") else os.kill)(request["pid"], request["signal"])
            return {"ok": True}
        except (ProcessLookupError, PermissionError):
            return {"ok": False}
    if cmd == "sweep":
        for fd in HARNESS_PIPES.values():
            os.close(fd)
        HARNESS_PIPES.clear()
        killed = _sweep(os.getpid())
        EXITED.clear()
        return {"killed": killed}
    if cmd == "quit":
        return None
    return {"error": f"unknown command {cmd!r}"}


def serve() -> None:
    """Answer commands until stdin closes."""
    preload()
    _not_dumpable()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the server
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        reply = _answer(json.loads(line))
        if reply is None:
            break
        out.write(json.dumps(reply) + "\n")
    os._exit(0)  # nothing left to flush; tearing down torch and matplotlib would take the grader's time


if __name__ == "__main__":
    serve()
