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
from .exercises.registry import CAPSTONES
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
    """Samples the memory of a process tree. Kernels are forked from a warm server and share its pages, so a sum
    of resident sizes counts those pages once per kernel; the proportional set size (``Pss``: each shared page
    divided among the processes that map it) sums to the memory the tree really holds. Peaks: the tree's Pss, the
    tree's RSS sum (the overcount, for comparison) and the largest single process's RSS."""

    def __init__(self, pid: int):
        self.pid, self.peak_total, self.peak_single, self.peak_rss_sum = pid, 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            tree = _descendants(self.pid)
            rss = [_rss(p) for p in tree]
            self.peak_total = max(self.peak_total, sum(_pss(p) for p in tree))
            self.peak_rss_sum = max(self.peak_rss_sum, sum(rss))
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
    return _proc_bytes(pid, "status", "VmRSS:")


def _pss(pid: int) -> int:
    return _proc_bytes(pid, "smaps_rollup", "Pss:")


def _proc_bytes(pid: int, name: str, key: str) -> int:
    """The size after ``key`` in /proc/PID/``name`` (given in kB there), in bytes; 0 for a process that is gone."""
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                if line.startswith(key):
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

    capstones = [n for n in names if n in CAPSTONES]
    if capstones:
        print(f"capstones ({', '.join(capstones)}) are timed too, but left out of the speed-up and the totals below")
    in_ratio = [n for n in names if n not in CAPSTONES]
    notebooks_per_student = {n: len(list((courses["plain"] / "release" / n).glob("*.ipynb"))) for n in names}
    notebooks = size * sum(notebooks_per_student[n] for n in in_ratio)

    plain_time, plain_mem, per_assignment = 0.0, [], {}
    for name in names:
        seconds, mem = _timed([sys.executable, "-m", "nbgrader", "autograde", name, "--force"], courses["plain"])
        plain_time += seconds if name in in_ratio else 0.0
        plain_mem.append(mem)
        per_assignment[name] = [seconds]
    print(f"plain nbgrader autograde (sequential):   {plain_time:7.1f} s   {plain_time / notebooks:.2f} s/notebook")

    times, mems = {}, {}
    for label, extra in (("course", []), ("unsandboxed", ["--unsandboxed"])):
        total, peaks = 0.0, []
        for name in names:
            seconds, mem = _timed([sys.executable, "-m", "grading", "grade", name, *extra], courses[label])
            total += seconds if name in in_ratio else 0.0
            peaks.append(mem)
            per_assignment[name].append(seconds)
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

    for line in cost_split([r for r in load_results(courses["course"]) if r.get("assignment") not in CAPSTONES]):
        print(line)
    print("speed-up per assignment (plain nbgrader / sandboxed grader):")
    for name, (plain_s, course_s, _) in per_assignment.items():
        label = " (capstone, not in the speed-up)" if name in capstones else ""
        print(f"  {name:<14} {plain_s:7.1f} s / {course_s:6.1f} s = {plain_s / course_s:.2f}x{label}")
    for line in capstone_times(load_results(courses["course"]), capstones):
        print(line)
    sandbox_cost = (times["course"] - times["unsandboxed"]) / notebooks
    print(f"sandbox cost per notebook: {sandbox_cost:+.3f} s of wall time")
    peak_total = max(m.peak_total for m in mems["course"]) / 2**20
    peak_rss = max(m.peak_rss_sum for m in mems["course"]) / 2**20
    peak_single = max(m.peak_single for m in mems["course"]) / 2**20
    plain_peak = max(m.peak_total for m in plain_mem) / 2**20
    print(f"peak memory, whole course run (sum of Pss over the process tree): {peak_total:.0f} MB (the RSS sum, which "
          f"counts the kernels' shared pages once each: {peak_rss:.0f} MB; largest single process "
          f"{peak_single:.0f} MB); plain nbgrader: {plain_peak:.0f} MB")
    print(f"speedup: {plain_time / course_time:.2f}x")
    return 0 if same else 1


def capstone_times(results: list[dict], capstones: list[str]) -> list[str]:
    """Seconds per graded capstone notebook and per submission (the budget: 20 s per notebook, 30 s per submission,
    on one core), from the sandboxed run's results."""
    lines = []
    for name in capstones:
        per_notebook: dict[str, list[float]] = {}
        per_submission = []
        for result in results:
            if result.get("assignment") != name:
                continue
            total = 0.0
            for notebook, record in (result.get("notebooks") or {}).items():
                seconds = (record.get("execute_seconds") or 0.0) + (record.get("verify_seconds") or 0.0)
                per_notebook.setdefault(notebook, []).append(seconds)
                total += seconds
            per_submission.append(total)
        if not per_submission:
            continue
        parts = ", ".join(f"{nb} mean {sum(v) / len(v):.1f} s, max {max(v):.1f} s"
                          for nb, v in sorted(per_notebook.items()))
        lines.append(f"capstone {name}: kernel + verifier per notebook: {parts}; per submission max "
                     f"{max(per_submission):.1f} s (budget 20 s per notebook, 30 s per submission)")
    return lines


def cost_split(results: list[dict]) -> list[str]:
    """Where a notebook's grading time goes (mean seconds per notebook, wall time inside one worker, with two
    workers in parallel), and the slowest cells of the class (mean seconds over the students)."""
    parts: dict[str, list[float]] = {}
    cells: dict[tuple[str, str, str], list[float]] = {}

    def add(key: str, value: float | None) -> None:
        if value is not None:
            parts.setdefault(key, []).append(max(0.0, value))

    for result in results:
        seconds = result.get("seconds") or {}
        notebooks = {k: nb for k, nb in result["notebooks"].items() if k != "*"}
        n = max(1, len(notebooks))
        executed = sum(nb.get("execute_seconds") or 0.0 for nb in notebooks.values())
        verified = sum(nb.get("verify_seconds") or 0.0 for nb in notebooks.values())
        for name, nb in notebooks.items():
            start = nb.get("kernel_start_seconds")
            add("kernel start", start)
            if nb.get("execute_seconds") is not None and start is not None:
                add("the notebook's own cells", nb["execute_seconds"] - start)
            add("verifier start", nb.get("verify_start_seconds"))
            if nb.get("verify_seconds") is not None:
                add("verifier work", nb["verify_seconds"] - (nb.get("verify_start_seconds") or 0.0))
            for label, value in nb.get("slowest_cells") or []:
                cells.setdefault((result["assignment"], name, label), []).append(value)
        if "autograde" in seconds:
            add("nbgrader's bookkeeping", (seconds["autograde"] - executed) / n)
        if "verify" in seconds:
            add("job gradebook and reconciling", (seconds["verify"] - verified) / n)
        add("feedback rendering", seconds.get("feedback", 0.0) / n)
        add("coordinator: staging, gradebook reads", seconds.get("prepare", 0.0) / n)
        add("coordinator: gradebook writes, files", seconds.get("record", 0.0) / n)
        if "total" in seconds:
            add("worker: the rest", (seconds["total"] - sum(seconds.get(k, 0.0) for k in
                                                             ("autograde", "verify", "feedback"))) / n)
    lines = ["per-notebook cost (mean seconds of wall time; 2 workers in parallel):"]
    for key, values in parts.items():
        lines.append(f"  {key:<40} {sum(values) / len(values):.3f}")
    slowest = sorted(cells.items(), key=lambda kv: -sum(kv[1]) / len(kv[1]))[:5]
    lines.append("the 5 slowest cells (mean seconds over the students who ran them):")
    for (assignment, notebook, label), values in slowest:
        lines.append(f"  {assignment}/{notebook} {label:<34} {sum(values) / len(values):.3f}")
    return lines


__all__ = ["cost_split", "run_bench", "results_path"]
