"""Reductions: sum, mean, max over an axis (or several, or all), with keepdims.

Their backward passes all put the reduced axes back (``expand``) and broadcast
dout over them: every input element that fed one output element gets its share.
"""

from __future__ import annotations

from .. import backend, kernels
from ..core import Function, Tensor


def normalize_axis(axis, ndim: int) -> tuple:
    """axis=None -> all axes; negative axes -> positive; always a sorted tuple.

    A 0-d tensor takes axis 0 or -1, as in PyTorch, and has no axis to reduce: ().
    """
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -(ndim or 1) <= a < (ndim or 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimension(s)")
    return tuple(sorted(a % ndim for a in axes)) if ndim else ()


def expand(dout, axes: tuple, keepdims: bool):
    """Reinsert the reduced axes as size 1, so dout broadcasts against the input."""
    if keepdims:
        return dout
    return backend.get_array_module(dout).expand_dims(dout, axes) if axes else dout


class Sum(Function):
    def forward(self, x):
        self.shape, self.axes = x.shape, normalize_axis(self.axis, x.ndim)
        return kernels.array_module(x).sum(x, axis=self.axes, keepdims=self.keepdims)

    def backward(self, dout):
        # out = sum_i x_i  =>  dx_i = dout  (copied to every summed position)
        xp = backend.get_array_module(dout)
        return xp.broadcast_to(expand(dout, self.axes, self.keepdims), self.shape)


class Mean(Function):
    def forward(self, x):
        self.shape, self.axes = x.shape, normalize_axis(self.axis, x.ndim)
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
        self.axes = normalize_axis(self.axis, x.ndim)
        if x.size == 0:
            raise ValueError(f"max of an empty tensor of shape {x.shape} has no value")
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


def sum(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - NumPy's name
    """Sum over ``axis`` (an int, a tuple, or None for all), as ``numpy.sum``."""
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (an int, a tuple, or None for all), as ``numpy.mean``."""
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - NumPy's name
    """Largest value over ``axis``; tied maxima share the gradient equally."""
    return Max.apply(x, axis=axis, keepdims=keepdims)
