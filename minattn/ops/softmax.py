"""Softmax and log-softmax over any axis: fused ops with hand-written backward passes,
each beside a composed twin built from primitive ops (exp, sum, divide) that autograd
differentiates; the tests hold the two equal.

Both forwards subtract the row max first: softmax(x) = softmax(x - m) for any constant m,
and with m = max(x) every exponent is <= 0, so exp never overflows, even for logits of
1e4 in float16. Both backwards use the *output*, never the input:

    y = softmax(x)       dx = y * (dy - sum(dy * y))
    y = log_softmax(x)   dx = dy - exp(y) * sum(dy)

A row of all -inf has no softmax (every term is 0/0): it gives NaN, as in PyTorch;
attention asks for zeros instead (``empty_rows="zero"``), so fully masked queries give 0.

``softmax_rows`` and ``softmax_rows_backward`` below are the two formulas over the last axis,
in plain array code: what runs under ``ma.kernels.use("reference")``, and what the fast twins
in minattn/kernels/ (numba, NumPy in cache-sized blocks on threads, CUDA) are tested against.
``kernels.run(softmax_rows, x)`` takes the twin when there is one. Another axis is moved last
first; a 0-d tensor is a row of one entry, as in PyTorch.
"""

from __future__ import annotations

import numbers

from .. import backend, kernels
from ..core import Function, Tensor, _as_tensors, check_float
from .reduce import dim_arg, normalize_dim


# --8<-- [start:softmax_rows]
def softmax_rows(x, out=None, empty_rows: str = "nan"):
    """y = exp(x - max x) / sum(exp(x - max x)) over the last axis (into out if given).

    Rows that hold NaN or +inf give NaN; a row of all -inf gives NaN, or zeros when
    ``empty_rows="zero"``.
    """
    if empty_rows not in ("nan", "zero"):
        raise ValueError(f"empty_rows must be 'nan' or 'zero', got {empty_rows!r}")
    xp = backend.get_array_module(x)
    m = x.max(axis=-1, keepdims=True) if x.size else x[..., :1]  # (..., 1)
    if empty_rows == "zero":  # an all -inf row: shift by a finite m, so its exps are all 0
        m = xp.maximum(m, xp.finfo(x.dtype).min)  # (..., 1); NaN stays NaN
    with backend.np.errstate(invalid="ignore"):  # inf - inf = NaN in a +inf row is meant
        e = xp.exp(x - m)  # (..., C), every exponent <= 0: no overflow
    total = e.sum(axis=-1, keepdims=True)  # (..., 1), >= 1 unless the row is all -inf
    if empty_rows == "zero":
        total = xp.maximum(total, xp.finfo(x.dtype).tiny)  # 0 / tiny = 0 for an empty row
    with backend.np.errstate(invalid="ignore"):  # 0 / 0 = NaN for an all -inf row is meant
        y = e / total  # (..., C)
    if out is None:
        return y
    out[...] = y
    return out
# --8<-- [end:softmax_rows]


# --8<-- [start:softmax_rows_backward]
def softmax_rows_backward(y, dy, out=None):
    """dx = y * (dy - rowsum(dy * y)) over the last axis, y = softmax_rows(x) (into out)."""
    # y_i = e^{x_i} / sum_j e^{x_j}  =>  dy_i/dx_k = y_i (delta_ik - y_k),  J = diag(y) - y y^T
    # dx_k = sum_i dy_i y_i (delta_ik - y_k) = y_k (dy_k - sum_i dy_i y_i)
    if y.shape != dy.shape:
        raise ValueError(f"softmax backward: y {y.shape} and dy {dy.shape} must have one shape")
    dx = y * (dy - (dy * y).sum(axis=-1, keepdims=True))  # (..., C)
    if out is None:
        return dx
    out[...] = dx
    return out
# --8<-- [end:softmax_rows_backward]


def _check_axis(x, axis: int, op: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{op}: axis must be one int, got {axis!r}")
    axis = normalize_dim(axis, x.ndim, op)
    return axis if x.ndim else -1  # a 0-d x is reshaped to one row below


def _last(x, axis: int):
    """x with ``axis`` moved last, as a view (a 0-d x becomes shape (1,))."""
    xp = backend.get_array_module(x)
    return x.reshape(1) if x.ndim == 0 else xp.moveaxis(x, axis, -1)


def _back(y, axis: int, shape: tuple):
    """The inverse of _last."""
    xp = backend.get_array_module(y)
    return y.reshape(shape) if not shape else xp.moveaxis(y, -1, axis)


class Softmax(Function):
    """y = exp(x - max x) / sum(exp(x - max x)) along ``axis``."""

    saves_inputs, saves_output = False, True  # backward reads y, never x

    # --8<-- [start:softmax_op]
    def forward(self, x):
        self.axis = _check_axis(x, self.axis, "softmax")
        y = kernels.run(softmax_rows, _last(x, self.axis))  # the rows' softmax (fast twin if any)
        self.out = _back(y, self.axis, x.shape)
        return self.out  # saved for backward: dx needs y, not x

    def backward(self, dout):
        # y_i = e^{x_i} / sum_j e^{x_j}  =>  dy_i/dx_k = y_i (delta_ik - y_k),  J = diag(y) - y y^T
        # dx_k = sum_i dy_i y_i (delta_ik - y_k) = y_k (dy_k - sum_i dy_i y_i)
        # (softmax_rows_backward, along the last axis)
        y = self.out
        dx = kernels.run(softmax_rows_backward, _last(y, self.axis), _last(dout, self.axis))
        return _back(dx, self.axis, y.shape)
    # --8<-- [end:softmax_op]


class LogSoftmax(Function):
    """y = x - max x - log(sum(exp(x - max x))) along ``axis`` (log-sum-exp, stable)."""

    saves_inputs, saves_output = False, True  # backward reads y, never x

    # --8<-- [start:log_softmax_op]
    def forward(self, x):
        xp = backend.get_array_module(x)
        axis = self.axis = _check_axis(x, self.axis, "log_softmax")
        if x.ndim == 0 or x.size == 0:  # one entry: x - x = 0 (NaN for inf or NaN); none: empty
            self.out = x - x
            return self.out
        shifted = x - x.max(axis=axis, keepdims=True)  # <= 0, with a 0 in every row
        self.out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))  # sum >= 1
        return self.out  # saved for backward: exp(y) is the softmax

    def backward(self, dout):
        # y_i = x_i - log sum_j e^{x_j}  =>  dy_i/dx_k = delta_ik - softmax(x)_k = delta_ik - e^y_k
        # dx_k = sum_i dy_i (delta_ik - e^{y_k}) = dy_k - e^{y_k} sum_i dy_i
        xp = backend.get_array_module(dout)
        total = dout if dout.ndim == 0 else dout.sum(axis=self.axis, keepdims=True)
        return dout - xp.exp(self.out) * total
    # --8<-- [end:log_softmax_op]


def softmax(x, dim: int | None = None, *, axis: int | None = None) -> Tensor:
    """Softmax along ``dim`` (``axis``, NumPy's word, is an alias; default -1): entries in
    (0, 1] that sum to 1.

    >>> p = softmax(ma.tensor([[1.0, 2.0, 3.0]]))      # ma.functional.softmax, x.softmax()
    >>> p.sum(axis=-1).item()
    1.0
    """
    if not isinstance(x, Tensor):  # a list or array: what dtype it has decides the check below
        (x,) = _as_tensors([x], "softmax")
    check_float(x, "softmax")  # as PyTorch: no softmax of integers ("not implemented for 'Long'")
    return Softmax.apply(x, axis=_softmax_dim(dim, axis, "softmax"))


def log_softmax(x, dim: int | None = None, *, axis: int | None = None) -> Tensor:
    """log(softmax(x)) along ``axis``, computed as x - logsumexp(x) (no log of 0).

    >>> logp = log_softmax(ma.tensor([1e4, 0.0]))      # [0, -1e4]: finite, unlike log(softmax)
    """
    if not isinstance(x, Tensor):
        (x,) = _as_tensors([x], "log_softmax")
    check_float(x, "log_softmax")
    return LogSoftmax.apply(x, axis=_softmax_dim(dim, axis, "log_softmax"))


def _softmax_dim(dim, axis, op: str) -> int:
    """dim or axis; neither means the last axis (PyTorch warns and guesses; -1 is its guess
    for every tensor of 2 or more axes)."""
    dim = dim_arg(dim, axis, op)
    return -1 if dim is None else dim


# -- composed twins: the same functions from primitive ops; autograd derives the backward --


# --8<-- [start:softmax_composed]
def softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    """softmax from exp, sum and divide; the max is a constant shift, so it is detached."""
    shifted = x - x.max(axis=axis, keepdims=True).detach()  # softmax(x - m) = softmax(x)
    e = shifted.exp()
    return e / e.sum(axis=axis, keepdims=True)
# --8<-- [end:softmax_composed]


def log_softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    """log_softmax as (x - m) - log(sum(exp(x - m))) from primitive ops, m = max(x) detached."""
    shifted = x - x.max(axis=axis, keepdims=True).detach()
    return shifted - shifted.exp().sum(axis=axis, keepdims=True).log()


__all__ = ["log_softmax", "softmax"]
TENSOR_METHODS = {"softmax": softmax, "log_softmax": log_softmax}
