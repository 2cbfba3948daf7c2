"""Ops that pick elements: masks, gathers, triangles, sorting and the arg-reductions.

Their backward passes send each output element's gradient back to the one input element it
was taken from (``scatter_add``, since an index may pick an element twice); an element that
was masked out or not picked gets zero.
"""

from __future__ import annotations

from collections import namedtuple

from .. import backend
from ..core import Function, Tensor, _as_tensors, constant_array, describe
from .reduce import dim_arg, normalize_dim

# What torch.topk, torch.sort, torch.max(x, dim) return: a pair with named fields.
topk_result = namedtuple("topk", ["values", "indices"])
sort_result = namedtuple("sort", ["values", "indices"])


def _index_array(index, x: Tensor, op: str):
    """An integer index tensor, array or list as an int64 array on x's device."""
    index = constant_array(index, x.device, op, "index", "input")
    if index.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must hold integers, got {index.dtype} with shape "
                        f"{tuple(index.shape)}")
    return index.astype(backend.get_array_module(index).int64, copy=False)


class MaskedFill(Function):
    saves_inputs = False  # backward needs only the mask

    def forward(self, x, value):
        xp = backend.get_array_module(x)
        return xp.where(self.mask, value.astype(x.dtype), x)  # (*x.shape)

    def backward(self, dout):
        # out = value where mask else x  =>  dx = dout where not mask (0 where filled),
        #                                    dvalue = sum of dout over the filled entries
        xp = backend.get_array_module(dout)
        dx = xp.where(self.mask, xp.zeros((), dout.dtype), dout)
        dvalue = xp.where(self.mask, dout, xp.zeros((), dout.dtype)).sum() \
            if self.needs_input_grad[1] else None
        return dx, dvalue


def masked_fill(x, mask, value) -> Tensor:
    """x with ``value`` where ``mask`` (boolean, broadcast to x's shape) is True, as
    ``torch.Tensor.masked_fill``: ``scores.masked_fill(causal == 0, float("-inf"))``."""
    (x,) = _as_tensors([x], "masked_fill")
    mask = constant_array(mask, x.device, "masked_fill", "mask", "input")
    if mask.dtype != bool:
        raise TypeError(f"masked_fill: mask must be boolean, got {mask.dtype} with shape "
                        f"{tuple(mask.shape)} (compare it first, e.g. mask == 0)")
    xp = backend.get_array_module(x.data)
    try:
        mask = xp.broadcast_to(mask, x.shape)
    except ValueError:
        raise RuntimeError(f"masked_fill: the mask's shape {tuple(mask.shape)} does not "
                           f"broadcast to the input's shape {x.shape}") from None
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"masked_fill: value must be a number or a 0-d tensor, got "
                               f"{describe(value)}")
    else:
        value = Tensor(xp.asarray(value, dtype=x.dtype))
    return MaskedFill.apply(x, value, mask=mask)


class Gather(Function):
    saves_inputs = False

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.in_shape, self.dtype = x.shape, x.dtype
        return xp.take_along_axis(x, self.index, axis=self.dim)

    def backward(self, dout):
        # out[i, j, k] = x[i, index[i, j, k], k] (dim = 1)
        #   =>  dx[i, index[i, j, k], k] += dout[i, j, k]  (added: an index may repeat)
        xp = backend.get_array_module(dout)
        dx = xp.zeros(self.in_shape, dtype=self.dtype)
        grid = list(xp.indices(self.index.shape, sparse=True))
        grid[self.dim] = self.index
        backend.scatter_add(dx, tuple(grid), dout)  # an index may pick one element twice
        return dx


def gather(x, dim: int, index) -> Tensor:
    """Values of x along ``dim`` at ``index`` (same rank as x), as ``torch.gather``."""
    (x,) = _as_tensors([x], "gather")
    dim = normalize_dim(dim, x.ndim, "gather")
    index = _index_array(index, x, "gather")
    if index.ndim != x.ndim:
        raise RuntimeError(f"gather: index has {index.ndim} dimension(s) but the input "
                           f"{x.shape} has {x.ndim}: they must have the same number")
    for d, (n_index, n_x) in enumerate(zip(index.shape, x.shape)):
        if d != dim and n_index > n_x:
            raise RuntimeError(f"gather: index {tuple(index.shape)} is larger than the input "
                               f"{x.shape} along dimension {d}")
    if index.size and bool(((index < 0) | (index >= x.shape[dim])).any()):
        raise IndexError(f"gather: index out of range for dimension {dim} of size "
                         f"{x.shape[dim]}")
    return Gather.apply(x[tuple(slice(0, n) if d != dim else slice(None)
                                for d, n in enumerate(index.shape))], dim=dim, index=index)


def index_select(x, dim: int, index) -> Tensor:
    """The slices of x along ``dim`` at a 1-D ``index``, as ``torch.index_select``."""
    (x,) = _as_tensors([x], "index_select")
    dim = normalize_dim(dim, x.ndim, "index_select")
    index = _index_array(index, x, "index_select")
    if index.ndim > 1:
        raise IndexError(f"index_select: index must be 1-D, got shape {tuple(index.shape)}")
    return x[(slice(None),) * dim + (index.reshape(-1),)]  # GetItem: scatter-adds dout back


class Triangle(Function):
    saves_inputs = False

    def forward(self, x):
        self.keep = _triangle_mask(x, self.diagonal, self.lower)  # (rows, cols) booleans
        return x * self.keep if x.dtype != bool else x & self.keep

    def backward(self, dout):
        # out = x where kept (i - j >= -diagonal for tril), else 0  =>  dx = dout where kept
        return dout * self.keep


def _triangle_mask(x, diagonal: int, lower: bool):
    xp = backend.get_array_module(x)
    rows, cols = x.shape[-2:]
    i, j = xp.arange(rows)[:, None], xp.arange(cols)[None, :]
    return (j - i <= diagonal) if lower else (j - i >= diagonal)


def _triangle(x, diagonal, lower: bool, op: str) -> Tensor:
    (x,) = _as_tensors([x], op)
    if x.ndim < 2:
        raise RuntimeError(f"{op}: input tensor must have at least 2 dimensions, got "
                           f"{describe(x)}")
    return Triangle.apply(x, diagonal=int(diagonal), lower=lower)


def tril(x, diagonal: int = 0) -> Tensor:
    """The lower triangle of the last two axes (j <= i + diagonal), the rest 0."""
    return _triangle(x, diagonal, True, "tril")


def triu(x, diagonal: int = 0) -> Tensor:
    """The upper triangle of the last two axes (j >= i + diagonal), the rest 0."""
    return _triangle(x, diagonal, False, "triu")


def _order(x: Tensor, dim: int, descending: bool):
    """Indices that sort x along dim, ties in their original order (a stable sort)."""
    xp = backend.get_array_module(x.data)
    data = x.data
    if descending:  # sorting -x ascending keeps ties in order, as a reversed sort would not
        data = -(data.astype(xp.int64) if data.dtype.kind in "bu" else data)
    return xp.argsort(data, axis=dim, kind="stable")


def sort(x, dim: int = -1, descending: bool = False, stable: bool = False):
    """(values, indices) sorted along ``dim``, as ``torch.sort`` (ties keep their order)."""
    (x,) = _as_tensors([x], "sort")
    dim = normalize_dim(dim, x.ndim, "sort")
    if x.ndim == 0:
        return sort_result(x * 1 if backend.is_float(x.dtype) else x, Tensor(
            backend.get_array_module(x.data).zeros((), dtype="int64")))
    order = _order(x, dim, descending)
    return sort_result(gather(x, dim, order), Tensor(order.astype("int64")))


def argsort(x, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """The indices that sort x along ``dim``."""
    return sort(x, dim, descending)[1]


def topk(x, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):  # noqa: A002
    """The k largest (or smallest) values along ``dim`` and their indices, as ``torch.topk``."""
    (x,) = _as_tensors([x], "topk")
    dim = normalize_dim(dim, x.ndim, "topk")
    n = x.shape[dim] if x.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError(f"topk: k ({k}) is out of range for dimension {dim} of size {n} "
                           f"(input {x.shape})")
    if x.ndim == 0:
        return topk_result(*sort(x))
    xp = backend.get_array_module(x.data)
    order = _order(x, dim, descending=largest)
    picked = xp.take(order, xp.arange(k), axis=dim)  # (..., k, ...)
    return topk_result(gather(x, dim, picked), Tensor(picked.astype("int64")))


def _arg(x, dim, keepdim: bool, op: str, axis=None) -> Tensor:
    (x,) = _as_tensors([x], op)
    dim = dim_arg(dim, axis, op)
    xp = backend.get_array_module(x.data)
    if x.numel() == 0:
        raise IndexError(f"{op}: cannot take the {op} of an empty tensor of shape {x.shape}")
    pick = xp.argmax if op == "argmax" else xp.argmin
    if dim is None:  # the index into the flattened tensor
        out = pick(x.data.reshape(-1))
        return Tensor(xp.asarray(out, dtype="int64").reshape((1,) * x.ndim if keepdim else ()))
    dim = normalize_dim(dim, x.ndim, op)
    data = x.data if x.ndim else x.data.reshape(1)
    return Tensor(xp.asarray(pick(data, axis=dim, keepdims=keepdim and x.ndim > 0),
                             dtype="int64"))


def argmax(x, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """The index of the largest value (the first one on ties), as ``torch.argmax``."""
    return _arg(x, dim, keepdim, "argmax", axis)


def argmin(x, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """The index of the smallest value (the first one on ties), as ``torch.argmin``."""
    return _arg(x, dim, keepdim, "argmin", axis)


__all__ = ["argmax", "argmin", "argsort", "gather", "index_select", "masked_fill", "sort",
           "topk", "tril", "triu"]
TENSOR_METHODS = {name: globals()[name] for name in __all__}
