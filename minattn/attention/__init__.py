"""Scaled dot-product attention, three ways that must agree.

- ``composed``: primitive tensor ops; autograd derives the backward (composed.py);
- ``fused``: one op, backward by hand over the saved probabilities (fused.py);
- ``flash``: tiles and the online softmax; saves only the output and the row statistics
  (max and log-sum), so memory grows linearly with the sequence length (flash.py).

``minattn.functional.scaled_dot_product_attention`` is the public entry point; it calls
``attention`` below, which checks the inputs, turns the masks into one additive bias,
draws the dropout mask and hands over to the implementation. ``impl=None`` asks
``kernels.fastest_attention``, which knows what the measurements say is fastest.
"""

from __future__ import annotations

import math

from .. import kernels
from ..core import is_grad_enabled
from .composed import attention_probs, composed_attention
from .flash import flash_attention
from .fused import fused_attention
from .masks import IMPLS, check_inputs, check_options, dropout_keep, make_bias


def attention(query, key, value, attn_mask=None, dropout_p: float = 0.0, is_causal=False,
              scale=None, impl=None, need_weights: bool = False):
    """(out, weights): scaled_dot_product_attention, plus the attention weights if asked.

    ``weights`` is None unless ``need_weights``; then it is softmax(scale * q k^T + mask)
    (..., L, S) before dropout, a differentiable Tensor. With impl "fused" or "flash" it is
    computed separately, so those paths build no (L, S) array unless it is asked for.
    """
    op = "scaled_dot_product_attention"
    check_options(attn_mask, is_causal, dropout_p, impl, scale, op)
    q, k, v, batch = check_inputs(query, key, value, op)
    L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
    if scale is None:  # 1/sqrt(E); with E = 0 every score is an empty sum, 0, whatever the scale
        scale = 1 / math.sqrt(E) if E else 1.0
    scale = float(scale)
    bias = make_bias(attn_mask, batch, L, S, q.dtype, q.device, op)  # (..., L, S) or None
    needs_grad = is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    impl = impl or kernels.fastest_attention(q.data, S, dropout_p, needs_grad)
    if impl == "flash" and dropout_p > 0:
        raise ValueError(f"{op}: impl='flash' does not support dropout (dropout_p="
                         f"{dropout_p}); use impl='fused' (or impl=None)")
    keep = dropout_keep((*batch, L, S), dropout_p, q.dtype, q.device)  # (..., L, S) or None

    probs = None
    if impl == "composed":
        out, probs = composed_attention(q, k, v, scale, bias, is_causal, keep)
    elif impl == "fused":
        out = fused_attention(q, k, v, scale, bias, is_causal, keep)
    else:
        out = flash_attention(q, k, v, scale, bias, is_causal)
    if need_weights and probs is None:
        probs = attention_probs(q, k, scale, bias, is_causal)
    return out, (probs if need_weights else None)


__all__ = ["IMPLS", "attention", "attention_probs", "composed_attention", "flash_attention",
           "fused_attention"]
