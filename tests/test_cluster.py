"""Grading on a Dask cluster: real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1.

The workers run from a worker bundle (no catalogue, no calibration, no source/, no gradebook, no
secret), started with the course's commands. A small class of honest and hostile students is
graded on one machine (the local pool) first: every cluster run must give exactly its grades, and
record every submission exactly once (the run journal's log). Faults are injected into real
processes: a worker killed with SIGKILL mid-class, the scheduler killed and the run resumed, a
worker whose kernel server cannot start, a worker stopped with SIGSTOP, a worker on another version.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import QUICK_LIMITS, REPO, gradebook_scores, new_course, submit, with_solution
from rnn_cell_class import ALL_ZERO, CHEAT, FULL, NB, REF, RUN_ZERO, STEP_ZERO, WRONG_STEP, A

pytestmark = pytest.mark.slow

BLANK_CHEAT = with_solution(
    with_solution(REF, "rnn_cell_step", "def rnn_cell_step(*args):\n    raise NotImplementedError()\n" + CHEAT),
    "run_cell", "def run_cell(*args):\n    raise NotImplementedError()\n")
CRASH = with_solution(REF, "run_cell", "import os\nos.kill(os.getpid(), 9)\n")
CLASS = {"ada": REF, "bo": with_solution(REF, "rnn_cell_step", WRONG_STEP), "cy": BLANK_CHEAT, "di": CRASH}
EXPECTED = {"ada": FULL, "bo": STEP_ZERO, "cy": ALL_ZERO, "di": RUN_ZERO}
WORKER_TTL = "8s"
ENV = dict(QUICK_LIMITS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ, **ENV, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    env.update(extra or {})
    return env


class Cluster:
    """A scheduler and worker processes, started with the course's own commands; stopped by PID."""

    def __init__(self, tmp: Path, bundle: Path):
        self.tmp, self.bundle = tmp, bundle
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.scheduler: subprocess.Popen | None = None

    def _start(self, args: list[str], cwd: Path, log: str) -> subprocess.Popen:
        with open(self.tmp / log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "grading", *args], cwd=cwd, env=_env(), stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_scheduler(self) -> None:
        self.scheduler = self._start(["scheduler", "--port", str(self.port), "--worker-ttl", WORKER_TTL], self.tmp,
                                     "scheduler.log")

    def start_workers(self, count: int, bundle: Path | None = None, extra: tuple[str, ...] = (), port: int = 0) -> None:
        """``count`` worker processes (on ``port`` and up, nannies after them; 0: any free ports)."""
        bundle = bundle or self.bundle
        self._start(["worker", "--root", str(bundle), "--scheduler", self.address, "--nworkers", str(count),
                     "--worker-port", str(port), "--host", "127.0.0.1", *extra], bundle, "workers.log")

    def wait_for_workers(self, count: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.workers()) >= count:
                return
            time.sleep(0.5)
        raise AssertionError(f"{count} workers did not join: {self.log()}")

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=20, set_as_default=False)

    def workers(self) -> dict:
        try:
            with self.client() as client:
                return client.scheduler_info()["workers"]
        except OSError:
            return {}

    def worker_pids(self) -> dict[str, int]:
        with self.client() as client:
            return client.run(os.getpid)

    def busy_worker_pid(self, timeout: float = 120) -> int:
        """The PID of a worker process that is grading a submission now."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                busy = [w for w, keys in client.processing().items() if keys]
                if busy:
                    return client.run(os.getpid, workers=[busy[0]])[busy[0]]
                time.sleep(0.2)
        raise AssertionError("no worker started grading")

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp.glob("*.log"))

    def stop(self) -> None:
        from grading.instructor.cluster import stop_process
        from grading.instructor.worker import clean_idle_slots

        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)
            stop_process(proc, grace=15)
        self.procs = []
        clean_idle_slots()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = new_course(tmp_path_factory.mktemp("cluster"), [A])
    for student, nb in CLASS.items():
        submit(root, student, A, {NB: nb})
    return root


@pytest.fixture(scope="module")
def bundle(course, tmp_path_factory):
    out = tmp_path_factory.mktemp("grading-machine") / "bundle"
    run = subprocess.run([sys.executable, "-m", "grading", "worker-bundle", "--out", str(out)], cwd=course,
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    os.chmod(out.parent, 0o755)
    return out


@pytest.fixture
def cluster(tmp_path, bundle):
    c = Cluster(tmp_path, bundle)
    c.start_scheduler()
    yield c
    c.stop()


def _grade(course: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading", "grade", A, *args], cwd=course, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _start_grade(course: Path, tmp: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    out = tmp / "grade.out"
    with open(out, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "grading", "grade", A, *args], cwd=course, env=_env(),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return proc, out


def _journal(course: Path) -> tuple[str, list[str]]:
    plan = json.loads((course / "reports" / "runs" / f"{A}.json").read_text())
    lines = (course / "reports" / "runs" / f"{A}.log").read_text().splitlines()
    return plan["run"], [line.split(" ", 1)[1] for line in lines if line.startswith(plan["run"] + " ")]


def _assert_recorded_once_with_expected_grades(course: Path) -> None:
    run, recorded = _journal(course)
    assert sorted(recorded) == sorted(CLASS), f"recorded {recorded}"
    for student in CLASS:
        result = json.loads((course / "reports" / "results" / A / f"{student}.json").read_text())
        assert result["run"] == run and not result["grading_error"], (student, result["grading_error"])
    assert gradebook_scores(course, A, NB) == EXPECTED


def _wait_for_recorded(course: Path, count: int, proc: subprocess.Popen, earlier_run: str,
                       timeout: float = 300) -> None:
    """Until the run started after ``earlier_run`` has recorded ``count`` submissions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            run, recorded = _journal(course)
            if run != earlier_run and len(recorded) >= count:
                return
        assert proc.poll() is None, "the grading run ended early"
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} submissions recorded in {timeout} s")


def test_the_one_machine_run_gives_the_expected_grades(course):
    run = _grade(course, "--jobs", "2")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    _assert_recorded_once_with_expected_grades(course)


def test_the_worker_bundle_holds_no_solution_catalogue_or_secret(bundle):
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    for forbidden in ("grading/instructor/catalogue", "grading/instructor/calibration", "source/",
                      "grading/instructor/autograde.py", "gradebook.db", ".grading_secret"):
        assert not any(f.startswith(forbidden) or f == forbidden for f in files), forbidden
    assert "grading/instructor/exercises/rnn_basics.py" in files and f"release/{A}/{NB}.ipynb" in files
    assert not any("BEGIN SOLUTION" in p.read_text(errors="replace") for p in (bundle / "release").rglob("*.ipynb"))


def test_a_two_worker_cluster_gives_the_same_grades(course, cluster):
    port = _free_port()
    cluster.start_workers(2, port=port)
    cluster.wait_for_workers(2)
    ports = sorted(int(address.rsplit(":", 1)[1]) for address in cluster.workers())
    assert ports == [port, port + 1]
    run = _grade(course, "--cluster", cluster.address)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + cluster.log()
    _assert_recorded_once_with_expected_grades(course)
    assert (course / "feedback" / "ada" / A / f"{NB}.html").is_file()
    # the workers graded from the bundle, which has no catalogue: they could not import it
    with cluster.client() as client:
        found = client.run(lambda: __import__("importlib").util.find_spec("grading.instructor.catalogue") is None)
        where = client.run(lambda: __import__("grading").__file__)
    assert all(found.values()) and all(str(cluster.bundle) in path for path in where.values())


def test_a_worker_on_another_version_is_refused_by_name(course, cluster, tmp_path):
    other = tmp_path / "other-bundle"
    shutil.copytree(cluster.bundle, other)
    (other / "release" / A / "data.txt").write_text("a file the coordinator's release does not have\n")
    os.chmod(tmp_path, 0o755)
    cluster.start_workers(1, bundle=other)
    cluster.wait_for_workers(1)
    run = _grade(course, "--cluster", cluster.address)
    assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
    from grading.instructor.jobs import worker_version

    ours, theirs = worker_version(REPO, course), worker_version(other, other)
    assert ours != theirs and ours in run.stderr and theirs in run.stderr, run.stderr


def test_a_worker_killed_mid_class_loses_nothing(course, cluster, tmp_path):
    cluster.start_workers(2)
    cluster.wait_for_workers(2)
    proc, out = _start_grade(course, tmp_path, "--cluster", cluster.address)
    os.kill(cluster.busy_worker_pid(), signal.SIGKILL)
    assert proc.wait(600) == 0, out.read_text()[-3000:] + cluster.log()
    _assert_recorded_once_with_expected_grades(course)


def test_a_lost_scheduler_stops_the_run_and_resume_grades_only_the_rest(course, cluster, tmp_path):
    cluster.start_workers(2)
    cluster.wait_for_workers(2)
    earlier_run = ""
    with contextlib.suppress(OSError):
        earlier_run = _journal(course)[0]
    proc, out = _start_grade(course, tmp_path, "--cluster", cluster.address)
    _wait_for_recorded(course, 1, proc, earlier_run)
    os.kill(cluster.scheduler.pid, signal.SIGKILL)
    started = time.monotonic()
    code = proc.wait(120)
    text = out.read_text()
    assert code == 6 and "stopped answering" in text and "--resume" in text, text[-3000:]
    assert time.monotonic() - started < 60
    run, before = _journal(course)
    assert 1 <= len(before) < len(CLASS) and len(set(before)) == len(before)
    cluster.stop()
    cluster.start_scheduler()
    cluster.start_workers(2)
    cluster.wait_for_workers(2)
    resumed = _grade(course, "--cluster", cluster.address, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"{len(CLASS) - len(before)} submissions" in resumed.stdout
    assert _journal(course)[0] == run
    _assert_recorded_once_with_expected_grades(course)


def test_a_worker_whose_kernel_server_cannot_start_says_why_within_a_minute(course, cluster, tmp_path):
    cluster.start_workers(1)
    cluster.wait_for_workers(1)
    faults = str(Path(__file__).with_name("cluster_faults.py"))
    cluster.start_workers(1, extra=("--preload", faults))
    cluster.wait_for_workers(2)
    proc, out = _start_grade(course, tmp_path, "--cluster", cluster.address)
    started = time.monotonic()
    while "bubblewrap-is-broken-on-this-worker" not in out.read_text(errors="replace"):
        assert time.monotonic() - started < 60, out.read_text()[-3000:] + cluster.log()
        assert proc.poll() is None or "bubblewrap-is-broken" in out.read_text(), out.read_text()[-3000:]
        time.sleep(0.2)
    assert "kernel server did not start" in out.read_text()
    assert proc.wait(600) == 0, out.read_text()[-3000:]
    _assert_recorded_once_with_expected_grades(course)


def test_a_job_whose_workers_keep_dying_is_a_grading_error_and_the_class_goes_on(course, cluster):
    dying = str(Path(__file__).with_name("cluster_dying.py"))
    cluster.start_workers(2, extra=("--preload", dying))
    cluster.wait_for_workers(2)
    run = _grade(course, "--cluster", cluster.address)
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-3000:]
    assert "di: grading error — regrade: the grading workers running it kept dying (KilledWorker)" in run.stdout
    _, recorded = _journal(course)
    assert sorted(recorded) == sorted(CLASS)
    # di keeps the earlier verified grade; everyone else was graded in this run
    assert json.loads((course / "reports" / "results" / A / "di.json").read_text())["kept_previous"]
    assert gradebook_scores(course, A, NB) == EXPECTED


def test_local_n_starts_its_own_cluster_for_the_run(course):
    run = _grade(course, "--cluster", "local:2")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    _assert_recorded_once_with_expected_grades(course)


def test_a_stopped_worker_has_its_job_graded_elsewhere(course, cluster, tmp_path):
    cluster.start_workers(2)
    cluster.wait_for_workers(2)
    proc, out = _start_grade(course, tmp_path, "--cluster", cluster.address)
    stopped = cluster.busy_worker_pid()
    os.kill(stopped, signal.SIGSTOP)
    try:
        assert proc.wait(600) == 0, out.read_text()[-3000:] + cluster.log()
    finally:
        with contextlib.suppress(ProcessLookupError):  # its nanny may have replaced it
            os.kill(stopped, signal.SIGCONT)
    _assert_recorded_once_with_expected_grades(course)


def test_an_interrupted_local_run_resumes_where_it_stopped(course, tmp_path):
    earlier_run = _journal(course)[0]
    proc, out = _start_grade(course, tmp_path, "--jobs", "1")
    _wait_for_recorded(course, 1, proc, earlier_run)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal (_start_grade undoes an inherited SIG_IGN)
    code = proc.wait(120)
    text = out.read_text()
    assert code == 130 and "interrupted" in text and "--resume" in text, text[-3000:]
    run, before = _journal(course)
    assert 1 <= len(before) < len(CLASS)
    resumed = _grade(course, "--resume", "--jobs", "2")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"{len(CLASS) - len(before)} submissions" in resumed.stdout
    assert _journal(course)[0] == run
    _assert_recorded_once_with_expected_grades(course)
    again = _grade(course, "--resume")
    assert again.returncode == 4 and "nothing to resume" in again.stderr


def test_the_coordinator_gives_a_clear_error_without_a_scheduler(course):
    run = _grade(course, "--cluster", f"tcp://127.0.0.1:{_free_port()}", timeout=120)
    assert run.returncode == 4 and "no Dask scheduler answers" in run.stderr, run.stderr[-2000:]


def test_no_worker_process_mount_or_cgroup_outlives_the_cluster():
    """Run last: after killed, stopped and retired workers, the next holder of each slot cleaned up after them."""
    from grading.instructor.worker import SLOT_BASE, SLOTS

    first, last = 61000 + 2 * SLOT_BASE, 61000 + 2 * (SLOT_BASE + SLOTS)
    leftovers = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            uid = int(Path(f"/proc/{entry}/status").read_text().split("Uid:")[1].split()[0])
            if first <= uid < last:
                leftovers.append(entry)
    assert not leftovers
    assert "rnn-grading-slot" not in Path("/proc/mounts").read_text()
    cgroups = [p for p in Path("/sys/fs/cgroup").glob("*/rnn-grading/rnn-grading-slot*")]
    assert not cgroups and not list(Path("/tmp").glob("rnn-grading-slot*"))
