"""The row softmax of the last axis and its backward as numba kernels for the CPU.

    softmax_forward(x, out=None, empty_rows="nan") -> y       y = softmax(x), row by row
    softmax_backward(y, dy, out=None) -> dx                     dx = y * (dy - rowsum(dy * y))

The fast twins of ``softmax_rows`` and ``softmax_rows_backward`` in ops/softmax.py (the plain
references; tests/kernels/test_rows.py holds them equal). One pass over each row: its max,
its exps (as exp2, see numba_math._exp2) and their sum, then the normalization, while the row
is in cache. The kernels are plain loops that release the GIL, run on the threads of
kernels/threads.py (one run of rows each): OpenMP threads would be left spinning into the
matrix product that follows.
"""

from __future__ import annotations

import functools

import numpy as np

from . import layout, threads
from .numba_math import LOG2E, _count_nan, _exp_shifted, _row_max, compiler


def _softmax_forward_kernel(x, out, empty_nan):
    """out = softmax of each row of x (R, C), on the calling thread. Loop nest::

        for each row: m = max(x); e = exp(x - m); out = e / sum(e)

    (exp(x - m) computed as 2^(log2(e) (x - m)), see numba_math._exp2.) A row holding NaN or +inf
    gives NaN, as x - max x does in NumPy; a row of all -inf gives NaN if empty_nan, else 0.
    The fast-math max and exp2 assume no NaN, so such rows are found and filled first.
    softmax_forward runs blocks of rows on the threads of kernels/threads.py.
    """
    R, C = x.shape
    scalars = np.empty(3, x.dtype)  # the row's shift, 1 / sum and log2(e), in the row's dtype
    scalars[2] = LOG2E
    log2e = scalars[2]
    for r in range(R):
        row = out[r]
        m = _row_max(x[r])
        if m == np.inf or _count_nan(x[r]) > 0 or (m == -np.inf and empty_nan):
            for c in range(C):
                row[c] = np.nan
            continue
        scalars[0] = m if m > -np.inf else 0.0  # a row of all -inf: exp(-inf - 0) = 0
        shift = scalars[0]
        for c in range(C):
            row[c] = x[r, c]
        total = _exp_shifted(row, shift, log2e)  # row <- exp(row - m), and its sum
        scalars[1] = 1.0 / total if total > 0 else 0.0
        inv = scalars[1]
        for c in range(C):
            row[c] *= inv



def _softmax_backward_kernel(y, dy, dx):
    """dx = y * (dy - sum(dy * y)) for each row of y, dy (R, C), on the calling thread::

        for each row: d = sum_c dy_c y_c; dx_c = y_c (dy_c - d)
    """
    # Forward was y = softmax(x); its Jacobian diag(y) - y y^T gives dx = y * (dy - dy . y).
    R, C = y.shape
    for r in range(R):
        d = np.float32(0.0)  # float64 for float64 rows (numba unifies the two)
        for c in range(C):
            d += dy[r, c] * y[r, c]
        for c in range(C):
            dx[r, c] = y[r, c] * (dy[r, c] - d)



@functools.cache
def _compiled():
    """The two row kernels, compiled on first use."""
    jit_nogil = compiler().jit_nogil
    return {"softmax_forward": jit_nogil(_softmax_forward_kernel),
            "softmax_backward": jit_nogil(_softmax_backward_kernel)}


def softmax_forward(x, out=None, empty_rows="nan"):
    """softmax over the last axis of a float NumPy array, into out (may be x) or a new array.

    A row of all -inf gives zeros (empty_rows="zero") or NaN ("nan"); a row holding NaN or
    +inf gives NaN.

    >>> y = softmax_forward(np.array([[1.0, 2.0, 3.0]]))
    """
    kernels = _compiled()
    if empty_rows not in ("nan", "zero"):
        raise ValueError(f"empty_rows must be 'nan' or 'zero', got {empty_rows!r}")
    return _rows(kernels["softmax_forward"], layout.rows(x), out, x, empty_rows == "nan")


def softmax_backward(y, dy, out=None):
    """dx = y * (dy - sum(dy * y)) over the last axis, with y = softmax_forward(x), into out
    (may be dy) or a new array.

    >>> dx = softmax_backward(y, dy)
    """
    kernels = _compiled()
    if y.shape != dy.shape:
        raise ValueError(f"softmax_backward: y {y.shape} and dy {dy.shape} differ")
    return _rows(kernels["softmax_backward"], layout.rows(y, dy), out, y)


def _rows(kernel, rows: list, out, like, *extra):
    """kernel(*row blocks of the 2-D arrays rows, the same block of the result, *extra) over
    every row; the result in out (written directly when it is C-ordered in the working
    dtype) or in a new array of like's shape and dtype."""
    work = rows[0]
    out2, into = layout.rows_out(out, work)
    _over_rows(lambda r0, r1: kernel(*(a[r0:r1] for a in rows), out2[r0:r1], *extra),
               work.shape[0])
    return layout.rows_result(out2, into, out, like)


def _over_rows(run, R: int) -> None:
    """run(r0, r1) on one run of rows per thread (kernels/threads.py's pool).

    The row kernels are plain (not prange) and release the GIL, so they share the pool of
    the NumPy row blocks and large elementwise ops: no OpenMP threads are left spinning
    between a kernel and the matrix product that follows it (numba's OpenMP runtime may be
    PyTorch's, whose idle threads spin; fused attention measured 25-35% slower that way).
    """
    n = max(1, min(threads.num_threads(), R))
    step = -(-R // n)
    threads.each(lambda r0: run(r0, min(R, r0 + step)), range(0, R, step), n)
