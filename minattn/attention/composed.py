"""Attention composed from primitive tensor ops: the teaching baseline.

    scores = scale * q k^T + bias          (..., L, S)
    probs  = softmax(scores)               row by row over the S keys
    out    = (probs * keep) v              (..., L, Ev)

Every line is an ordinary differentiable op (matmul, mul, add, exp, sum, div, where), so
autograd derives the backward and no gradient formula is written here. The fused and flash
implementations are checked against this one.

A fully masked row (every bias -inf) would make the softmax 0/0. Here the row max is made
finite (exp(-inf - 0) = 0 everywhere) and the row sum 0 is replaced by 1, so the row's
probabilities, output and gradients are all exactly 0.
"""

from __future__ import annotations

from .. import backend
from ..core import Tensor
from ..ops import where
from .masks import causal_bias, safe_row_max


def attention_probs(q: Tensor, k: Tensor, scale: float, bias=None, is_causal: bool = False):
    """probs = softmax(scale * q k^T + bias) over the last axis; 0 for fully masked rows."""
    xp = backend.get_array_module(q.data)
    L, S = q.shape[-2], k.shape[-2]
    if is_causal:
        bias = causal_bias(L, S, q.dtype, xp)  # (L, S); never together with a mask
    # scale * (q k^T) = (scale * q) k^T: scaling the (L, E) queries, not the (L, S)
    # scores, saves a pass over the largest array forward and backward
    scores = (q * scale) @ k.swapaxes(-1, -2)  # (..., L, S)
    if bias is not None:
        scores = scores + bias  # -inf where masked
    # softmax is unchanged by a constant shift, so the row max carries no gradient
    shift = safe_row_max(scores.data)  # (..., L, 1), finite
    e = (scores - shift).exp()  # (..., L, S), 0 where masked
    denom = e.sum(axis=-1, keepdims=True)  # (..., L, 1), 0 for a fully masked row
    return e / where(denom > 0, denom, xp.ones((), q.dtype))  # (..., L, S)


def composed_attention(q: Tensor, k: Tensor, v: Tensor, scale: float, bias=None,
                       is_causal: bool = False, keep=None) -> tuple[Tensor, Tensor]:
    """(out, probs): out = (probs * keep) v with probs = softmax(scale * q k^T + bias).

    ``keep`` is the dropout mask already divided by 1 - p (or None); ``probs`` is returned
    before dropout.
    """
    probs = attention_probs(q, k, scale, bias, is_causal)  # (..., L, S)
    dropped = probs if keep is None else probs * keep  # (..., L, S)
    out = dropped @ v  # (..., L, Ev)
    return out, probs
