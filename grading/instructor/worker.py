"""A grading machine: Dask worker processes, each owning one sandboxed kernel server.

``python -m grading worker --scheduler tcp://HOST:8786`` starts ``dask worker`` with this module as
its preload: every worker process gets a ``Grader`` (``grader.py``) with its own sandbox uids,
scratch folder and kernel server, and runs one job at a time (``--nthreads 1``). It needs the
worker bundle (``python -m grading worker-bundle``): the package's worker parts, the course's
``nbgrader_config.py`` and ``release/``. It holds no gradebook, no course secret, no solution.

A worker that cannot serve (its kernel server does not start, or it runs another version than the
coordinator) tells the coordinator why, through the scheduler's event log, hands its job back to
the scheduler and closes itself (its nanny too: it is not restarted into the same fault).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

EVENT_TOPIC = "rnn-grading"
ENV_COURSE = "GRADING_WORKER_COURSE"
ENV_SANDBOX = "GRADING_WORKER_SANDBOXED"
SLOT_BASE = 32  # cluster workers' sandbox uids start at 61000 + 2 * 32, clear of the local pool's
SLOTS = 64
SLOT_LOCKS = Path("/run/rnn-grading")
DEFAULT_WORKER_TTL = "30s"

_STATE: dict = {}


def slot_scratch(slot: int) -> Path:
    """The scratch folder of a worker slot: fixed, so that the next holder of a slot cleans up after a killed one."""
    return Path(tempfile.gettempdir()) / f"rnn-grading-slot{slot}"


def _clean_slot(slot: int) -> None:
    """Remove what an earlier holder of the slot left: its kernel server's processes (cgroups), mounts and files."""
    from .sandbox import cleanup_scratch

    scratch = slot_scratch(slot)
    cleanup_scratch(scratch)
    shutil.rmtree(scratch, ignore_errors=True)


def _lock_slot(slot: int) -> int | None:
    SLOT_LOCKS.mkdir(parents=True, exist_ok=True)
    fd = os.open(SLOT_LOCKS / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _claim_slot() -> tuple[int, int]:
    """A slot no other worker process on this machine holds (its lock is held for the process's life)."""
    for slot in range(SLOTS):
        fd = _lock_slot(slot)
        if fd is not None:
            _clean_slot(slot)
            return slot, fd
    raise RuntimeError(f"more than {SLOTS} grading workers on this machine")


def clean_idle_slots() -> None:
    """Clean every slot no worker holds (after workers were killed)."""
    for slot in range(SLOTS):
        fd = _lock_slot(slot)
        if fd is not None:
            try:
                _clean_slot(slot)
            finally:
                os.close(fd)


def dask_setup(worker) -> None:
    """Dask preload: this worker process's grader (its kernel server starts with the first job)."""
    from .grader import Grader

    course = Path(os.environ[ENV_COURSE]).resolve()
    slot, lock = _claim_slot()
    scratch = slot_scratch(slot)
    scratch.mkdir(mode=0o755)
    sandboxed = os.environ.get(ENV_SANDBOX, "1") == "1"
    _STATE.update(grader=Grader(SLOT_BASE + slot, course, scratch, sandboxed, name=f"worker {worker.address}"),
                  lock=lock)


def dask_teardown(worker) -> None:
    grader = _STATE.pop("grader", None)
    if grader is not None:
        grader.close_scratch()
    if "lock" in _STATE:
        os.close(_STATE.pop("lock"))


def worker_version() -> str:
    """This worker's version (for the coordinator's check at start)."""
    return _STATE["grader"].version


def run_job(job):
    """The task the coordinator submits: grade one job. A grader-side error on the submission comes back as a
    TaskFailure (recorded, failing closed); a worker that cannot serve retires and hands the job back."""
    from distributed import Reschedule, get_worker

    from .jobs import TaskFailure, VersionMismatch, check_version
    from .sandbox import SandboxUnavailable

    grader = _STATE["grader"]
    try:
        check_version(job.version, grader.version, grader.name)
        return grader.run(job)
    except (VersionMismatch, SandboxUnavailable) as exc:
        _retire(get_worker(), f"{grader.name} cannot grade: {exc}")
        raise Reschedule() from None
    except Exception as exc:  # noqa: BLE001 - one broken submission never stops the class
        return TaskFailure(job, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _retire(worker, problem: str) -> None:
    """Tell the coordinator why, then close this worker and its nanny."""
    worker.log_event(EVENT_TOPIC, {"worker": worker.address, "problem": problem[:4000]})
    print(problem, file=sys.stderr, flush=True)
    worker.loop.add_callback(worker.close, nanny=True, reason="grading-worker-unfit")


# ---------------------------------------------------------------- commands

def worker_command(scheduler: str, course: Path, nworkers: int, worker_port: int, host: str = "",
                   preloads: tuple[str, ...] = (), death_timeout: int = 60) -> tuple[list[str], dict[str, str]]:
    """``dask worker`` for grading: one thread per process, this module as preload, fixed ports
    (workers on ``worker_port`` .. +N-1, their nannies on the next N)."""
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
    cmd = [dask, "worker", scheduler, "--nworkers", str(nworkers), "--nthreads", "1", "--no-dashboard",
           "--death-timeout", str(death_timeout), "--preload", "grading.instructor.worker"]
    for extra in preloads:
        cmd += ["--preload", extra]
    if worker_port:
        last = worker_port + nworkers - 1
        cmd += ["--worker-port", f"{worker_port}:{last}" if nworkers > 1 else str(worker_port),
                "--nanny-port", f"{last + 1}:{last + nworkers}" if nworkers > 1 else str(last + 1)]
    if host:
        cmd += ["--host", host]
    env = dict(os.environ, **{ENV_COURSE: str(course.resolve()), "OMP_NUM_THREADS": "1"})
    package = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package, os.environ.get("PYTHONPATH", "")) if p)
    return cmd, env


def scheduler_command(host: str, port: int, worker_ttl: str = DEFAULT_WORKER_TTL,
                      scheduler_file: str = "") -> tuple[list[str], dict[str, str]]:
    """``dask scheduler`` for grading: no dashboard, a worker that stops answering is dropped after
    ``worker_ttl`` (its jobs go to other workers), and a job whose workers died twice is given up (KilledWorker)."""
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
    cmd = [dask, "scheduler", "--host", host, "--port", str(port), "--no-dashboard"]
    if scheduler_file:
        cmd += ["--scheduler-file", scheduler_file]
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL=worker_ttl,
               DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1",
               # one job per worker thread, none queued behind it: a worker that dies takes only its own job down
               DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION="1.0")
    return cmd, env


def cmd_worker(args: argparse.Namespace) -> int:
    from .sandbox import sandbox_problem

    course = Path(args.course or args.root).resolve()
    for need in ("nbgrader_config.py", "release"):
        if not (course / need).exists():
            print(f"error: {course} has no {need}: pass --course, a course root or a worker bundle", file=sys.stderr)
            return 4
    problem = None if args.unsandboxed else sandbox_problem()
    if problem:
        print(f"error: cannot sandbox student code here: {problem}", file=sys.stderr)
        return 4
    cmd, env = worker_command(args.scheduler, course, args.nworkers, args.worker_port, args.host,
                              tuple(args.preload))
    env[ENV_SANDBOX] = "0" if args.unsandboxed else "1"
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


def cmd_scheduler(args: argparse.Namespace) -> int:
    cmd, env = scheduler_command(args.host, args.port, args.worker_ttl, args.scheduler_file or "")
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


def add_cluster_commands(sub, command, root) -> None:
    p = command(sub, "worker", cmd_worker, "start grading workers on this machine for a Dask scheduler (as root)",
                root)
    p.add_argument("--scheduler", required=True, help="the scheduler's address, tcp://HOST:8786")
    p.add_argument("--nworkers", type=int, default=os.cpu_count() or 1, help="worker processes (one per core)")
    p.add_argument("--worker-port", type=int, default=8790,
                   help="first port: workers listen on it and the next N-1, their nannies on the N after (0: any)")
    p.add_argument("--host", default="", help="address the workers listen on (default: the scheduler's route)")
    p.add_argument("--course", default="", help="the worker bundle or course root (default: --root)")
    p.add_argument("--preload", action="append", default=[], help="an extra Dask preload module (site plugins)")
    p.add_argument("--unsandboxed", action="store_true", help="run student code without the sandbox (tests only)")
    p = command(sub, "scheduler", cmd_scheduler, "start the Dask scheduler that grading workers and graders join",
                root)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (the coordinator and workers reach it)")
    p.add_argument("--port", type=int, default=8786, help="port")
    p.add_argument("--worker-ttl", default=DEFAULT_WORKER_TTL,
                   help="a worker silent this long is dropped and its jobs go to others")
    p.add_argument("--scheduler-file", default="", help="also write the address into this JSON file")
