"""The verifier's trusted harness: runs one solution cell on grader-chosen cases.

Runs in a process forked from the pristine kernel server, inside the sandbox. For each
exercise it forks once more, so one cell's patches cannot touch another's check; the
grandchild executes the solution cell's source, calls ``Exercise.probe`` on every case and
sends plain data back through a pipe. The grader judges that data in its own process.

Torch's fused cells are wrapped before the cell runs, so a cell that reaches them under
another name is caught calling them.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time

import torch

from grading.instructor.exercises import EXERCISES
from grading.instructor.exercises.base import Case, ProbeError

# Genuine functions, captured before any student code runs in this process.
_dumps, _loads, _write, _fork, _exit = json.dumps, json.loads, os.write, os.fork, os._exit

FUSED = ("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell", "lstm", "gru", "rnn_tanh", "rnn_relu")
MODULES = ("RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU")
EXERCISE_TIMEOUT = float(os.environ.get("GRADING_EXERCISE_TIMEOUT", "30"))


def install_traps(calls: list[str]) -> None:
    """Wrap torch's fused RNN functions and modules so that any call is recorded."""

    def wrap(owner, name, label):
        original = getattr(owner, name, None)
        if original is None:
            return

        def trapped(*args, **kwargs):
            calls.append(label)
            return original(*args, **kwargs)

        try:
            setattr(owner, name, trapped)
        except (AttributeError, TypeError):
            pass

    for name in FUSED:
        wrap(torch, name, f"torch.{name}")
        wrap(torch._VF, name, f"torch._VF.{name}")
        wrap(torch._C._VariableFunctions, name, f"torch._C._VariableFunctions.{name}")
        try:
            wrap(torch.ops.aten, name, f"torch.ops.aten.{name}")
        except Exception:  # noqa: BLE001 - an op torch does not have
            pass
    for name in MODULES:
        wrap(getattr(torch.nn, name), "forward", f"torch.nn.{name}.forward")


class _Anything:
    """Stands in for IPython here: a cell that also pokes at get_ipython() still runs."""

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return self

    def __iter__(self):
        return iter(())


def run_exercise(spec: dict) -> dict:
    """Execute one solution cell and probe it; returns plain data."""
    exercise = EXERCISES[spec["grade_id"]]
    calls: list[str] = []
    if exercise.forbidden_names:
        install_traps(calls)
    namespace: dict = {"__name__": "__main__", "get_ipython": _Anything(), "display": lambda *a, **k: None}
    try:
        exec(compile(spec.get("preamble", exercise.preamble), "<setup>", "exec"), namespace)  # noqa: S102
    except Exception as exc:  # noqa: BLE001 - the notebook's own imports failed: report, don't crash
        return {"error": f"the notebook's setup imports failed in the checker: {type(exc).__name__}: {exc}"}
    try:
        exec(compile(spec["source"], "<solution cell>", "exec"), namespace)  # noqa: S102
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt included
        return {"error": f"the solution cell raised {type(exc).__name__}: {exc}", "fused_calls": calls}
    obj = namespace.get(exercise.name)
    if obj is None:
        return {"error": f"the solution cell does not define {exercise.name}", "fused_calls": calls}
    observed = []
    for raw in spec["cases"]:
        case = Case(**raw)
        try:
            observed.append({"ok": True, "value": exercise.probe(obj, case)})
        except ProbeError as exc:
            observed.append({"ok": False, "error": f"{exercise.name} {exc}"})
        except NotImplementedError:
            observed.append({"ok": False, "error": f"{exercise.name} is not implemented yet."})
        except BaseException as exc:  # noqa: BLE001
            observed.append({"ok": False, "error": f"{exercise.name} raised {type(exc).__name__}: {exc}"})
    return {"observed": observed, "fused_calls": sorted(set(calls))}


def _collect(read_fd: int, pid: int, timeout: float) -> dict:
    """Read the grandchild's answer until it exits (processes it forked may keep the pipe open)."""
    chunks, deadline, exited = [], time.monotonic() + timeout, False
    os.set_blocking(read_fd, False)
    while True:
        ready, _, _ = select.select([read_fd], [], [], 0.05)
        if ready:
            try:
                data = os.read(read_fd, 1 << 20)
            except BlockingIOError:
                data = b"?"
            if not data:
                break
            if data != b"?":
                chunks.append(data)
            continue
        if exited:
            break
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            exited = True  # drain once more, then stop
            continue
        if time.monotonic() > deadline:
            _kill_group(pid)
            return {"error": f"the check did not finish within {timeout:.0f} s (an endless loop?)"}
    if not exited:
        os.waitpid(pid, 0)
    _kill_group(pid)
    try:
        return _loads(b"".join(chunks).decode())
    except ValueError:
        return {"error": "the solution cell ended the process before its check finished (os._exit, a crash or the memory limit)"}


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def serve(request_path: str) -> None:
    """Run every exercise of the request, each in its own fork; write the results file."""
    with open(request_path) as f:
        request = json.load(f)
    os.unlink(request_path)
    results = {}
    for spec in request["exercises"]:
        read_fd, write_fd = os.pipe()
        pid = _fork()
        if pid == 0:
            os.close(read_fd)
            os.setpgid(0, 0)
            try:
                payload = _dumps(run_exercise(spec)).encode()
            except BaseException as exc:  # noqa: BLE001
                payload = _dumps({"error": f"the check could not run: {type(exc).__name__}: {exc}"}).encode()
            view = memoryview(payload)
            while view:
                view = view[_write(write_fd, view):]
            _exit(0)
        os.close(write_fd)
        started = time.monotonic()
        results[spec["grade_id"]] = _collect(read_fd, pid, EXERCISE_TIMEOUT)
        results[spec["grade_id"]]["seconds"] = round(time.monotonic() - started, 3)
        os.close(read_fd)
    tmp = request["result_path"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f)
    os.replace(tmp, request["result_path"])
