"""The local worker pool: workers start side by side, a finished worker gets its next task before the caller
records the result, and a dying, hanging or broken worker costs its task only (no kernels)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from grading.instructor.jobs import TaskFailure
from grading.instructor.pool import PoolStartError, WorkerPool

MARKS: dict[str, Path] = {}


def _mark(name: str) -> None:
    (MARKS["dir"] / name).write_text(str(time.monotonic()))


def _init_waiting_for_the_other(index: int) -> None:
    """Worker i reports ready only once worker 1 - i has begun its own start: a pool that starts workers one after
    another never gets there (worker 1 is not forked before worker 0 is ready)."""
    _mark(f"init{index}")
    other = MARKS["dir"] / f"init{1 - index}"
    deadline = time.monotonic() + 10
    while not other.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker {1 - index} never started while worker {index} was starting")
        time.sleep(0.01)


def _square(task: int) -> int:
    _mark(f"task{task}")
    return task * task


def _misbehave(task: str) -> str:
    if task == "die":
        os._exit(3)
    if task == "hang":
        time.sleep(60)
    return task


@pytest.fixture(autouse=True)
def marks(tmp_path):
    MARKS["dir"] = tmp_path
    yield tmp_path
    MARKS.clear()


def test_workers_start_side_by_side():
    pool = WorkerPool(2, _init_waiting_for_the_other, _square, deadline=lambda task: 30)
    assert sorted(pool.map([1, 2, 3])) == [1, 4, 9]


def test_a_finished_worker_has_its_next_task_before_the_caller_sees_the_result(marks):
    pool = WorkerPool(1, lambda index: None, _square, deadline=lambda task: 30)
    results = pool.map([1, 2, 3])
    assert next(results) == 1
    assert pool.workers[0].task == 2  # handed out while the caller holds result 1
    deadline = time.monotonic() + 10
    while not (marks / "task2").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (marks / "task2").exists(), "the worker did not start task 2 while the caller held result 1"
    assert list(results) == [4, 9]


def test_a_worker_that_cannot_start_stops_the_run_with_its_reason():
    def broken(index: int) -> None:
        raise OSError("no kernel server here")

    with pytest.raises(PoolStartError, match="no kernel server here"):
        list(WorkerPool(2, broken, _square, deadline=lambda task: 30).map([1, 2]))


def test_a_dying_or_hanging_task_fails_alone():
    pool = WorkerPool(2, lambda index: None, _misbehave, deadline=lambda task: 2)
    results = list(pool.map(["a", "die", "hang", "b"]))
    failures = {r.task: r.reason for r in results if isinstance(r, TaskFailure)}
    assert sorted(r for r in results if not isinstance(r, TaskFailure)) == ["a", "b"]
    assert "died twice" in failures["die"]
    assert "longer than its budget of 2 s" in failures["hang"]
    assert pool.replaced >= 3
