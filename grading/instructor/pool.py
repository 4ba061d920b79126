"""A pool of worker processes in which no wait is without a deadline.

``multiprocessing.Pool`` waits forever for a worker that died, and re-runs a failing
initializer forever. Here each worker takes one task at a time over its own pipe; the
parent waits on every pipe and every worker's exit at once, with a deadline per task:

* a worker that dies (OOM-killed, crashed) is replaced, and its task is tried again once
  on the new worker; a second death makes it a failed task;
* a task past its deadline gets its worker killed (with everything it started) and replaced,
  and is a failed task;
* a worker that cannot initialise stops the run with the reason (``PoolStartError``).

Failed tasks are returned as ``TaskFailure`` so the caller can record them and go on.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from .jobs import TaskFailure

INIT_TIMEOUT = 120.0


class PoolStartError(Exception):
    """A worker could not initialise; the message says why."""


@dataclass
class _Worker:
    index: int
    process: Any
    conn: Connection
    task: Any = None
    deadline: float = 0.0
    attempts: int = 0


def _worker_main(conn: Connection, index: int, init: Callable[[int], None], run: Callable[[Any], Any],
                 shutdown: Callable[[], None] | None) -> None:
    os.setsid()  # killing the worker's group also kills whatever it started (its kernel server)
    try:
        try:
            init(index)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which stops the run
            conn.send(("init-failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            return
        conn.send(("ready", None, None))
        while True:
            try:
                task = conn.recv()
            except EOFError:
                return
            if task is None:
                return
            conn.send(("done", run(task), None))
    finally:
        if shutdown is not None:
            shutdown()


class WorkerPool:
    """``jobs`` processes, each set up by ``init(index)`` and running ``run(task)`` one task at a time."""

    def __init__(self, jobs: int, init: Callable[[int], None], run: Callable[[Any], Any],
                 deadline: Callable[[Any], float], retries: int = 1, shutdown: Callable[[], None] | None = None):
        self.jobs, self.init, self.run, self.deadline, self.retries = jobs, init, run, deadline, retries
        self.shutdown = shutdown
        self.ctx = multiprocessing.get_context("fork")
        self.workers: list[_Worker] = []
        self._starting: list[_Worker] = []
        self.replaced = 0

    def start(self, count: int) -> None:
        """Fork ``count`` workers now, to initialise while the caller prepares the tasks; ``map`` waits for them."""
        if not self._starting and not self.workers:
            self._starting = [self._fork(i) for i in range(max(1, count))]

    def _spawn(self, index: int) -> _Worker:
        return self._ready(self._fork(index))

    def _ready_all(self) -> list[_Worker]:
        """The started workers, once every one of them has initialised (their kernel servers start in parallel)."""
        started, self._starting = self._starting, []
        try:
            return [self._ready(worker) for worker in started]
        except BaseException:
            for worker in started:
                self._kill(worker)
            raise

    def _fork(self, index: int) -> _Worker:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=_worker_main, args=(child, index, self.init, self.run, self.shutdown),
                                   daemon=True)
        process.start()
        child.close()
        worker = _Worker(index, process, parent)
        worker.deadline = time.monotonic() + INIT_TIMEOUT
        return worker

    def _ready(self, worker: _Worker) -> _Worker:
        """Wait (until the worker's start deadline) for its report that it initialised."""
        if not worker.conn.poll(max(0.0, worker.deadline - time.monotonic())):
            self._kill(worker)
            raise PoolStartError(f"worker {worker.index} did not start within {INIT_TIMEOUT:.0f} s")
        try:
            kind, message, _ = worker.conn.recv()
        except EOFError:
            self._kill(worker)
            raise PoolStartError(f"worker {worker.index} died while starting (exit code "
                                 f"{worker.process.exitcode})") from None
        if kind != "ready":
            self._kill(worker)
            raise PoolStartError(message)
        return worker

    @staticmethod
    def _kill(worker: _Worker) -> None:
        for kill in (os.killpg, os.kill):
            try:
                kill(worker.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        worker.process.join(10)
        worker.conn.close()

    def map(self, tasks: list) -> Iterator[Any]:
        """Yield one result (or TaskFailure) per task, in completion order.

        A worker that finishes gets its next task before the caller sees the result, so recording a result never
        keeps a worker idle."""
        queue = deque((task, 0) for task in tasks)
        try:
            self.start(min(self.jobs, len(tasks)))
            self.workers = self._ready_all()
            pending = len(tasks)
            while pending:
                self._hand_out(queue)
                busy = [w for w in self.workers if w.task is not None]
                timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
                finished = []
                for worker in busy:
                    outcome = self._check(worker, ready)
                    if outcome is None:
                        continue
                    kind, value = outcome
                    if kind == "retry":
                        queue.appendleft((worker.task, worker.attempts + 1))
                    else:
                        finished.append(value)
                    worker.task = None
                self._hand_out(queue)
                for value in finished:
                    pending -= 1
                    yield value
        finally:
            self.close()

    def _hand_out(self, queue: deque) -> None:
        """Give every idle worker the next task, with its deadline."""
        for worker in self.workers:
            if worker.task is None and queue:
                worker.task, worker.attempts = queue.popleft()
                worker.deadline = time.monotonic() + self.deadline(worker.task)
                try:
                    worker.conn.send(worker.task)
                except OSError:  # the worker died while idle: a new one takes the task
                    self._replace(worker)
                    worker.conn.send(worker.task)

    def _check(self, worker: _Worker, ready: list) -> tuple[str, Any] | None:
        """What became of the worker's task: None (still running), a result, a retry or a failure."""
        if worker.conn in ready:
            try:
                kind, value, _ = worker.conn.recv()
                if kind == "done":
                    return "done", value
            except (EOFError, OSError):
                pass
        if worker.conn in ready or worker.process.sentinel in ready:
            code = worker.process.exitcode
            self._replace(worker)
            if worker.attempts < self.retries:
                return "retry", None
            return "failed", TaskFailure(worker.task, f"the grading worker died twice (exit code {code})")
        if time.monotonic() >= worker.deadline:
            limit = self.deadline(worker.task)
            self._replace(worker)
            return "failed", TaskFailure(worker.task, f"grading took longer than its budget of {limit:.0f} s")
        return None

    def _replace(self, worker: _Worker) -> None:
        self._kill(worker)
        fresh = self._spawn(worker.index)
        worker.process, worker.conn = fresh.process, fresh.conn
        self.replaced += 1

    def close(self) -> None:
        """Stop every worker (those still starting too)."""
        for worker in self._starting:
            self._kill(worker)
        self._starting = []
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        for worker in self.workers:
            worker.process.join(30)
            if worker.process.is_alive():
                self._kill(worker)
        self.workers = []
