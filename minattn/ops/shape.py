"""Ops that move elements without changing them: views, reshapes, joins and splits, device, dtype.

Their backward passes move the gradient back the same way: reshape it back, transpose by
the inverse permutation, sum the copies an expand or a repeat made, scatter it into the
positions a slice took.

The views (transpose, permute, view, reshape where it can, squeeze, unsqueeze, narrow, split,
chunk, unbind, expand) return NumPy views of their input, as PyTorch's share memory: a write
into a view in place reaches the tensor it was taken from. Ops whose PyTorch version copies
(flip, repeat, cat, stack, contiguous of a strided tensor) copy here too.
"""

from __future__ import annotations

import numbers

from .. import backend
from ..core import Function, Tensor, _as_tensors, check_shape
from .arithmetic import unbroadcast
from .reduce import dim_arg, normalize_dim


class DimError(IndexError, ValueError):
    """A dim out of range. PyTorch raises IndexError; minattn's first ops said ValueError, so
    this error is both and ``except IndexError`` (PyTorch code) and ``except ValueError`` work."""


class ShapeError(RuntimeError, ValueError):
    """A shape that does not fit (reshape, view): RuntimeError in PyTorch, ValueError in
    minattn's first ops; this error is both."""


def _dim(dim, ndim: int, op: str) -> int:
    """normalize_dim, raising DimError (an IndexError, as PyTorch) for a dim out of range."""
    try:
        return normalize_dim(dim, ndim, op)
    except TypeError:
        raise
    except ValueError as exc:
        raise DimError(str(exc)) from None


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _shape_args(shape) -> tuple:
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
        else tuple(shape)


# -- views: the same elements, looked at in another shape or order ------------------------------


class Reshape(Function):
    saves_inputs = False  # backward needs only the input's shape
    op = "reshape"  # the name errors say: reshape, view, flatten, ...

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)  # a view whenever the strides allow one
        except ValueError:
            raise ShapeError(f"{self.op}: cannot view shape {x.shape} ({x.size} elements) as "
                             f"{self.shape}") from None

    def backward(self, dout):
        # out = x viewed as another shape  =>  dx = dout viewed as x's shape
        return dout.reshape(self.in_shape)


class Transpose(Function):
    saves_inputs = False  # backward needs only the permutation

    def forward(self, x):
        self.axes = tuple(reversed(range(x.ndim))) if self.axes is None else self.axes
        return x.transpose(self.axes)  # axes: a permutation, checked by the callers

    def backward(self, dout):
        # out = x with axes permuted by p  =>  dx = dout permuted by the inverse of p
        n = dout.ndim
        inverse = tuple(sorted(range(n), key=lambda i: self.axes[i] % n))  # on the host
        return dout.transpose(inverse)


class Expand(Function):
    saves_inputs = False

    def forward(self, x):
        self.in_shape = x.shape
        return backend.get_array_module(x).broadcast_to(x, self.shape)  # a read-only view

    def backward(self, dout):
        # out[..., i, ...] = x[..., 0, ...] along every stretched (or new leading) axis
        #   =>  dx = dout summed over the stretched axes, and over the new leading ones
        return unbroadcast(dout, self.in_shape)


class Narrow(Function):
    saves_inputs = False

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        self.index = (slice(None),) * self.dim + (slice(self.start, self.start + self.length),)
        return x[self.index]  # a view: a basic slice

    def backward(self, dout):
        # out = x[start:start + length] along dim  =>  dx = zeros like x, dout in that slice
        xp = backend.get_array_module(dout)
        dx = xp.zeros(self.in_shape, dtype=self.dtype)
        dx[self.index] = dout
        return dx


class Contiguous(Function):
    saves_inputs = False

    def forward(self, x):
        return backend.get_array_module(x).ascontiguousarray(x)  # a C-ordered copy

    def backward(self, dout):
        # out = x (the same values, laid out row by row)  =>  dx = dout
        return dout


# -- copies: new elements made from the old ------------------------------------------------------


class Flip(Function):
    saves_inputs = False

    def forward(self, x):
        # NumPy's flip is a view; PyTorch's is a copy, so a write into it never reaches x
        return backend.get_array_module(x).flip(x, axis=self.dims).copy()

    def backward(self, dout):
        # out[i] = x[n - 1 - i] along each flipped dim  =>  dx = dout flipped back
        return backend.get_array_module(dout).flip(dout, axis=self.dims)


class Repeat(Function):
    saves_inputs = False

    def forward(self, x):
        self.in_shape = x.shape
        return backend.get_array_module(x).tile(x, self.sizes)  # (r0 * n0, r1 * n1, ...)

    def backward(self, dout):
        # out[k * n + i] = x[i] along each dim (k = 0 .. r - 1, the tile)
        #   =>  dx[i] = sum_k dout[k * n + i]: view dout as (r0, n0, r1, n1, ...), sum the r's
        padded = (1,) * (len(self.sizes) - len(self.in_shape)) + tuple(self.in_shape)
        tiles = [n for r_n in zip(self.sizes, padded) for n in r_n]
        dx = dout.reshape(tiles).sum(axis=tuple(range(0, len(tiles), 2)))  # padded shape
        return dx.reshape(self.in_shape)


class RepeatInterleave(Function):
    saves_inputs = False

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        return backend.get_array_module(x).repeat(x, self.repeats, axis=self.dim)

    def backward(self, dout):
        # out[j] = x[source[j]] along dim, source = [0] * r0 + [1] * r1 + ...
        #   =>  dx[i] = sum of dout[j] over the j with source[j] = i
        xp = backend.get_array_module(dout)
        n = self.in_shape[self.dim]
        source = xp.repeat(xp.arange(n), self.repeats)  # (sum r,)
        dx = xp.zeros(self.in_shape, dtype=self.dtype)
        backend.scatter_add(xp.moveaxis(dx, self.dim, 0), source, xp.moveaxis(dout, self.dim, 0))
        return dx


class Cat(Function):
    saves_inputs = False  # backward needs only each input's length along dim

    def forward(self, *arrays):
        xp = backend.get_array_module(*arrays)
        self.lengths = [a.shape[self.dim] for a in arrays]
        return xp.concatenate([a.astype(self.dtype, copy=False) for a in arrays], axis=self.dim)

    def backward(self, dout):
        # out = [x_0, x_1, ...] joined along dim  =>  dx_i = the slice of dout where x_i went
        grads, start = [], 0
        for n in self.lengths:
            grads.append(dout[(slice(None),) * self.dim + (slice(start, start + n),)])
            start += n
        return tuple(grads)


class Stack(Function):
    saves_inputs = False

    def forward(self, *arrays):
        xp = backend.get_array_module(*arrays)
        self.count = len(arrays)
        return xp.stack([a.astype(self.dtype, copy=False) for a in arrays], axis=self.dim)

    def backward(self, dout):
        # out[..., i, ...] = x_i (a new axis at dim)  =>  dx_i = dout[..., i, ...]
        return tuple(dout[(slice(None),) * self.dim + (i,)] for i in range(self.count))


# -- indexing, device, dtype ---------------------------------------------------------------------


class GetItem(Function):
    saves_inputs = False  # backward needs the input's shape and dtype, not its values

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
    saves_inputs = False

    def forward(self, x):
        self.source = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, dout):
        # out = x copied to another device  =>  dx = dout copied back
        return backend.to_device(dout, self.source)


class AsType(Function):
    saves_inputs = False

    def forward(self, x):
        self.source = x.dtype
        return x.astype(self.dtype)

    def backward(self, dout):
        # out = x in another dtype  =>  dx = dout in x's dtype
        return dout.astype(self.source)


def _is_basic(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, slice)) or p is None or p is Ellipsis for p in parts)


# -- the functions users call: reshapes ------------------------------------------------------------


def reshape(x, *shape) -> Tensor:
    """The same elements in a new shape: ``x.reshape(2, -1)`` or ``x.reshape((2, -1))``.
    A view of x's memory when the strides allow it, else a copy (as PyTorch)."""
    return Reshape.apply(x, shape=check_shape(_shape_args(shape), "reshape", infer=True))


def view(x, *shape) -> Tensor:
    """``x.view(B, L, H, D)``: reshape, one size may be -1. A view of x's memory when NumPy can
    make one (PyTorch would refuse a non-contiguous case that minattn copies instead)."""
    shape = check_shape(_shape_args(shape), "view", infer=True)
    return Reshape.apply(x, shape=shape, op="view")


def view_as(x, other) -> Tensor:
    """``x.view(other.size())``."""
    return view(x, *other.shape)


def reshape_as(x, other) -> Tensor:
    """``x.reshape(other.size())``."""
    return reshape(x, *other.shape)


def unsqueeze(x, dim=None, *, axis=None) -> Tensor:
    """A new axis of size 1 at ``dim`` (in [-ndim - 1, ndim]): (2, 3).unsqueeze(1) is (2, 1, 3)."""
    dim = dim_arg(dim, axis, "unsqueeze")
    if dim is None:
        raise TypeError("unsqueeze() missing its argument dim")
    d = _dim(dim, x.ndim + 1, "unsqueeze")
    return Reshape.apply(x, shape=x.shape[:d] + (1,) + x.shape[d:], op="unsqueeze")


def squeeze(x, dim=None, *, axis=None) -> Tensor:
    """Drop axes of size 1: all of them, or those named by ``dim`` (an int or a tuple); a named
    axis whose size is not 1 stays, as in PyTorch."""
    dim = dim_arg(dim, axis, "squeeze")
    if dim is None:
        dims = set(range(x.ndim))
    else:
        dims = {_dim(d, x.ndim, "squeeze") for d in (dim if isinstance(dim, (tuple, list))
                                                     else (dim,))}
    shape = tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1))
    return Reshape.apply(x, shape=shape, op="squeeze")


def flatten(x, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge the axes start_dim..end_dim (both included) into one: ``(B, H, L, D).flatten(2)``
    is ``(B, H, L * D)``. A 0-d tensor becomes shape (1,)."""
    if x.ndim == 0:
        return Reshape.apply(x, shape=(1,), op="flatten")
    s, e = _dim(start_dim, x.ndim, "flatten"), _dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise RuntimeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for a "
                           f"tensor of shape {x.shape}")
    if s == e:
        return x  # nothing to merge: PyTorch returns the input itself
    shape = x.shape[:s] + (_prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
    return Reshape.apply(x, shape=shape, op="flatten")


def unflatten(x, dim: int, sizes) -> Tensor:
    """Split axis ``dim`` into ``sizes`` (one may be -1): ``(B, L, E).unflatten(-1, (H, D))``."""
    sizes = check_shape(tuple(sizes), "unflatten", infer=True)
    if not sizes:
        raise RuntimeError("unflatten: sizes must be non-empty")
    if sizes.count(-1) > 1:
        raise RuntimeError(f"unflatten: only one of sizes {sizes} can be -1")
    d = _dim(dim, x.ndim, "unflatten")
    n = x.shape[d] if x.ndim else 1
    known = _prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if known == 0 or n % known:
            raise RuntimeError(f"unflatten: sizes {sizes} cannot fill dim {dim} of size {n} "
                               f"(shape {x.shape})")
        sizes = tuple(n // known if s == -1 else s for s in sizes)
    elif known != n:
        raise RuntimeError(f"unflatten: sizes {sizes} don't multiply up to the size of dim {dim} "
                           f"({n}) of a tensor of shape {x.shape}")
    return Reshape.apply(x, shape=x.shape[:d] + sizes + x.shape[d + 1:], op="unflatten")


def contiguous(x) -> Tensor:
    """x itself when its memory is already row by row (C order), else a C-ordered copy."""
    if x.data.flags.c_contiguous:
        return x
    return Contiguous.apply(x)


# -- axes: transpose, permute, t, mT ---------------------------------------------------------------


def transpose(x, *dims) -> Tensor:
    """PyTorch's meaning first: ``x.transpose(d0, d1)`` swaps two axes (``k.transpose(-2, -1)``).

    With no dims, all axes reversed (NumPy's ``.T``); with any other count, a full permutation
    (NumPy's ``x.transpose(2, 0, 1)``). A view of x's memory.
    """
    dims = _shape_args(dims)
    if not dims:
        return Transpose.apply(x, axes=None)
    if len(dims) == 2:
        return _swap(x, *dims, op="transpose")
    perm = tuple(_dim(d, x.ndim, "transpose") for d in dims)
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"transpose: dims {dims} are not a permutation of the {x.ndim} axes "
                         f"of shape {x.shape} (two dims swap two axes, as in PyTorch)")
    return Transpose.apply(x, axes=perm)


def _swap(x, dim0: int, dim1: int, op: str) -> Tensor:
    a, b = (_dim(d, x.ndim, op) for d in (dim0, dim1))
    axes = list(range(x.ndim))
    if axes:
        axes[a], axes[b] = axes[b], axes[a]
    return Transpose.apply(x, axes=tuple(axes))


def swapaxes(x, axis1: int, axis2: int) -> Tensor:
    """Exchange two axes, e.g. ``k.swapaxes(-2, -1)`` (also ``transpose`` and ``swapdims``).

    A 0-d tensor has one axis to name, 0 or -1, as in PyTorch: swapping it with itself is a no-op.
    """
    return _swap(x, axis1, axis2, "swapaxes")


def swapdims(x, dim0: int, dim1: int) -> Tensor:
    """PyTorch's other name for swapaxes."""
    return _swap(x, dim0, dim1, "swapdims")


def permute(x, *dims) -> Tensor:
    """Reorder all axes: ``x.permute(0, 2, 1, 3)`` or ``x.permute((0, 2, 1, 3))``; a view."""
    dims = _shape_args(dims)
    if len(dims) != x.ndim:
        raise RuntimeError(f"permute: dims {dims} name {len(dims)} axes but the tensor of shape "
                           f"{x.shape} has {x.ndim}")
    perm = tuple(_dim(d, x.ndim, "permute") for d in dims)
    if len(set(perm)) != len(perm):
        raise RuntimeError(f"permute: dims {dims} name an axis twice (duplicate dims are not "
                           "allowed)")
    return Transpose.apply(x, axes=perm)


def t(x) -> Tensor:
    """The transpose of a matrix; a 0-d or 1-D tensor as it is (a view), as ``torch.t``."""
    if x.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but the tensor of shape "
                           f"{x.shape} is {x.ndim}-D; use transpose(d0, d1) or mT")
    return Transpose.apply(x, axes=None)


def _mT(x) -> Tensor:
    if x.ndim < 2:
        raise RuntimeError(f"tensor.mT is only supported on matrices or batches of matrices; got "
                           f"a {x.ndim}-D tensor of shape {x.shape}")
    return _swap(x, -2, -1, "mT")


# -- stretching and copying: expand, repeat, repeat_interleave, flip ---------------------------


def expand(x, *sizes) -> Tensor:
    """Stretch size-1 axes (and add leading ones) without copying: ``(3, 1).expand(2, 3, 4)``;
    -1 keeps an axis. A read-only view; its backward sums over the stretched axes."""
    sizes = check_shape(_shape_args(sizes), "expand", infer=True)
    if len(sizes) < x.ndim:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater "
                           f"or equal to the number of dimensions of the tensor of shape {x.shape}")
    lead = len(sizes) - x.ndim
    shape = []
    for i, n in enumerate(sizes):
        if i < lead:
            if n == -1:
                raise RuntimeError(f"expand: the size -1 isn't allowed in a leading, new "
                                   f"dimension {i} (sizes {sizes})")
            shape.append(n)
            continue
        old = x.shape[i - lead]
        if n == -1:
            n = old
        elif old != 1 and n != old:
            raise RuntimeError(f"expand: the expanded size ({n}) must match the existing size "
                               f"({old}) at non-singleton dimension {i}; target sizes {sizes}, "
                               f"tensor shape {x.shape}")
        shape.append(n)
    return Expand.apply(x, shape=tuple(shape))


def expand_as(x, other) -> Tensor:
    """``x.expand(other.size())``."""
    return expand(x, *other.shape)


def repeat(x, *sizes) -> Tensor:
    """Tile x: ``(2, 3).repeat(2, 1, 2) -> (2, 2, 6)``, the whole tensor repeated along each axis
    (NumPy's ``tile``; for NumPy's ``repeat`` see ``repeat_interleave``). A copy."""
    sizes = check_shape(_shape_args(sizes), "repeat")
    if len(sizes) < x.ndim:
        raise RuntimeError(f"repeat: the number of repeat sizes ({len(sizes)}) can not be smaller "
                           f"than the number of dimensions of the tensor of shape {x.shape}")
    return Repeat.apply(x, sizes=sizes)


def repeat_interleave(x, repeats=None, dim=None, *, axis=None, output_size=None) -> Tensor:
    """Repeat each element (along ``dim``, else of the flattened tensor) ``repeats`` times: an int
    or a 1-D int tensor, one count per element. ``[1, 2].repeat_interleave(2) -> [1, 1, 2, 2]``.

    ``ma.repeat_interleave(counts)`` alone gives ``[0] * counts[0] + [1] * counts[1] + ...``.
    """
    dim = dim_arg(dim, axis, "repeat_interleave")
    if repeats is None:  # torch.repeat_interleave(repeats): the indices, repeated
        counts = x if isinstance(x, Tensor) else Tensor(backend.as_array(x))
        xp = backend.get_array_module(counts.data)
        return repeat_interleave(Tensor(xp.arange(counts.numel())), counts)
    if dim is None:
        x, dim = reshape(x, -1), 0
    d = _dim(dim, x.ndim, "repeat_interleave")
    n = x.shape[d] if x.ndim else 1
    if isinstance(repeats, numbers.Integral) and not isinstance(repeats, bool):
        counts = int(repeats)
        if counts < 0:
            raise RuntimeError(f"repeat_interleave: repeats must be non-negative, got {counts}")
    else:
        counts = repeats.data if isinstance(repeats, Tensor) else repeats
        counts = backend.as_array(counts, device=x.device)
        if counts.dtype.kind not in "iu":
            raise TypeError(f"repeat_interleave: repeats must be an int or an integer tensor, "
                            f"got {counts.dtype}")
        if counts.ndim > 1:
            raise RuntimeError(f"repeat_interleave: repeats must be a 0-d or 1-D tensor, got "
                               f"shape {tuple(counts.shape)}")
        if counts.ndim == 0 or counts.shape[0] == 1:
            counts = counts.reshape(-1)[:1].repeat(n)  # one count for every element
        if counts.shape[0] != n:
            raise RuntimeError(f"repeat_interleave: repeats must have the same size as the input "
                               f"along dim {dim}: got {counts.shape[0]} repeats for size {n} "
                               f"(shape {x.shape})")
        if bool((counts < 0).any()):
            raise RuntimeError("repeat_interleave: repeats must be non-negative")
        counts = backend.to_numpy(counts).tolist()  # host ints: what NumPy and CuPy's repeat take
    if x.ndim == 0:
        x = reshape(x, 1)
    out = RepeatInterleave.apply(x, repeats=counts, dim=d)
    if output_size is not None and output_size != out.shape[d]:
        raise RuntimeError(f"repeat_interleave: output_size={output_size} but the repeats give "
                           f"{out.shape[d]}")
    return out


def flip(x, *dims) -> Tensor:
    """Reverse along each of ``dims``: ``x.flip(0)``, ``x.flip(0, 1)``, ``x.flip((0, 1))``; a copy,
    as PyTorch's (NumPy's flip is a view)."""
    if not dims or dims == (None,):
        raise TypeError("flip() needs its dims, e.g. x.flip(0) or x.flip((0, 1))")
    dims = _shape_args(dims)
    axes = tuple(_dim(d, x.ndim, "flip") for d in dims)
    if len(set(axes)) != len(axes):
        raise RuntimeError(f"flip: dims {dims} name an axis more than once")
    return Flip.apply(x, dims=axes if x.ndim else ())


# -- slices: narrow, split, chunk, unbind --------------------------------------------------------


def _at_least_1d(x, op: str) -> None:
    if x.ndim == 0:
        raise RuntimeError(f"{op}() cannot be applied to a 0-d tensor")


def _index(value, op: str, name: str) -> int:
    value = value.item() if isinstance(value, Tensor) else value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def narrow(x, dim: int, start: int, length: int) -> Tensor:
    """``x.narrow(dim, start, length)`` is x's slice start:start + length along dim; a view."""
    _at_least_1d(x, "narrow")
    d = _dim(dim, x.ndim, "narrow")
    start, length, n = _index(start, "narrow", "start"), _index(length, "narrow", "length"), \
        x.shape[d]
    if not -n <= start <= n:
        raise IndexError(f"narrow: start {start} is out of range for dim {dim} of size {n}: "
                         f"expected an int in [{-n}, {n}]")
    start %= n or 1
    if length < 0:
        raise RuntimeError(f"narrow: length must be non-negative, got {length}")
    if start + length > n:
        raise RuntimeError(f"narrow: start ({start}) + length ({length}) exceeds the size {n} "
                           f"of dim {dim} (shape {x.shape})")
    return Narrow.apply(x, dim=d, start=start, length=length)


def split(x, split_size_or_sections, dim=None, *, axis=None) -> tuple:
    """Cut x along dim into pieces of split_size (the last one shorter), or of the listed sizes:
    ``x.split(2)``, ``x.split([1, 3], dim=1)``. A tuple of views."""
    dim = dim_arg(dim, axis, "split")
    _at_least_1d(x, "split")
    d = _dim(0 if dim is None else dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, (numbers.Integral, Tensor)):
        size = _index(split_size_or_sections, "split", "split_size")
        if size < 0:
            raise RuntimeError(f"split: split_size must be non-negative, got {size}")
        if size == 0 and n > 0:
            raise RuntimeError(f"split: split_size can only be 0 if the dimension size is 0, "
                               f"but dim {d} has size {n}")
        if size == 0:
            sizes = [0]  # an empty dim cut into empty pieces: one piece, as PyTorch
        else:
            sizes = [size] * (n // size) + ([n % size] if n % size else []) or [0]
    else:
        sizes = [_index(s, "split", "a split size") for s in split_size_or_sections]
        if any(s < 0 for s in sizes) or sum(sizes) != n:
            raise RuntimeError(f"split: sizes {sizes} must be non-negative and sum exactly to "
                               f"{n}, the size of dim {d} of the tensor of shape {x.shape}")
    pieces, start = [], 0
    for s in sizes:
        pieces.append(Narrow.apply(x, dim=d, start=start, length=s))
        start += s
    return tuple(pieces)


def chunk(x, chunks: int, dim=None, *, axis=None) -> tuple:
    """Cut x along dim into ``chunks`` pieces of ceil(n / chunks) each (fewer pieces when they run
    out, the last one shorter), as ``torch.chunk``. A tuple of views."""
    dim = dim_arg(dim, axis, "chunk")
    chunks = _index(chunks, "chunk", "chunks")
    if chunks <= 0:
        raise RuntimeError(f"chunk expects chunks to be greater than 0, got {chunks}")
    _at_least_1d(x, "chunk")
    d = _dim(0 if dim is None else dim, x.ndim, "chunk")
    n = x.shape[d]
    if n == 0:  # PyTorch: `chunks` empty pieces
        return split(x, [0] * chunks, d)
    return split(x, -(-n // chunks), d)  # ceil(n / chunks)


def unbind(x, dim=None, *, axis=None) -> tuple:
    """The slices of x along dim, that dim removed: ``(3, 4).unbind(0)`` is three (4,) views."""
    dim = dim_arg(dim, axis, "unbind")
    _at_least_1d(x, "unbind")
    d = _dim(0 if dim is None else dim, x.ndim, "unbind")
    return tuple(GetItem.apply(x, index=(slice(None),) * d + (i,)) for i in range(x.shape[d]))


# -- joins: cat, stack ---------------------------------------------------------------------------


def _result_dtype(tensors):
    """PyTorch's promotion for cat and stack: the widest float if any input is a float
    (int64 + float32 -> float32), else the widest integer (bool + int32 -> int32)."""
    floats = [t.dtype for t in tensors if backend.is_float(t.dtype)]
    return backend.np.result_type(*(floats or [t.dtype for t in tensors]))


def _tensor_list(tensors, op: str) -> list:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}() takes a list or tuple of tensors, got "
                        f"{type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{op}() expects a non-empty list of tensors")
    return _as_tensors(list(tensors), op)


def cat(tensors, dim=None, *, axis=None) -> Tensor:
    """Join tensors along an existing dim: ``ma.cat([a, b], dim=1)``; the shapes must match in
    every other dim; mixed dtypes promote as in PyTorch (float32 + float64 -> float64)."""
    dim = dim_arg(dim, axis, "cat")
    tensors = _tensor_list(tensors, "cat")
    dtype = _result_dtype(tensors)
    # PyTorch's legacy rule: a 1-D empty tensor is skipped when the others have more dims
    others = [t for t in tensors if t.shape != (0,)]
    if others and any(t.ndim != 1 for t in others):
        tensors = others
    first = tensors[0]
    for i, t in enumerate(tensors):
        if t.ndim == 0:
            raise RuntimeError(f"cat: a 0-d tensor (at position {i}) cannot be concatenated; "
                               "use stack, or unsqueeze it first")
        if t.ndim != first.ndim:
            raise RuntimeError(f"cat: tensors must have the same number of dimensions: tensor 0 "
                               f"has shape {first.shape} and tensor {i} has shape {t.shape}")
    d = _dim(0 if dim is None else dim, first.ndim, "cat")
    for i, t in enumerate(tensors):
        if t.shape[:d] + t.shape[d + 1:] != first.shape[:d] + first.shape[d + 1:]:
            raise RuntimeError(f"cat: sizes of tensors must match except in dimension {d}: "
                               f"tensor 0 has shape {first.shape} and tensor {i} has shape "
                               f"{t.shape}")
    return Cat.apply(*tensors, dim=d, dtype=dtype)


def stack(tensors, dim=None, *, axis=None) -> Tensor:
    """Join equally shaped tensors along a new dim: ``ma.stack([a, b], dim=0)`` is (2, *a.shape)."""
    dim = dim_arg(dim, axis, "stack")
    tensors = _tensor_list(tensors, "stack")
    first = tensors[0]
    for i, t in enumerate(tensors):
        if t.shape != first.shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got shape "
                               f"{first.shape} at entry 0 and {t.shape} at entry {i}")
    d = _dim(0 if dim is None else dim, first.ndim + 1, "stack")
    return Stack.apply(*tensors, dim=d, dtype=_result_dtype(tensors))


concat = cat
concatenate = cat


# -- indexing, device, dtype ---------------------------------------------------------------------


def index_parts(x: Tensor, index):
    """An index as NumPy takes it: tensors as their arrays, lists as arrays, NumPy integer
    scalars as ints; an index array on another device than x is an error."""
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
    return parts if isinstance(index, tuple) else parts[0]


def getitem(x, index) -> Tensor:
    """``x[index]`` with NumPy indexing: ints, slices, None, Ellipsis, int or bool arrays."""
    return GetItem.apply(x, index=index_parts(x, index))


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


# torch.* has these as functions; the Tensor methods are below
__all__ = ["astype", "cat", "chunk", "concat", "concatenate", "flatten", "flip", "getitem",
           "narrow", "permute", "repeat_interleave", "reshape", "split", "squeeze", "stack",
           "swapaxes", "swapdims", "t", "to", "transpose", "unbind", "unflatten", "unsqueeze"]
TENSOR_METHODS = {name: globals()[name] for name in (
    "astype", "chunk", "contiguous", "expand", "expand_as", "flatten", "flip", "narrow",
    "permute", "repeat", "repeat_interleave", "reshape", "reshape_as", "split", "squeeze",
    "swapaxes", "swapdims", "t", "to", "transpose", "unbind", "unflatten", "unsqueeze", "view",
    "view_as")}
TENSOR_METHODS["mT"] = property(_mT, doc="The last two axes swapped (a batch of matrices "
                                         "transposed), as ``torch.Tensor.mT``; a view.")
