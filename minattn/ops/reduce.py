"""Reductions: sum, mean, max over an axis (or several, or all), with keepdims.

Their backward passes all put the reduced axes back (``expand``) and broadcast
dout over them: every input element that fed one output element gets its share.
"""

from __future__ import annotations

import numbers
from collections import namedtuple

from .. import backend, kernels
from ..core import Function, Tensor, _as_tensors, check_float


def normalize_dim(axis, ndim: int, op: str = "") -> int:
    """One axis as an index in [0, ndim): -1 is the last. A 0-d tensor takes 0 or -1, as in
    PyTorch (and gets 0). Anything else is an error naming the axis and the valid range."""
    prefix = f"{op}: " if op else ""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{prefix}an axis must be an int, got {type(axis).__name__} {axis!r}")
    n = ndim or 1
    if not -n <= axis < n:
        raise ValueError(f"{prefix}axis {axis} is out of range for a tensor with {ndim} "
                         f"dimension(s): expected an int in [{-n}, {n - 1}]")
    return int(axis) % n


def normalize_axis(axis, ndim: int, op: str = "") -> tuple:
    """axis=None -> all axes; negative axes -> positive; always a sorted tuple.

    A 0-d tensor takes axis 0 or -1, as in PyTorch, and has no axis to reduce: ().
    """
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    axes = tuple(normalize_dim(a, ndim, op) for a in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op + ': ' if op else ''}axis {axis} names an axis twice")
    return tuple(sorted(axes)) if ndim else ()


def dim_arg(dim, axis, op: str):
    """PyTorch's ``dim`` or its NumPy alias ``axis`` (one of the two, not both)."""
    if axis is None:
        return dim
    if dim is not None:
        raise TypeError(f"{op}: got dim={dim!r} and axis={axis!r}; they name one argument "
                        "(dim is PyTorch's spelling, axis NumPy's): pass one")
    return axis


def keepdim_arg(keepdim, keepdims) -> bool:
    """PyTorch's ``keepdim`` or its NumPy alias ``keepdims``."""
    return bool(keepdim if keepdims is None else keepdims)


def expand(dout, axes: tuple, keepdims: bool):
    """Reinsert the reduced axes as size 1, so dout broadcasts against the input."""
    if keepdims:
        return dout
    return backend.get_array_module(dout).expand_dims(dout, axes) if axes else dout


class Sum(Function):
    def forward(self, x):
        self.shape, self.axes = x.shape, normalize_axis(self.axis, x.ndim, "sum")
        return kernels.array_module(x).sum(x, axis=self.axes, keepdims=self.keepdims)

    def backward(self, dout):
        # out = sum_i x_i  =>  dx_i = dout  (copied to every summed position)
        xp = backend.get_array_module(dout)
        return xp.broadcast_to(expand(dout, self.axes, self.keepdims), self.shape)


class Mean(Function):
    def forward(self, x):
        self.shape, self.axes = x.shape, normalize_axis(self.axis, x.ndim, "mean")
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]
        return x.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, dout):
        # out = sum_i x_i / n  =>  dx_i = dout / n
        xp = backend.get_array_module(dout)
        return xp.broadcast_to(expand(dout, self.axes, self.keepdims) / self.count, self.shape)


class Max(Function):
    """out = max over axes (``lowest=True``: min); torch.amax / torch.amin."""

    saves_output = True  # out_kept: the output (a view of it without keepdims)

    def forward(self, x):
        self.axes = normalize_axis(self.axis, x.ndim, "max")
        empty = [a for a in self.axes if x.shape[a] == 0]
        if empty:  # only a reduced axis of length 0 leaves nothing to take the max of
            raise ValueError(f"max over axis {empty[0]} of an empty tensor of shape {x.shape} "
                             "has no value")
        out = (x.min if getattr(self, "lowest", False) else x.max)(axis=self.axes, keepdims=True)
        self.x, self.out_kept = x, out
        return out if self.keepdims else out.reshape(
            [n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, dout):
        # out = max_i x_i  =>  dx_i = dout where x_i is the max, else 0;
        # ties share dout equally (as torch.amax), so the gradient still sums to dout.
        is_max = self.x == self.out_kept
        ties = is_max.sum(axis=self.axes, keepdims=True)
        return is_max * (expand(dout, self.axes, self.keepdims) / ties)


def sum(x, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:  # noqa: A001
    """Sum over ``dim`` (an int, a tuple, or None for all), as ``torch.sum``; ``axis`` and
    ``keepdims`` are NumPy's spellings of ``dim`` and ``keepdim``."""
    return Sum.apply(x, axis=dim_arg(dim, axis, "sum"), keepdims=keepdim_arg(keepdim, keepdims))


def mean(x, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
    """Mean over ``dim`` (an int, a tuple, or None for all), as ``torch.mean``."""
    return Mean.apply(x, axis=dim_arg(dim, axis, "mean"), keepdims=keepdim_arg(keepdim, keepdims))


class Var(Function):
    """out = sum_i (x_i - mean)^2 / (n - correction) over axes."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.shape, self.axes = x.shape, normalize_axis(self.axis, x.ndim, "var")
        n = 1
        for a in self.axes:
            n *= x.shape[a]
        self.divisor = n - self.correction
        self.centered = x - x.mean(axis=self.axes, keepdims=True)  # (..., n) x - mean
        total = xp.sum(self.centered * self.centered, axis=self.axes, keepdims=self.keepdims)
        if self.divisor > 0:
            return total / self.divisor
        with xp.errstate(divide="ignore", invalid="ignore"):  # n <= correction: as PyTorch,
            return total / 0.0  # nan for 0 / 0 (one element), inf otherwise

    saves_inputs = False  # it keeps x - mean instead

    def backward(self, dout):
        # out = sum_i c_i^2 / D with c_i = x_i - mean, D = n - correction
        # dout/dx_k = (2 c_k - (2/n) sum_i c_i) / D = 2 c_k / D  (the c_i sum to zero)
        return expand(dout, self.axes, self.keepdims) * (2 * self.centered / self.divisor)


class LogSumExp(Function):
    """out = log sum_i exp(x_i) over axes, computed as m + log sum_i exp(x_i - m)."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.axes = normalize_axis(self.axis, x.ndim, "logsumexp")
        m = x.max(axis=self.axes, keepdims=True) if x.size else xp.zeros((1,) * x.ndim, x.dtype)
        m = xp.where(xp.isfinite(m), m, xp.zeros((), x.dtype))  # -inf rows: shift by 0
        kept = m + xp.log(xp.exp(x - m).sum(axis=self.axes, keepdims=True))
        self.x, self.out_kept = x, kept
        return kept if self.keepdims else kept.reshape(
            [n for i, n in enumerate(x.shape) if i not in self.axes])

    saves_output = True

    def backward(self, dout):
        # out = log sum_i e^{x_i}  =>  dx_k = dout * e^{x_k} / sum_i e^{x_i}
        #                                   = dout * exp(x_k - out)  (the softmax of x)
        xp = backend.get_array_module(dout)
        return expand(dout, self.axes, self.keepdims) * xp.exp(self.x - self.out_kept)


# What torch.max(x, dim) and torch.min(x, dim) return: the values and where they are.
max_result = namedtuple("max", ["values", "indices"])
min_result = namedtuple("min", ["values", "indices"])


def _extreme(x, dim, keepdim, axis, keepdims, lowest: bool):
    name = "min" if lowest else "max"
    if isinstance(dim, Tensor) or (dim is not None and not isinstance(dim, (int, tuple, list))):
        from .elementwise import maximum, minimum  # torch.max(a, b): the elementwise one
        return (minimum if lowest else maximum)(x, dim)
    if axis is not None or keepdims is not None or dim is None or isinstance(dim, (tuple, list)):
        # NumPy's spelling (axis=), no dim, or several dims: one tensor, ties share the gradient
        return Max.apply(x, axis=dim_arg(dim, axis, name),
                         keepdims=keepdim_arg(keepdim, keepdims), lowest=lowest)
    # torch.max(x, dim): (values, indices); the gradient goes to the returned index only
    from .select import argmax, argmin, gather
    if not isinstance(x, Tensor):
        (x,) = _as_tensors([x], name)
    if x.ndim and x.shape[normalize_dim(dim, x.ndim, name)] == 0:
        raise IndexError(f"{name}(): the dimension {dim} of the input {x.shape} is empty: "
                         "it has no value")
    indices = (argmin if lowest else argmax)(x, dim, keepdim=True)
    values = gather(x, dim, indices) if x.ndim else x * 1
    if not keepdim and x.ndim:
        values, indices = values.squeeze(dim), indices.squeeze(dim)
    return (min_result if lowest else max_result)(values, indices)


def max(x, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):  # noqa: A001
    """``max(x)``: the largest value (ties share the gradient equally); ``max(x, dim)``:
    PyTorch's (values, indices) along dim; ``max(a, b)``: elementwise ``maximum``;
    ``max(x, axis=...)``: NumPy's reduction, one tensor."""
    return _extreme(x, dim, keepdim, axis, keepdims, lowest=False)


def min(x, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):  # noqa: A001
    """As ``max``, for the smallest values."""
    return _extreme(x, dim, keepdim, axis, keepdims, lowest=True)


def amax(x, dim=(), keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
    """Largest value over ``dim`` (an int, tuple, or () for all); ties share the gradient."""
    dim = dim_arg(None if dim == () else dim, axis, "amax")
    return Max.apply(x, axis=dim, keepdims=keepdim_arg(keepdim, keepdims))


def amin(x, dim=(), keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
    """Smallest value over ``dim``; ties share the gradient."""
    dim = dim_arg(None if dim == () else dim, axis, "amin")
    return Max.apply(x, axis=dim, keepdims=keepdim_arg(keepdim, keepdims), lowest=True)


def _correction(unbiased, correction, op: str) -> float:
    if unbiased is not None and correction is not None:
        raise TypeError(f"{op}: give unbiased or correction, not both")
    if correction is not None:
        return float(correction)
    return 1.0 if unbiased is None or unbiased else 0.0


def var(x, dim=None, unbiased=None, keepdim: bool = False, *, correction=None, axis=None,
        keepdims=None) -> Tensor:
    """Variance over ``dim`` with PyTorch's default Bessel correction (divide by n - 1);
    ``unbiased=False`` or ``correction=0`` divides by n (NumPy's default)."""
    if isinstance(dim, bool):  # torch.var(x, False): the second positional is unbiased
        dim, unbiased = None, dim
    if not isinstance(x, Tensor):
        (x,) = _as_tensors([x], "var")
    check_float(x, "var")
    return Var.apply(x, axis=dim_arg(dim, axis, "var"), keepdims=keepdim_arg(keepdim, keepdims),
                     correction=_correction(unbiased, correction, "var"))


def std(x, dim=None, unbiased=None, keepdim: bool = False, *, correction=None, axis=None,
        keepdims=None) -> Tensor:
    """Standard deviation, sqrt(var), with PyTorch's default correction (n - 1)."""
    from .elementwise import sqrt
    return sqrt(var(x, dim, unbiased, keepdim, correction=correction, axis=axis,
                    keepdims=keepdims))


def logsumexp(x, dim, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) over ``dim``, without overflow (the max is subtracted first)."""
    if not isinstance(x, Tensor):
        (x,) = _as_tensors([x], "logsumexp")
    check_float(x, "logsumexp")
    return LogSumExp.apply(x, axis=dim, keepdims=keepdim)


__all__ = ["amax", "amin", "logsumexp", "max", "mean", "min", "std", "sum", "var"]
TENSOR_METHODS = {name: globals()[name] for name in __all__}
