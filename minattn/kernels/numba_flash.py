"""Flash attention as numba kernels for the CPU.

``flash_forward`` and ``flash_backward`` take exactly the arguments of the NumPy references
in attention/flash.py (which stay the readable specification; tests/kernels/test_flash.py
holds the two equal) and return the same arrays::

    flash_forward(q, k, v, scale, bias=None, is_causal=False, block_q=64, block_k=128)
        -> out (N, L, Ev), (m, log_l) (N, L) each
    flash_backward(q, k, v, out, (m, log_l), dout, scale, bias=None, is_causal=False,
                   block_q=64, block_k=128) -> dq, dk, dv

for scores that are finite or -inf and finite v (kernels.choice.finite_scores says when;
otherwise the reference runs, which gives PyTorch's NaN: the fast-math loops here assume
that no NaN ever comes by).

(The default key block is 128 here: on the CPU that tiling measured a few percent faster
than 64; any block sizes give the same results up to rounding.)

How they are fast, and what that costs in reading:

- The tile products go to BLAS: ``np.dot`` on contiguous tiles, which numba sends to the
  sgemm/dgemm of SciPy's BLAS, and ``_gemm_acc`` (c += a b) where a product is summed over
  tiles. The Python wrapper lays the operands out so that every product is a plain or
  transposed product of contiguous blocks: q padded to whole blocks, and k, v cut into key
  blocks stored transposed, (E, block_k) each (``_pack_kernel``, with the scale folded
  into k's blocks). Small tiles (64 x 128) keep each product on OpenBLAS's fast path for
  small matrices.
- ``exp`` is computed as ``exp2`` by code that LLVM can vectorize (numba_math._exp2):
  exp(s - m) = 2^((s - m) log2(e)). The scores stay in their own units and the row max m is
  subtracted first, exactly; only the difference, at most a few hundred where it matters,
  is scaled to base 2 (log2(e) s could overflow for s near finfo.min, and would round off
  at |s| ~ 1e9, where a float32 step is 64). That costs one multiply per score.
- ``prange`` runs (batch*head, query block) tiles in parallel in the forward, and
  (batch*head, group of key blocks) in the backward, so that dK and dV of a key block are
  summed by one thread in a fixed order (deterministic results); dQ is summed per group
  and the groups are added up at the end, in order.
- While a kernel runs, BLAS is held to one thread (numba_math.launch): each numba thread
  calls it on small tiles, and a multithreaded BLAS inside numba's threads oversubscribes
  the cores (or, with some OpenMP runtimes, deadlocks).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import layout
from .numba_math import LN2, LOG2E, _exp2, _exp_shifted, _gemm_acc, _row_max, compiler, launch

prange = range  # replaced by numba.prange when the kernels are compiled (see _compiled)



# -- tile helpers (jitted into the kernels) -------------------------------------------------


def _mask_tile(s, bias, has_bias, is_causal, n, i0, j0, L, S):
    """s += bias[n, i0:, j0:]; -inf where key j > query i (causal) and past key S."""
    bq, bk = s.shape
    rows = min(bq, L - i0)  # rows past L are padding: their results are thrown away
    cols = min(bk, S - j0)  # columns past S are padding keys: masked below
    if has_bias:
        for r in range(rows):
            brow = bias[n, i0 + r, j0:j0 + cols]  # a broadcast view: strides may be 0
            srow = s[r]
            for c in range(cols):
                srow[c] += brow[c]
    if is_causal and j0 + bk - 1 > i0:  # some key of the tile comes after some query
        for r in range(bq):
            for c in range(max(0, i0 + r + 1 - j0), bk):
                s[r, c] = -np.inf
    if cols < bk:
        for r in range(bq):
            for c in range(cols, bk):
                s[r, c] = -np.inf


def _exp_normalized(row, m, log2_l, log2e):
    """row <- exp((row - m) - log(l)) = 2^((row - m) log2(e) - log2(l)): the softmax of a row
    whose max is m and whose sum of exp(row - m) is l (m first: exact at the max)."""
    for c in range(row.size):
        row[c] = _exp2((row[c] - m) * log2e - log2_l)


# -- the kernels ----------------------------------------------------------------------------


def _forward_kernel(qp, kt, v, bias, has_bias, is_causal, L, S, order, log2e, out,
                    row_max, log_l):
    """out, row_max, log_l of softmax(scale q k^T + bias) v for every (head n, query block)
    tile.

    qp (N, Lp, E) = q padded to whole query blocks; kt (N, nkb, E, bk) the key blocks
    transposed and times scale, so that s below is the scores; v (N, Sp, Ev); order: the
    query blocks in zigzag order (first, last, second, ...), so that when is_causal a cheap
    block and a dear one are handed out side by side and the threads finish together;
    log2e = log2(e) in the working dtype. Loop nest::

        prange over (n, query block i):                   m = -inf, l = 0, acc = 0
            for each key block j (j <= i if causal):
                s = q_i kt_j + bias_ij                BLAS (bq, E) x (E, bk)
                m_new = max(m, rowmax(s)); s = 2^((s - m_new) log2(e))
                l = 2^((m - m_new) log2(e)) l + rowsum(s); acc = (the same) acc + s v_j   BLAS
            out_i = acc / l; row_max_i = m; log_l_i = ln(2) log2(l)
            (0, -inf and -inf for fully masked rows)
    """
    N, nkb, E, bk = kt.shape
    nqb = order.size
    bq = qp.shape[1] // max(nqb, 1)
    Ev = v.shape[2]
    for item in prange(N * nqb):
        n = item // nqb
        i0 = order[item % nqb] * bq
        s = np.empty((bq, bk), qp.dtype)  # scores, then probabilities, of one tile
        acc = np.zeros((bq, Ev), qp.dtype)  # sum_j 2^(s_ij - m_i) v_j
        m = np.full(bq, -np.inf, qp.dtype)  # running row max
        shift = np.zeros(bq, qp.dtype)  # m, or 0 while a row has seen no unmasked key
        l = np.zeros(bq, qp.dtype)  # running sum_j 2^(s_ij - m_i)
        q_i = qp[n, i0:i0 + bq]  # (bq, E)
        n_kb = min(nkb, (min(i0 + bq, L) - 1) // bk + 1) if is_causal else nkb
        for kb in range(n_kb):
            j0 = kb * bk
            np.dot(q_i, kt[n, kb], s)  # (bq, bk) = scale q_i k_j^T
            if has_bias or is_causal or j0 + bk > S:
                _mask_tile(s, bias, has_bias, is_causal, n, i0, j0, L, S)
            for r in range(bq):
                row = s[r]
                m_new = max(m[r], _row_max(row))
                if m_new > m[r]:  # the max grew: rescale what was summed so far
                    shift[r] = m_new
                    alpha = _exp2((m[r] - m_new) * log2e)  # old sums: from e^-m to e^-m_new
                    m[r] = m_new
                    l[r] *= alpha
                    for e in range(Ev):
                        acc[r, e] *= alpha
                # s = exp(s - m): the tile's probabilities, not yet normalized; shift is 0
                # while the row has seen no unmasked key, so that -inf - -inf never happens
                l[r] += _exp_shifted(row, shift[r], log2e)
            _gemm_acc(s, v[n, j0:j0 + bk], acc)  # (bq, Ev) acc += p v_j
        for r in range(min(bq, L - i0)):
            if l[r] > 0:
                for e in range(Ev):
                    out[n, i0 + r, e] = acc[r, e] / l[r]
                row_max[n, i0 + r] = m[r]
                log_l[n, i0 + r] = LN2 * math.log2(l[r])
            else:  # every key masked: out 0, m and log(l) -inf
                for e in range(Ev):
                    out[n, i0 + r, e] = 0.0
                row_max[n, i0 + r] = -np.inf
                log_l[n, i0 + r] = -np.inf


def _backward_kernel(qp, kp, kt, vt, dout, m, log2_l, D, bias, has_bias, is_causal, L, S,
                     bq, scale, log2e, dq_part, dk, dv):
    """dq_part, dk, dv of flash attention for every (head n, group g of key blocks).

    qp (N, Lp, E) = q and kp (N, Sp, E) = k, padded to whole blocks; kt (N, nkb, E, bk) and
    vt (N, nkb, Ev, bk) the key blocks of scale k and of v, transposed; dout (N, Lp, Ev);
    m (N, Lp) the row max of the scores and log2_l (N, Lp) = log2(l), with m = 0 and
    log2_l = +inf for rows that get no gradient (fully masked or padding), so that their
    p = 0; D (N, Lp) = rowsum(dout * out); log2e = log2(e). Group g of G = dq_part.shape[0]
    holds key blocks g, g + G, g + 2G, ... (round robin: balanced also when causal).

    Forward was: s = scale q k^T + bias, p = softmax(s) = exp((s - m) - log l), out = p v.
    Backward is: dv = p^T dout; dp = dout v^T; ds = p * (dp - D) (softmax backward, with
    D = rowsum(dp * p) = rowsum(dout * out)); dq = scale ds k; dk = scale ds^T q. Loop nest::

        prange over (n, group g):
            for key block j in group g:               dk_j = 0, dv_j = 0
                for each query block i (i >= j if causal):
                    s = q_i kt_j + bias_ij                      BLAS (bq, E) x (E, bk)
                    p = 2^((s - m_i) log2(e) - log2_l_i)
                    dv_j += p^T dout_i                          BLAS (bk, bq) x (bq, Ev)
                    ds = scale p * (dout_i vt_j - D_i)          BLAS (bq, Ev) x (Ev, bk)
                    dk_j += ds^T q_i                            BLAS (bk, bq) x (bq, E)
                    dq_part[g]_i += ds k_j                      BLAS (bq, bk) x (bk, E)
    (the scale of dq = scale ds k and dk = scale ds^T q rides on ds, one multiply per score.)
    """
    N, nkb, E, bk = kt.shape
    G, _, Lp, _ = dq_part.shape
    Ev = vt.shape[2]
    nqb = Lp // bq
    for item in prange(N * G):
        n = item // G
        g = item % G
        s = np.empty((bq, bk), qp.dtype)  # scores, then p
        dp = np.empty((bq, bk), qp.dtype)  # dp, then ds
        dk_j = np.empty((bk, E), qp.dtype)
        dv_j = np.empty((bk, Ev), qp.dtype)
        dq_g = dq_part[g, n]  # (Lp, E): this group's share of dq
        for kb in range(g, nkb, G):
            j0 = kb * bk
            dk_j[:] = 0.0
            dv_j[:] = 0.0
            for qb in range(j0 // bq if is_causal else 0, nqb):
                i0 = qb * bq
                q_i = qp[n, i0:i0 + bq]  # (bq, E)
                dout_i = dout[n, i0:i0 + bq]  # (bq, Ev)
                np.dot(q_i, kt[n, kb], s)  # (bq, bk) = scale q_i k_j^T
                if has_bias or is_causal or j0 + bk > S:
                    _mask_tile(s, bias, has_bias, is_causal, n, i0, j0, L, S)
                for r in range(bq):  # p = exp((s - m) - log l), the forward's very s - m
                    _exp_normalized(s[r], m[n, i0 + r], log2_l[n, i0 + r], log2e)
                _gemm_acc(s.T, dout_i, dv_j)  # (bk, Ev) dv_j += p^T dout_i
                np.dot(dout_i, vt[n, kb], dp)  # (bq, bk) = dout_i v_j^T
                for r in range(bq):
                    D_r = D[n, i0 + r]
                    for c in range(bk):
                        dp[r, c] = scale * s[r, c] * (dp[r, c] - D_r)  # scale ds
                _gemm_acc(dp.T, q_i, dk_j)  # (bk, E) dk_j += scale ds^T q_i
                _gemm_acc(dp, kp[n, j0:j0 + bk], dq_g[i0:i0 + bq])  # (bq, E) dq_i += scale ds k_j
            for c in range(min(bk, S - j0)):
                for e in range(E):
                    dk[n, j0 + c, e] = dk_j[c, e]
                for e in range(Ev):
                    dv[n, j0 + c, e] = dv_j[c, e]


def _pack_kernel(x, scale, out):
    """out[n, b] = scale * x[n, b bk:(b + 1) bk]^T for every (head n, block b), 0 past S:
    _blocks_transposed (the NumPy reference) on every core. x (N, S, d), out (N, nb, d, bk)."""
    N, S, d = x.shape
    nb, bk = out.shape[1], out.shape[3]
    for item in prange(N * nb):
        n = item // nb
        b = item % nb
        for e in range(d):
            for c in range(bk):
                j = b * bk + c
                out[n, b, e, c] = scale * x[n, j, e] if j < S else 0.0




@functools.cache
def _compiled():
    """The flash kernels, compiled on first use; prange becomes numba's parallel range."""
    import numba

    global prange
    prange = numba.prange
    numba_jit = compiler()
    for helper in (_mask_tile, _exp_normalized):
        numba_jit.register(helper)
    jit = numba_jit.jit
    return {"forward": jit(_forward_kernel), "backward": jit(_backward_kernel),
            "pack": jit(_pack_kernel)}


# -- the kernel interface: the same arguments as the references in attention/flash.py -------

def _padded(x, rows: int, dtype, scale=None):
    """x (N, n, d) as a C-contiguous (N, rows, d) array in dtype, zero past n, times scale."""
    if scale is None and x.shape[1] == rows and x.dtype == dtype and x.flags.c_contiguous:
        return x
    out = np.zeros((x.shape[0], rows, x.shape[2]), dtype)
    if scale is None:
        out[:, :x.shape[1]] = x
    else:
        np.multiply(x, scale, out=out[:, :x.shape[1]], casting="unsafe")
    return out


def _blocks_transposed(x, n_blocks: int, block: int, dtype, scale=None):
    """x (N, S, d) as (N, n_blocks, d, block): each block of `block` rows, transposed,
    times scale if given; zero past S."""
    N, S, d = x.shape
    out = np.zeros((N, n_blocks, d, block), dtype)
    full = S // block
    out[:, :full] = x[:, :full * block].reshape(N, full, block, d).transpose(0, 1, 3, 2)
    if full < n_blocks:
        out[:, full, :, :S - full * block] = x[:, full * block:].transpose(0, 2, 1)
    if scale is not None:
        out *= dtype.type(scale)
    return out



def _bias(bias, N, L, S, dtype):
    """(bias broadcast to (N, L, S), True), or (a dummy array, False) without a bias."""
    view = layout.bias_view(bias, N, L, S, dtype)
    if view is None:
        return np.broadcast_to(np.zeros((), dtype), (1, 1, 1)), False
    return view, True


def _pack(kernels, x, n_blocks: int, block: int, dtype, scale: float):
    """_blocks_transposed(x, n_blocks, block, dtype, scale) by the parallel pack kernel."""
    out = np.empty((x.shape[0], n_blocks, x.shape[2], block), dtype)
    kernels["pack"](np.ascontiguousarray(x, dtype=dtype), dtype.type(scale), out)
    return out


def _blocks(n: int, block) -> tuple[int, int]:
    """(block size, number of blocks) for n rows; a block never exceeds n."""
    block = int(block)
    if block < 1:
        raise ValueError(f"block sizes must be positive, got {block}")
    block = max(1, min(block, n))
    return block, -(-n // block)


def _zigzag(n: int) -> np.ndarray:
    """0, n-1, 1, n-2, ...: pairs of a cheap and a dear causal block sit side by side."""
    order = np.empty(n, np.int64)
    order[0::2] = np.arange((n + 1) // 2)
    order[1::2] = np.arange(n - 1, (n + 1) // 2 - 1, -1)
    return order


def flash_forward(q, k, v, scale, bias=None, is_causal=False, block_q=64, block_k=128):
    """(out, (m, log_l)) of softmax(scale * q k^T + bias) v: flash.flash_forward, compiled.

    >>> out, stats = flash_forward(q, k, v, 1 / 8.0)   # q (N, L, E), k (N, S, E), v (N, S, Ev)
    """
    kernels = _compiled()
    layout.check_shapes("flash_forward", q, k, v)
    work = layout.work_dtype("flash_forward", q, k, v, np.ndarray, "NumPy")
    N, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    bq, nqb = _blocks(L, block_q)
    bk, nkb = _blocks(S, block_k)
    qp = _padded(q, nqb * bq, work)  # (N, Lp, E): no copy when L fills whole blocks
    vp = _padded(v, nkb * bk, work)  # (N, Sp, Ev)
    bias3, has_bias = _bias(bias, N, L, S, work)
    out = np.empty((N, L, Ev), work)
    m = np.empty((N, L), work)
    log_l = np.empty((N, L), work)
    with launch():
        kt = _pack(kernels, k, nkb, bk, work, float(scale))  # (N, nkb, E, bk): scale k
        kernels["forward"](qp, kt, vp, bias3, has_bias, bool(is_causal), L, S, _zigzag(nqb),
                           work.type(LOG2E), out, m, log_l)
    return out.astype(q.dtype, copy=False), (m, log_l)


def _key_groups(N: int, nkb: int, threads: int) -> int:
    """How many groups to split each head's key blocks into, so N * G work items keep every
    thread busy: the smallest G with N * G a multiple of the thread count, at most 2T / N.
    Each group beyond the first costs one more (N, L, E) array of partial dq."""
    limit = max(1, min(nkb, -(-2 * threads // max(N, 1))))
    G = 1
    while G < limit and (N * G) % threads:
        G += 1
    return G


def flash_backward(q, k, v, out, stats, dout, scale, bias=None, is_causal=False, block_q=64,
                   block_k=128):
    """(dq, dk, dv) of flash_forward, recomputing p from its row statistics (m, log_l):
    flash.flash_backward, compiled.

    >>> dq, dk, dv = flash_backward(q, k, v, out, stats, dout, 1 / 8.0)
    """
    kernels = _compiled()
    layout.check_shapes("flash_backward", q, k, v)
    work = layout.work_dtype("flash_backward", q, k, v, np.ndarray, "NumPy")
    N, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    m, log_l = stats
    layout.check_saved(out, m, dout, N, L, Ev)
    layout.check_saved(out, log_l, dout, N, L, Ev)
    bq, nqb = _blocks(L, block_q)
    bk, nkb = _blocks(S, block_k)
    Lp = nqb * bq
    qp = _padded(q, Lp, work)  # (N, Lp, E): no copy when L fills whole blocks
    kp = _padded(k, nkb * bk, work)  # (N, Sp, E)
    dout_p = _padded(dout, Lp, work)  # (N, Lp, Ev)
    D = np.zeros((N, Lp), work)
    D[:, :L] = np.einsum("nle,nle->nl", dout.astype(work, copy=False),
                         out.astype(work, copy=False))  # rowsum(dout * out) = rowsum(dp * p)
    # p = 2^((s - m) log2(e) - log2(l)); m = 0 and log2(l) = +inf give p = 0 for padding
    # rows and for fully masked ones (m = -inf), whose s is -inf
    masked = m == -np.inf
    m_p = np.zeros((N, Lp), work)
    m_p[:, :L] = np.where(masked, 0.0, m)
    log2_l = np.full((N, Lp), np.inf, work)
    log2_l[:, :L] = np.where(masked, np.inf, log_l * LOG2E)
    bias3, has_bias = _bias(bias, N, L, S, work)
    import numba

    G = _key_groups(N, nkb, numba.get_num_threads())
    dq_part = np.zeros((G, N, Lp, E), work)
    dk = np.empty((N, S, E), work)
    dv = np.empty((N, S, Ev), work)
    with launch():
        kt = _pack(kernels, k, nkb, bk, work, float(scale))  # (N, nkb, E, bk): scale k
        vt = _pack(kernels, v, nkb, bk, work, 1.0)  # (N, nkb, Ev, bk)
        kernels["backward"](qp, kp, kt, vt, dout_p, m_p, log2_l, D, bias3, has_bias,
                            bool(is_causal), L, S, bq, work.type(scale), work.type(LOG2E),
                            dq_part, dk, dv)
    dq = dq_part[0] if G == 1 else dq_part.sum(axis=0)  # groups added in a fixed order
    return (np.ascontiguousarray(dq[:, :L], dtype=q.dtype), dk.astype(k.dtype, copy=False),
            dv.astype(v.dtype, copy=False))


