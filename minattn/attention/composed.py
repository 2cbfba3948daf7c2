"""Attention composed from primitive tensor ops: the teaching baseline.

    scores = scale * q k^T + bias          (..., L, S)
    probs  = softmax(scores)               row by row over the S keys
    out    = (probs * keep) v              (..., L, Ev)

Every line is an ordinary differentiable op (matmul, mul, add, exp, sum, div, where), so
autograd derives the backward and no gradient formula is written here. The fused and flash
implementations are checked against this one.

A fully masked row (every bias -inf) would make the softmax 0/0. Here a row max of -inf is
replaced by 0 (exp(-inf - 0) = 0 everywhere) and a row sum of 0 by 0 + 1, so the row's
probabilities, output and gradients are all exactly 0. Nothing else is replaced: a NaN or
+inf score makes its row NaN, as in PyTorch.

float16 attention is computed in float32 (backend.work_dtype) and rounded back at the end,
as PyTorch's math path does: a float16 score overflows at 65504 (d = 4096 unscaled), and
float16 sums of many probabilities lose digits. Gradients come back in float16 too.
"""

from __future__ import annotations

from .. import backend
from ..core import Tensor
from ..ops import where
from .masks import causal_bias, safe_row_max


def attention_probs(q: Tensor, k: Tensor, scale: float, bias=None, is_causal: bool = False):
    """probs = softmax(scale * q k^T + bias) over the last axis; 0 for fully masked rows.

    In q's dtype, computed in the working dtype (float32 for float16)."""
    probs = _probs(*_to_work(q, k), scale, bias, is_causal)
    return probs.to(q.dtype)


def _to_work(*tensors):
    """The tensors in their working dtype (float16 -> float32; differentiable)."""
    work = backend.work_dtype(tensors[0].dtype)
    return [t.to(work) for t in tensors]


def _probs(q: Tensor, k: Tensor, scale: float, bias=None, is_causal: bool = False):
    """softmax(scale * q k^T + bias) computed in q's own dtype (the working dtype: the
    callers cast float16 to float32 first)."""
    xp = backend.get_array_module(q.data)
    L, S = q.shape[-2], k.shape[-2]
    if is_causal:
        bias = causal_bias(L, S, q.dtype, xp)  # (L, S); never together with a mask
    elif bias is not None:
        bias = bias.astype(q.dtype, copy=False)  # a float16 mask, in float32
    # scale * (q k^T) = (scale * q) k^T: scaling the (L, E) queries, not the (L, S)
    # scores, saves a pass over the largest array forward and backward
    scores = (q * scale) @ k.swapaxes(-1, -2)  # (..., L, S)
    if bias is not None:
        scores = scores + bias  # -inf where masked
    # softmax is unchanged by a constant shift, so the row max carries no gradient
    shift = safe_row_max(scores.data)  # (..., L, 1); -inf (a fully masked row) made 0
    e = (scores - shift).exp()  # (..., L, S), 0 where masked
    denom = e.sum(axis=-1, keepdims=True)  # (..., L, 1), 0 for a fully masked row
    # 0 becomes 0 + 1, not a constant 1: the gradient still flows through the row sum, which
    # carries a NaN from dP to the whole row (as rowsum(dP * P) does in the softmax backward)
    return e / where(denom == 0, denom + 1, denom)  # (..., L, S); a NaN stays NaN


def composed_attention(q: Tensor, k: Tensor, v: Tensor, scale: float, bias=None,
                       is_causal: bool = False, keep=None) -> tuple[Tensor, Tensor]:
    """(out, probs): out = (probs * keep) v with probs = softmax(scale * q k^T + bias).

    ``keep`` is the dropout mask already divided by 1 - p (or None); ``probs`` is returned
    before dropout.
    """
    q_, k_, v_ = _to_work(q, k, v)  # float16 -> float32
    probs = _probs(q_, k_, scale, bias, is_causal)  # (..., L, S)
    dropped = probs if keep is None else probs * keep.astype(probs.dtype, copy=False)
    out = dropped @ v_  # (..., L, Ev)
    return out.to(q.dtype), probs.to(q.dtype)
