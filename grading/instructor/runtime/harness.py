"""The verifier's trusted harness: runs one solution cell on grader-chosen cases.

Runs in a process forked from the pristine kernel server, inside the sandbox. For each
exercise it forks once more, so one cell's patches cannot touch another's check; the
grandchild executes the solution cell's source, calls ``Exercise.probe`` on every case and
sends plain data back through a pipe. The harness answers the kernel server through
another pipe (file descriptor 3), which the grandchild does not hold. The grader judges
that data in its own process.

From scratch: before the cell runs, the operators the exercise reimplements (torch's fused
recurrent operators for the cells, ``aten::one_hot`` for one_hot: ``Exercise.trapped_ops``)
are replaced *in torch's dispatcher* by a recorder that refuses to compute. Every route to
them (``torch.lstm_cell``, ``torch._VF``, ``nn.LSTMCell``, ``F.one_hot``, ``getattr``, a
reference saved earlier, ``torch.ops.aten``, ``torch._C._nn``, ``torch._C._jit_get_operation``)
ends in the dispatcher, so the genuine kernel is out of the cell's reach. After the probes, the
harness checks that the recorder is still registered (the registration can be destroyed from
Python through ``gc``) and reports it if not.

An operator whose kernel is not registered at ``CompositeImplicitAutograd`` is named with its dispatch key,
``"op@Key"`` (``"tanh_backward@CPU"``: every backward through tanh runs it). Python entry points an exercise
refuses (``Exercise.trapped_functions``, e.g. ``"torch.autograd:grad"``) are replaced by recorders in the same
forked process; their calls are reported the same way.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable

import torch

from grading.instructor.exercises import EXERCISES
from grading.instructor.exercises.base import Case, ProbeError

# Genuine functions, captured before any student code runs in this process.
_dumps, _loads, _write, _fork, _exit = json.dumps, json.loads, os.write, os.fork, os._exit

# aten operators (with their overloads) that compute a recurrent cell or layer in one call.
FUSED_OPS = ("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell", "lstm.input", "lstm.data", "gru.input",
             "gru.data", "rnn_tanh.input", "rnn_tanh.data", "rnn_relu.input", "rnn_relu.data")
# How a message names a trapped operator whose Python name is not torch.<operator>.
OP_LABELS = {"one_hot": "torch.nn.functional.one_hot",
             "tanh_backward": "autograd (aten::tanh_backward, which every backward through tanh runs)",
             "_foreach_norm": "torch._foreach_norm"}
TRAP_KEY = "CompositeImplicitAutograd"
REMOVED = "the from-scratch check was removed from torch's dispatcher"


class FusedCallRefused(RuntimeError):
    """Raised in place of a fused recurrent operator while a solution cell is checked."""


def trapped_ops(exercise) -> tuple[str, ...]:
    """The aten operators refused while ``exercise``'s solution cell is checked."""
    if exercise.trapped_ops is not None:
        return tuple(exercise.trapped_ops)
    return FUSED_OPS if exercise.forbidden_names else ()


def install_traps(calls: list[str], ops: tuple[str, ...] = FUSED_OPS) -> object:
    """Replace the aten operators ``ops`` by a recorder; returns the registration (keep it alive)."""
    library = torch.library.Library("aten", "IMPL")

    def recorder(op: str):
        base = op.split(".")[0]
        label = OP_LABELS.get(base, f"torch.{base}")

        def refuse(*args, **kwargs):
            calls.append(label)
            raise FusedCallRefused(f"{label} is not available while the solution is checked")

        return refuse

    for spec in ops:  # "op" or "op@DispatchKey" (e.g. "tanh_backward@CPU": a kernel not at TRAP_KEY)
        op, _, key = spec.partition("@")
        library.impl(op, recorder(op), key or TRAP_KEY)
    return library


def install_function_traps(calls: list[str], paths: tuple[str, ...]) -> None:
    """Replace Python objects ("module:attribute", e.g. "torch.autograd:grad") by recorders that refuse to be
    called or used (an engine object's methods included). Only in the forked process that runs one exercise:
    nothing is restored."""
    import importlib

    class Refuser:
        def __init__(self, label: str):
            object.__setattr__(self, "_label", label)

        def _refuse(self):
            label = object.__getattribute__(self, "_label")
            calls.append(label)
            raise FusedCallRefused(f"{label} is not available while the solution is checked")

        def __call__(self, *args, **kwargs):
            self._refuse()

        def __getattr__(self, name):
            self._refuse()

    for path in paths:
        owner_path, _, attr = path.partition(":")
        try:
            owner = importlib.import_module(owner_path)
        except ImportError:
            module_name, _, class_name = owner_path.rpartition(".")
            owner = getattr(importlib.import_module(module_name), class_name)
        setattr(owner, attr, Refuser(f"{owner_path}.{attr}"))


def _sentinel_args():
    x, h = torch.zeros(1, 1), torch.zeros(1, 1)
    return x, [h, h], torch.zeros(4, 1), torch.zeros(4, 1)


# For the operators whose recorder is checked after the probes: a call that only the recorder refuses.
SENTINELS: dict[str, Callable[[], tuple]] = {
    "lstm_cell": _sentinel_args,
    "one_hot": lambda: (torch.zeros(1, dtype=torch.long), 1),
    "tanh_backward": lambda: (torch.zeros(1), torch.zeros(1)),
}


def sentinel(ops: tuple[str, ...]) -> tuple[Callable[..., object] | None, tuple]:
    """(handle, arguments) of a call that proves the recorder of ``ops`` still answers; taken before the cell runs."""
    op = next((o.partition("@")[0] for o in ops if o.partition("@")[0] in SENTINELS), None)
    if op is None:
        return None, ()
    return getattr(torch.ops.aten, op).default, SENTINELS[op]()


def traps_intact(handle: Callable[..., object], calls: list[str], args: tuple | None = None) -> bool:
    """Whether the recorder still answers for the operator of ``handle``, a handle taken before the cell ran
    (aten::lstm_cell with its sentinel arguments unless ``args`` are given)."""
    before = len(calls)
    try:
        handle(*(args if args is not None else _sentinel_args()))
    except FusedCallRefused:
        del calls[before:]
        return True
    except BaseException:  # noqa: BLE001 - anything else means the recorder is not what answered
        return False
    return False


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
    ops = trapped_ops(exercise)
    traps = install_traps(calls, ops) if ops else None
    check = sentinel(ops)
    install_function_traps(calls, tuple(getattr(exercise, "trapped_functions", ())))
    namespace: dict = {"__name__": "__main__", "get_ipython": _Anything(), "display": lambda *a, **k: None}
    # Running the notebook's setup and the submitted cell is this harness's job (inside the sandbox).
    try:
        exec(compile(spec.get("preamble", exercise.preamble), "<setup>", "exec"), namespace)  # noqa: S102
    except Exception as exc:  # noqa: BLE001 - the notebook's own imports failed: report, don't crash
        return {"error": f"the notebook's setup imports failed in the checker ({_type_name(exc)})"}
    try:
        exec(compile(spec["source"], "<solution cell>", "exec"), namespace)  # noqa: S102
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt included
        return _with_traps({"error": f"the solution cell raised {_type_name(exc)}"}, traps, check, calls)
    obj = namespace.get(exercise.name)
    if obj is None:
        return _with_traps({"error": f"the solution cell does not define {exercise.name}"}, traps, check, calls)
    observed = []
    for raw in spec["cases"]:
        case = Case(**raw)
        try:
            observed.append({"ok": True, "value": exercise.probe(obj, case)})
        except ProbeError as exc:
            observed.append({"ok": False, "error": f"{exercise.name} {exc}"})
        except NotImplementedError:
            observed.append({"ok": False, "error": f"{exercise.name} is not implemented yet."})
        except BaseException as exc:  # noqa: BLE001 - any crash of student code is a finding
            observed.append({"ok": False, "error": f"{exercise.name} raised {_type_name(exc)}"})
    return _with_traps({"observed": observed}, traps, check, calls)


def _type_name(exc: BaseException) -> str:
    """Only the exception's type: its text is the student's to choose, and feedback shows no raw text."""
    name = type(exc).__name__
    return name if isinstance(name, str) and name.isidentifier() and len(name) <= 60 else "an exception"


def _with_traps(outcome: dict, traps, check: tuple, calls: list[str]) -> dict:
    """Add what the traps recorded, and whether they survived the cell (``check``: see :func:`sentinel`)."""
    fused = sorted(set(calls))
    handle, args = check
    if traps is not None and handle is not None and not traps_intact(handle, calls, args):
        fused.append(REMOVED)
    outcome["fused_calls"] = fused
    return outcome


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
        return {"error": "the solution cell ended the process before its check finished "
                         "(os._exit, a crash or the memory limit)"}


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def serve(request: dict, out_fd: int) -> None:
    """Run every exercise of the request, each in its own fork; write the results to ``out_fd``."""
    results = {}
    for spec in request["exercises"]:
        read_fd, write_fd = os.pipe()
        pid = _fork()
        if pid == 0:
            os.close(read_fd)
            os.close(out_fd)
            os.setpgid(0, 0)
            try:
                payload = _dumps(run_exercise(spec)).encode()
            except BaseException as exc:  # noqa: BLE001 - the child reports every failure to the parent
                payload = _dumps({"error": f"the check could not run ({_type_name(exc)})"}).encode()
            view = memoryview(payload)
            while view:
                view = view[_write(write_fd, view):]
            _exit(0)
        os.close(write_fd)
        started = time.monotonic()
        results[spec["grade_id"]] = _collect(read_fd, pid, float(os.environ["GRADING_EXERCISE_TIMEOUT"]))
        results[spec["grade_id"]]["seconds"] = round(time.monotonic() - started, 3)
        os.close(read_fd)
    view = memoryview(_dumps(results).encode())
    while view:
        view = view[_write(out_fd, view):]
    os.close(out_fd)
