"""Flash attention and a row softmax as numba kernels for the CPU.

``flash_forward`` and ``flash_backward`` take exactly the arguments of the NumPy references
in ``flash.py`` (which stay the readable specification; tests/test_kernels.py holds the two
equal) and return the same arrays::

    flash_forward(q, k, v, scale, bias=None, is_causal=False, block_q=64, block_k=128)
        -> out (N, L, Ev), lse (N, L)
    flash_backward(q, k, v, out, lse, dout, scale, bias=None, is_causal=False,
                   block_q=64, block_k=128) -> dq, dk, dv

(The default key block is 128 here: on the CPU that tiling measured a few percent faster
than 64; any block sizes give the same results up to rounding.)

``softmax_forward(x)`` and ``softmax_backward(y, dy)`` are the row softmax of the last
axis and its backward, ``dx = y * (dy - sum(dy * y))``; ops/rowwise.py calls them for the
Softmax op and fused attention.

How they are fast, and what that costs in reading:

- The tile products go to BLAS: ``np.dot`` on contiguous tiles, which numba sends to the
  sgemm/dgemm of SciPy's BLAS, and ``_gemm_acc`` (c += a b) where a product is summed over
  tiles. The Python wrapper lays the operands out so that every product is a plain or
  transposed product of contiguous blocks: q padded to whole blocks, and k, v cut into key
  blocks stored transposed, (E, block_k) each (``_pack_kernel``, with scale log2(e) folded
  into k's blocks). Small tiles (64 x 128) keep each product on OpenBLAS's fast path for
  small matrices.
- ``exp`` is computed as ``exp2`` by code that LLVM can vectorize (``_exp2``): numba has
  no vector exp without Intel's SVML, and a scalar libm exp per score would cost as much as
  the products themselves. The scores are kept in base 2 (times log2(e)) to make that cheap.
- ``prange`` runs (batch*head, query block) tiles in parallel in the forward, and
  (batch*head, group of key blocks) in the backward, so that dK and dV of a key block are
  summed by one thread in a fixed order (deterministic results); dQ is summed per group
  and the groups are added up at the end, in order. The row softmax kernels are plain
  loops that release the GIL, run on minattn/parallel.py's threads (one run of rows
  each): OpenMP threads would be left spinning into the matrix product that follows.
- While a kernel runs, BLAS is held to one thread: each numba thread calls it on small
  tiles, and a multithreaded BLAS inside numba's threads oversubscribes the cores (or,
  with some OpenMP runtimes, deadlocks).

Numba is optional: this module imports without it, and compiles the kernels on first use
(``cache=True`` keeps them on disk). Without numba the functions raise a RuntimeError that
says what to install. ``NUMBA_DISABLE_JIT=1`` runs the very same code as Python (slowly),
which is how a kernel is debugged.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading

import numpy as np

from .. import backend, blas, parallel

prange = range  # replaced by numba.prange when the kernels are compiled (see _compiled)

# Every fast-math flag except "ninf": masked scores are -inf and must stay -inf.
FASTMATH = frozenset({"nnan", "nsz", "arcp", "contract", "reassoc", "afn"})


def numba_status() -> tuple[bool, str]:
    """(usable, reason): whether the numba kernels can run here, and if not, why."""
    try:
        import numba
    except Exception as exc:  # ImportError, or an llvmlite that fails to load
        return False, (f"numba is not installed or failed to import ({type(exc).__name__}: "
                       f"{exc}); install it with `pip install minattn[fast]` (numba, scipy)")
    try:
        import scipy.linalg.cython_blas  # noqa: F401 - numba's np.dot calls its BLAS
    except Exception as exc:
        return False, (f"numba {numba.__version__} is installed but SciPy is not ({exc}); "
                       "numba's np.dot needs SciPy's BLAS: `pip install scipy`")
    return True, f"numba {numba.__version__}, threading layer {threading_layer()}"


@functools.cache
def available() -> bool:
    """Whether numba_status() says yes (asked once per process)."""
    return numba_status()[0]


# -- exp2 that vectorizes ---------------------------------------------------------------------
#
# The kernels work in base 2: scores are computed as log2(e) * s (log2(e) is folded into the
# transposed keys), so that softmax's exp(s - m) is exp2(log2(e) s - log2(e) m), and exp2 is
# the cheaper function: exp2(x) = 2^n 2^f with n = round(x) and f = x - n in [-1/2, 1/2]
# (exact). 2^f is a polynomial (degree 6, fitted at Chebyshev nodes, within 1.1e-7 in
# float32; degree 13 Taylor in float64, within 2e-16), and 2^n is made by writing n + bias
# into the exponent bits of a float. Every step is plain arithmetic, so LLVM vectorizes a loop
# that calls it (numba has no vector exp without Intel's SVML). Far below the smallest normal
# float (x <= -126.5 in float32, -1022.5 in float64) the result is 0, as exp2(-inf) is.

LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(LOG2E x)
LN2 = 0.6931471805599453  # ln(2): log(x) = LN2 log2(x)


def _float_from_bits(b):
    """The float that has the bits of the integer b: int32 -> float32, int64 -> float64."""
    return b.view(np.float32 if b.dtype == np.int32 else np.float64)  # numba: a bitcast


def _exp2_f32(x):
    """2**x for a float32 x, vectorizable."""
    v = min(max(x, np.float32(-127.0)), np.float32(127.0))
    n = np.floor(v + np.float32(0.5))
    f = v - n  # in [-1/2, 1/2]
    p = np.float32(1.5461444724808513e-4)
    p = p * f + np.float32(1.3400428177711937e-3)
    p = p * f + np.float32(9.61805667843204e-3)
    p = p * f + np.float32(5.550327226669895e-2)
    p = p * f + np.float32(0.24022650922289554)
    p = p * f + np.float32(0.6931472067028329)
    p = p * f + np.float32(1.0)
    # 2^n: the exponent field n + 127, shifted by 23 bits (as a float product, which is exact,
    # so that no integer arithmetic widens the vectors); n = -127 gives the bits of +0.0
    return p * _float_from_bits(np.int32((n + np.float32(127.0)) * np.float32(8388608.0)))


def _exp2_f64(x):
    """2**x for a float64 x, vectorizable."""
    v = min(max(x, -1023.0), 1023.0)
    n = np.floor(v + 0.5)
    r = (v - n) * LN2  # 2^f = e^r, |r| <= ln(2) / 2
    p = 1 / 6227020800
    p = p * r + 1 / 479001600
    p = p * r + 1 / 39916800
    p = p * r + 1 / 3628800
    p = p * r + 1 / 362880
    p = p * r + 1 / 40320
    p = p * r + 1 / 5040
    p = p * r + 1 / 720
    p = p * r + 1 / 120
    p = p * r + 1 / 24
    p = p * r + 1 / 6
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _float_from_bits(np.int64((n + 1023.0) * 4503599627370496.0))  # 2^n, 2^52


def _exp2(x):
    """2**x by _exp2_f32 or _exp2_f64 (numba picks one from x's type when compiling)."""
    return _exp2_f32(x) if x.dtype == np.float32 else _exp2_f64(x)


# -- tile helpers (jitted into the kernels) -------------------------------------------------


def _mask_tile(s, bias, has_bias, is_causal, n, i0, j0, L, S):
    """s += log2(e) bias[n, i0:, j0:]; -inf where key j > query i (causal) and past key S."""
    bq, bk = s.shape
    rows = min(bq, L - i0)  # rows past L are padding: their results are thrown away
    cols = min(bk, S - j0)  # columns past S are padding keys: masked below
    if has_bias:
        for r in range(rows):
            brow = bias[n, i0 + r, j0:j0 + cols]  # a broadcast view: strides may be 0
            srow = s[r]
            for c in range(cols):
                srow[c] += brow[c] * LOG2E  # the scores are in base 2
    if is_causal and j0 + bk - 1 > i0:  # some key of the tile comes after some query
        for r in range(bq):
            for c in range(max(0, i0 + r + 1 - j0), bk):
                s[r, c] = -np.inf
    if cols < bk:
        for r in range(bq):
            for c in range(cols, bk):
                s[r, c] = -np.inf


def _fmax(a, b):
    """max(a, b) (numba: LLVM's maxnum, which vectorizes in a reduction; max() does not)."""
    return max(a, b)


def _row_max(row):
    """max(row), in the row's dtype (float32 below becomes float64 for a float64 row)."""
    m = np.float32(-np.inf)
    for c in range(row.size):  # from 0: a loop over whole vectors leaves no scalar tail
        m = _fmax(m, row[c])
    return m


def _gemm_acc(a, b, c):
    """c += a @ b, in place: BLAS gemm with beta = 1 (numba: a, b C- or F-ordered tiles, c C).

    np.dot can only overwrite its output; summing tiles with it would cost one more pass
    over every tile. numba gives no public way to ask for beta = 1, so _compiled registers a
    version that calls the same BLAS wrapper as numba's own np.dot (numba_xxgemm).
    """
    c += a @ b


def _exp2_shifted(row, shift):
    """row <- 2**(row - shift); returns the new row's sum (in the row's dtype)."""
    total = np.float32(0.0)  # float64 for a float64 row (numba unifies the two)
    for c in range(row.size):
        e = _exp2(row[c] - shift)
        row[c] = e
        total += e
    return total


def _exp2_shifted_no_sum(row, shift):
    """row <- 2**(row - shift), without the sum (the backward pass has the row's lse)."""
    for c in range(row.size):
        row[c] = _exp2(row[c] - shift)


# -- the kernels ----------------------------------------------------------------------------


def _forward_kernel(qp, kt, v, bias, has_bias, is_causal, L, S, order, out, lse):
    """out, lse of softmax(scale q k^T + bias) v for every (head n, query block) tile.

    qp (N, Lp, E) = q padded to whole query blocks; kt (N, nkb, E, bk) the key blocks
    transposed and times scale log2(e), so that s below is log2(e) times the scores;
    v (N, Sp, Ev); order: the query blocks in zigzag order (first, last, second, ...), so
    that when is_causal a cheap block and a dear one are handed out side by side and the
    threads finish together. Loop nest::

        prange over (n, query block i):                   m = -inf, l = 0, acc = 0
            for each key block j (j <= i if causal):
                s = q_i kt_j + log2(e) bias_ij        BLAS (bq, E) x (E, bk)
                m_new = max(m, rowmax(s)); s = 2^(s - m_new)
                l = 2^(m - m_new) l + rowsum(s); acc = 2^(m - m_new) acc + s v_j   BLAS
            out_i = acc / l; lse_i = ln(2) (m + log2(l))  (0 and -inf for fully masked rows)
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
            np.dot(q_i, kt[n, kb], s)  # (bq, bk) = log2(e) scale q_i k_j^T
            if has_bias or is_causal or j0 + bk > S:
                _mask_tile(s, bias, has_bias, is_causal, n, i0, j0, L, S)
            for r in range(bq):
                row = s[r]
                m_new = max(m[r], _row_max(row))
                if m_new > m[r]:  # the max grew: rescale what was summed so far
                    shift[r] = m_new
                    alpha = _exp2(m[r] - m_new)  # moves old sums from 2^-m to 2^-m_new
                    m[r] = m_new
                    l[r] *= alpha
                    for e in range(Ev):
                        acc[r, e] *= alpha
                # s = 2^(s - m): the tile's probabilities, not yet normalized; shift is 0
                # while the row has seen no unmasked key, so that -inf - -inf never happens
                l[r] += _exp2_shifted(row, shift[r])
            _gemm_acc(s, v[n, j0:j0 + bk], acc)  # (bq, Ev) acc += p v_j
        for r in range(min(bq, L - i0)):
            if l[r] > 0:
                for e in range(Ev):
                    out[n, i0 + r, e] = acc[r, e] / l[r]
                lse[n, i0 + r] = LN2 * (m[r] + math.log2(l[r]))
            else:  # every key masked: out 0, lse -inf
                for e in range(Ev):
                    out[n, i0 + r, e] = 0.0
                lse[n, i0 + r] = -np.inf


def _backward_kernel(qp, kp, kt, vt, dout, lse2, D, bias, has_bias, is_causal, L, S, bq,
                     scale, dq_part, dk, dv):
    """dq_part, dk, dv of flash attention for every (head n, group g of key blocks).

    qp (N, Lp, E) = q and kp (N, Sp, E) = k, padded to whole blocks; kt (N, nkb, E, bk) and
    vt (N, nkb, Ev, bk) the key blocks of scale log2(e) k and of v, transposed; dout
    (N, Lp, Ev);
    lse2 (N, Lp) = log2(e) lse, with +inf for rows that get no gradient (fully masked or
    padding), so that their p = 2^(s - lse2) = 0; D (N, Lp) = rowsum(dout * out). Group g
    of G = dq_part.shape[0] holds key blocks g, g + G, g + 2G, ... (round robin: balanced
    also when causal).

    Forward was: s = scale q k^T + bias, p = softmax(s) = exp(s - lse), out = p v.
    Backward is: dv = p^T dout; dp = dout v^T; ds = p * (dp - D) (softmax backward, with
    D = rowsum(dp * p) = rowsum(dout * out)); dq = scale ds k; dk = scale ds^T q. Loop nest::

        prange over (n, group g):
            for key block j in group g:               dk_j = 0, dv_j = 0
                for each query block i (i >= j if causal):
                    p = 2^(q_i kt_j + log2(e) bias_ij - lse2_i)    BLAS (bq, E) x (E, bk)
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
                np.dot(q_i, kt[n, kb], s)  # (bq, bk) = log2(e) scale q_i k_j^T
                if has_bias or is_causal or j0 + bk > S:
                    _mask_tile(s, bias, has_bias, is_causal, n, i0, j0, L, S)
                for r in range(bq):
                    _exp2_shifted_no_sum(s[r], lse2[n, i0 + r])  # p = exp(s - lse)
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


def _softmax_forward_kernel(x, out, empty_nan):
    """out = softmax of each row of x (R, C), on the calling thread. Loop nest::

        for each row: m = max(x); e = exp(x - m); out = e / sum(e)

    (exp(x - m) computed as 2^(log2(e) x - log2(e) m), see _exp2.) A row holding NaN or +inf
    gives NaN, as x - max x does in NumPy; a row of all -inf gives NaN if empty_nan, else 0.
    The fast-math max and exp2 assume no NaN, so such rows are found and filled first.
    softmax_forward runs blocks of rows on the threads of minattn/parallel.py.
    """
    R, C = x.shape
    scalars = np.empty(2, x.dtype)  # the row's shift and 1 / sum, in the row's dtype
    for r in range(R):
        row = out[r]
        m = _row_max(x[r])
        if m == np.inf or _count_nan(x[r]) > 0 or (m == -np.inf and empty_nan):
            for c in range(C):
                row[c] = np.nan
            continue
        scalars[0] = LOG2E * m if m > -np.inf else 0.0  # a row of all -inf: exp(-inf) = 0
        for c in range(C):
            row[c] = x[r, c] * LOG2E
        total = _exp2_shifted(row, scalars[0])
        scalars[1] = 1.0 / total if total > 0 else 0.0
        inv = scalars[1]
        for c in range(C):
            row[c] *= inv


def _is_nan(x):
    """x is NaN: its exponent bits all set, its mantissa not 0 (numba: tested on the integer
    bits, since fast-math, which the kernels inherit, folds x != x to False)."""
    return x != x


def _count_nan(row):
    """How many entries of row are NaN."""
    n = 0
    for c in range(row.size):
        n += _is_nan(row[c])
    return n


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


# -- compiling: numba is imported here, on first use ------------------------------------------


def threading_layer() -> str:
    """The threading layer the kernels run on (or will: numba's choice until one has run)."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        chosen = os.environ.get("NUMBA_THREADING_LAYER", "default")
        return f"{chosen} (tbb, omp or workqueue, the first that loads)" \
            if chosen == "default" else chosen


@functools.cache
def _compiled():
    """Register the helpers with numba and jit the kernels (cache=True: compiled once per disk).

    Threading layer: numba's default (TBB, else OpenMP, else its own workqueue), or what
    $NUMBA_THREADING_LAYER names. BLAS calls inside prange are what can oversubscribe or
    deadlock an OpenMP layer; the kernels hold BLAS to one thread while they run
    (blas.single_thread), which makes OpenMP safe here, and it measured about 5% faster
    than workqueue on two cores. GNU OpenMP is not fork-safe: a program that forks after
    running the kernels should set NUMBA_THREADING_LAYER=workqueue.
    """
    ok, why = numba_status()
    if not ok:
        raise RuntimeError(f"the numba kernels cannot run: {why}")
    import numba
    from llvmlite import ir as llvm_ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic, overload, register_jitable
    from numba.np import linalg as numba_linalg

    global prange
    prange = numba.prange

    options = {"fastmath": set(FASTMATH), "error_model": "numpy"}
    register_jitable(**options)(_mask_tile)
    register_jitable(**options)(_count_nan)
    for helper in (_row_max, _exp2_shifted, _exp2_shifted_no_sum):
        register_jitable(**options)(helper)
    # exp2's f = x - round(x) must be evaluated as written: no "reassoc"
    exp_options = dict(options, fastmath=set(FASTMATH) - {"reassoc"})
    for helper in (_exp2_f32, _exp2_f64):
        register_jitable(**exp_options)(helper)

    @intrinsic
    def bitcast_to_float(typingctx, b):  # reinterpret an int's bits: one LLVM instruction
        to = types.float32 if b.bitwidth == 32 else types.float64
        return to(b), lambda context, builder, sig, args: builder.bitcast(
            args[0], context.get_value_type(to))

    @overload(_float_from_bits, jit_options=options)
    def _float_from_bits_typed(b):
        return lambda b: bitcast_to_float(b)

    @intrinsic
    def bitcast_to_int(typingctx, x):  # a float's bits as an int of its width
        to = types.int32 if x.bitwidth == 32 else types.int64
        return to(x), lambda context, builder, sig, args: builder.bitcast(
            args[0], context.get_value_type(to))

    @overload(_is_nan, jit_options=options)
    def _is_nan_typed(x):
        if x == types.float32:
            return lambda x: (bitcast_to_int(x) & np.int32(0x7FFFFFFF)) > np.int32(0x7F800000)
        return lambda x: ((bitcast_to_int(x) & np.int64(0x7FFFFFFFFFFFFFFF))
                          > np.int64(0x7FF0000000000000))

    @intrinsic
    def maxnum(typingctx, a, b):  # llvm.maxnum with no-NaN flags: a vectorizable max
        if not (isinstance(a, types.Float) and isinstance(b, types.Float)):
            return None
        wide = a if a.bitwidth >= b.bitwidth else b

        def codegen(context, builder, sig, args):
            ty = context.get_value_type(wide)
            fn = cgutils.get_or_insert_function(builder.module, llvm_ir.FunctionType(
                ty, [ty, ty]), f"llvm.maxnum.f{wide.bitwidth}")
            x, y = (context.cast(builder, v, t, wide) for v, t in zip(args, sig.args))
            return builder.call(fn, [x, y], fastmath=("nnan", "nsz"))

        return wide(a, b), codegen

    @overload(_fmax, jit_options=options)
    def _fmax_typed(a, b):
        return lambda a, b: maxnum(a, b)

    @overload(_gemm_acc, jit_options=options)
    def _gemm_acc_typed(a, b, c):
        # Row-major c (m, n) = a (m, k) b (k, n) is column-major c^T = b^T a^T. Read in
        # column-major order, a C-ordered tile is its own transpose: no transpose flag then.
        xxgemm = numba_linalg._BLAS().numba_xxgemm(c.dtype)
        kind = ord(numba_linalg.get_blas_kind(c.dtype))
        one = np.ones(1, numba.np.numpy_support.as_dtype(c.dtype))  # alpha = beta = 1
        b_c, a_c = b.layout == "C", a.layout == "C"
        trans_b, trans_a = ord("n" if b_c else "t"), ord("n" if a_c else "t")

        def gemm_acc(a, b, c):
            m, k = a.shape
            n = b.shape[1]
            xxgemm(kind, trans_b, trans_a, n, m, k, one.ctypes, b.ctypes, n if b_c else k,
                   a.ctypes, k if a_c else m, one.ctypes, c.ctypes, n)

        return gemm_acc

    @overload(_exp2, jit_options=options)  # picked from x's type when typing
    def _exp2_typed(x):
        return (lambda x: _exp2_f32(x)) if x == types.float32 else (lambda x: _exp2_f64(x))

    def jit(fn):
        return numba.njit(parallel=True, cache=True, **options)(fn)

    def jit_nogil(fn):  # one thread each; called from minattn/parallel.py's threads
        return numba.njit(nogil=True, cache=True, **options)(fn)

    return {"forward": jit(_forward_kernel), "backward": jit(_backward_kernel),
            "pack": jit(_pack_kernel),
            "softmax_forward": jit_nogil(_softmax_forward_kernel),
            "softmax_backward": jit_nogil(_softmax_backward_kernel)}


_launch_lock = threading.Lock()
CHUNKSIZE = 1  # prange hands out work items one at a time (see _launch)


@contextlib.contextmanager
def _launch():
    """Around every kernel call: one launch at a time, with BLAS on one thread.

    The BLAS thread count is process-wide state, and numba's workqueue layer (if that is the
    one in use) must not be entered by two Python threads at once: it would abort the
    process. The lock makes concurrent callers wait their turn instead.
    """
    import numba

    with _launch_lock, blas.single_thread():
        # Hand out work items one at a time, as threads become free: on a shared machine a
        # thread that loses its core for a while no longer holds up the others. (Results
        # do not depend on which thread runs an item.)
        before = numba.get_parallel_chunksize()
        numba.set_parallel_chunksize(CHUNKSIZE)
        try:
            yield
        finally:
            numba.set_parallel_chunksize(before)


# -- the kernel interface: the same arguments as the references in flash.py ------------------


def _work_dtype(q, k, v):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"the numba kernels take NumPy arrays; {name} is a "
                            f"{type(x).__module__}.{type(x).__name__}")
    if not all(x.dtype.kind == "f" for x in (q, k, v)):
        raise TypeError(f"flash attention needs float arrays, got q {q.dtype}, k {k.dtype}, "
                        f"v {v.dtype}")
    dtype = np.result_type(q.dtype, k.dtype, v.dtype)
    return backend.work_dtype(dtype)  # float16: float32 sums


def _check_shapes(q, k, v, op):
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        raise ValueError(f"{op}: q, k, v must be 3-D (N, L, E), (N, S, E), (N, S, Ev); got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    if not (q.shape[0] == k.shape[0] == v.shape[0] and q.shape[2] == k.shape[2]
            and k.shape[1] == v.shape[1]):
        raise ValueError(f"{op}: shapes q {q.shape}, k {k.shape}, v {v.shape} do not fit "
                         "(N, L, E), (N, S, E), (N, S, Ev)")


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


def _bias_view(bias, N, L, S, dtype):
    """(view, has_bias): bias broadcast to (N, L, S) without a copy, or a dummy."""
    if bias is None:
        return np.broadcast_to(np.zeros((), dtype), (1, 1, 1)), False
    bias = np.asarray(bias)
    if bias.ndim > 3:
        raise ValueError(f"bias must have at most 3 axes (N, L, S), got shape {bias.shape}")
    try:
        view = np.broadcast_to(bias.astype(dtype, copy=False), (N, L, S))
    except ValueError:
        raise ValueError(f"bias of shape {bias.shape} does not broadcast to (N, L, S) = "
                         f"{(N, L, S)}") from None
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
    """(out, lse) of softmax(scale * q k^T + bias) v: flash.flash_forward, compiled.

    >>> out, lse = flash_forward(q, k, v, 1 / 8.0)   # q (N, L, E), k (N, S, E), v (N, S, Ev)
    """
    kernels = _compiled()
    _check_shapes(q, k, v, "flash_forward")
    work = _work_dtype(q, k, v)
    N, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    bq, nqb = _blocks(L, block_q)
    bk, nkb = _blocks(S, block_k)
    qp = _padded(q, nqb * bq, work)  # (N, Lp, E): no copy when L fills whole blocks
    vp = _padded(v, nkb * bk, work)  # (N, Sp, Ev)
    bias3, has_bias = _bias_view(bias, N, L, S, work)
    out = np.empty((N, L, Ev), work)
    lse = np.empty((N, L), work)
    with _launch():
        # (N, nkb, E, bk): scale log2(e) k, so that q_i kt_j is the scores in base 2
        kt = _pack(kernels, k, nkb, bk, work, float(scale) * LOG2E)
        kernels["forward"](qp, kt, vp, bias3, has_bias, bool(is_causal), L, S, _zigzag(nqb),
                           out, lse)
    return out.astype(q.dtype, copy=False), lse


def _key_groups(N: int, nkb: int, threads: int) -> int:
    """How many groups to split each head's key blocks into, so N * G work items keep every
    thread busy: the smallest G with N * G a multiple of the thread count, at most 2T / N.
    Each group beyond the first costs one more (N, L, E) array of partial dq."""
    limit = max(1, min(nkb, -(-2 * threads // max(N, 1))))
    G = 1
    while G < limit and (N * G) % threads:
        G += 1
    return G


def flash_backward(q, k, v, out, lse, dout, scale, bias=None, is_causal=False, block_q=64,
                   block_k=128):
    """(dq, dk, dv) of flash_forward, recomputing p from lse: flash.flash_backward, compiled.

    >>> dq, dk, dv = flash_backward(q, k, v, out, lse, dout, 1 / 8.0)
    """
    kernels = _compiled()
    _check_shapes(q, k, v, "flash_backward")
    work = _work_dtype(q, k, v)
    N, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    if out.shape != (N, L, Ev) or dout.shape != (N, L, Ev) or lse.shape != (N, L):
        raise ValueError(f"flash_backward: out {out.shape}, dout {dout.shape} and lse "
                         f"{lse.shape} must be (N, L, Ev) = {(N, L, Ev)} and (N, L)")
    bq, nqb = _blocks(L, block_q)
    bk, nkb = _blocks(S, block_k)
    Lp = nqb * bq
    qp = _padded(q, Lp, work)  # (N, Lp, E): no copy when L fills whole blocks
    kp = _padded(k, nkb * bk, work)  # (N, Sp, E)
    dout_p = _padded(dout, Lp, work)  # (N, Lp, Ev)
    D = np.zeros((N, Lp), work)
    D[:, :L] = np.einsum("nle,nle->nl", dout.astype(work, copy=False),
                         out.astype(work, copy=False))  # rowsum(dout * out) = rowsum(dp * p)
    lse2 = np.full((N, Lp), np.inf, work)  # log2(e) lse; +inf: p = 0 for padding rows
    lse2[:, :L] = np.where(np.isfinite(lse), lse * LOG2E, np.inf)  # ... and masked rows
    bias3, has_bias = _bias_view(bias, N, L, S, work)
    import numba

    G = _key_groups(N, nkb, numba.get_num_threads())
    dq_part = np.zeros((G, N, Lp, E), work)
    dk = np.empty((N, S, E), work)
    dv = np.empty((N, S, Ev), work)
    with _launch():
        kt = _pack(kernels, k, nkb, bk, work, float(scale) * LOG2E)  # (N, nkb, E, bk)
        vt = _pack(kernels, v, nkb, bk, work, 1.0)  # (N, nkb, Ev, bk)
        kernels["backward"](qp, kp, kt, vt, dout_p, lse2, D, bias3, has_bias,
                            bool(is_causal), L, S, bq, work.type(scale), dq_part, dk, dv)
    dq = dq_part[0] if G == 1 else dq_part.sum(axis=0)  # groups added in a fixed order
    return (np.ascontiguousarray(dq[:, :L], dtype=q.dtype), dk.astype(k.dtype, copy=False),
            dv.astype(v.dtype, copy=False))


def softmax_forward(x, out=None, empty_rows="zero"):
    """softmax over the last axis of a float NumPy array, into out (may be x) or a new array.

    A row of all -inf gives zeros (empty_rows="zero") or NaN ("nan"); a row holding NaN or
    +inf gives NaN.

    >>> y = softmax_forward(np.array([[1.0, 2.0, 3.0]]))
    """
    kernels = _compiled()
    if empty_rows not in ("nan", "zero"):
        raise ValueError(f"empty_rows must be 'nan' or 'zero', got {empty_rows!r}")
    return _rows(kernels["softmax_forward"], backend.kernel_rows(x), out, x, empty_rows == "nan")


def softmax_backward(y, dy, out=None):
    """dx = y * (dy - sum(dy * y)) over the last axis, with y = softmax_forward(x), into out
    (may be dy) or a new array.

    >>> dx = softmax_backward(y, dy)
    """
    kernels = _compiled()
    if y.shape != dy.shape:
        raise ValueError(f"softmax_backward: y {y.shape} and dy {dy.shape} differ")
    return _rows(kernels["softmax_backward"], backend.kernel_rows(y, dy), out, y)


def _rows(kernel, rows: list, out, like, *extra):
    """kernel(*row blocks of the 2-D arrays rows, the same block of the result, *extra) over
    every row; the result in out (written directly when it is C-ordered in the working
    dtype) or in a new array of like's shape and dtype."""
    work = rows[0]
    out2, into = backend.kernel_out(out, work)
    _over_rows(lambda r0, r1: kernel(*(a[r0:r1] for a in rows), out2[r0:r1], *extra),
               work.shape[0])
    return backend.kernel_result(out2, into, out, like)


def _over_rows(run, R: int) -> None:
    """run(r0, r1) on one run of rows per thread (minattn/parallel.py's pool).

    The row kernels are plain (not prange) and release the GIL, so they share the pool of
    the NumPy row blocks and large elementwise ops: no OpenMP threads are left spinning
    between a kernel and the matrix product that follows it (numba's OpenMP runtime may be
    PyTorch's, whose idle threads spin; fused attention measured 25-35% slower that way).
    """
    threads = max(1, min(parallel.num_threads(), R))
    step = -(-R // threads)
    parallel.each(lambda r0: run(r0, min(R, r0 + step)), range(0, R, step), threads)
