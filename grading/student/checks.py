"""Checks with teaching messages, shared by every visible test.

Each check raises :class:`CheckFailed` (an ``AssertionError``) whose message names the
variable, what was expected, what was found and the likely fix. Checks run in the
order type -> dtype -> shape -> values -> gradients, so the first message a student
reads is about the most basic mistake.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import types
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

# Captured at import time: the setup cell imports the checks before any solution cell runs.
_LIBRARY = torch.library.Library
# The dispatcher key at which torch's composite operators (one_hot, rnn_tanh_cell...) are registered.
_TRAP_KEY = "CompositeImplicitAutograd"
# Dimension names in the order a message names a swapped pair ("you swapped seq_len and batch").
DIM_ORDER = ("seq_len", "batch", "input_size", "hidden_size", "num_layers", "len(indices)", "num_classes",
             "num_class", "embedding_size")


# Set only in the grader's own kernels: there the grader's out-of-kernel check trains the model again with its own
# seed and decides the grade, so a check need not train it a first time.
VERIFIER_DECIDES = "GRADING_VERIFIER_DECIDES"


def in_grading_kernel() -> bool:
    """True in the grader's own kernels, where the out-of-kernel check decides every grade."""
    return os.environ.get(VERIFIER_DECIDES) == "1"


def grader_trains(what: str) -> bool:
    """True while grading: the training checks leave ``what`` to the grader's out-of-kernel check, and say so.

    A student who sets the variable in their own kernel only skips their own check: grades never come from it."""
    if not in_grading_kernel():
        return False
    print(f"{what}: the grader trains it again out of the kernel, with its own seed, and that check decides this test.")
    return True


class CheckFailed(AssertionError):
    """A check failed; the message says what is wrong and how to fix it."""


class RefusedCall(RuntimeError):
    """Raised in place of a torch operator that an exercise asks you to write by hand."""


@contextlib.contextmanager
def quiet():
    """Silence warnings: nbgrader scores a test cell 0 when anything reaches stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def keeps_rng(check: Callable) -> Callable:
    """Run ``check`` without touching the kernel's random state: the notebook's later cells draw what they would
    have drawn without it (the check seeds what it needs itself)."""
    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            return check(*args, **kwargs)
    return wrapper


def call(fn: Callable, *args, name: str | None = None, **kwargs):
    """Call a student's function or class, turning the unanswered stub into a clear message."""
    label = name or getattr(fn, "__name__", "your code")
    try:
        with quiet():
            return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(f"{label} is not implemented yet: replace `raise NotImplementedError()`.") from None
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any crash becomes a message
        raise CheckFailed(f"{label} raised {type(exc).__name__}: {exc}") from None


def check_type(value: Any, expected: type | tuple[type, ...], name: str, hint: str = "") -> None:
    """Fail unless ``value`` is an instance of ``expected``."""
    if not isinstance(value, expected):
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise CheckFailed(_join(f"{name} should be a {names}, got {type(value).__name__}.", hint))


def check_dtype(tensor: torch.Tensor, expected: torch.dtype, name: str, hint: str = "") -> None:
    """Fail unless ``tensor.dtype == expected``."""
    if tensor.dtype != expected:
        raise CheckFailed(_join(f"{name} has dtype {tensor.dtype}, expected {expected}.", hint))


def check_shape(
    tensor: torch.Tensor,
    expected: Sequence[int],
    name: str,
    dims: Sequence[str] | None = None,
    hint: str = "",
) -> None:
    """Fail unless ``tensor.shape == expected``, naming the first dimension that differs.

    ``dims`` names the dimensions, e.g. ``("num_layers", "batch", "hidden")``.
    """
    actual = tuple(tensor.shape)
    expected = tuple(int(d) for d in expected)
    if actual == expected:
        return
    want = describe_shape(expected, dims)
    if len(actual) != len(expected):
        msg = f"{name} has {len(actual)} dimensions {actual}, expected {len(expected)}: {want}."
    else:
        i = next(k for k, (a, e) in enumerate(zip(actual, expected, strict=True)) if a != e)
        label = f" ({dims[i]})" if dims else ""
        msg = (f"{name} has shape {actual}, expected {want}: "
               f"dimension {i}{label} is {actual[i]}, should be {expected[i]}.")
        swap = swapped_dims(actual, expected, dims)
        if swap:
            msg += f" You swapped {swap}."
    raise CheckFailed(_join(msg, hint))


def swapped_dims(actual: Sequence[int], expected: Sequence[int], dims: Sequence[str] | None) -> str:
    """``"seq_len and batch"`` when ``actual`` is ``expected`` with two named dimensions exchanged, else ``""``."""
    actual, expected = tuple(actual), tuple(expected)
    if not dims or len(actual) != len(expected) or len(dims) != len(expected):
        return ""
    differ = [i for i, (a, e) in enumerate(zip(actual, expected, strict=True)) if a != e]
    if len(differ) != 2:
        return ""
    i, j = differ
    if actual[i] != expected[j] or actual[j] != expected[i]:
        return ""
    rank = {name: k for k, name in enumerate(DIM_ORDER)}
    first, second = sorted((dims[i], dims[j]), key=lambda n: rank.get(n, len(DIM_ORDER)))
    return f"{first} and {second}"


def shape_problem(name: str, actual: Sequence[int], expected: Sequence[int], dims: Sequence[str],
                  why: str = "") -> str:
    """``"h' has shape (4, 3), expected (batch=3, hidden_size=4): you swapped batch and hidden_size. <why>"``.

    The message the visible checks and the hidden tests share for a wrong shape.
    """
    actual, expected = tuple(int(d) for d in actual), tuple(int(d) for d in expected)
    swap = swapped_dims(actual, expected, dims)
    head = f"{name} has shape {actual}, expected {describe_shape(expected, dims)}"
    head += f": you swapped {swap}." if swap else "."
    return f"{head} {why}".strip()


def max_abs_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference between two tensors of the same shape (inf if NaNs differ)."""
    diff = (actual.detach().double() - expected.detach().double()).abs()
    if torch.isnan(diff).any():
        return math.inf
    return float(diff.max()) if diff.numel() else 0.0


def check_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    name: str,
    atol: float = 1e-6,
    hint: str = "",
) -> None:
    """Fail unless values agree within ``atol``; the message gives the worst index and the tolerance."""
    diff = max_abs_diff(actual, expected)
    if diff <= atol:
        return
    where = ""
    if math.isfinite(diff):
        flat = int((actual.detach().double() - expected.detach().double()).abs().argmax())
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), actual.shape))
        where = (f" at index {index} (yours {actual.flatten()[flat].item():.6g}, "
                 f"expected {expected.flatten()[flat].item():.6g})")
    raise CheckFailed(_join(f"{name} is wrong: max difference {diff:.3g}{where}; it should be below {atol:g}.", hint))


def compare_table(rows: dict[str, tuple[torch.Tensor, torch.Tensor]], atol: float = 1e-6) -> str:
    """One line per named pair: ``exact``, ``close`` (within atol) or ``WRONG``, with the max difference."""
    width = max(len(k) for k in rows) if rows else 0
    lines = []
    for key, (actual, expected) in rows.items():
        if tuple(actual.shape) != tuple(expected.shape):
            lines.append(f"{key:<{width}}  WRONG  shape {tuple(actual.shape)} vs {tuple(expected.shape)}")
            continue
        diff = max_abs_diff(actual, expected)
        verdict = "exact" if diff == 0 else "close" if diff <= atol else "WRONG"
        lines.append(f"{key:<{width}}  {verdict:<5}  max diff {diff:.2e}")
    return "\n".join(lines)


def describe_shape(shape: tuple[int, ...], dims: Sequence[str] | None) -> str:
    """``(seq_len=5, batch=3)`` when the dimensions are named, else ``(5, 3)``."""
    if not dims:
        return str(shape)
    return "(" + ", ".join(f"{n}={d}" for n, d in zip(dims, shape, strict=False)) + ")"


# --------------------------------------------------------------------------- from scratch


def names_used(obj: Any) -> set[str]:
    """Global and attribute names (and string constants) a function's code uses, nested functions included.

    For a class: the names of its bases and those used by every function defined in its body.
    """
    used: set[str] = set()
    if isinstance(obj, type):
        used.update(base.__name__ for base in obj.__mro__[1:])
        for member in vars(obj).values():
            _code_names(getattr(member, "__func__", member), used)
    else:
        _code_names(obj, used)
    return used


def _code_names(obj: Any, used: set[str]) -> None:
    code = getattr(obj, "__code__", None)
    if not isinstance(code, types.CodeType):
        return
    stack = [code]
    while stack:
        co = stack.pop()
        used.update(co.co_names)
        used.update(c for c in co.co_consts if isinstance(c, str))
        stack.extend(c for c in co.co_consts if isinstance(c, types.CodeType))


def scratch_problem(name: str, used: set[str], forbidden: Sequence[str], reason: str) -> str | None:
    """``"<name> uses torch.rnn_tanh_cell: <reason>"`` when ``used`` holds a forbidden name, else None."""
    hits = sorted(set(forbidden) & set(used))
    return f"{name} uses {', '.join(hits)}: {reason}" if hits else None


def refused_call_problem(name: str, calls: Sequence[str], reason: str) -> str | None:
    """``"<name> calls torch.nn.functional.one_hot: <reason>"`` when a refused operator was called, else None."""
    labels = sorted(set(calls))
    return f"{name} calls {', '.join(labels)}: {reason}" if labels else None


@contextlib.contextmanager
def refused_ops(labels: Mapping[str, str], key: str = _TRAP_KEY) -> Iterator[list[str]]:
    """While active, the aten operators named in ``labels`` (operator -> name shown in messages) refuse to run.

    ``key``: the dispatch key their kernels are registered at (``"CPU"`` for kernels such as ``tanh_backward``,
    which every backward pass through tanh runs).

    Every route to an operator (``F.one_hot``, ``getattr``, ``torch._C``, ``torch.ops.aten``, a saved reference)
    ends in torch's dispatcher, where the refusal is registered; each refused call appends its label to the
    list this yields and raises :class:`RefusedCall`. The operators are restored on exit.
    """
    calls: list[str] = []
    library = _LIBRARY("aten", "IMPL")

    def refuse(label: str) -> Callable:
        def refused(*args, **kwargs):
            calls.append(label)
            raise RefusedCall(f"{label} is not available while this exercise is checked")
        return refused

    try:
        with quiet():  # torch warns (once) that a registered kernel is overridden
            for op, label in labels.items():
                library.impl(op, refuse(label), key)
        yield calls
    finally:
        library._destroy()


def call_by_hand(fn: Callable, *args, name: str, ops: Mapping[str, str], reason: str,
                 error_hint: Callable[[BaseException], str] | None = None, label: str | None = None,
                 **kwargs) -> Any:
    """Call a student's function with the operators ``ops`` refused (see :func:`refused_ops`).

    A refused call, whether or not the function caught the refusal, fails with ``reason``; the stub and any
    other exception become messages (``label`` names the call in them, ``name`` by default), with
    ``error_hint(exc)`` appended.
    """
    error: Exception | None = None
    result = None
    with refused_ops(ops) as calls:
        try:
            with quiet():
                result = fn(*args, **kwargs)
        except NotImplementedError:
            raise CheckFailed(f"{name} is not implemented yet: replace `raise NotImplementedError()`.") from None
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any crash becomes a message
            error = exc
    refused = refused_call_problem(name, calls, reason)
    if refused:
        raise CheckFailed(refused)
    if error is not None:
        hint = error_hint(error) if error_hint else ""
        text = f"{label or name} raised {type(error).__name__}: {error}"
        if hint and not text.endswith((".", "!", "?")):
            text += "."
        raise CheckFailed(_join(text, hint))
    return result


def _join(message: str, hint: str) -> str:
    return f"{message} {hint}".strip()
