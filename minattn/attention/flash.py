"""FlashAttention: attention in blocks, with memory linear in the sequence length.

The dense implementations hold the (L, S) probabilities. Here the queries are cut into
blocks of ``block_q`` rows and the keys into blocks of ``block_k``; only one
(block_q, block_k) tile of scores exists at a time.

Forward (online softmax, Milakov & Gimelshein 2018): for each query block, walk over the key
blocks keeping per row a running max m, a running sum l = sum exp(s - m) and an accumulator
acc = sum exp(s - m) v. When a new block raises the max from m_old to m_new, everything
summed so far was scaled by exp(-m_old) and must be scaled by exp(-m_new) instead: multiply
l and acc by exp(m_old - m_new). At the end, out = acc / l.

What is saved for backward, and why: only out (L, Ev) and the row statistics m and log(l)
(L,) each, besides the inputs. Backward recomputes each tile P = exp((S - m) - log l), which
is exactly the softmax (m + log l is the log of the row's normaliser), and replaces
rowsum(dP * P), which would need a whole row of P, by D = rowsum(dO * O) (Dao et al. 2022;
FlashAttention-2, Dao 2023):

    rowsum(dP * P)_i = sum_j (dO_i . V_j) P_ij = dO_i . (sum_j P_ij V_j) = dO_i . O_i

Why two numbers per row and not their sum, the log-sum-exp: m is as large as the scores, and
a float32 sum m + log l at |m| ~ 1e9 (a masked_fill(-1e9) row) has a step of 64, so log l,
at most log S, would be rounded away and every p of the row be off by a factor of up to S.
Kept apart, s - m is exact at the max (the same s, recomputed) and log l keeps its digits.

Fully masked rows have m = -inf and l = 0: their out is 0 and log l is -inf; the backward
takes their p as 0, so every gradient they feed is 0, never NaN. A NaN is never hidden: a
row with a NaN or +inf score (masked or not, as in PyTorch, where NaN - inf is NaN) gives
NaN, and its m says so (NaN or +inf).

The two functions below are readable NumPy/CuPy references (``xp``). Compiled twins for the
CPU (numba) and the GPU (CUDA) live in minattn/kernels/, take exactly the same arguments and
are tested against them; the FlashAttention op calls ``kernels.run(flash_forward, ...)``,
which runs the twin for the arrays' device when there is one (and the scores are finite:
``kernels.choice.finite_scores``).
"""

from __future__ import annotations

import math

from .. import backend, kernels
from ..core import Function
from ..ops.arithmetic import unbroadcast
from .masks import unless_masked

BLOCK_Q = 64  # rows of queries per tile; read at call time, so tests may shrink them
BLOCK_K = 128  # keys per tile (the CPU kernels' fastest tiling, docs/performance.md)


# -- the kernel interface: (N, L, E) arrays in, arrays out -------------------------------------


def flash_forward(q, k, v, scale, bias=None, is_causal=False, block_q=64, block_k=64):
    """(out, (m, log_l)) of softmax(scale * q k^T + bias) v, one (block_q, block_k) tile at a
    time.

    q (N, L, E), k (N, S, E), v (N, S, Ev); ``bias`` None or a float array broadcastable
    to (N, L, S) (0 kept, -inf masked, plus any additive mask); ``is_causal`` masks key j
    for query i when j > i. Returns out (N, L, Ev) in q's dtype and the row statistics, both
    (N, L) in the working dtype: m, the row max of the scores exactly as computed, and
    log_l = log sum_j exp(s_ij - m_i). A row where every key is masked has m = log_l = -inf
    and out 0; one with a NaN or +inf score has m NaN or +inf and out NaN. Loop nest::

        for each query block i:                      m = -inf, l = 0, acc = 0
            for each key block j (j <= i if causal):
                s = scale * q_i k_j^T + bias_ij       (N, bq, bk)
                m_new = max(m, rowmax(s)); p = exp(s - m_new)
                l = exp(m - m_new) l + rowsum(p); acc = exp(m - m_new) acc + p v_j
            out_i = acc / l; log_l_i = log(l)
    """
    xp = backend.get_array_module(q)
    N, L, _ = q.shape
    S, Ev = k.shape[1], v.shape[2]
    work = backend.work_dtype(q.dtype)  # float16 tiles are summed in float32
    bias = _as_3d(bias)
    # a NaN or +inf score above the diagonal makes its row NaN (PyTorch computes it): the
    # tiles there are skipped only when no score can be one
    skip = is_causal and kernels.choice.finite_scores(q, k, v, scale, bias)
    out = xp.empty((N, L, Ev), dtype=q.dtype)
    row_max = xp.empty((N, L), dtype=work)
    log_l = xp.empty((N, L), dtype=work)
    with backend.np.errstate(invalid="ignore"):  # inf - inf = NaN for a +inf score is meant
        # --8<-- [start:flash_forward_loop]
        for i0 in range(0, L, block_q):
            i1 = min(i0 + block_q, L)
            q_i = q[:, i0:i1].astype(work, copy=False)  # (N, bq, E)
            m = xp.full((N, i1 - i0), -xp.inf, dtype=work)  # running row max
            l = xp.zeros((N, i1 - i0), dtype=work)  # running sum of exp(s - m)
            acc = xp.zeros((N, i1 - i0, Ev), dtype=work)  # running sum of exp(s - m) v
            for j0 in range(0, _keys_end(S, i1, skip), block_k):
                j1 = min(j0 + block_k, S)
                s = _tile_scores(q_i, k[:, j0:j1].astype(work, copy=False), scale, bias,
                                 is_causal, i0, i1, j0, j1)  # (N, bq, bk)
                m_new = xp.maximum(m, s.max(axis=-1))  # (N, bq); NaN stays NaN
                m_safe = unless_masked(m_new)  # a row masked so far has m_new = -inf: 0
                p = xp.exp(s - m_safe[..., None])  # (N, bq, bk)
                alpha = xp.exp(m - m_safe)  # (N, bq): moves old sums from exp(-m) to exp(-m_new)
                l = alpha * l + p.sum(axis=-1)  # (N, bq)
                acc = alpha[..., None] * acc + p @ v[:, j0:j1].astype(work, copy=False)
                m = m_new
            masked = m == -xp.inf  # (N, bq): every key of the row is masked
            l_safe = xp.where(masked, xp.ones((), work), l)
            out[:, i0:i1] = acc / l_safe[..., None]  # (N, bq, Ev): 0 / 1 where masked
            row_max[:, i0:i1] = m
            log_l[:, i0:i1] = xp.where(masked, xp.asarray(-xp.inf, work), xp.log(l_safe))
        # --8<-- [end:flash_forward_loop]
    return out, (row_max, log_l)


def flash_backward(q, k, v, out, stats, dout, scale, bias=None, is_causal=False, block_q=64,
                   block_k=64):
    """(dq, dk, dv) of flash_forward, recomputing each tile's probabilities from the row
    statistics.

    Same arguments as flash_forward plus its out (N, L, Ev) and stats (m, log_l), (N, L)
    each, and the upstream dout (N, L, Ev). Loop nest (outer over keys, so dk_j and dv_j
    stay local)::

        D = rowsum(dout * out)                                        (N, L)
        for each key block j:
            for each query block i (i >= j if causal):
                p = exp((scale * q_i k_j^T + bias_ij - m_i) - log_l_i)   (N, bq, bk)
                dv_j += p^T dout_i;  dp = dout_i v_j^T
                ds = p * (dp - D_i)
                dq_i += scale * ds k_j;  dk_j += scale * ds^T q_i
    """
    # O = P V, P = softmax(S)  =>  dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dP * P)),
    # and rowsum(dP * P)_i = dO_i . O_i = D_i, so dS needs no whole row of P;
    # S = scale * Q K^T  =>  dQ = scale * dS K, dK = scale * dS^T Q, summed tile by tile.
    xp = backend.get_array_module(q)
    N, L, E = q.shape
    S, Ev = k.shape[1], v.shape[2]
    work = backend.work_dtype(q.dtype)
    bias = _as_3d(bias)
    # --8<-- [start:flash_D]
    D = (dout.astype(work) * out.astype(work)).sum(axis=-1)  # (N, L) = rowsum(dP * P)
    m, log_l = stats
    masked = m == -xp.inf  # (N, L): rows that every key is masked out of
    # their s is -inf everywhere: with m = log_l = 0 there, p = exp(-inf) = 0, and no
    # -inf - (-inf) is ever formed
    m = xp.where(masked, xp.zeros((), work), m).astype(work, copy=False)
    log_l = xp.where(masked, xp.zeros((), work), log_l).astype(work, copy=False)
    # --8<-- [end:flash_D]
    skip = is_causal and kernels.choice.finite_scores(q, k, v, scale, bias, dout)
    dq = xp.zeros((N, L, E), dtype=work)
    dk = xp.zeros((N, S, E), dtype=work)
    dv = xp.zeros((N, S, Ev), dtype=work)
    with backend.np.errstate(invalid="ignore"):  # inf - inf = NaN for a +inf score is meant
        # --8<-- [start:flash_backward_loop]
        for j0 in range(0, S, block_k):
            j1 = min(j0 + block_k, S)
            k_j = k[:, j0:j1].astype(work, copy=False)  # (N, bk, E)
            v_j = v[:, j0:j1].astype(work, copy=False)  # (N, bk, Ev)
            for i0 in range(_queries_start(j0, block_q, skip), L, block_q):
                i1 = min(i0 + block_q, L)
                q_i = q[:, i0:i1].astype(work, copy=False)  # (N, bq, E)
                dout_i = dout[:, i0:i1].astype(work, copy=False)  # (N, bq, Ev)
                s = _tile_scores(q_i, k_j, scale, bias, is_causal, i0, i1, j0, j1)
                # the softmax, recomputed: s - m first, exact at the row's max
                p = xp.exp((s - m[:, i0:i1, None]) - log_l[:, i0:i1, None])  # (N, bq, bk)
                dv[:, j0:j1] += p.swapaxes(-1, -2) @ dout_i  # (N, bk, Ev)
                dp = dout_i @ v_j.swapaxes(-1, -2)  # (N, bq, bk)
                ds = p * (dp - D[:, i0:i1, None])  # (N, bq, bk)
                dq[:, i0:i1] += (ds @ k_j) * scale  # (N, bq, E)
                dk[:, j0:j1] += (ds.swapaxes(-1, -2) @ q_i) * scale  # (N, bk, E)
        # --8<-- [end:flash_backward_loop]
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


# -- tile helpers ---------------------------------------------------------------------------


def _as_3d(bias):
    """A bias of up to 3 axes as (N or 1, L or 1, S or 1)."""
    return None if bias is None else bias.reshape((1,) * (3 - bias.ndim) + tuple(bias.shape))


def _tile_scores(q_i, k_j, scale, bias, is_causal, i0, i1, j0, j1):
    """s = scale * q_i k_j^T + bias[:, i0:i1, j0:j1], plus -inf above the diagonal if causal
    (added, as PyTorch does: a NaN or +inf score stays NaN where it is masked)."""
    xp = backend.get_array_module(q_i)
    s = (q_i @ k_j.swapaxes(-1, -2)) * scale  # (N, bq, bk)
    if bias is not None:
        rows = slice(i0, i1) if bias.shape[1] != 1 else slice(None)  # a size-1 axis broadcasts
        cols = slice(j0, j1) if bias.shape[2] != 1 else slice(None)
        s = s + bias[:, rows, cols]
    if is_causal and j1 - 1 > i0:  # some key of the tile comes after some query
        after = xp.arange(j0, j1)[None, :] > xp.arange(i0, i1)[:, None]  # (bq, bk)
        s = s + xp.where(after, xp.asarray(-xp.inf, s.dtype), xp.zeros((), s.dtype))
    return s


def _keys_end(S: int, i1: int, skip: bool) -> int:
    """Causal (``skip``): the queries below i1 see no key at or after i1, so stop there."""
    return min(S, i1) if skip else S


def _queries_start(j0: int, block_q: int, skip: bool) -> int:
    """Causal (``skip``): no query before j0 sees key j0 or later; start at the block
    holding j0."""
    return (j0 // block_q) * block_q if skip else 0


# -- the op ---------------------------------------------------------------------------------


class FlashAttention(Function):
    """O = softmax(scale * Q K^T + bias) V in tiles; saves only O and the row statistics
    (max and log of the sum).

    ``apply(q, k, v, scale=..., bias=None, is_causal=False)`` with q (..., L, E),
    k (..., S, E), v (..., S, Ev) and a bias broadcastable to (..., L, S). The batch axes
    are broadcast and flattened into one axis N for the kernels, and the gradients are
    summed back over the axes each input was broadcast along. No dropout: for dropout use
    the "fused" implementation.
    """

    saves_output = True  # the backward reads out (with q, k, v and the row statistics)

    def forward(self, q, k, v):
        self.batch = tuple(backend.np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
        self.shapes = q.shape, k.shape, v.shape
        L, Ev = q.shape[-2], v.shape[-1]
        q3, k3, v3 = (_flatten_batch(x, self.batch) for x in (q, k, v))  # (N, ., .)
        bias3 = _flatten_bias(self.bias, self.batch)  # (N or 1, L or 1, S or 1)
        out3, (m, log_l) = kernels.run(flash_forward, q3, k3, v3, self.scale, bias3,
                                       self.is_causal, BLOCK_Q, BLOCK_K)  # (N, L, Ev), (N, L) x 2
        self.saved = q3, k3, v3, bias3, out3, m, log_l  # no (L, S) array among them
        return out3.reshape(*self.batch, L, Ev)

    def backward(self, dout):
        # dQ, dK, dV by flash_backward: P = exp((S - m) - log l) recomputed tile by tile,
        # dS = P * (dP - D) with D = rowsum(dO * O); then each gradient is summed
        # over the batch axes its input was broadcast along.
        q3, k3, v3, bias3, out3, m, log_l = self.saved
        dout3 = dout.reshape(out3.shape)  # (N, L, Ev)
        dq, dk, dv = kernels.run(flash_backward, q3, k3, v3, out3, (m, log_l), dout3,
                                 self.scale, bias3, self.is_causal, BLOCK_Q, BLOCK_K)
        grads = []
        for d, shape in zip((dq, dk, dv), self.shapes):
            grads.append(unbroadcast(d.reshape(*self.batch, *d.shape[1:]), shape))
        return tuple(grads)


def _flatten_batch(x, batch: tuple):
    """(*batch, n, d) from x by broadcasting, flattened to (N, n, d); a copy only if stretched."""
    xp = backend.get_array_module(x)
    N = math.prod(batch)  # not -1: an empty axis would leave -1 undetermined
    return xp.broadcast_to(x, (*batch, *x.shape[-2:])).reshape(N, *x.shape[-2:])


def _flatten_bias(bias, batch: tuple):
    """A bias broadcastable to (*batch, L, S) as (N or 1, L or 1, S or 1) for the kernels.

    Only a bias that has some batch axes but not all of them is broadcast over the batch
    (a copy of N x L x S); a (L, S) or (1, ..., 1, L, S) one stays as it is.
    """
    if bias is None:
        return None
    xp = backend.get_array_module(bias)
    bias = bias.reshape((1,) * (len(batch) + 2 - bias.ndim) + tuple(bias.shape))
    own, tail = tuple(bias.shape[:-2]), tuple(bias.shape[-2:])
    if all(n == 1 for n in own):
        return bias.reshape(1, *tail)
    if own != batch:
        bias = xp.broadcast_to(bias, (*batch, *tail))
    return bias.reshape(math.prod(batch), *tail)


def flash_attention(q, k, v, scale: float, bias=None, is_causal: bool = False):
    """O = softmax(scale * q k^T + bias) v as one FlashAttention op (a Tensor)."""
    return FlashAttention.apply(q, k, v, scale=scale, bias=bias, is_causal=is_causal)
