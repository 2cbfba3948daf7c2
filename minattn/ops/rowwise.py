"""Softmax over the last axis, forward and backward, fast on the CPU and the GPU.

The two formulas (derived in softmax.py and docs/derivations)::

    y = softmax(x) = exp(x - max x) / sum(exp(x - max x))       row by row
    dx = y * (dy - rowsum(dy * y))

``softmax_last`` and ``softmax_last_backward`` compute them for the Softmax op and for fused
attention, in one of four ways that give the same numbers (tests/test_rowwise.py and, for
the CUDA kernels, tests/test_kernels.py hold them equal):

- ``"reference"``: the formulas above in whole-array xp operations (``_softmax_rows`` and
  ``_softmax_rows_backward``). Any device; what small arrays always use.
- ``"numpy"``: the same functions applied to blocks of rows small enough to stay in the
  CPU cache (about 512 KiB each), on the threads of minattn/parallel.py (NumPy releases the
  GIL in its loops). Whole-array passes over a (L, S) array run from main memory, one pass per
  operation; a block is read from memory once and then worked on in cache.
- ``"numba"``: the compiled row kernels of attention/numba_kernels.py, one pass per row on
  every core. The default on the CPU when numba is installed.
- ``"cuda"``: for CuPy arrays, the CUDA row kernels of attention/cupy_kernels.py, one
  thread block per row: one read of the row from GPU memory and one write, where the
  reference makes five passes over the whole array.

``MINATTN_ROW_KERNELS`` (numba, numpy or reference) forces one of them where it applies,
for debugging or for measuring one against another; unset, the fastest available is used.

Rows with no finite maximum follow PyTorch: a row holding NaN or +inf gives NaN, and a row
of all -inf gives NaN (there is no softmax of it: 0/0) unless ``empty_rows="zero"``, which
attention uses so that a fully masked query gets zeros.
"""

from __future__ import annotations

import os

from .. import backend, parallel

MIN_FAST = 2**16  # elements: below this the whole-array reference is as fast
BLOCK = 2**17  # elements per block of rows in the "numpy" way (512 KiB in float32)
KINDS = ("numba", "numpy", "reference")


def _kind(x) -> str:
    """Which way computes this array: MINATTN_ROW_KERNELS if it applies, else the fastest."""
    wanted = os.environ.get("MINATTN_ROW_KERNELS", "").lower()
    if wanted and wanted not in KINDS:
        raise ValueError(f"MINATTN_ROW_KERNELS={wanted!r}: expected one of {KINDS}")
    if backend.is_cupy_array(x):  # the CUDA row kernels, unless the reference is asked for
        usable = x.dtype.kind == "f" and x.ndim >= 1 and x.flags.c_contiguous
        return "cuda" if usable and wanted != "reference" else "reference"
    if not (backend.is_numpy_array(x) and x.size >= MIN_FAST and x.ndim >= 1
            and x.shape[-1] > 0 and x.flags.c_contiguous):
        return "reference"
    if wanted in ("numpy", "reference"):
        return wanted
    if x.dtype.kind == "f" and x.dtype.itemsize in (4, 8):
        from ..attention import numba_kernels

        if numba_kernels.available():
            return "numba"
    return "numpy"


# -- the reference: whole-array operations, any device --------------------------------------


def _softmax_rows(x, out, empty_rows: str):
    """out = softmax(x) over the last axis (out may be x itself).

    Rows of NaN or +inf give NaN on purpose: the caller silences NumPy's "invalid" warning.
    """
    xp = backend.get_array_module(x)
    m = x.max(axis=-1, keepdims=True)  # (..., 1); NaN if the row holds a NaN
    if empty_rows == "zero":  # a row of all -inf: shift by a finite m, so exp(-inf) = 0
        xp.maximum(m, xp.finfo(m.dtype).min, out=m)  # (NaN stays NaN)
    xp.subtract(x, m, out=out)  # (..., C), every entry <= 0: exp cannot overflow
    xp.exp(out, out=out)
    total = out.sum(axis=-1, keepdims=True)  # (..., 1), >= 1 unless the row was empty
    if empty_rows == "zero":  # an empty row sums to 0: 0 / tiny = 0, and total >= 1 stays
        xp.maximum(total, xp.finfo(total.dtype).tiny, out=total)
    out /= total
    return out


def _softmax_rows_backward(y, dy, out):
    """out = y * (dy - rowsum(dy * y)) over the last axis (out may be dy itself)."""
    # y = softmax(x): dy_i/dx_k = y_i (delta_ik - y_k)  =>  dx_k = y_k (dy_k - sum_i dy_i y_i)
    xp = backend.get_array_module(y)
    d = parallel.dot_last(dy, y)  # (..., 1): rowsum(dy * y), without an (..., C) temporary
    xp.subtract(dy, d, out=out)
    out *= y
    return out


# -- blocks of rows on threads ------------------------------------------------------------------


def _over_blocks(fn, *arrays):
    """fn(*blocks) for blocks of rows of 2-D arrays (R, C) that cover them, on threads."""
    R, C = arrays[0].shape
    rows = max(1, BLOCK // C)
    parallel.each(lambda r0: fn(*(a[r0:r0 + rows] for a in arrays)), range(0, R, rows),
                  parallel.num_threads())


# -- the entry points ---------------------------------------------------------------------------


def softmax_last(x, out=None, empty_rows: str = "nan"):
    """softmax over the last axis of an array, into ``out`` (may be x) or a new array.

    >>> y = softmax_last(np.array([[1.0, 2.0, 3.0]]))
    """
    if empty_rows not in ("nan", "zero"):
        raise ValueError(f"empty_rows must be 'nan' or 'zero', got {empty_rows!r}")
    xp = backend.get_array_module(x)
    out = xp.empty_like(x) if out is None else out
    if x.size == 0:  # no rows, or rows of no entries: nothing to normalize
        return out
    kind = _kind(x) if out.flags.c_contiguous else "reference"
    if kind == "cuda":
        from ..attention import cupy_kernels

        return cupy_kernels.softmax_forward(x, out=out, empty_rows=empty_rows)
    with backend.np.errstate(invalid="ignore"):  # NaN rows are meant (the pool's threads
        if kind == "reference":  # take this setting too)
            return _softmax_rows(x, out, empty_rows)
        x2, out2 = x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1])  # contiguous views
        if kind == "numba":
            from ..attention import numba_kernels

            numba_kernels.softmax_forward(x2, out=out2, empty_rows=empty_rows)
        else:
            _over_blocks(lambda xb, ob: _softmax_rows(xb, ob, empty_rows), x2, out2)
    return out


def softmax_last_backward(y, dy, out=None):
    """dx = y * (dy - rowsum(dy * y)) over the last axis, into ``out`` (may be dy) or a new array.

    >>> dx = softmax_last_backward(y, dy)   # y = softmax_last(x)
    """
    if y.shape != dy.shape:
        raise ValueError(f"softmax backward: y {y.shape} and dy {dy.shape} must have one shape")
    xp = backend.get_array_module(y)
    out = xp.empty_like(dy) if out is None else out
    same = y.dtype == dy.dtype == out.dtype
    fast = same and dy.flags.c_contiguous and out.flags.c_contiguous
    kind = _kind(y) if fast else "reference"
    if kind == "cuda":
        from ..attention import cupy_kernels

        return cupy_kernels.softmax_backward(y, dy, out=out)
    if kind == "reference":
        return _softmax_rows_backward(y, dy, out)
    C = y.shape[-1]
    y2, dy2, out2 = y.reshape(-1, C), dy.reshape(-1, C), out.reshape(-1, C)
    if kind == "numba":
        from ..attention import numba_kernels

        numba_kernels.softmax_backward(y2, dy2, out=out2)
    else:
        _over_blocks(_softmax_rows_backward, y2, dy2, out2)
    return out
