"""Batched, broadcasting matrix product with NumPy's rules for 1-D operands."""

from __future__ import annotations

import math

from .. import backend
from ..core import Function, Tensor, _as_tensors
from .arithmetic import check_broadcast, unbroadcast


def _rows(x):
    """x (..., n) as one matrix (rows, n) of all its leading axes."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])  # (not -1: fails for empty x)


def _product(a, b):
    """a @ b; a stack of matrices times one matrix becomes one 2-D product (one BLAS call,
    where NumPy would loop over the stack, slowly when b is a transposed view)."""
    if a.ndim > 2 and b.ndim == 2:
        return (_rows(a) @ b).reshape(*a.shape[:-1], b.shape[-1])
    return a @ b


def _t(x):
    """x with its last two axes swapped (a view)."""
    return x.swapaxes(-1, -2)


def at_b(a, b):
    """a^T b over the last two axes: (..., n, k) and (..., n, m) -> (..., k, m).

    Computed as (b^T a)^T when a is the wider one, so that the smaller operand is the one
    transposed: CuPy copies a transposed operand of a batched product into a contiguous
    array first (at (L, S) = 4096^2 that would be the whole probability matrix), and NumPy
    measured faster that way too (docs/performance.md, "Transposed products").
    """
    return _t(_t(b) @ a) if a.shape[-1] > b.shape[-1] else _t(a) @ b


def a_bt(a, b):
    """a b^T over the last two axes: (..., n, m) and (..., k, m) -> (..., n, k); as
    (b a^T)^T when b is the taller one (see at_b)."""
    return _t(b @ _t(a)) if b.shape[-2] > a.shape[-2] else a @ _t(b)


class MatMul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return _product(a, b)

    def backward(self, dout):
        # out = a @ b, out_ij = sum_k a_ik b_kj  =>  da = dout @ b^T, db = a^T @ dout,
        # each summed over the batch axes that broadcasting stretched.
        # A 1-D a is a row (1, k) and a 1-D b a column (k, 1); put back the axis
        # that the product dropped so the 2-D formulas apply unchanged.
        xp = backend.get_array_module(dout)
        a = self.a[None, :] if self.a.ndim == 1 else self.a  # (..., n, k)
        b = self.b[:, None] if self.b.ndim == 1 else self.b  # (..., k, m)
        if self.b.ndim == 1:
            dout = xp.expand_dims(dout, -1)
        if self.a.ndim == 1:
            dout = xp.expand_dims(dout, -2)  # dout: (..., n, m)
        da = db = None
        stack = a.ndim > 2 and b.ndim == 2  # a stack of matrices times one matrix
        if self.needs_input_grad[0]:
            da = _product(dout, b.T) if stack else a_bt(dout, b)  # (..., n, k)
            da = unbroadcast(da, a.shape).reshape(self.a.shape)
        if self.needs_input_grad[1]:
            if stack:  # the sum over the stack is one 2-D product
                db = _rows(a).T @ _rows(dout)  # (k, m)
            else:
                db = unbroadcast(at_b(a, dout), b.shape)  # (..., k, m)
            db = db.reshape(self.b.shape)
        return da, db


def matmul(a, b) -> Tensor:
    """a @ b over the last two axes, broadcasting the others (``numpy.matmul`` rules)."""
    a, b = _as_tensors([a, b], "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes "
                         f"{a.shape} and {b.shape} (use * for scalars)")
    k_a, k_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match: the last "
                         f"axis of a ({k_a}) must equal the "
                         f"{'only' if b.ndim == 1 else 'second-to-last'} axis of b ({k_b})")
    if a.ndim > 2 and b.ndim > 2:
        check_broadcast("matmul (batch axes)", a.shape[:-2], b.shape[:-2])
    return MatMul.apply(a, b)


__all__ = ["matmul"]
