"""Ops that move elements without changing them: reshape, transpose, indexing, device, dtype.

Their backward passes move the gradient back the same way: reshape it back,
transpose by the inverse permutation, scatter it into the indexed positions.
"""

from __future__ import annotations

from .. import backend
from ..core import Function, Tensor, check_shape
from .reduce import normalize_dim


class Reshape(Function):
    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot view shape {x.shape} ({x.size} elements) as "
                             f"{self.shape}") from None

    def backward(self, dout):
        # out = x viewed as another shape  =>  dx = dout viewed as x's shape
        return dout.reshape(self.in_shape)


class Transpose(Function):
    def forward(self, x):
        self.axes = tuple(reversed(range(x.ndim))) if self.axes is None else self.axes
        return x.transpose(self.axes)  # axes: a permutation, checked by transpose()

    def backward(self, dout):
        # out = x with axes permuted by p  =>  dx = dout permuted by the inverse of p
        n = dout.ndim
        inverse = tuple(sorted(range(n), key=lambda i: self.axes[i] % n))  # on the host
        return dout.transpose(inverse)


class GetItem(Function):
    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        try:
            return x[self.index]
        except IndexError as exc:  # out of range, or not an index: say which tensor, too
            raise IndexError(f"indexing a tensor of shape {x.shape} with {self.index!r}: "
                             f"{exc}") from None

    def backward(self, dout):
        # out = x[index]  =>  dx = zeros like x, with dout added at index
        # (added, not assigned: an advanced index may pick the same element twice)
        xp = backend.get_array_module(dout)
        dx = xp.zeros(self.in_shape, dtype=self.dtype)
        if _is_basic(self.index):
            dx[self.index] = dout  # slices and ints never repeat an element
        else:
            backend.scatter_add(dx, self.index, dout)
        return dx


class ToDevice(Function):
    def forward(self, x):
        self.source = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, dout):
        # out = x copied to another device  =>  dx = dout copied back
        return backend.to_device(dout, self.source)


class AsType(Function):
    def forward(self, x):
        self.source = x.dtype
        return x.astype(self.dtype)

    def backward(self, dout):
        # out = x in another dtype  =>  dx = dout in x's dtype
        return dout.astype(self.source)


def _is_basic(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, slice)) or p is None or p is Ellipsis for p in parts)


def _shape_args(shape) -> tuple:
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
        else tuple(shape)


def reshape(x, *shape) -> Tensor:
    """The same elements in a new shape: ``x.reshape(2, -1)`` or ``x.reshape((2, -1))``."""
    return Reshape.apply(x, shape=check_shape(_shape_args(shape), "reshape", infer=True))


def transpose(x, *axes) -> Tensor:
    """Permute the axes (NumPy semantics); no axes reverses them, as ``.T`` does."""
    axes = _shape_args(axes)
    if not axes:
        return Transpose.apply(x, axes=None)
    perm = tuple(normalize_dim(a, x.ndim, "transpose") for a in axes)
    if sorted(perm) != list(range(x.ndim)):
        hint = " (to swap two axes as torch.transpose does, use swapaxes)" \
            if len(axes) == 2 else ""
        raise ValueError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes "
                         f"of shape {tuple(x.shape)}{hint}")
    return Transpose.apply(x, axes=perm)


def swapaxes(x, axis1: int, axis2: int) -> Tensor:
    """Exchange two axes, e.g. ``k.swapaxes(-2, -1)`` (what torch.transpose(k, -2, -1) does).

    A 0-d tensor has one axis to name, 0 or -1, as in PyTorch: swapping it with itself is a no-op.
    """
    a, b = (normalize_dim(axis, x.ndim, "swapaxes") for axis in (axis1, axis2))
    axes = list(range(x.ndim))
    if axes:
        axes[a], axes[b] = axes[b], axes[a]
    return Transpose.apply(x, axes=tuple(axes))


def getitem(x, index) -> Tensor:
    """``x[index]`` with NumPy indexing: ints, slices, None, Ellipsis, int or bool arrays."""
    parts = index if isinstance(index, tuple) else (index,)
    parts = tuple(p.data if isinstance(p, Tensor) else p for p in parts)
    # a NumPy scalar (np.int64(0)) is a plain index on any device, not a host array
    parts = tuple(p.item() if backend.is_number(p) and hasattr(p, "item") else p for p in parts)
    for p in parts:
        if hasattr(p, "__array__") and backend.device_of(p) != x.device:
            raise RuntimeError(f"indexing a {x.device} tensor with a {backend.device_of(p)} "
                               "index: move the index to the same device")
    if any(isinstance(p, list) for p in parts):
        xp = backend.get_array_module(x.data)
        parts = tuple(xp.asarray(p) if isinstance(p, list) else p for p in parts)
    return GetItem.apply(x, index=parts if isinstance(index, tuple) else parts[0])


def to(x, device=None, dtype=None) -> Tensor:
    """Move to a device and/or cast, as ``torch.Tensor.to``: ``t.to("cuda")``, ``t.to(ma.float64)``.

    Differentiable: the gradient flows back to the original device and dtype.
    """
    device, dtype = backend.split_to_args(device, dtype)  # t.to(ma.float64) works too
    out = x
    if device is not None and backend.check_device(device) != x.device:
        out = ToDevice.apply(out, device=backend.check_device(device))
    if dtype is not None:
        out = astype(out, dtype)
    return out


def astype(x, dtype) -> Tensor:
    """Cast to another dtype (differentiable; the gradient comes back in the old dtype)."""
    dtype = backend.resolve_dtype(dtype)
    return x if x.dtype == dtype else AsType.apply(x, dtype=dtype)


__all__ = ["astype", "getitem", "reshape", "swapaxes", "to", "transpose"]
TENSOR_METHODS = {name: globals()[name] for name in ("astype", "reshape", "swapaxes", "to",
                                                     "transpose")}
