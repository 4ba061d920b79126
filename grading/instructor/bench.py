"""``python -m grading bench``: plain sequential nbgrader against the course's grader, same class.

Builds two identical course folders with an honest class (correct answers in every style),
grades one with ``nbgrader autograde`` (one notebook after another, as nbgrader does) and
the other with ``python -m grading grade`` (sandboxed, parallel, verified, with feedback),
then once more unsandboxed to price the sandbox. Checks that the grades are identical and
prints wall times, ``speedup: N.NNx``, the per-notebook cost split and peak memory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from .build import build_release
from .course import assignments, make_demo_course
from .database import open_gradebook
from .records import results_path
from .report import load_results
from .sample_class import SyntheticStudent, _by_exercise, write_class


def honest_roster(names: list[str], size: int) -> dict[str, list[SyntheticStudent]]:
    classes = {}
    for assignment in names:
        table = _by_exercise(assignment)
        classes[assignment] = [
            SyntheticStudent(f"student{i + 1:02d}", "correct",
                             {g: good[(i + k) % len(good)] for k, (g, (good, _)) in enumerate(sorted(table.items()))})
            for i in range(size)]
    return classes


class TreeMemory:
    """Samples the resident memory of a process tree: peak of the sum and peak of one process."""

    def __init__(self, pid: int):
        self.pid, self.peak_total, self.peak_single = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            tree = _descendants(self.pid)
            rss = [_rss(p) for p in tree]
            self.peak_total = max(self.peak_total, sum(rss))
            self.peak_single = max([self.peak_single, *rss])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    found, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        found += frontier
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _timed(cmd: list[str], cwd: Path) -> tuple[float, TreeMemory]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               OMP_NUM_THREADS="1")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    memory = TreeMemory(proc.pid)
    _, err = proc.communicate()
    memory.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return time.monotonic() - started, memory


def _scores(root: Path) -> dict[tuple[str, str, str], float]:
    with open_gradebook(root) as gb:
        return {(s.student.id, s.assignment.name, n.name): float(n.score)
                for a in gb.assignments for s in a.submissions for n in s.notebooks}


def identical_courses(repo: Path, workdir: Path, labels: tuple[str, ...],
                      size: int) -> tuple[dict[str, Path], list[str], int]:
    """Fresh demo courses under ``workdir`` (replaced), one per label, each with the same honest class of ``size``
    students; returns them, the assignments and the number of notebooks in each class."""
    if workdir.exists():
        shutil.rmtree(workdir)
    courses = {label: workdir / label for label in labels}
    for label, root in courses.items():
        make_demo_course(repo, root)
        build_release(root, audit=label != "plain")  # plain nbgrader's gradebook stays nbgrader's own
    names = assignments(courses[labels[0]])
    notebooks = 0
    for root in courses.values():
        notebooks = write_class(root, honest_roster(names, size))
    return courses, names, notebooks


def run_bench(repo: Path, workdir: Path, size: int) -> int:
    courses, names, notebooks = identical_courses(repo, workdir, ("plain", "course", "unsandboxed"), size)
    print(f"bench: {size} students x {len(names)} assignments = {notebooks} notebooks, {os.cpu_count()} cores")

    plain_time, plain_mem = 0.0, []
    for name in names:
        seconds, mem = _timed([sys.executable, "-m", "nbgrader", "autograde", name, "--force"], courses["plain"])
        plain_time += seconds
        plain_mem.append(mem)
    print(f"plain nbgrader autograde (sequential):   {plain_time:7.1f} s   {plain_time / notebooks:.2f} s/notebook")

    times, mems = {}, {}
    for label, extra in (("course", []), ("unsandboxed", ["--unsandboxed"])):
        total, peaks = 0.0, []
        for name in names:
            seconds, mem = _timed([sys.executable, "-m", "grading", "grade", name, *extra], courses[label])
            total += seconds
            peaks.append(mem)
        times[label], mems[label] = total, peaks
    course_time = times["course"]
    print(f"python -m grading grade (sandboxed):     {course_time:7.1f} s   {course_time / notebooks:.2f} s/notebook")
    print(f"python -m grading grade --unsandboxed:   {times['unsandboxed']:7.1f} s   "
          f"{times['unsandboxed'] / notebooks:.2f} s/notebook")

    plain, course, bare = (_scores(courses[k]) for k in ("plain", "course", "unsandboxed"))
    same = plain == course == bare
    print(f"grades identical in the three runs: {'yes' if same else 'NO'} ({len(plain)} notebooks, "
          f"{sum(plain.values()):g} points in all)")
    if not same:
        for key in sorted(set(plain) | set(course)):
            if plain.get(key) != course.get(key) or course.get(key) != bare.get(key):
                print(f"  {key}: plain {plain.get(key)}, course {course.get(key)}, unsandboxed {bare.get(key)}")

    split: dict[str, list[float]] = {}
    for result in load_results(courses["course"]):
        n = max(1, len([k for k in result["notebooks"] if k != "*"]))
        for key, value in result["seconds"].items():
            split.setdefault(key, []).append(value / n)
        for nb in result["notebooks"].values():
            if nb.get("verify_seconds") is not None:
                split.setdefault("verifier (sandboxed harness)", []).append(nb["verify_seconds"])
    print("per-notebook cost inside a worker (mean seconds of wall time, 2 workers in parallel):")
    for key, values in split.items():
        print(f"  {key:<30} {sum(values) / len(values):.3f}")
    sandbox_cost = (times["course"] - times["unsandboxed"]) / notebooks
    print(f"sandbox cost per notebook: {sandbox_cost:+.3f} s of wall time")
    peak_total = max(m.peak_total for m in mems["course"]) / 2**20
    peak_single = max(m.peak_single for m in mems["course"]) / 2**20
    plain_peak = max(m.peak_total for m in plain_mem) / 2**20
    print(f"peak resident memory, whole course run: {peak_total:.0f} MB (largest single process {peak_single:.0f} MB); "
          f"plain nbgrader: {plain_peak:.0f} MB")
    print(f"speedup: {plain_time / course_time:.2f}x")
    return 0 if same else 1


__all__ = ["run_bench", "results_path"]
