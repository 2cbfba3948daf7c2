"""Scaled dot-product attention, three ways that must agree.

- ``composed``: primitive tensor ops; autograd derives the backward (composed.py);
- ``fused``: one op, backward by hand over the saved probabilities (fused.py);
- ``flash``: tiles and the online softmax; saves only the output and the row
  log-sum-exp, so memory grows linearly with the sequence length (flash.py).

``minattn.functional.scaled_dot_product_attention`` is the public entry point; it calls
``attention`` below, which checks the inputs, turns the masks into one additive bias,
draws the dropout mask and hands over to the implementation.
"""

from __future__ import annotations

import math

from .. import backend
from ..core import is_grad_enabled
from .composed import attention_probs, composed_attention
from .flash import flash_attention, has_fast_kernels
from .fused import fused_attention
from .masks import IMPLS, check_inputs, check_options, dropout_keep, make_bias

# Below about this many scores (B*H*L*S) one fused op is as fast as the tiled kernels,
# whose per-call overhead then dominates; above it the numba kernels win (at 2^17 scores,
# 1.1 against 1.9 ms forward+backward; "Small shapes" in benchmarks/RESULTS.md).
FLASH_MIN_SCORES = 2**16

# On the GPU, fused attention (cuBLAS products) runs forward+backward faster than the CUDA
# flash kernels (74 against 95 ms at B=4, H=16, L=S=4096 on an H200; the flash kernels
# were faster forward only, 21 against 30 ms). It holds a few (..., L, S) arrays at once
# (scores becoming P, dP becoming dS, cuBLAS's workspace), so it is picked only while
# this many of them fit in the GPU memory still free; past that, flash.
FUSED_GPU_ARRAYS = 4


def _default_impl(q, dropout_p: float, S: int | None = None, needs_grad: bool = False) -> str:
    """What ``impl=None`` runs for the query array q (..., L, E) and S keys.

    Dropout needs the materialized probabilities, so "fused". On the CPU: "flash" when
    compiled flash kernels exist and the problem is large enough for tiles to pay off, else
    "fused" (the NumPy flash reference loops over tiles in Python: exact, but slower than one
    matmul). On the GPU: "fused" when a backward pass will follow (``needs_grad``) and its
    (..., L, S) arrays fit in the free GPU memory, else "flash".
    """
    if dropout_p > 0:
        return "fused"
    scores = q.size // q.shape[-1] * (q.shape[-2] if S is None else S)  # B * H * L * S
    if backend.is_cupy_array(q):
        need = FUSED_GPU_ARRAYS * scores * q.itemsize
        return "fused" if needs_grad and need <= backend.gpu_memory_available() else "flash"
    return "flash" if has_fast_kernels(q) and scores >= FLASH_MIN_SCORES else "fused"


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
    scale = 1 / math.sqrt(E) if scale is None else float(scale)
    bias = make_bias(attn_mask, batch, L, S, q.dtype, q.device, op)  # (..., L, S) or None
    needs_grad = is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    impl = impl or _default_impl(q.data, dropout_p, S, needs_grad)
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
