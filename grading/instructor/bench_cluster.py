"""``python -m grading bench-cluster``: the local pool against a 2-worker Dask cluster, same class, one run.

Builds two identical course folders with an honest class, grades one with the local pool (2
worker processes) and the other through a real scheduler and 2 real worker processes on this
machine (started with ``python -m grading scheduler`` / ``worker``, from a worker bundle), checks
that the grades are identical, and prints per notebook: the wall time of both paths, the cluster
path's overhead, the scheduler's CPU time per job, and the coordinator's own costs per job
(staging and the gradebook write). It ends with what those costs allow on a larger cluster.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .bench import _scores, identical_courses
from .cluster import stop_process
from .report import load_results
from .worker_bundle import build_worker_bundle

WORKERS = 2
MACHINES, CORES = 20, 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                OMP_NUM_THREADS="1")


def _grade_all(root: Path, names: list[str], extra: list[str]) -> float:
    started = time.monotonic()
    for name in names:
        run = subprocess.run([sys.executable, "-m", "grading", "grade", name, "--jobs", str(WORKERS), *extra],
                             cwd=root, env=_env(), capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"grading {name} {' '.join(extra)} failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return time.monotonic() - started


def _mean(results: list[dict], key: str) -> float:
    values = [r["seconds"].get(key, 0.0) for r in results]
    return sum(values) / max(1, len(values))


def run_bench_cluster(repo: Path, workdir: Path, size: int) -> int:
    courses, names, notebooks = identical_courses(repo, workdir, ("local", "cluster"), size)
    jobs = size * len(names)
    print(f"bench-cluster: {size} students x {len(names)} assignments = {jobs} jobs, {notebooks} notebooks, "
          f"{os.cpu_count()} cores, {WORKERS} workers either way")

    local_time = _grade_all(courses["local"], names, [])
    print(f"local pool ({WORKERS} processes):          {local_time:7.1f} s   "
          f"{local_time / notebooks:.3f} s/notebook")

    bundle = build_worker_bundle(courses["cluster"], workdir / "worker-bundle")
    os.chmod(workdir, 0o755)
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = workdir / "cluster-logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    try:
        started = time.monotonic()
        with open(logs / "scheduler.log", "wb") as out:
            scheduler = subprocess.Popen([sys.executable, "-m", "grading", "scheduler", "--port", str(port)],
                                         cwd=workdir, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        procs.append(scheduler)
        with open(logs / "workers.log", "wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "grading", "worker", "--root", str(bundle), "--scheduler", address,
                 "--nworkers", str(WORKERS), "--worker-port", "0", "--host", "127.0.0.1"],
                cwd=bundle, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        _await_workers(address, WORKERS)
        print(f"cluster start (scheduler + {WORKERS} workers joined): {time.monotonic() - started:5.1f} s "
              "(once per term, not per run)")
        cpu_before = _cpu_seconds(scheduler.pid)
        cluster_time = _grade_all(courses["cluster"], names, ["--cluster", address])
        scheduler_cpu = _cpu_seconds(scheduler.pid) - cpu_before
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        from .worker import clean_idle_slots

        clean_idle_slots()
    print(f"Dask cluster ({WORKERS} workers):          {cluster_time:7.1f} s   "
          f"{cluster_time / notebooks:.3f} s/notebook")
    overhead = (cluster_time - local_time) / local_time
    print(f"cluster overhead per notebook: {(cluster_time - local_time) / notebooks:+.3f} s ({overhead:+.1%}; "
          "aim: at most +10%)")
    print(f"scheduler CPU per job: {scheduler_cpu / jobs * 1000:.1f} ms")

    local, cluster = _scores(courses["local"]), _scores(courses["cluster"])
    same = local == cluster
    print(f"grades identical: {'yes' if same else 'NO'} ({len(local)} notebooks, {sum(local.values()):g} points)")
    for key in sorted(set(local) | set(cluster)):
        if local.get(key) != cluster.get(key):
            print(f"  {key}: local {local.get(key)}, cluster {cluster.get(key)}")

    results = load_results(courses["cluster"])
    prepare, record = _mean(results, "prepare"), _mean(results, "record")
    worker_seconds = _mean(results, "total")
    print(f"per job on the coordinator: staging {prepare * 1000:.1f} ms, recording (gradebook + files) "
          f"{record * 1000:.1f} ms; per job on a worker: {worker_seconds:.2f} s")
    _extrapolate(worker_seconds, prepare + record, scheduler_cpu / jobs)
    return 0 if same else 1


def _await_workers(address: str, count: int, timeout: float = 120) -> None:
    from distributed import Client

    deadline = time.monotonic() + timeout
    with Client(address, timeout=30, set_as_default=False) as client:
        while len(client.scheduler_info()["workers"]) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} workers did not join {address} within {timeout:.0f} s")
            time.sleep(0.5)


def _extrapolate(worker_seconds: float, coordinator_seconds: float, scheduler_seconds: float) -> None:
    """Jobs per second each part could sustain on MACHINES x CORES, from the measured costs per job."""
    rates = {f"workers ({MACHINES} machines x {CORES} cores)": MACHINES * CORES / max(worker_seconds, 1e-9),
             "coordinator (staging + gradebook writes, one process)": 1 / max(coordinator_seconds, 1e-9),
             "scheduler (one process)": 1 / max(scheduler_seconds, 1e-9)}
    print(f"extrapolated to {MACHINES} x {CORES} cores (jobs per second each part could sustain):")
    for part, rate in rates.items():
        print(f"  {part:<58} {rate:8.1f}/s")
    print(f"first limit: {min(rates, key=rates.get)}")


def cmd_bench_cluster(args) -> int:
    return 5 if run_bench_cluster(Path(args.root).resolve(), Path(args.out).resolve(), args.size) else 0
