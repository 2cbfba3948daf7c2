"""The fast twins of the row softmax: which one computes an array, and the NumPy one.

The plain references are ``softmax_rows`` and ``softmax_rows_backward`` in ops/softmax.py::

    y = softmax(x) = exp(x - max x) / sum(exp(x - max x))       row by row (last axis)
    dx = y * (dy - rowsum(dy * y))

Their twins give the same numbers (tests/kernels/test_rows.py holds them equal):

- ``numba`` (numba_rows.py): one pass per row, rows shared out to every core. What the
  CPU runs when numba is installed, for float32 and float64 arrays.
- ``numpy`` (below): the same whole-array formulas, applied in place to blocks of rows
  small enough to stay in the CPU cache (about 512 KiB each), on the threads of threads.py
  (NumPy releases the GIL in its loops). Whole-array passes over a (L, S) array run from
  main memory, one pass per operation; a block is read from memory once and then worked
  on in cache. What the CPU runs without numba, or under ``kernels.use("numpy")``.
- ``cuda`` (cuda_rows.py): for CuPy arrays, one thread block per row.

Small arrays (below MIN_FAST entries) have no twin: the whole-array reference is as fast.
Rows with no finite maximum follow PyTorch everywhere: a row holding NaN or +inf gives NaN,
and a row of all -inf gives NaN unless ``empty_rows="zero"`` (attention's fully masked
queries), which gives zeros.
"""

from __future__ import annotations

from .. import backend
from . import threads

# Below this many entries the whole-array reference is as fast as any twin (at 2^16 the
# numba kernel and the reference measured within 10%; above it the twins pull away).
MIN_FAST = 2**16
BLOCK = 2**17  # entries per block of rows in the NumPy twin (512 KiB in float32)


def kind(x, out=None, mode: str = "fast") -> str:
    """Which twin computes the rows of x into out: "numba", "numpy", "cuda" or "reference"."""
    if mode == "reference" or x.ndim == 0 or x.size == 0 or x.dtype.kind != "f":
        return "reference"
    if not (x.flags.c_contiguous and (out is None or out.flags.c_contiguous)):
        return "reference"
    if backend.is_cupy_array(x):
        return "cuda"
    if not backend.is_numpy_array(x) or x.size < MIN_FAST or x.shape[-1] == 0:
        return "reference"
    if mode == "fast" and x.dtype.itemsize in (4, 8):
        from . import numba_math

        if numba_math.available():
            return "numba"
    return "numpy"


def forward_twin(mode: str, x, out=None, empty_rows: str = "nan"):
    """The twin of softmax_rows for x (None: the reference computes it)."""
    chosen = kind(x, out, mode)
    if chosen == "cuda":
        from . import cuda_rows

        return cuda_rows.softmax_forward
    if chosen == "numba":
        from . import numba_rows

        return _rows_2d(numba_rows.softmax_forward)
    return _rows_2d(softmax_blocks) if chosen == "numpy" else None


def backward_twin(mode: str, y, dy, out=None):
    """The twin of softmax_rows_backward for y, dy (None: the reference computes it)."""
    if y.shape != dy.shape or not (y.dtype == dy.dtype and (out is None or out.dtype == y.dtype)):
        return None
    chosen = kind(dy, out, mode) if y.flags.c_contiguous else "reference"
    if chosen == "cuda":
        from . import cuda_rows

        return cuda_rows.softmax_backward
    if chosen == "numba":
        from . import numba_rows

        return _rows_2d(numba_rows.softmax_backward)
    return _rows_2d(softmax_blocks_backward) if chosen == "numpy" else None


def _rows_2d(twin):
    """twin applied to the arrays viewed as (R, C) rows, with the result in out or a new array
    of the first array's shape (the row kernels see 2-D arrays)."""
    def rows(*arrays, out=None, **options):
        C = arrays[0].shape[-1]
        xp = backend.get_array_module(arrays[0])
        result = xp.empty_like(arrays[0]) if out is None else out
        with backend.np.errstate(invalid="ignore"):  # NaN rows are meant (the pool's threads
            twin(*(a.reshape(-1, C) for a in arrays), out=result.reshape(-1, C), **options)
        return result  # take this setting too)
    return rows


# -- the NumPy twin: the references' formulas, in place, on blocks of rows on threads ----------


def softmax_blocks(x, out, empty_rows: str = "nan"):
    """out = softmax(x) over the last axis of 2-D arrays (out may be x), block by block."""
    if empty_rows not in ("nan", "zero"):
        raise ValueError(f"empty_rows must be 'nan' or 'zero', got {empty_rows!r}")
    _over_blocks(lambda xb, ob: _softmax_block(xb, ob, empty_rows), x, out)
    return out


def softmax_blocks_backward(y, dy, out):
    """out = y * (dy - rowsum(dy * y)) over the last axis of 2-D arrays (out may be dy)."""
    _over_blocks(_softmax_block_backward, y, dy, out)
    return out


def _softmax_block(x, out, empty_rows: str):
    """out = softmax(x), in place where out is x: softmax_rows with no temporary arrays."""
    np = backend.np
    m = x.max(axis=-1, keepdims=True)  # (R, 1); NaN if the row holds a NaN
    if empty_rows == "zero":  # a row of all -inf: shift by a finite m, so exp(-inf) = 0
        np.maximum(m, np.finfo(m.dtype).min, out=m)  # (NaN stays NaN)
    np.subtract(x, m, out=out)  # (R, C), every entry <= 0: exp cannot overflow
    np.exp(out, out=out)
    total = out.sum(axis=-1, keepdims=True)  # (R, 1), >= 1 unless the row was empty
    if empty_rows == "zero":  # an empty row sums to 0: 0 / tiny = 0, and total >= 1 stays
        np.maximum(total, np.finfo(total.dtype).tiny, out=total)
    out /= total


def _softmax_block_backward(y, dy, out):
    """out = y * (dy - rowsum(dy * y)) in place where out is dy (softmax_rows_backward)."""
    # y = softmax(x): dy_i/dx_k = y_i (delta_ik - y_k)  =>  dx_k = y_k (dy_k - sum_i dy_i y_i)
    np = backend.np
    d = np.einsum("ri,ri->r", dy, y)[:, None]  # (R, 1): rowsum(dy * y), no (R, C) temporary
    np.subtract(dy, d, out=out)
    out *= y


def _over_blocks(fn, *arrays):
    """fn(*blocks) for blocks of rows of 2-D arrays (R, C) that cover them, on threads."""
    R, C = arrays[0].shape
    rows = max(1, BLOCK // max(C, 1))
    threads.each(lambda r0: fn(*(a[r0:r0 + rows] for a in arrays)), range(0, R, rows),
                 threads.num_threads())
