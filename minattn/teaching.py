"""Small helpers the lessons in ``examples/`` share: every lesson checks itself.

Each check prints what it compared and the error it reached, and stops the lesson (an
AssertionError) when the error is above its tolerance, so a lesson that has gone wrong
cannot pass quietly, in a terminal, a notebook or the test suite.
"""

from __future__ import annotations

import numpy as np

from .core import Tensor


def check(what: str, error: float, tol: float) -> None:
    """Print the error reached against a reference; stop the lesson if it is too large."""
    ok = error <= tol  # False for NaN too
    print(f"[{'ok' if ok else 'OFF'}] {what}: error {error:.1e} (tolerance {tol:.2g})")
    if not ok:
        raise AssertionError(f"{what}: error {error:.3e} is above the tolerance {tol:.2g}")


def expect(what: str, condition: bool) -> None:
    """Print a claim the lesson makes; stop the lesson if it does not hold."""
    print(f"[{'ok' if condition else 'OFF'}] {what}")
    if not condition:
        raise AssertionError(f"expected: {what}")


def max_err(a, b) -> float:
    """Largest absolute difference between two tensors or arrays."""
    a = a.numpy() if isinstance(a, Tensor) else np.asarray(a)
    b = b.numpy() if isinstance(b, Tensor) else np.asarray(b)
    return float(np.max(np.abs(a - b)))


def show(matrix, rows, cols, title: str) -> None:
    """Print a matrix as a table labelled with words."""
    data = matrix.numpy() if isinstance(matrix, Tensor) else np.asarray(matrix)
    print(title)
    print(" " * 10 + "".join(f"{c:>10}" for c in cols))
    for label, row in zip(rows, data):
        print(f"{label:>10}" + "".join(f"{v:>10.3f}" for v in row))
