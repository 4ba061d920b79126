"""The benchmark's arithmetic: the per-notebook cost split from results files, and memory measured as the process
tree really holds it (forked children share their parent's pages: Pss counts them once, an RSS sum once each)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from grading.instructor.bench import TreeMemory, cost_split


def _result(assignment, seconds, notebooks):
    return {"assignment": assignment, "student": "s", "seconds": seconds, "notebooks": notebooks}


def test_the_split_adds_up_to_what_each_part_took():
    nb = {"execute_seconds": 2.0, "kernel_start_seconds": 0.5, "verify_seconds": 0.8, "verify_start_seconds": 0.2,
          "slowest_cells": [["test_training", 1.2], ["cell 3", 0.1]]}
    results = [_result("lstm_gru", {"autograde": 5.0, "verify": 2.0, "feedback": 1.0, "prepare": 0.1, "record": 0.3,
                                    "total": 8.5}, {"lstm": dict(nb), "gru": dict(nb), "*": {"anomalies": ["x"]}})]
    lines = cost_split(results)
    table = {line[:42].strip(): float(line[42:]) for line in lines[1:8]}
    assert table == {"kernel start": 0.5, "the notebook's own cells": 1.5, "verifier start": 0.2,
                     "verifier work": pytest.approx(0.6), "nbgrader's bookkeeping": 0.5,
                     "job gradebook and reconciling": 0.2, "feedback rendering": 0.5}
    slowest = lines[lines.index("the 5 slowest cells (mean seconds over the students who ran them):") + 1:]
    assert len(slowest) == 4
    assert all("test_training" in line and line.endswith("1.200") for line in slowest[:2])
    assert all("cell 3" in line and line.endswith("0.100") for line in slowest[2:])


def test_memory_counts_pages_shared_by_forked_children_once():
    code = ("import os, time\nblock = bytearray(150 * 2**20)\nfor i in range(len(block) // 4096):\n"
            "    block[i * 4096] = 1\nkids = []\nfor _ in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
            "        time.sleep(30)\n        os._exit(0)\n    kids.append(pid)\nprint('ready', flush=True)\n"
            "time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        memory = TreeMemory(proc.pid)
        time.sleep(1.0)
        memory.stop()
    finally:
        proc.kill()
        proc.wait()
    mb = 2**20
    assert memory.peak_rss_sum > 4 * 140 * mb  # the parent's 150 MB, counted once per process
    assert 140 * mb < memory.peak_total < 260 * mb  # really held: about once


def test_the_capstone_is_timed_per_notebook_and_per_submission():
    from grading.instructor.bench import capstone_times

    results = [_result("char_lm", {}, {"bptt": {"execute_seconds": 1.0, "verify_seconds": 0.5},
                                       "poems": {"execute_seconds": 3.0, "verify_seconds": 4.0}}),
               _result("char_lm", {}, {"bptt": {"execute_seconds": 2.0, "verify_seconds": 0.5},
                                       "poems": {"execute_seconds": 5.0, "verify_seconds": 5.0}}),
               _result("lstm_gru", {}, {"lstm": {"execute_seconds": 99.0, "verify_seconds": 1.0}})]
    (line,) = capstone_times(results, ["char_lm"])
    assert "bptt mean 2.0 s, max 2.5 s" in line and "poems mean 8.5 s, max 10.0 s" in line
    assert "per submission max 12.5 s" in line
    assert capstone_times(results, []) == []
