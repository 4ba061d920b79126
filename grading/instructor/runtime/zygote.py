"""A warm process that forks a fresh kernel (or verifier harness) for each notebook.

Starting a Python kernel costs ~2 CPU-seconds (interpreter, ipykernel, torch); forking a
process that already imported them costs milliseconds. Every notebook still gets a fresh
process that no other student's code ran in: children are forked from this pristine parent,
which never runs student code, and between notebooks it kills every process left in its
sandbox and wipes the scratch space.

Protocol: one JSON object per line on stdin, one JSON reply per line on stdout.

    {"cmd": "kernel", "dir": D, "connection_file": F}  -> {"pid": P}
    {"cmd": "harness", "dir": D, "request": R}         -> {"pid": P}
    {"cmd": "wait", "pid": P, "timeout": S}            -> {"exited": bool, "status": int|None}
    {"cmd": "alive", "pid": P}                          -> {"alive": bool}
    {"cmd": "signal", "pid": P, "signal": N}           -> {"ok": bool}
    {"cmd": "sweep"}                                    -> {"killed": N}
    {"cmd": "quit"}

Limits (address space, processes, CPU seconds, file size) apply to every child.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import sys
import time

LIMITS = {
    "memory_mb": int(os.environ.get("GRADING_MEMORY_MB", "2048")),
    "nproc": int(os.environ.get("GRADING_NPROC", "128")),
    "cpu_seconds": int(os.environ.get("GRADING_CPU_SECONDS", "120")),
    "file_mb": int(os.environ.get("GRADING_FILE_MB", "64")),
}
SCRATCH = os.environ.get("GRADING_SCRATCH", "/tmp")


def preload() -> None:
    """Import what every notebook needs, before any student code exists."""
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    import torch

    torch.set_num_threads(1)
    import IPython  # noqa: F401
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import numpy  # noqa: F401
    import torch.nn.functional  # noqa: F401

    # The first optimizer in a process imports torch._dynamo (~1 s): pay it here, once.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.1).step()

    import grading.instructor.exercises  # noqa: F401
    import grading.instructor.runtime.harness  # noqa: F401
    import grading.student.checks  # noqa: F401

    # What IPKernelApp.initialize imports on first use (measured: ~0.3 s per kernel otherwise).
    kernel_modules = ("ipykernel.debugger", "IPython.core.debugger", "IPython.extensions", "pdb", "debugpy",
                      "tornado.gen", "tornado.locks", "tornado.queues", "http.server", "xmlrpc.client",
                      "mimetypes", "faulthandler", "stringprep", "encodings.idna", "code", "pydoc",
                      "grading.student.rnn_basics", "grading.student.hello_ohlol", "grading.student.lstm_gru",
                      "grading.student.widgets", "ipywidgets")
    for name in kernel_modules:
        try:
            __import__(name)
        except ModuleNotFoundError:
            pass


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


def _enter_child(job_dir: str) -> None:
    """In a freshly forked child: new session, quiet std streams, limits, own directory."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, 4096)
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


def _run_harness(job_dir: str, request: str) -> None:
    _enter_child(job_dir)
    from grading.instructor.runtime.harness import serve

    serve(request)


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
    if SCRATCH and os.path.isdir(SCRATCH):
        for name in os.listdir(SCRATCH):
            if name == "mplconfig":
                continue
            path = os.path.join(SCRATCH, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) and not os.path.islink(path) else _unlink(path)
    return killed


def _unlink(path: str) -> None:
    try:
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


def serve() -> None:
    """Answer commands until stdin closes."""
    preload()
    _not_dumpable()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request["cmd"]
        if cmd in ("kernel", "harness"):
            pid = os.fork()
            if pid == 0:
                try:
                    if cmd == "kernel":
                        _run_kernel(request["dir"], request["connection_file"])
                    else:
                        _run_harness(request["dir"], request["request"])
                finally:
                    os._exit(0)
            CHILDREN.add(pid)
            reply = {"pid": pid}
        elif cmd == "wait":
            deadline = time.monotonic() + float(request.get("timeout", 0))
            while _alive(request["pid"]) and time.monotonic() < deadline:
                time.sleep(0.005)
            exited = not _alive(request["pid"])
            reply = {"exited": exited, "status": EXITED.get(request["pid"]) if exited else None}
        elif cmd == "alive":
            reply = {"alive": _alive(request["pid"])}
        elif cmd == "signal":
            try:
                (os.killpg if request.get("group") else os.kill)(request["pid"], request["signal"])
                reply = {"ok": True}
            except (ProcessLookupError, PermissionError):
                reply = {"ok": False}
        elif cmd == "sweep":
            reply = {"killed": _sweep(os.getpid())}
            EXITED.clear()
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        out.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    serve()
