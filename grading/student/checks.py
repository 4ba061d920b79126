"""Checks with teaching messages, shared by every visible test.

Each check raises :class:`CheckFailed` (an ``AssertionError``) whose message names the
variable, what was expected, what was found and the likely fix. Checks run in the
order type -> dtype -> shape -> values -> gradients, so the first message a student
reads is about the most basic mistake.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch


class CheckFailed(AssertionError):
    """A check failed; the message says what is wrong and how to fix it."""


@contextlib.contextmanager
def quiet():
    """Silence warnings: nbgrader scores a test cell 0 when anything reaches stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


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
    raise CheckFailed(_join(msg, hint))


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


def _join(message: str, hint: str) -> str:
    return f"{message} {hint}".strip()
