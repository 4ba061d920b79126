"""Hidden checks of the ``char_lm`` assignment's ``bptt.ipynb``: ``rnn_bptt`` and ``clip_grad_norm``.

``rnn_bptt`` (test cells ``test_rnn_bptt_shapes``, ``test_rnn_bptt_values``): the probe calls the student's function
on grader-chosen float64 inputs that do not require grad and returns the six gradients as plain data; the judge
recomputes them here with genuine autograd (``grading.student.char_lm_bptt.bptt_reference``). A wrong answer that
matches a known bug exactly (autograd recomputed with that bug built into the forward pass) is named: the tanh
derivative (1 - h_t^2) missing, the gradient from step t+1 missing, 1 - tanh(h_t)^2, 1 - a_t^2.

``clip_grad_norm`` (``test_clip_grad_norm``): list and generator inputs, ``.grad`` None skipped, below-threshold
gradients untouched, float32 and float64; the judge runs ``torch.nn.utils.clip_grad_norm_`` on the same gradients.

**By hand: what the grader traps** (autograd or torch's clipping earns 0 for every test cell of the exercise).

1. Static, on the solution cell's definitions (``forbidden_names``, names as written; names the function binds
   itself, such as a local variable ``grad``, do not count): ``rnn_bptt`` may not name ``backward``, ``autograd``,
   ``grad``, ``vjp``, ``jvp``, ``jacrev``, ``jacfwd``, ``hessian``, ``grad_and_value``, ``linearize``,
   ``functional_call``, ``func``, ``run_backward``, ``_execution_engine``, ``_engine_run_backward``, ``enable_grad``,
   ``set_grad_enabled``, ``requires_grad``, ``requires_grad_``, ``forward_ad``, ``make_dual``; ``clip_grad_norm`` may
   not name ``clip_grad_norm_``, ``clip_grad_norm``, ``get_total_norm``, ``clip_grads_with_norm_``, their private
   versions, ``_foreach_norm`` or ``clip_grad``.
2. At run time, in the verifier's sandboxed harness (``trapped_ops`` and ``trapped_functions``, installed in the
   forked process before the cell runs, so they hold for module-level code too): ``aten::tanh_backward`` is replaced
   at the CPU dispatch key by a recorder, so *any* backward through ``torch.tanh`` (``.backward()``,
   ``torch.autograd.grad``, ``torch.autograd.functional``, ``torch.func.vjp/grad/jacrev/jacfwd``, ``nn.RNN``, a
   saved reference, ``torch.ops.aten``) is refused and recorded. The Python entry points of autograd are replaced by
   recorders too: ``torch.autograd.backward``, ``torch.autograd.grad``, ``torch.Tensor.backward``,
   ``torch.autograd.graph._engine_run_backward`` (and its alias in ``torch.autograd``), the engine object
   ``torch.autograd.variable.Variable._execution_engine`` and its class (``torch._C._ImperativeEngine``, also
   as ``torch.autograd.variable.ImperativeEngine``), ``torch.autograd.forward_ad.make_dual`` and
   ``torch._C._make_dual``, and
   ``torch.func``'s ``vjp``, ``grad``, ``grad_and_value``, ``jacrev``, ``jacfwd``, ``jvp``, ``hessian``,
   ``linearize``. For ``clip_grad_norm``: ``aten::_foreach_norm.Scalar`` at the CPU key, and
   ``clip_grad_norm_``, ``clip_grad_norm``, ``get_total_norm``, ``clip_grads_with_norm_`` (public and private) in
   ``torch.nn.utils`` and ``torch.nn.utils.clip_grad``.
3. The probe passes inputs that do not require grad, and calls the function with ``aten::tanh_backward`` refused
   in the kernel as well (feedback).

What remains possible (README): a cell that rebuilds tanh from other operators (``exp``, ``sigmoid``) *and* reaches
autograd by a route the traps do not cover: calling the graph's nodes one by one (``total.grad_fn(...)`` and its
``next_functions``), or the genuine engine dug out with ``gc`` or C-level introspection, with every name spelt so
that the static check does not see it (``grad_fn``, ``next_functions`` are forbidden names). With ``torch.tanh``
in the graph every one of these routes still runs ``aten::tanh_backward`` and is refused. The tamper scan flags the
``torch._C`` and ``gc`` routes for the instructor, but not a graph walk spelt with ``getattr`` and built strings
(``tests/test_char_lm_bptt.py::test_what_remains_possible``). Such code is no accident, and is left to the
similarity report and the instructor's reading.
"""

from __future__ import annotations

import ast
import random
from typing import Any

import torch

from grading.student.char_lm_bptt import (
    ARGS,
    AUTOGRAD_NAMES,
    AUTOGRAD_OPS,
    AUTOGRAD_REASON,
    CLIP_NAMES,
    CLIP_OPS,
    CLIP_REASON,
    bptt_inputs,
    bptt_structure_problem,
    bptt_values_problem,
    clip_case,
    clip_problem,
    run_clip,
    run_rnn_bptt,
)
from grading.student.checks import scratch_problem

from .base import Case, Exercise, ProbeError, definition_nodes, is_packed_tensor, pack, unpack

AUTOGRAD_LABEL = "autograd"
AUTOGRAD_FUNCTIONS = tuple(f"{owner}:{attr}" for owner, attrs in (
    ("torch.autograd", ("backward", "grad", "_engine_run_backward")),
    ("torch.autograd.graph", ("_engine_run_backward",)),
    ("torch.Tensor", ("backward",)),
    ("torch.autograd.variable.Variable", ("_execution_engine",)),
    ("torch.autograd.variable", ("ImperativeEngine",)),
    ("torch._C", ("_ImperativeEngine", "_make_dual")),
    ("torch.autograd.forward_ad", ("make_dual",)),
    ("torch.func", ("vjp", "grad", "grad_and_value", "jacrev", "jacfwd", "jvp", "hessian", "linearize")),
) for attr in attrs)
CLIP_FUNCTIONS = tuple(f"{owner}:{attr}" for owner, attrs in (
    ("torch.nn.utils", ("clip_grad_norm_", "clip_grad_norm", "get_total_norm", "clip_grads_with_norm_")),
    ("torch.nn.utils.clip_grad", ("clip_grad_norm_", "clip_grad_norm", "get_total_norm", "clip_grads_with_norm_",
                                  "_get_total_norm", "_clip_grads_with_norm_")),
) for attr in attrs)


class ByHand(Exercise):
    """An exercise whose static check ignores the names the solution binds itself (a local ``grad`` is fine)."""

    assignment = "char_lm"
    notebook = "bptt"
    # Python functions the verifier's harness replaces by recorders while the cell runs ("module:attribute").
    trapped_functions: tuple[str, ...] = ()

    def scratch_violation_in_source(self, source: str) -> str | None:
        if not self.forbidden_names:
            return None
        nodes = definition_nodes(source)
        if nodes is None:
            return None
        bound = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
        bound |= {a.arg for n in nodes if isinstance(n, ast.arguments) for a in ast.walk(n) if isinstance(a, ast.arg)}
        bound |= {n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        used = set()
        for node in nodes:
            if isinstance(node, ast.Name) and node.id not in bound:
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.alias):
                used.update(node.name.split("."))
                if node.asname:
                    used.add(node.asname)
            elif isinstance(node, ast.ImportFrom) and node.module:
                used.update(node.module.split("."))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                used.add(node.value)
        return scratch_problem(self.name, used, self.forbidden_names, self.forbidden_reason)


def _refused(name: str, calls: Any, known: tuple[str, ...], reason: str) -> str | None:
    if not calls:
        return None
    calls = calls if isinstance(calls, list) else [calls]
    labels = sorted({c if c in known else "a refused operator" for c in calls})
    return f"{name} calls {', '.join(labels)}: {reason}"


class RnnBptt(ByHand):
    grade_id = "rnn_bptt"
    name = "rnn_bptt"
    test_ids = ("test_rnn_bptt_shapes", "test_rnn_bptt_values")
    forbidden_names = AUTOGRAD_NAMES
    forbidden_reason = AUTOGRAD_REASON
    trapped_ops = ("tanh_backward@CPU",)
    trapped_functions = AUTOGRAD_FUNCTIONS

    SHAPE_CASES = [(4, 3, 5, 2), (1, 2, 3, 3)]
    VALUE_CASES = [(5, 3, 4, 6), (3, 1, 2, 5), (1, 2, 3, 3), (6, 4, 5, 3)]

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        extra = (rng.randint(2, 7), rng.randint(1, 5), rng.randint(1, 6), rng.randint(1, 6))
        out = []
        for test_id, sizes in ((self.test_ids[0], self.SHAPE_CASES + [extra]),
                               (self.test_ids[1], self.VALUE_CASES + [extra])):
            for seq_len, batch, inp, hid in sizes:
                args = bptt_inputs(gen, seq_len, batch, inp, hid)
                out.append(Case(test_id, f"seq_len={seq_len}, batch={batch}, input_size={inp}, hidden_size={hid}",
                                {k: pack(v) for k, v in args.items()}))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        args = {k: unpack(v) for k, v in case.data.items()}
        result, calls, error = run_rnn_bptt(fn, args)
        if calls:
            return {"calls": calls}
        if error is not None:
            name = type(error).__name__
            return {"error": name if name.isidentifier() and len(name) <= 60 else "an exception"}
        if not isinstance(result, dict):
            return {"returned": type(result).__name__}
        grads = {}
        for key in ARGS:
            if key in result:
                value = result[key]
                grads[key] = pack(value) if isinstance(value, torch.Tensor) else {"type": type(value).__name__}
        extra = sorted(str(k)[:40] for k in result if k not in ARGS)[:10]
        return {"grads": grads, "extra": extra}

    def judge(self, case: Case, observed: Any) -> str | None:
        if not isinstance(observed, dict):
            raise ProbeError("returned something the check could not read")
        refused = _refused(self.name, observed.get("calls"), tuple(AUTOGRAD_OPS.values()), AUTOGRAD_REASON)
        if refused:
            return refused
        if observed.get("error"):
            return f"rnn_bptt raised {observed['error']} ({case.label})."
        if "returned" in observed:
            return f"rnn_bptt should return a dict of gradients keyed {', '.join(ARGS)}, got {observed['returned']}."
        args = {k: unpack(v) for k, v in case.data.items()}
        grads = observed.get("grads") or {}
        shown = {k: (v if is_packed_tensor(v) else {"type": v.get("type") if isinstance(v, dict) else "object"})
                 for k, v in grads.items()}
        shown.update({k: None for k in observed.get("extra") or []})
        problem = bptt_structure_problem(shown, args)
        if problem:
            return f"{problem} ({case.label})"
        if case.test_id == self.test_ids[0]:
            return None
        return bptt_values_problem({k: unpack(grads[k]) for k in ARGS}, args)


class ClipGradNorm(ByHand):
    grade_id = "clip_grad_norm"
    name = "clip_grad_norm"
    test_ids = ("test_clip_grad_norm",)
    forbidden_names = CLIP_NAMES
    forbidden_reason = CLIP_REASON
    trapped_ops = ("_foreach_norm.Scalar@CPU",)
    trapped_functions = CLIP_FUNCTIONS

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        shapes = [(4, 3), (6,), (2, 3, 2), (5,), (3, 3)]
        specs = [
            ("list, above max_norm", shapes, [False] * 5, 1.0, 1.5, "list", torch.float64),
            ("generator, above max_norm", shapes, [False] * 5, 1.0, 0.7, "generator", torch.float64),
            ("list, some .grad None", shapes, [True, False, True, False, False], 2.0, 1.0, "list", torch.float64),
            ("generator, some .grad None", shapes, [False, True, False, False, True], 2.0, 1.0, "generator",
             torch.float64),
            ("generator, below max_norm", shapes, [False] * 5, 0.1, 10.0, "generator", torch.float64),
            ("list, float32", shapes, [False] * 5, 1.0, 0.25, "list", torch.float32),
        ]
        random_shapes = [tuple(rng.randint(1, 5) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(2, 6))]
        none = [rng.random() < 0.3 for _ in random_shapes]
        none[rng.randrange(len(none))] = False
        specs.append(("random", random_shapes, none, 1.0, rng.uniform(0.2, 1.0), rng.choice(["list", "generator"]),
                      torch.float64))
        out = []
        for label, sh, nn_, scale, max_norm, kind, dtype in specs:
            case = clip_case(gen, sh, nn_, scale, max_norm, kind, dtype)
            case["grads"] = [None if g is None else pack(g) for g in case["grads"]]
            out.append(Case(self.test_ids[0], label, case))
        return out

    def _case(self, case: Case) -> dict:
        data = dict(case.data)
        data["grads"] = [None if g is None else unpack(g) for g in data["grads"]]
        return data

    def probe(self, fn: Any, case: Case) -> Any:
        observed = run_clip(fn, self._case(case))
        if "grads" in observed:
            observed["grads"] = [None if g is None else pack(g) for g in observed["grads"]]
        return observed

    def judge(self, case: Case, observed: Any) -> str | None:
        if not isinstance(observed, dict):
            raise ProbeError("returned something the check could not read")
        refused = _refused(self.name, observed.get("calls"), tuple(CLIP_OPS.values()), CLIP_REASON)
        if refused:
            return refused
        seen = dict(observed)
        if isinstance(seen.get("error"), str) and not seen["error"].isidentifier():
            seen["error"] = "an exception"
        if "grads" in seen:
            seen["grads"] = [unpack(g) if is_packed_tensor(g) else None for g in seen["grads"] or []]
        if seen.get("norm") is not None and not isinstance(seen["norm"], (int, float)):
            seen["norm"] = None
        if not isinstance(seen.get("returned"), str) or not seen["returned"].isidentifier():
            seen["returned"] = "an object"
        problem = clip_problem(self._case(case), seen)
        return f"{problem} (case: {case.label})" if problem else None


EXERCISES = [RnnBptt(), ClipGradNorm()]
