"""The row softmax of the last axis and its backward as CUDA kernels, compiled by CuPy.

    softmax_forward(x, out=None, empty_rows="nan") -> y     y = softmax(x), row by row
    softmax_backward(y, dy, out=None) -> dx                   dx = y * (dy - rowsum(dy * y))

The fast twins of ``softmax_rows`` and ``softmax_rows_backward`` in ops/softmax.py on the
GPU: one thread block per row, one read of the row from GPU memory and one write, where the
whole-array reference makes five passes. out may be x, and dx may be dy (in place).
"""

from __future__ import annotations

import functools

from . import cuda, layout

_SOFTMAX_SOURCE = r"""
// One block = one row of C values; THREADS threads stride over it and reduce in shared
// memory. y = exp(x - max) / sum(exp(x - max)); a row of all -inf gives zeros, or NaN when
// empty_nan (PyTorch's softmax); a NaN or +inf in a row makes the whole row NaN.
// y may be x, and dx may be dy (in place): each entry is read, then written, by one
// thread, so the pointers carry no __restrict__.
__device__ T block_reduce(T value, T* scratch, bool is_max) {
    scratch[threadIdx.x] = value;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            const T other = scratch[threadIdx.x + half];
            scratch[threadIdx.x] = is_max ? MAX(scratch[threadIdx.x], other)
                                          : scratch[threadIdx.x] + other;
        }
        __syncthreads();
    }
    const T result = scratch[0];
    __syncthreads();
    return result;
}

extern "C" __global__ void __launch_bounds__(THREADS) softmax_fwd(
        const T* x, int C, int empty_nan, T* y) {
    __shared__ T scratch[THREADS];
    const long long row = blockIdx.x;
    const T* xr = x + row * C;
    T* yr = y + row * C;
    T m = NEG_INF;
    for (int c = threadIdx.x; c < C; c += THREADS) m = MAX(m, xr[c]);  // (skips NaN)
    m = block_reduce(m, scratch, true);
    // all -inf: shift by 0, so exp(-inf - 0) = 0 and the row is 0; or, for NaN, by -inf
    const T shift = m > NEG_INF || empty_nan ? m : (T)0;
    T total = 0;
    for (int c = threadIdx.x; c < C; c += THREADS) total += EXP(xr[c] - shift);
    total = block_reduce(total, scratch, false);  // NaN if the row held a NaN or +inf
    const T inv = total > 0 || total != total ? (T)1 / total : (T)0;
    for (int c = threadIdx.x; c < C; c += THREADS) yr[c] = EXP(xr[c] - shift) * inv;
}

// Forward was y = softmax(x); backward is dx = y * (dy - sum(dy * y)).
extern "C" __global__ void __launch_bounds__(THREADS) softmax_bwd(
        const T* y, const T* dy, int C, T* dx) {
    __shared__ T scratch[THREADS];
    const long long row = blockIdx.x;
    T d = 0;
    for (int c = threadIdx.x; c < C; c += THREADS) d += dy[row * C + c] * y[row * C + c];
    d = block_reduce(d, scratch, false);
    for (int c = threadIdx.x; c < C; c += THREADS)
        dx[row * C + c] = y[row * C + c] * (dy[row * C + c] - d);
}
"""

SOFTMAX_THREADS = 256


def kernel_source(dtype_name: str) -> str:
    """The CUDA C source of the row softmax kernels for a dtype."""
    return cuda.source(_SOFTMAX_SOURCE, dtype_name, {"THREADS": SOFTMAX_THREADS})


@functools.lru_cache(maxsize=8)
def _module(dtype_name: str):
    return cuda.compile_source(kernel_source(dtype_name))


def softmax_forward(x, out=None, empty_rows="nan"):
    """softmax over the last axis of a CuPy array (one block per row), into out (may be x)
    or a new array. A row of all -inf gives zeros (empty_rows="zero") or NaN ("nan"); a row
    holding NaN or +inf gives NaN.

    >>> y = softmax_forward(cupy.asarray([[1.0, 2.0, 3.0]]))
    """
    cp = cuda.cupy()
    if empty_rows not in ("nan", "zero"):
        raise ValueError(f"empty_rows must be 'nan' or 'zero', got {empty_rows!r}")
    x2, = layout.rows(x)  # (R, C)
    y2, into = layout.rows_out(out, x2)
    if x2.size:
        _module(x2.dtype.name).get_function("softmax_fwd")(
            (x2.shape[0],), (SOFTMAX_THREADS,),
            (x2, cp.int32(x2.shape[1]), cp.int32(empty_rows == "nan"), y2))
    return layout.rows_result(y2, into, out, x)


def softmax_backward(y, dy, out=None):
    """dx = y * (dy - sum(dy * y)) over the last axis, with y = softmax_forward(x), into out
    (may be dy) or a new array.

    >>> dx = softmax_backward(y, dy)
    """
    cp = cuda.cupy()
    if y.shape != dy.shape:
        raise ValueError(f"softmax_backward: y {y.shape} and dy {dy.shape} differ")
    y2, dy2 = layout.rows(y, dy)  # (R, C) each
    dx2, into = layout.rows_out(out, y2)
    if y2.size:
        _module(y2.dtype.name).get_function("softmax_bwd")(
            (y2.shape[0],), (SOFTMAX_THREADS,), (y2, dy2, cp.int32(y2.shape[1]), dx2))
    return layout.rows_result(dx2, into, out, y)
