"""nbgrader's Execute step, with kernels forked by the worker's kernel server.

``SandboxedExecute`` replaces nbgrader's ``Execute`` in ``Autograde.autograde_preprocessors``
(grading-only configuration, see ``settings.py``). For each notebook it gets a fresh kernel
from the server, bounds the notebook's wall time and output size, and turns a kernel that
dies or hangs into error outputs on the cells that did not run, so nbgrader still saves
grades (zero for those cells) instead of dropping the submission.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import threading
import time
from collections.abc import Callable
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer

from .exercises.data import write_data
from .sandbox import Job, KernelServer
from .settings import GradingSettings


class PromptKernelClient(AsyncKernelClient):
    """jupyter_client's client, ready as soon as the kernel is.

    jupyter_client's ``wait_for_ready`` sleeps at fixed steps (0.2 s between heartbeat checks, then 0.2 s of silence
    on IOPub to flush it): about 0.3 s per notebook in which the worker and the kernel both sit idle. Here the
    kernel is ready when the idle status of a ``kernel_info`` request arrives on IOPub: that proves both channels
    connected, and every earlier IOPub message has been read. nbclient reads only the messages of its own requests,
    so nothing else needs flushing. ``alive`` asks the kernel server whether the kernel still runs.
    """

    alive: Callable[[], bool] = staticmethod(lambda: True)
    RETRY_SECONDS = 0.5  # IOPub may connect after the kernel announced a request: ask again

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (60.0 if timeout is None else timeout)
        while time.monotonic() < deadline:
            msg_id = self.kernel_info()
            retry = min(deadline, time.monotonic() + self.RETRY_SECONDS)
            while time.monotonic() < retry:
                try:
                    msg = await self.iopub_channel.get_msg(timeout=0.05)
                except Empty:
                    if not self.alive():
                        raise RuntimeError("Kernel died before replying to kernel_info") from None
                    continue
                if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                        and msg["content"].get("execution_state") == "idle"):
                    try:
                        self._handle_kernel_info_reply(await self._reply_to(msg_id, deadline))
                    except Empty:
                        break
                    return
        raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")

    async def _reply_to(self, msg_id: str, deadline: float) -> dict:
        """The shell reply to ``msg_id`` (replies to earlier requests are dropped)."""
        while True:
            msg = await self.shell_channel.get_msg(timeout=max(0.01, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg


class ServerKernelManager:
    """The part of jupyter_client's KernelManager that nbclient uses, backed by a kernel server."""

    kernel_name = "python3"
    ipykernel = False

    def __init__(self, server: KernelServer, job: Job):
        self.server, self.job = server, job
        self.pid: int | None = None
        self.connection_info: dict | None = None

    @property
    def has_kernel(self) -> bool:
        return self.pid is not None

    def start_kernel(self, **_ignored: object) -> None:
        info = {"transport": "ipc", "ip": f"{self.job.inside}/k", "shell_port": 1, "iopub_port": 2,
                "stdin_port": 3, "control_port": 4, "hb_port": 5, "key": secrets.token_hex(16),
                "signature_scheme": "hmac-sha256", "kernel_name": "python3"}
        fd = os.open(self.job.host / "kernel.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(info))
            if self.server.sandboxed:
                os.fchown(f.fileno(), self.server.child_uid, self.server.child_uid)
        self.pid = self.server.call(cmd="kernel", dir=self.job.inside,
                                    connection_file=f"{self.job.inside}/kernel.json")["pid"]
        self._await_sockets(range(1, 6))
        self.connection_info = dict(info, ip=str(self.job.host / "k"))

    def _await_sockets(self, ports, timeout: float = 30) -> None:
        """Wait until the kernel has bound its sockets, and connect only to real sockets.

        The job directory belongs to the sandbox: a symbolic link there would be followed by
        root's connect(), so each path must be a socket (lstat) before the client is made.
        """
        deadline = time.monotonic() + timeout
        for port in ports:
            path = self.job.host / f"k-{port}"
            while True:
                try:
                    mode = os.lstat(path).st_mode
                except FileNotFoundError:
                    mode = None
                if mode is not None:
                    if not stat.S_ISSOCK(mode):
                        raise RuntimeError("the kernel's connection files are not sockets")
                    break
                if time.monotonic() > deadline or not self.is_alive():
                    raise RuntimeError("the kernel did not start")
                time.sleep(0.005)

    def client(self) -> AsyncKernelClient:
        kc = PromptKernelClient()
        kc.alive = self.is_alive
        kc.load_connection_info(self.connection_info)
        return kc

    def is_alive(self) -> bool:
        return self.pid is not None and self.server.alive() and self.server.call(cmd="alive", pid=self.pid)["alive"]

    def interrupt_kernel(self) -> None:
        if self.pid is not None:
            self.server.call(cmd="signal", pid=self.pid, signal=int(signal.SIGINT))

    def kill(self) -> None:
        if self.pid is not None and self.server.alive():
            self.server.call(cmd="signal", pid=self.pid, signal=int(signal.SIGKILL), group=True)

    def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        self.kill()

    def cleanup_resources(self, restart: bool = False) -> None:
        pass


class SandboxedExecute(Execute):
    """nbgrader's Execute with server-forked kernels, a notebook deadline and an output cap."""

    notebook_timeout = Integer(GradingSettings.notebook_timeout.default_value,
                               help="Wall-clock seconds for a whole notebook "
                                    "(set from GradingSettings).").tag(config=True)
    max_output_bytes = Integer(GradingSettings.output_limit_bytes.default_value,
                               help="Output kept per cell (set from GradingSettings).").tag(config=True)

    # Set by the grading worker before it runs nbgrader (one server per worker process).
    server: KernelServer | None = None
    # notebook name -> what stopped it (kernel death, deadline), seconds it ran, seconds until its first cell
    # started (the kernel's start), and each cell's seconds as (grade_id or "cell N", seconds); reset per submission.
    incidents: dict[str, str] = {}
    durations: dict[str, float] = {}
    kernel_starts: dict[str, float] = {}
    cell_times: dict[str, list[tuple[str, float]]] = {}
    data_files: dict[str, bytes] = {}  # the assignment's data files, put beside the notebook before its kernel starts

    def preprocess(self, nb: NotebookNode, resources: dict, km: object = None) -> tuple[NotebookNode, dict]:
        cls = type(self)
        if cls.server is None:
            raise RuntimeError("SandboxedExecute needs a kernel server (run through python -m grading grade)")
        notebook = resources.get("nbgrader", {}).get("notebook", "notebook")
        job = cls.server.new_job()
        write_data(cls.data_files, job.host)
        manager = ServerKernelManager(cls.server, job)
        self._executed: set[int] = set()
        self._output_bytes: dict[int, int] = {}
        self._notebook = notebook
        cls.cell_times[notebook] = []
        expired = threading.Event()

        def on_deadline():
            expired.set()
            manager.kill()

        started = self._started = time.monotonic()
        timer = threading.Timer(self.notebook_timeout, on_deadline)
        timer.daemon = True
        timer.start()
        try:
            return super().preprocess(nb, resources, km=manager)
        except Exception as exc:  # noqa: BLE001 - a dead or hung kernel must not stop the class
            if expired.is_set():
                reason = f"the notebook ran longer than {self.notebook_timeout} s and was stopped"
            else:
                reason = f"the kernel died ({type(exc).__name__}): os._exit, a crash, or the memory limit"
            cls.incidents[notebook] = reason
            self._mark_unexecuted(nb, reason)
            return nb, resources
        finally:
            timer.cancel()
            manager.kill()
            cls.server.finish_job(job)
            cls.durations[notebook] = round(time.monotonic() - started, 3)

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        cls = type(self)
        if not self._executed:
            cls.kernel_starts[self._notebook] = round(time.monotonic() - self._started, 3)
        self._executed.add(index)
        started = time.monotonic()
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            if cell.cell_type == "code":
                label = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {index}"
                cls.cell_times[self._notebook].append((str(label), round(time.monotonic() - started, 4)))

    def output(self, outs: list[NotebookNode], msg: dict, display_id: str | None,
               cell_index: int) -> NotebookNode | None:
        size = len(json.dumps(msg.get("content", {}), default=str))
        used = self._output_bytes.get(cell_index, 0)
        self._output_bytes[cell_index] = used + size
        if used + size > self.max_output_bytes:
            if used <= self.max_output_bytes:
                outs.append(NotebookNode(output_type="stream", name="stdout",
                                         text=f"\n[output truncated: more than {self.max_output_bytes // 1000} kB]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    def _mark_unexecuted(self, nb: NotebookNode, reason: str) -> None:
        """The cell that was running gets the error; so does every graded cell that never ran."""
        current = max(self._executed) if self._executed else -1
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            error = NotebookNode(output_type="error", ename="GradingError", evalue=reason,
                                 traceback=[f"GradingError: {reason}"])
            if index == current:
                cell.setdefault("outputs", []).append(error)
            elif index > current and cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
                cell.outputs = [error]
