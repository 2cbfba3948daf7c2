"""Large elementwise NumPy operations, split across the CPU's cores, and the thread pool.

NumPy runs a ufunc on one core. ``run(op, *arrays)`` cuts the output of a large operation
(a million entries or more) into one slab per thread along a leading axis, and runs ``op``
on each slab in its own thread (NumPy releases the GIL inside a ufunc's loop). Each entry
is computed by the same loop as before, so the result is the same, bit for bit; on two
cores a pass over a (8, 2048, 2048) array measured 1.8-2x faster. Anything else (CuPy
arrays, small arrays, mixed or non-float dtypes) goes straight to ``op``. ``reduce`` does
the same for sums and maxima over some axes, and ``dot_last`` for each row's dot product of
two arrays (the gradient of a row-broadcast factor, and the softmax backward's row sum).

The ops reach these through ``ThreadedNumPy`` (below), the array module that
``kernels.array_module`` hands them for NumPy arrays: ``xp.add(a, b)`` in an op is
``run(np.add, a, b)`` here. The thread pool is shared with the row kernels of rows.py and
numba_rows.py. ``MINATTN_NUM_THREADS`` sets the pool's size (default: the CPUs this process
may run on); 1 turns the splitting off.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import threading

from .. import backend

MIN_PARALLEL = 2**20  # entries: below this a thread hand-off costs more than it saves
THREAD_PREFIX = "minattn-worker"

_pool_lock = threading.Lock()
_pool_state: dict = {}


def num_threads() -> int:
    """MINATTN_NUM_THREADS, else the number of CPUs this process may use."""
    wanted = os.environ.get("MINATTN_NUM_THREADS")
    if wanted:
        try:
            return max(1, int(wanted))
        except ValueError:
            raise ValueError(f"MINATTN_NUM_THREADS={wanted!r}: expected a whole number") from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """A pool of that many threads, made again after a fork (a forked child has no threads)."""
    with _pool_lock:
        key = (os.getpid(), threads)
        if _pool_state.get("key") != key:
            _pool_state.update(key=key, pool=concurrent.futures.ThreadPoolExecutor(
                threads, thread_name_prefix=THREAD_PREFIX))
        return _pool_state["pool"]


def each(fn, items, threads: int) -> None:
    """fn(item) for every item, the items dealt out in runs to that many threads.

    Called from one of the pool's own threads it runs them in turn instead: a pool thread
    that waited for its own pool could wait forever.
    """
    items = list(items)
    threads = min(threads, len(items))
    if threads <= 1 or threading.current_thread().name.startswith(THREAD_PREFIX):
        for item in items:
            fn(item)
        return
    per = -(-len(items) // threads)  # each thread takes a run of neighbouring items
    err = backend.np.geterr()  # NumPy's error handling is per thread: take the caller's

    def work(t):
        with backend.np.errstate(**err):
            for item in items[t * per:(t + 1) * per]:
                fn(item)

    for future in [pool(threads).submit(work, t) for t in range(threads)]:
        future.result()  # re-raises an error from a thread here


def run(op, *arrays):
    """op(*arrays) for an xp ufunc op, broadcasting as NumPy; split across threads when large.

    >>> e = run(np.exp, scores)            # the same as np.exp(scores)
    >>> p = run(np.divide, e, row_sums)    # (..., L, S) / (..., L, 1)
    """
    if max(getattr(a, "size", 0) for a in arrays) < MIN_PARALLEL:  # the common case: small
        return op(*arrays)
    threads = num_threads()
    if threads < 2 or not all(backend.is_numpy_array(a) for a in arrays):
        return op(*arrays)
    dtype = arrays[0].dtype
    if dtype.kind != "f" or any(a.dtype != dtype for a in arrays):
        return op(*arrays)
    shape = backend.np.broadcast_shapes(*(a.shape for a in arrays))
    if math.prod(shape) < MIN_PARALLEL:
        return op(*arrays)
    # a leading axis to cut along (the longest); a 1-D array is cut along its only axis
    axis = max(range(len(shape) - 1), key=lambda i: shape[i]) if len(shape) > 1 else 0
    n = shape[axis]
    if n < threads:
        return op(*arrays)
    out = backend.np.empty(shape, dtype)
    step = -(-n // threads)

    def slab(t):
        cut = slice(t * step, (t + 1) * step)
        parts = [_cut(a, axis, cut, len(shape)) for a in arrays]
        op(*parts, out=out[(slice(None),) * axis + (cut,)])

    each(slab, range(threads), threads)
    return out


def _cut(a, axis: int, cut: slice, ndim: int):
    """a's part of the output slab: a itself where a is broadcast along that axis."""
    own = axis - (ndim - a.ndim)  # the same axis, counted in a's own dimensions
    if own < 0 or a.shape[own] == 1:
        return a
    return a[(slice(None),) * own + (cut,)]


def reduce(method: str, x, axis: tuple, keepdims: bool = False):
    """x.<method>(axis=axis, keepdims=keepdims) for "sum" or "max", split across threads along
    an axis that is not reduced, when x is a large float NumPy array.

    >>> row_sums = reduce("sum", scores, (3,), keepdims=True)   # scores.sum(-1, keepdims=True)
    """
    if x.size < MIN_PARALLEL or not backend.is_numpy_array(x) or x.dtype.kind != "f":
        return getattr(x, method)(axis=axis, keepdims=keepdims)
    axis = tuple(a % x.ndim for a in axis)  # -1 is the last axis, which is not kept
    threads = num_threads()
    kept = [i for i in range(x.ndim) if i not in axis]
    if threads < 2 or not kept:
        return getattr(x, method)(axis=axis, keepdims=keepdims)
    split = max(kept, key=lambda i: x.shape[i])  # the longest axis that stays
    n = x.shape[split]
    if n < threads:
        return getattr(x, method)(axis=axis, keepdims=keepdims)
    shape = tuple(1 if i in axis else s for i, s in enumerate(x.shape))
    out = backend.np.empty(shape if keepdims else tuple(x.shape[i] for i in kept), x.dtype)
    at = split if keepdims else kept.index(split)  # the split axis, counted in out
    step = -(-n // threads)

    def slab(t):
        cut = slice(t * step, (t + 1) * step)
        part = x[(slice(None),) * split + (cut,)]
        getattr(part, method)(axis=axis, keepdims=keepdims, out=out[(slice(None),) * at + (cut,)])

    each(slab, range(threads), threads)
    return out


def dot_last(a, b):
    """(a * b).sum(axis=-1, keepdims=True) for a and b of one shape: where they share a float
    dtype, without the (..., C) product, split across threads along a leading axis when large.

    >>> d = dot_last(dout, probs)   # (..., L, 1): each row's dot product

    (``einsum`` runs its loop with the GIL released, so its slabs run side by side;
    ``vecdot`` measured no faster on two threads than on one.)
    """
    if (a.shape != b.shape or a.dtype != b.dtype or a.dtype.kind != "f" or a.ndim == 0
            or not (backend.is_numpy_array(a) and backend.is_numpy_array(b))):
        # (CuPy too takes the plain form, the one checked on a GPU)
        return (a * b).sum(axis=-1, keepdims=True)
    np = backend.np
    # (the size first: inside the row blocks of rows.py this function must cost next to nothing)
    if a.size < MIN_PARALLEL or a.ndim < 2 or num_threads() < 2:
        return np.einsum("...i,...i->...", a, b)[..., None]  # (..., 1)
    threads = num_threads()
    out = np.empty(a.shape[:-1] + (1,), a.dtype)  # (..., 1)
    split = max(range(a.ndim - 1), key=lambda i: a.shape[i])  # the longest leading axis
    step = -(-a.shape[split] // threads)

    def slab(t):
        cut = (slice(None),) * split + (slice(t * step, (t + 1) * step),)
        np.einsum("...i,...i->...", a[cut], b[cut], out=out[cut][..., 0])

    each(slab, range(threads), threads)
    return out


class ThreadedNumPy:
    """NumPy, with large elementwise ops and reductions split across threads (same results,
    bit for bit); every other name is NumPy's own.

    >>> xp = ThreadedNumPy()
    >>> xp.add(a, b)                      # run(np.add, a, b)
    >>> xp.sum(x, axis=-1, keepdims=True)  # reduce("sum", x, (-1,), keepdims=True)
    """

    def __getattr__(self, name):
        return getattr(backend.np, name)

    def __repr__(self) -> str:
        return "<NumPy on threads (minattn.kernels)>"

    def add(self, a, b):
        return run(backend.np.add, a, b)

    def subtract(self, a, b):
        return run(backend.np.subtract, a, b)

    def multiply(self, a, b):
        return run(backend.np.multiply, a, b)

    def divide(self, a, b):
        return run(backend.np.divide, a, b)

    def negative(self, x):
        return run(backend.np.negative, x)

    def exp(self, x):
        return run(backend.np.exp, x)

    def sum(self, x, axis=None, keepdims: bool = False):
        return self._reduce("sum", x, axis, keepdims)

    def max(self, x, axis=None, keepdims: bool = False):
        return self._reduce("max", x, axis, keepdims)

    def einsum(self, subscripts: str, *operands, **options):
        """np.einsum; each row's dot product ("...i,...i->...") split across threads."""
        if subscripts == "...i,...i->..." and len(operands) == 2 and not options:
            return dot_last(*operands)[..., 0]
        return backend.np.einsum(subscripts, *operands, **options)

    @staticmethod
    def _reduce(method: str, x, axis, keepdims: bool):
        if axis is None:
            return getattr(x, method)(keepdims=keepdims)
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        return reduce(method, x, axes, keepdims)
