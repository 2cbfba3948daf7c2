"""Flash attention as CUDA kernels, compiled by CuPy (``cupy.RawKernel``).

The same interface as the NumPy references in attention/flash.py, on CuPy arrays::

    flash_forward(q, k, v, scale, bias=None, is_causal=False, block_q=64, block_k=64)
        -> out (N, L, Ev), (m, log_l) (N, L) each
    flash_backward(q, k, v, out, (m, log_l), dout, scale, bias=None, is_causal=False,
                   block_q=64, block_k=64) -> dq, dk, dv

for scores that are finite or -inf and finite v (kernels.choice.finite_scores; otherwise the
reference runs, on the GPU too, and gives PyTorch's NaN).

The kernels are meant to be read and to be right, not to race cuBLAS: one thread per query
row (or per key row), the row's vectors in registers, the other side's tiles in shared
memory, sums in the input's precision (float32 for float32 and float16, float64 for
float64). The feature sizes E and Ev are compile-time constants (DIM_E, DIM_EV: the source is
generated per shape and cached), so the per-row vectors are plain register arrays.

Backward, FlashAttention-2 style, without atomics (so results are deterministic):
``flash_bwd_dq`` runs one thread per query row and sums dq over the keys;
``flash_bwd_dkdv`` runs one thread per key row and sums dk, dv over the queries. Each
recomputes p = exp((s - m) - log l) from the saved row max m and log of the row sum l, with
the very arithmetic of the forward (``score``), so that s - m is exactly 0 at the max, also
where |s| ~ 1e9 and a float32 step is 64.

``block_q`` and ``block_k`` are accepted for the common signature; the CUDA tiles are
fixed by the thread-block shape and the shared-memory budget (see ``_config``).
"""

from __future__ import annotations

import functools

from . import cuda, layout

THREADS = 64  # threads per block: query rows (forward, dq) or key rows (dk, dv)
SHARED_BYTES = 32 * 1024  # shared-memory budget of a block for the K/V (or Q/dO) tiles

_FLASH_SOURCE = r"""
// One thread = one query row i of head n; a block = THREADS consecutive rows.
// The keys and values stream through shared memory, TILE rows at a time.
//   for each key tile:  s_j = scale q_i . k_j + bias_ij (masked: -inf)
//     per CHUNK of keys: m_new = max(m, max_j s_j); alpha = exp(m - m_new)
//                        l = alpha l + sum_j exp(s_j - m_new); acc = alpha acc + sum_j p_j v_j
//   out_i = acc / l, m_i = m, log_l_i = log(l); a row with every key masked: out 0,
//   m and log_l -inf.
// This thread's row of head n, in block blk of THREADS rows: the blocks of every head lie
// side by side along grid x (grid y would stop at 65535 heads).
__device__ inline int locate(int rows, long long* n, int* blk) {
    const int blocks = (rows + THREADS - 1) / THREADS;
    *blk = blockIdx.x % blocks;
    *n = blockIdx.x / blocks;
    return *blk * THREADS + threadIdx.x;
}

// tile[r][e] = src[n, r0 + r, e] for the TILE rows from r0 of head n's (rows, width) matrix,
// 0 past its last row; the block's threads share the copy. (A (TILE, width) tile and the rows
// it copies are each contiguous, so row r, column e is entry r * width + e of both.)
__device__ inline void load_tile(const T* __restrict__ src, long long n, int rows, int r0,
                                 int width, T* tile) {
    const long long base = (n * rows + r0) * (long long)width;
    const int valid = min(TILE, rows - r0) * width;
    for (int t = threadIdx.x; t < TILE * width; t += THREADS)
        tile[t] = t < valid ? src[base + t] : (T)0;
}

// s = scale (a . b) + bias[at]: the one formula for a score in all three kernels, so that the
// backward recomputes the forward's very s (p = exp((s - m) - log l) needs s - m exact).
__device__ inline T score(const T* a, const T* b, T scale, const T* __restrict__ bias,
                          long long at, int has_bias) {
    T x = 0;
    for (int e = 0; e < DIM_E; ++e) x += a[e] * b[e];
    x *= scale;
    return has_bias ? x + bias[at] : x;
}

// The key and value tiles from key j0 of head n, once every thread is done with the last
// ones (the first barrier) and before any thread reads them (the second).
__device__ inline void load_kv_tiles(const T* __restrict__ k, const T* __restrict__ v,
                                     long long n, int S, int j0, T* k_tile, T* v_tile) {
    __syncthreads();
    load_tile(k, n, S, j0, DIM_E, k_tile);
    load_tile(v, n, S, j0, DIM_EV, v_tile);
    __syncthreads();
}

extern "C" __global__ void __launch_bounds__(THREADS) flash_fwd(
        const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
        const T* __restrict__ bias, long long bias_n, long long bias_l, long long bias_s,
        int has_bias, int is_causal, int L, int S, T scale,
        T* __restrict__ out, T* __restrict__ row_max, T* __restrict__ log_l) {
    __shared__ T k_tile[TILE][DIM_E];
    __shared__ T v_tile[TILE][DIM_EV];
    long long n;
    int blk;
    const int i = locate(L, &n, &blk);
    const bool row = i < L;
    T q_i[DIM_E], acc[DIM_EV];
    for (int e = 0; e < DIM_E; ++e) q_i[e] = row ? q[(n * L + i) * DIM_E + e] : (T)0;
    for (int e = 0; e < DIM_EV; ++e) acc[e] = 0;
    T m = NEG_INF, l = 0;
    // causal: no query of this block sees a key at or past the block's last row + 1
    const int keys = is_causal ? min(S, (blk + 1) * THREADS) : S;
    for (int j0 = 0; j0 < keys; j0 += TILE) {
        load_kv_tiles(k, v, n, S, j0, &k_tile[0][0], &v_tile[0][0]);
        if (!row) continue;
        for (int c0 = 0; c0 < TILE; c0 += CHUNK) {
            T s[CHUNK];
            T chunk_max = NEG_INF;
            for (int c = 0; c < CHUNK; ++c) {
                const int j = j0 + c0 + c;
                T x = NEG_INF;
                if (j < S && !(is_causal && j > i))
                    x = score(q_i, k_tile[c0 + c], scale, bias,
                              n * bias_n + i * bias_l + j * bias_s, has_bias);
                s[c] = x;
                chunk_max = MAX(chunk_max, x);
            }
            const T m_new = MAX(m, chunk_max);
            if (m_new == NEG_INF) continue;  // every key so far masked: nothing to add
            const T alpha = EXP(m - m_new);  // 0 while m = -inf
            l *= alpha;
            for (int e = 0; e < DIM_EV; ++e) acc[e] *= alpha;
            for (int c = 0; c < CHUNK; ++c) {
                const T p = EXP(s[c] - m_new);  // exp(-inf) = 0 for masked keys
                l += p;
                for (int e = 0; e < DIM_EV; ++e) acc[e] += p * v_tile[c0 + c][e];
            }
            m = m_new;
        }
    }
    if (!row) return;
    for (int e = 0; e < DIM_EV; ++e) out[(n * L + i) * DIM_EV + e] = l > 0 ? acc[e] / l : (T)0;
    row_max[n * L + i] = l > 0 ? m : NEG_INF;
    log_l[n * L + i] = l > 0 ? LOG(l) : NEG_INF;
}

// dq: one thread = one query row i (forward was s = scale q k^T + bias,
// p = exp((s - m) - log l), out = p v; backward is dp_ij = dout_i . v_j,
// ds_ij = p_ij (dp_ij - D_i) with D_i = dout_i . out_i, and dq_i = scale sum_j ds_ij k_j).
extern "C" __global__ void __launch_bounds__(THREADS) flash_bwd_dq(
        const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
        const T* __restrict__ dout, const T* __restrict__ row_max,
        const T* __restrict__ log_l, const T* __restrict__ D,
        const T* __restrict__ bias, long long bias_n, long long bias_l, long long bias_s,
        int has_bias, int is_causal, int L, int S, T scale, T* __restrict__ dq) {
    __shared__ T k_tile[TILE][DIM_E];
    __shared__ T v_tile[TILE][DIM_EV];
    long long n;
    int blk;
    const int i = locate(L, &n, &blk);
    const T m_i = i < L ? row_max[n * L + i] : NEG_INF;
    const bool live = m_i > NEG_INF;  // a fully masked row (or no row) gets no gradient
    const T log_l_i = live ? log_l[n * L + i] : (T)0;
    const T D_i = live ? D[n * L + i] : (T)0;
    T q_i[DIM_E], dout_i[DIM_EV], dq_i[DIM_E];
    for (int e = 0; e < DIM_E; ++e) q_i[e] = live ? q[(n * L + i) * DIM_E + e] : (T)0;
    for (int e = 0; e < DIM_EV; ++e) dout_i[e] = live ? dout[(n * L + i) * DIM_EV + e] : (T)0;
    for (int e = 0; e < DIM_E; ++e) dq_i[e] = 0;
    const int keys = is_causal ? min(S, (blk + 1) * THREADS) : S;
    for (int j0 = 0; j0 < keys; j0 += TILE) {
        load_kv_tiles(k, v, n, S, j0, &k_tile[0][0], &v_tile[0][0]);
        if (!live) continue;
        for (int c = 0; c < TILE; ++c) {
            const int j = j0 + c;
            if (j >= S || (is_causal && j > i)) continue;
            const T x = score(q_i, k_tile[c], scale, bias, n * bias_n + i * bias_l + j * bias_s,
                              has_bias);
            const T p = EXP((x - m_i) - log_l_i);  // m first: exact at the row's max
            T dp = 0;
            for (int e = 0; e < DIM_EV; ++e) dp += dout_i[e] * v_tile[c][e];
            const T ds = p * (dp - D_i);
            for (int e = 0; e < DIM_E; ++e) dq_i[e] += ds * k_tile[c][e];
        }
    }
    if (i >= L) return;
    for (int e = 0; e < DIM_E; ++e) dq[(n * L + i) * DIM_E + e] = scale * dq_i[e];
}

// dk, dv: one thread = one key row j (dv_j = sum_i p_ij dout_i, dk_j = scale sum_i ds_ij q_i);
// the queries, dout rows, m, log l and D stream through shared memory, TILE rows at a time.
extern "C" __global__ void __launch_bounds__(THREADS) flash_bwd_dkdv(
        const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
        const T* __restrict__ dout, const T* __restrict__ row_max,
        const T* __restrict__ log_l, const T* __restrict__ D,
        const T* __restrict__ bias, long long bias_n, long long bias_l, long long bias_s,
        int has_bias, int is_causal, int L, int S, T scale,
        T* __restrict__ dk, T* __restrict__ dv) {
    __shared__ T q_tile[TILE][DIM_E];
    __shared__ T dout_tile[TILE][DIM_EV];
    __shared__ T m_tile[TILE];
    __shared__ T log_l_tile[TILE];
    __shared__ T D_tile[TILE];
    long long n;
    int blk;
    const int j = locate(S, &n, &blk);
    const bool col = j < S;
    T k_j[DIM_E], v_j[DIM_EV], dk_j[DIM_E], dv_j[DIM_EV];
    for (int e = 0; e < DIM_E; ++e) k_j[e] = col ? k[(n * S + j) * DIM_E + e] : (T)0;
    for (int e = 0; e < DIM_EV; ++e) v_j[e] = col ? v[(n * S + j) * DIM_EV + e] : (T)0;
    for (int e = 0; e < DIM_E; ++e) dk_j[e] = 0;
    for (int e = 0; e < DIM_EV; ++e) dv_j[e] = 0;
    // causal: query i sees key j only when i >= j, so start at the block's first key
    const int first = is_causal ? blk * THREADS / TILE * TILE : 0;
    for (int i0 = first; i0 < L; i0 += TILE) {
        __syncthreads();
        load_tile(q, n, L, i0, DIM_E, &q_tile[0][0]);
        load_tile(dout, n, L, i0, DIM_EV, &dout_tile[0][0]);
        for (int t = threadIdx.x; t < TILE; t += THREADS) {
            const int i = i0 + t;
            m_tile[t] = i < L ? row_max[n * L + i] : NEG_INF;
            log_l_tile[t] = i < L ? log_l[n * L + i] : NEG_INF;
            D_tile[t] = i < L ? D[n * L + i] : (T)0;
        }
        __syncthreads();
        if (!col) continue;
        for (int r = 0; r < TILE; ++r) {
            const int i = i0 + r;
            if (i >= L || (is_causal && j > i) || !(m_tile[r] > NEG_INF)) continue;
            const T x = score(q_tile[r], k_j, scale, bias, n * bias_n + i * bias_l + j * bias_s,
                              has_bias);
            const T p = EXP((x - m_tile[r]) - log_l_tile[r]);  // m first: exact at the max
            T dp = 0;
            for (int e = 0; e < DIM_EV; ++e) {
                dv_j[e] += p * dout_tile[r][e];
                dp += dout_tile[r][e] * v_j[e];
            }
            const T ds = p * (dp - D_tile[r]);
            for (int e = 0; e < DIM_E; ++e) dk_j[e] += ds * q_tile[r][e];
        }
    }
    if (!col) return;
    for (int e = 0; e < DIM_E; ++e) dk[(n * S + j) * DIM_E + e] = scale * dk_j[e];
    for (int e = 0; e < DIM_EV; ++e) dv[(n * S + j) * DIM_EV + e] = dv_j[e];
}
"""


def _config(itemsize: int, E: int, Ev: int, threads: int = THREADS) -> dict:
    """The compile-time constants for one dtype and feature sizes.

    TILE rows of both tiles fit the shared-memory budget; CHUNK keys' scores are held in
    registers at a time by the forward.
    """
    tile = max(1, min(64, SHARED_BYTES // ((E + Ev) * itemsize)))
    chunk = 8 if tile >= 8 else 1
    tile -= tile % chunk
    return {"DIM_E": E, "DIM_EV": Ev, "THREADS": threads, "TILE": tile, "CHUNK": chunk}


def kernel_source(dtype_name: str, E: int, Ev: int) -> str:
    """The CUDA C source of the flash kernels for a dtype and feature sizes."""
    itemsize = {"float32": 4, "float64": 8}[dtype_name]
    return cuda.source(_FLASH_SOURCE, dtype_name, _config(itemsize, E, Ev))


@functools.lru_cache(maxsize=64)
def _module(dtype_name: str, E: int, Ev: int):
    return cuda.compile_source(kernel_source(dtype_name, E, Ev))


def _bias_args(bias, N, L, S, dtype):
    """(array, strides in elements, has_bias): bias broadcast to (N, L, S), never copied big."""
    view = layout.bias_view(bias, N, L, S, dtype)
    if view is None:
        return cuda.cupy().zeros(1, dtype), (0, 0, 0), 0
    strides = tuple(s // view.itemsize for s in view.strides)
    return view, strides, 1


def _check(q, k, v, op):
    """The work dtype, after checking that q, k, v are CuPy float arrays of fitting shapes."""
    work = layout.work_dtype(op, q, k, v, cuda.cupy().ndarray, "CuPy")
    layout.check_shapes(op, q, k, v)
    return work


def _grid(rows: int, N: int) -> tuple:
    """Every head's blocks of THREADS rows along grid x, which takes up to 2^31 - 1 blocks
    (grid y, the obvious axis for heads, stops at 65535)."""
    return (max(1, -(-rows // THREADS)) * N,)


def flash_forward(q, k, v, scale, bias=None, is_causal=False, block_q=64, block_k=64):
    """(out, (m, log_l)) of softmax(scale * q k^T + bias) v on the GPU: flash.flash_forward
    in CUDA.

    >>> out, stats = flash_forward(q, k, v, 1 / 8.0)  # CuPy q (N, L, E), k (N, S, E), v (N, S, Ev)
    """
    cp = cuda.cupy()
    work = _check(q, k, v, "flash_forward")
    N, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    q_, k_, v_ = (cuda.contiguous(x, work) for x in (q, k, v))
    bias_, (bn, bl, bs), has_bias = _bias_args(bias, N, L, S, work)
    out = cp.empty((N, L, Ev), work)
    m = cp.empty((N, L), work)
    log_l = cp.empty((N, L), work)
    if N and L:
        kernel = _module(work.name, E, Ev).get_function("flash_fwd")
        kernel(_grid(L, N), (THREADS,), (q_, k_, v_, bias_, cp.int64(bn), cp.int64(bl),
                                         cp.int64(bs), cp.int32(has_bias),
                                         cp.int32(bool(is_causal)), cp.int32(L), cp.int32(S),
                                         work.type(scale), out, m, log_l))
    return out.astype(q.dtype, copy=False), (m, log_l)


def flash_backward(q, k, v, out, stats, dout, scale, bias=None, is_causal=False, block_q=64,
                   block_k=64):
    """(dq, dk, dv) of flash_forward on the GPU, recomputing p = exp((s - m) - log l) from
    stats = (m, log_l).

    >>> dq, dk, dv = flash_backward(q, k, v, out, stats, dout, 1 / 8.0)
    """
    cp = cuda.cupy()
    work = _check(q, k, v, "flash_backward")
    N, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    m, log_l = stats
    layout.check_saved(out, m, dout, N, L, Ev)
    layout.check_saved(out, log_l, dout, N, L, Ev)
    q_, k_, v_, dout_ = (cuda.contiguous(x, work) for x in (q, k, v, dout))
    m_, log_l_ = cuda.contiguous(m, work), cuda.contiguous(log_l, work)
    D = (dout_ * cuda.contiguous(out, work)).sum(axis=-1)  # (N, L) = rowsum(dout * out)
    bias_, (bn, bl, bs), has_bias = _bias_args(bias, N, L, S, work)
    dq = cp.zeros((N, L, E), work)
    dk = cp.zeros((N, S, E), work)
    dv = cp.zeros((N, S, Ev), work)
    module = _module(work.name, E, Ev)
    common = (bias_, cp.int64(bn), cp.int64(bl), cp.int64(bs), cp.int32(has_bias),
              cp.int32(bool(is_causal)), cp.int32(L), cp.int32(S), work.type(scale))
    if N and L and S:
        module.get_function("flash_bwd_dq")(
            _grid(L, N), (THREADS,), (q_, k_, v_, dout_, m_, log_l_, D, *common, dq))
        module.get_function("flash_bwd_dkdv")(
            _grid(S, N), (THREADS,), (q_, k_, v_, dout_, m_, log_l_, D, *common, dk, dv))
    return dq.astype(q.dtype, copy=False), dk.astype(k.dtype, copy=False), \
        dv.astype(v.dtype, copy=False)
