"""The shape of a hidden check, shared by the in-kernel hidden tests and the verifier.

A check is split in three so the grade can be decided outside the student's kernel:

* ``Exercise.cases(seed)``: inputs chosen by the grader, as plain data (:class:`Case`).
* ``Exercise.probe(obj, case)``: runs where the student's code lives (the kernel, or the
  sandboxed harness of the verifier); calls the student's object on the case and returns
  plain data only (numbers, lists, strings, packed tensors).
* ``Exercise.judge(case, observed)``: runs in the grader's own process; computes the
  reference with genuine torch and returns ``None`` (pass) or a message saying what is wrong.

Cases carry the grade_id of the test cell they decide, so the verifier can award each
test cell's points; a test cell passes when all of its cases pass.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from grading.student.checks import max_abs_diff, names_used, scratch_problem, shape_problem

# Captured at import time. The verifier's harness imports this module before any student
# code runs, so these stay the genuine functions even if the student patches torch.
_TENSOR_TYPE = torch.Tensor
_TOLIST = torch.Tensor.tolist
_AS_TENSOR = torch.tensor
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64}
# The layers a model exercise is made of, by label: the genuine classes, captured the same way.
LAYER_TYPES: tuple[tuple[str, type], ...] = (("Embedding", torch.nn.Embedding), ("RNN", torch.nn.RNN),
                                             ("Linear", torch.nn.Linear))


@dataclass(frozen=True)
class Case:
    """One grader-chosen input. ``data`` is plain data; ``test_id`` is the test cell it decides."""

    test_id: str
    label: str
    data: dict = field(default_factory=dict)


class ProbeError(Exception):
    """The student's object could not be called or returned something unusable."""


def pack(value: Any) -> Any:
    """Tensors -> plain data (exact for float32/float64), recursively through tuples, lists, dicts."""
    if type(value) is _TENSOR_TYPE:
        dtype = str(value.dtype).removeprefix("torch.")
        return {"tensor": _TOLIST(value.detach()), "dtype": dtype, "shape": list(value.shape)}
    if isinstance(value, torch.Tensor):
        raise ProbeError(f"returned a {type(value).__name__}, a subclass of torch.Tensor: return a plain torch.Tensor")
    if isinstance(value, (list, tuple)):
        return [pack(v) for v in value]
    if isinstance(value, dict):
        return {str(k): pack(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ProbeError(f"returned a {type(value).__name__}; expected tensors, numbers or tuples of them")


def unpack(value: Any) -> Any:
    """Inverse of :func:`pack`."""
    if isinstance(value, dict) and "tensor" in value and "dtype" in value:
        return _AS_TENSOR(value["tensor"], dtype=_DTYPES[value["dtype"]]).reshape(value["shape"])
    if isinstance(value, list):
        return [unpack(v) for v in value]
    if isinstance(value, dict):
        return {k: unpack(v) for k, v in value.items()}
    return value


def is_packed_tensor(value: Any) -> bool:
    """True for the plain-data form of a tensor."""
    return isinstance(value, dict) and "tensor" in value and "shape" in value


def max_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference (inf when shapes differ or NaNs appear; 0 for empty tensors)."""
    if tuple(actual.shape) != tuple(expected.shape):
        return math.inf
    return max_abs_diff(actual, expected)


def tolerance(dtype_name: str) -> float:
    """Absolute tolerance for comparing against torch's own modules."""
    return 1e-10 if dtype_name == "float64" else 2e-5


def randn(gen: torch.Generator, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard normal values of ``shape`` drawn in float64 from ``gen``, then cast: the same draws for every dtype."""
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)


def shape_message(name: str, actual: Sequence[int], expected: Sequence[int], dims: Sequence[str], why: str = "") -> str:
    """``"h' has shape (3, 5), expected (batch=3, hidden_size=4). <why>"``.

    The dimensions are named as the visible checks do, and a swap of two of them is named
    (:func:`grading.student.checks.shape_problem`).
    """
    return shape_problem(name, actual, expected, dims, why)


def layer_type(module: Any) -> str | None:
    """The label in ``LAYER_TYPES`` of ``module``'s class (subclasses included), or None."""
    for label, cls in LAYER_TYPES:
        if isinstance(module, cls):
            return label
    return None


def find_layers(model: Any) -> tuple[dict[str, list], list[str]]:
    """A model's layers by type, whatever their attribute names, and the parameters none of them owns.

    Returns ({label: [modules in registration order]} for every label of ``LAYER_TYPES``,
    [names of the model's parameters outside those modules]).
    """
    found: dict[str, list] = {label: [] for label, _ in LAYER_TYPES}
    owned = set()
    for _, module in model.named_modules():
        label = layer_type(module)
        if label:
            found[label].append(module)
            owned.update(id(p) for p in module.parameters())
    extra = [name for name, p in model.named_parameters() if id(p) not in owned]
    return found, extra


class Exercise:
    """A contract exercise: the solution cell ``grade_id`` defines ``name``.

    Subclasses set the attributes and implement ``cases``, ``probe`` and ``judge``.
    """

    grade_id: str = ""
    name: str = ""
    assignment: str = ""
    notebook: str = ""
    test_ids: tuple[str, ...] = ()
    # Test cells whose hidden cases train a model: while grading, the out-of-kernel verifier trains the same way
    # and its verdict alone counts, so the in-kernel hidden check leaves them to it (``hidden_check``).
    verifier_only: tuple[str, ...] = ()
    # Names whose use means the code is not "from scratch" (None: no such rule).
    forbidden_names: tuple[str, ...] | None = None
    forbidden_reason: str = ""
    # aten operators the verifier's harness refuses while the solution cell runs (they record the call and
    # raise). None: torch's fused recurrent operators when ``forbidden_names`` is set, none otherwise.
    trapped_ops: tuple[str, ...] | None = None
    # Extra names the solution cell may rely on from earlier cells of the notebook,
    # supplied by the harness (e.g. imports of the setup cell).
    preamble: str = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"

    def cases(self, seed: int) -> list[Case]:
        raise NotImplementedError

    def probe(self, obj: Any, case: Case) -> Any:
        raise NotImplementedError

    def judge(self, case: Case, observed: Any) -> str | None:
        raise NotImplementedError

    def scratch_violation_in_source(self, source: str) -> str | None:
        """Static check of the solution cell's source for torch's fused cells."""
        if not self.forbidden_names:
            return None
        nodes = definition_nodes(source)
        if nodes is None:
            return None
        used = set()
        for node in nodes:
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.alias):
                used.update(node.name.split("."))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                used.add(node.value)  # getattr(torch, "lstm_cell") and the like
        return self._violation(used)

    def scratch_violation_in_object(self, obj: Any) -> str | None:
        """The same check on a live object (in-kernel): names used by its code and its bases."""
        if not self.forbidden_names:
            return None
        return self._violation(names_used(obj))

    def _violation(self, used: set[str]) -> str | None:
        return scratch_problem(self.name, used, self.forbidden_names or (), self.forbidden_reason)


def definition_nodes(source: str) -> list[ast.AST] | None:
    """Every AST node inside the cell's top-level function and class definitions (None: not Python).

    Only the definitions count: a module-level statement that patches torch is tampering (flagged elsewhere), not a
    use of torch's cell by the answer. Calls that reach a refused function through a module-level alias are caught
    by the harness's traps."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    definitions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return [n for d in definitions for n in ast.walk(d)]


def _collect_names(obj: Any, used: set[str]) -> None:
    used.update(names_used(obj))


def run_cases(exercise: Exercise, obj: Any, cases: list[Case],
              call_probe: Callable | None = None) -> dict[str, str | None]:
    """Probe and judge every case in-process; returns {test_id: first failure message or None}."""
    results: dict[str, str | None] = {tid: None for tid in exercise.test_ids}
    for case in cases:
        if results.get(case.test_id):
            continue
        try:
            observed = (call_probe or exercise.probe)(obj, case)
        except ProbeError as exc:
            results[case.test_id] = f"{exercise.name} {exc}"
            continue
        except NotImplementedError:
            results[case.test_id] = f"{exercise.name} is not implemented yet."
            continue
        except Exception as exc:  # noqa: BLE001 - any crash of student code is a finding
            results[case.test_id] = f"{exercise.name} raised {type(exc).__name__}: {exc}"
            continue
        results[case.test_id] = exercise.judge(case, observed)
    return results
