"""Reductions: sum, mean, max over an axis (or several, or all), with keepdims.

Their backward passes all put the reduced axes back (``expand``) and broadcast
dout over them: every input element that fed one output element gets its share.
"""

from __future__ import annotations

import numbers

from .. import backend, kernels
from ..core import Function, Tensor


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
    def forward(self, x):
        self.axes = normalize_axis(self.axis, x.ndim, "max")
        empty = [a for a in self.axes if x.shape[a] == 0]
        if empty:  # only a reduced axis of length 0 leaves nothing to take the max of
            raise ValueError(f"max over axis {empty[0]} of an empty tensor of shape {x.shape} "
                             "has no value")
        out = x.max(axis=self.axes, keepdims=True)
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


def max(x, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:  # noqa: A001
    """Largest value over ``dim``; tied maxima share the gradient equally."""
    return Max.apply(x, axis=dim_arg(dim, axis, "max"), keepdims=keepdim_arg(keepdim, keepdims))


__all__ = ["max", "mean", "sum"]
TENSOR_METHODS = {name: globals()[name] for name in __all__}
