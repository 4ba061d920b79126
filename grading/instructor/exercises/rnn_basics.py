"""Hidden checks of the ``rnn_basics`` assignment: rnn_cell_step, run_cell, rnn_shapes, last_time_step.

The diagnoses are the visible checks' own (``grading.student.rnn_basics``), so Validate and the grade
name the same fault; the references are computed here, in the grader's process.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from grading.student.checks import refused_call_problem, refused_ops
from grading.student.rnn_basics import (
    ERROR_HINTS,
    FUSED_NAMES,
    FUSED_OPS,
    FUSED_REASON,
    STEP_ARGS,
    last_time_step_problem,
    plain_shapes,
    rnn_cell_step_error_kind,
    rnn_cell_step_grad_problem,
    rnn_cell_step_inputs,
    rnn_cell_step_problem,
    rnn_shapes_problem,
    run_cell_problem,
    torch_shapes,
)

from .base import Case, Exercise, ProbeError, is_packed_tensor, pack, randn, tolerance, unpack

FUSED_RNN = FUSED_NAMES


def _refused(name: str, calls: Any, known: tuple[str, ...], reason: str) -> str | None:
    """The from-scratch message for the operators a probe saw refused (labels from the sandbox: only known ones)."""
    if not calls:
        return None
    labels = [c if c in known else "a refused operator" for c in (calls if isinstance(calls, list) else [calls])]
    return refused_call_problem(name, labels, reason)


class RnnCellStep(Exercise):
    grade_id = "rnn_cell_step"
    name = "rnn_cell_step"
    assignment = "rnn_basics"
    notebook = "rnn_cell"
    test_ids = ("test_rnn_cell_step",)
    forbidden_names = FUSED_RNN
    forbidden_reason = FUSED_REASON

    SHAPES = [(3, 5, 4, "float32"), (1, 2, 6, "float64"), (4, 4, 4, "float32"), (2, 7, 3, "float64")]

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        out = []
        batch, inp, hid, _ = rng.choice(self.SHAPES[:2])
        for label in ("bias_only", "input_term", "hidden_term"):
            out.append(self._case(gen, label, batch, inp, hid, "float64"))
        for batch, inp, hid, dtype in self.SHAPES:
            out.append(self._case(gen, "values", batch, inp, hid, dtype))
        out.append(self._case(gen, "gradients", 3, 5, 4, "float64"))
        return out

    def _case(self, gen, label, batch, inp, hid, dtype) -> Case:
        tensors = rnn_cell_step_inputs(gen, label, batch, inp, hid, getattr(torch, dtype))
        return Case(self.test_ids[0], label, {k: pack(v) for k, v in tensors.items()})

    ARGS = STEP_ARGS

    def probe(self, fn: Any, case: Case) -> Any:
        args = [unpack(case.data[k]) for k in self.ARGS]
        if case.label == "gradients":
            for a in args:
                a.requires_grad_(True)
        with refused_ops(FUSED_OPS) as calls:
            try:
                out = fn(*args)
            except NotImplementedError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported by type, with what it usually means
                out = exc
        if calls:
            return {"calls": list(calls)}
        if isinstance(out, Exception):
            hidden_size, input_size = args[2].shape
            return {"error": type(out).__name__, "kind": rnn_cell_step_error_kind(out, input_size, hidden_size)}
        if not isinstance(out, torch.Tensor):
            raise ProbeError(f"returned a {type(out).__name__}; "
                             "it must return a torch.Tensor (the new hidden state h')")
        if case.label != "gradients":
            return {"out": pack(out)}
        if not out.requires_grad:
            return {"out": pack(out), "grads": None}
        (out * unpack(case.data["upstream"])).sum().backward()
        return {"out": pack(out), "grads": [pack(a.grad) if a.grad is not None else None for a in args]}

    def reference(self, case: Case,
                  grad: bool = False) -> tuple[torch.Tensor, list[torch.Tensor | None] | None]:
        args = [unpack(case.data[k]) for k in self.ARGS]
        if grad:
            for a in args:
                a.requires_grad_(True)
        out = torch.tanh(args[0] @ args[2].T + args[4] + args[1] @ args[3].T + args[5])
        if not grad:
            return out, None
        (out * unpack(case.data["upstream"])).sum().backward()
        return out, [a.grad for a in args]

    def judge(self, case: Case, observed: Any) -> str | None:
        refused = _refused(self.name, observed.get("calls"), tuple(FUSED_OPS.values()), FUSED_REASON)
        if refused:
            return refused
        if "error" in observed:
            hint = ERROR_HINTS.get(observed.get("kind"), "") if isinstance(observed.get("kind"), str) else ""
            return f"rnn_cell_step raised {observed['error']}. {hint}".strip()
        expected, ref_grads = self.reference(case, grad=case.label == "gradients")
        if not is_packed_tensor(observed.get("out")):
            return "rnn_cell_step must return a torch.Tensor."
        tol = tolerance(case.data["x"]["dtype"])
        label = "values" if case.label == "gradients" else case.label
        problem = rnn_cell_step_problem(label, unpack(observed["out"]), expected.detach(), tol)
        if problem or case.label != "gradients":
            return problem
        grads = observed.get("grads")
        if grads is not None:
            grads = {name: unpack(g) if is_packed_tensor(g) else None
                     for name, g in zip(self.ARGS, grads, strict=False)}
        return rnn_cell_step_grad_problem(grads, dict(zip(self.ARGS, ref_grads, strict=True)), tol=1e-8)


class RunCell(Exercise):
    grade_id = "run_cell"
    name = "run_cell"
    assignment = "rnn_basics"
    notebook = "rnn_cell"
    test_ids = ("test_run_cell",)

    SHAPES = [(4, 2, 3, 5, "float32"), (1, 3, 2, 2, "float64"), (6, 1, 4, 3, "float64"), (5, 4, 3, 6, "float32")]

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        out = []
        for seq, batch, inp, hid, dtype in self.SHAPES:
            dt = getattr(torch, dtype)
            data = {
                "inputs": pack(randn(gen, seq, batch, inp, dtype=dt)),
                "h0": pack(randn(gen, batch, hid, dtype=dt)),
                "weight_ih": pack(randn(gen, hid, inp, dtype=dt) * 0.5),
                "weight_hh": pack(randn(gen, hid, hid, dtype=dt) * 0.5),
                "bias": pack(randn(gen, hid, dtype=dt) * 0.5),
            }
            out.append(Case(self.test_ids[0], f"seq_len={seq}, batch={batch}", data))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        w_ih, w_hh, bias = (unpack(case.data[k]) for k in ("weight_ih", "weight_hh", "bias"))
        seen = []

        def cell(x_t, h):
            seen.append(pack(h) if isinstance(h, torch.Tensor) else None)
            return torch.tanh(x_t @ w_ih.T + h @ w_hh.T + bias)

        result = fn(cell, unpack(case.data["inputs"]), unpack(case.data["h0"]))
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise ProbeError(f"must return a pair (outputs, h_n), got {type(result).__name__}")
        outputs, h_n = result
        return {"outputs": pack(outputs), "h_n": pack(h_n), "seen": seen}

    def judge(self, case: Case, observed: Any) -> str | None:
        inputs, h0 = unpack(case.data["inputs"]), unpack(case.data["h0"])
        w_ih, w_hh, bias = (unpack(case.data[k]) for k in ("weight_ih", "weight_hh", "bias"))
        rnn = torch.nn.RNN(w_ih.shape[1], w_ih.shape[0]).to(inputs.dtype)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(w_ih)
            rnn.weight_hh_l0.copy_(w_hh)
            rnn.bias_ih_l0.copy_(bias)
            rnn.bias_hh_l0.zero_()
            expected, h_last = rnn(inputs, h0.unsqueeze(0))
        seen = [unpack(h) if is_packed_tensor(h) else None for h in (observed.get("seen") or [])]
        outputs, h_n = observed.get("outputs"), observed.get("h_n")
        outputs = unpack(outputs) if is_packed_tensor(outputs) or isinstance(outputs, list) else outputs
        h_n = unpack(h_n) if is_packed_tensor(h_n) else h_n
        return run_cell_problem(h0, seen, outputs, h_n, expected, h_last[0], tolerance(case.data["inputs"]["dtype"]))


class RnnShapes(Exercise):
    grade_id = "rnn_shapes"
    name = "rnn_shapes"
    assignment = "rnn_basics"
    notebook = "nn_rnn"
    test_ids = ("test_rnn_shapes", "test_rnn_shapes_batch_first")

    KEYS = ("input", "h0", "output", "h_n")
    # Every size differs from every other in the fixed combinations, so a swap of any two shows.
    FIXED = [(6, 4, 2, 3, 1), (5, 2, 3, 7, 4)]

    def cases(self, seed: int) -> list[Case]:
        rng = random.Random(seed)
        out = []
        for test_id, batch_first in zip(self.test_ids, (False, True), strict=True):
            combos = list(self.FIXED)
            combos += [tuple(rng.randint(1, 9) for _ in range(4)) + (rng.randint(1, 4),) for _ in range(3)]
            for seq, batch, inp, hid, layers in combos:
                args = {"seq_len": seq, "batch_size": batch, "input_size": inp, "hidden_size": hid,
                        "num_layers": layers, "batch_first": batch_first}
                out.append(Case(test_id, f"{args}", args))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        result = fn(**case.data)
        if not isinstance(result, dict):
            raise ProbeError(f"must return a dict with keys {list(self.KEYS)}, got {type(result).__name__}")
        return plain_shapes(result)

    def judge(self, case: Case, observed: Any) -> str | None:
        return rnn_shapes_problem(case.data, torch_shapes(**case.data), observed)


class LastTimeStep(Exercise):
    grade_id = "last_time_step"
    name = "last_time_step"
    assignment = "rnn_basics"
    notebook = "nn_rnn"
    test_ids = ("test_last_time_step",)

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        out = []
        for seq, batch, hid, batch_first in [(4, 3, 5, False), (4, 3, 5, True), (2, 6, 3, True), (7, 1, 2, False)]:
            shape = (batch, seq, hid) if batch_first else (seq, batch, hid)
            data = {"output": pack(randn(gen, *shape, dtype=torch.float32)), "batch_first": batch_first}
            out.append(Case(self.test_ids[0], f"batch_first={batch_first}", data))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        return {"last": pack(fn(unpack(case.data["output"]), batch_first=case.data["batch_first"]))}

    def judge(self, case: Case, observed: Any) -> str | None:
        output = unpack(case.data["output"])
        batch_first = case.data["batch_first"]
        expected = output[:, -1] if batch_first else output[-1]
        got = observed.get("last")
        return last_time_step_problem(output, batch_first, unpack(got) if is_packed_tensor(got) else got, expected)


EXERCISES = [RnnCellStep(), RunCell(), RnnShapes(), LastTimeStep()]
