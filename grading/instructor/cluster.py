"""The coordinator's side of a Dask cluster: send the jobs, take the results back, with a deadline on every wait.

``--cluster tcp://HOST:8786`` uses a running scheduler (``python -m grading scheduler``) and its
grading workers (``python -m grading worker``); ``--cluster local:N`` starts both here, as real
processes, for the length of the run. Before the first job, every connected worker must run the
coordinator's version (``jobs.worker_version``).

Faults:

* a worker that dies or stops answering (past the scheduler's worker time-to-live) loses its job
  to another worker; a job whose workers keep dying (Dask's ``KilledWorker``) is a grading error;
* a worker that cannot serve retires and says why (``worker.py``): printed here, with the server's log;
* a job running past its budget is given up (a grading error), and its late result ignored;
* a lost scheduler, or no worker for ``NO_WORKER_SECONDS``, stops the run (``ClusterLost``): what was
  recorded stays recorded, and ``--resume`` grades the rest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .course import CourseError
from .jobs import GradingJob, JobResult, TaskFailure
from .runs import GradingInterrupted
from .worker import EVENT_TOPIC, run_job, scheduler_command, worker_command, worker_version

CONNECT_SECONDS = 15
ANSWER_SECONDS = 30  # the scheduler's answer to one question, the workers' to the version check
NO_WORKER_SECONDS = 120
POLL_SECONDS = 1.0
BUDGET_SLACK_SECONDS = 30
LOCAL_WORKER_TTL = "15s"


class ClusterLost(GradingInterrupted):
    """The run cannot go on: the scheduler is gone, or no worker is left."""


class ClusterError(CourseError):
    """The cluster cannot be used: no scheduler there, or workers on another version."""


@contextlib.contextmanager
def local_cluster(count: int, course: Path, sandboxed: bool) -> Iterator[str]:
    """A scheduler and ``count`` worker processes on 127.0.0.1 for one run; yields the scheduler's address."""
    folder = Path(tempfile.mkdtemp(prefix="rnn-cluster-"))
    address_file = folder / "scheduler.json"
    procs: list[subprocess.Popen] = []
    try:
        cmd, env = scheduler_command("127.0.0.1", 0, LOCAL_WORKER_TTL, str(address_file))
        procs.append(_spawn(cmd, env, folder / "scheduler.log"))
        address = _await_address(address_file, procs[0], folder / "scheduler.log")
        cmd, env = worker_command(address, course, count, 0, "127.0.0.1")
        env["GRADING_WORKER_SANDBOXED"] = "1" if sandboxed else "0"
        procs.append(_spawn(cmd, env, folder / "workers.log"))
        yield address
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _spawn(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _await_address(path: Path, proc: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + CONNECT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"the scheduler exited: {log.read_text()[-1500:]}")
        try:
            return json.loads(path.read_text())["address"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.2)
    raise ClusterError(f"the scheduler did not start within {CONNECT_SECONDS} s: {log.read_text()[-1500:]}")


def stop_process(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM (a nanny closes its workers, which stop their kernel servers), then SIGKILL the group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _reachable(address: str) -> None:
    """A refused or unroutable scheduler address is a clear error at once (Dask would retry until its timeout)."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except ValueError:
        raise ClusterError(f"--cluster {address}: expected tcp://HOST:PORT or local:N") from None
    except OSError as exc:
        raise ClusterError(f"no Dask scheduler answers at {address}: {exc}") from None


def _ask(client, call, address: str, **kwargs):
    """One question to the scheduler, with a deadline (a scheduler that is stopped keeps its socket open)."""
    try:
        return client.sync(call, callback_timeout=ANSWER_SECONDS, **kwargs)
    except (TimeoutError, OSError):
        raise ClusterLost(f"the Dask scheduler at {address} stopped answering") from None


def _check_versions(client, version: str, address: str) -> None:
    """Every connected worker runs ``version``; else a ClusterError naming both versions."""
    deadline = time.monotonic() + CONNECT_SECONDS
    while not _ask(client, client.scheduler.identity, address).get("workers"):
        if time.monotonic() > deadline:
            raise ClusterError(f"no grading worker joined the scheduler at {address} within {CONNECT_SECONDS} s "
                               "(start them with python -m grading worker --scheduler ...)")
        time.sleep(0.2)
    try:
        versions = client.run(worker_version, on_error="return", callback_timeout=ANSWER_SECONDS)
    except TimeoutError:
        raise ClusterError(f"the grading workers did not answer the version check within {ANSWER_SECONDS} s") from None
    wrong = {w: v for w, v in versions.items() if v != version}
    if wrong:
        listed = ", ".join(f"{w} runs {v}" for w, v in sorted(wrong.items()))
        raise ClusterError(f"grading workers on another version than the coordinator ({version}): {listed}. "
                           "Install this course's worker bundle there (python -m grading worker-bundle)")


def cluster_results(c, jobs: list[GradingJob], spec: str) -> Iterator[JobResult | TaskFailure]:
    """Grade ``jobs`` on the cluster ``spec`` ("local:N" or a scheduler address); yield each outcome once."""
    if spec.startswith("local:"):
        try:
            count = int(spec.split(":", 1)[1])
        except ValueError:
            raise ClusterError(f"--cluster {spec}: expected local:N with N a number of workers") from None
        with local_cluster(count, c.root, c.options.sandboxed) as address:
            yield from _run(c, jobs, address)
    else:
        yield from _run(c, jobs, spec)


def _run(c, jobs: list[GradingJob], address: str) -> Iterator[JobResult | TaskFailure]:
    from distributed import Client, wait
    from distributed.client import FIRST_COMPLETED

    _reachable(address)
    try:
        client = Client(address, timeout=CONNECT_SECONDS, direct_to_workers=False, set_as_default=False)
    except OSError as exc:
        raise ClusterError(f"no Dask scheduler answers at {address}: {exc}") from None
    try:
        _check_versions(client, c.version, address)
        client.subscribe_topic(EVENT_TOPIC, lambda event: _say(f"grading worker: {event[1].get('problem')}"))
        futures = {client.submit(run_job, job, key=f"grade-{c.journal.run}-{job.student}", pure=False): job
                   for job in jobs}
        yield from _collect(client, futures, address, wait, FIRST_COMPLETED)
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=10)


def _outcome(future, job: GradingJob, address: str, killed_worker: type) -> JobResult | TaskFailure:
    """A finished future's result or failure; fetching it from a scheduler that died meanwhile is ClusterLost."""
    lost = ClusterLost(f"the Dask scheduler at {address} stopped answering")
    if future.status == "cancelled":
        raise lost
    try:
        if future.status == "finished":
            return future.result(timeout=ANSWER_SECONDS)
        error = future.exception(timeout=ANSWER_SECONDS)
    except (TimeoutError, OSError, asyncio.CancelledError, concurrent.futures.CancelledError):
        raise lost from None
    if isinstance(error, killed_worker):
        return TaskFailure(job, "the grading workers running it kept dying (KilledWorker)")
    return TaskFailure(job, f"{type(error).__name__}: {error}")


def _collect(client, futures: dict, address: str, wait, first_completed) -> Iterator[JobResult | TaskFailure]:
    from distributed import KilledWorker

    running_since: dict[str, float] = {}
    no_workers_since: float | None = None
    pending = dict(futures)
    while pending:
        with client.as_current():
            try:
                done, _ = wait(list(pending), timeout=POLL_SECONDS, return_when=first_completed)
            except TimeoutError:
                done = set()
            except (asyncio.CancelledError, concurrent.futures.CancelledError, OSError):
                raise ClusterLost(f"the Dask scheduler at {address} stopped answering") from None
        for future in done:
            job = pending.pop(future)
            yield _outcome(future, job, address, KilledWorker)
        if not pending:
            break
        if client.status != "running":
            raise ClusterLost(f"the Dask scheduler at {address} stopped answering")
        info = _ask(client, client.scheduler.identity, address)
        processing = _ask(client, client.scheduler.processing, address)
        now = time.monotonic()
        if info.get("workers"):
            no_workers_since = None
        else:
            no_workers_since = no_workers_since or now
            if now - no_workers_since > NO_WORKER_SECONDS:
                raise ClusterLost(f"no grading worker has been connected to {address} for {NO_WORKER_SECONDS} s")
        busy = {key for keys in processing.values() for key in keys}
        for future, job in list(pending.items()):
            if future.key not in busy:
                running_since.pop(future.key, None)
                continue
            started = running_since.setdefault(future.key, now)
            if now - started > job.budget + BUDGET_SLACK_SECONDS:
                future.cancel()
                pending.pop(future)
                yield TaskFailure(job, f"grading took longer than its budget of {job.budget:.0f} s")
