"""minattn.functional: softmax, log_softmax, cross_entropy, scaled_dot_product_attention.

>>> import minattn.functional as F
>>> p = F.softmax(ma.randn(2, 5), axis=-1)
>>> out = F.scaled_dot_product_attention(ma.randn(2, 4, 8), ma.randn(2, 6, 8), ma.randn(2, 6, 3))
"""

from __future__ import annotations

from . import backend
from .attention import attention
from .core import Tensor, _as_tensors, constant_array
from .nn.functional_nn import dropout, embedding, gelu, layer_norm
from .ops import matmul
from .ops.softmax import log_softmax, softmax


def cross_entropy(logits, target) -> Tensor:
    """Mean over the batch of -log softmax(logits)[target], through log_softmax.

    logits (N, C) or (C,); target integer class indices (N,) or a single one; the mean
    reduction of ``torch.nn.functional.cross_entropy``.

    >>> loss = F.cross_entropy(ma.randn(4, 10, requires_grad=True), [1, 0, 9, 3])
    >>> loss.backward()
    """
    (logits,) = _as_tensors([logits], "cross_entropy")
    if not backend.is_float(logits.dtype):
        raise TypeError(f"cross_entropy: logits must be floating point, got {logits.dtype} "
                        f"with shape {logits.shape}")
    if logits.ndim not in (1, 2):
        raise ValueError(f"cross_entropy: logits must be (N, C) or (C,), got shape "
                         f"{logits.shape}")
    target = _target_array(target, logits)
    batched = logits.ndim == 2
    N, C = logits.shape if batched else (1, logits.shape[0])
    expected = (N,) if batched else ()
    if tuple(target.shape) != expected:
        raise ValueError(f"cross_entropy: target of shape {tuple(target.shape)} does not fit "
                         f"logits of shape {logits.shape}: expected shape {expected}")
    xp = backend.get_array_module(target)
    if target.size and bool(((target < 0) | (target >= C)).any()):
        raise IndexError(f"cross_entropy: target holds class indices outside [0, {C}) "
                         f"for logits of shape {logits.shape}")
    logp = log_softmax(logits if batched else logits.reshape(1, C), axis=-1)  # (N, C)
    picked = logp[xp.arange(N), target.reshape(N)]  # (N,): log-probability of each target
    return -picked.mean()


def _target_array(target, logits: Tensor):
    """Integer class indices as a backend array on the logits' device."""
    target = constant_array(target, logits.device, "cross_entropy", "target", "logits")
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got "
                        f"{target.dtype} with shape {tuple(target.shape)}")
    return target


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, impl=None) -> Tensor:
    """softmax(scale * query key^T + mask) value, with PyTorch's semantics.

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev); the leading
    batch axes broadcast. Tensors or backend arrays of one float dtype.

    - ``attn_mask``: boolean (True = the key takes part) or float (added to the scores),
      broadcastable to (..., L, S). It is a constant: no gradient flows into it.
    - ``is_causal``: query i sees keys j <= i (top-left aligned, also when L != S);
      it cannot be combined with ``attn_mask`` (an error, as in PyTorch).
    - ``scale``: None for 1/sqrt(E); any float, 1.0 for unscaled attention.
    - ``dropout_p``: dropout on the attention probabilities, drawn from minattn's generator
      (reproducible after ``ma.manual_seed``); applied whenever > 0, as in PyTorch.
    - ``impl``: "composed" (primitive ops, autograd), "fused" (one op, hand-written backward)
      or "flash" (tiles, online softmax, memory linear in L and S; no dropout: it raises a
      ValueError pointing to "fused"). None picks "fused" when dropout is on; on the CPU,
      "flash" where the numba kernels exist and B*H*L*S >= 2^16, else "fused"; on the GPU,
      "fused" when a backward pass will follow and its (L, S) arrays fit in free GPU
      memory, else "flash".

    A query row that every key is masked out of gives zeros, in the output and in every
    gradient. A plain softmax gives NaN there (0/0), as PyTorch's math path did for years
    (PyTorch issue #41508); recent PyTorch releases return zeros too.

    >>> q, k, v = ma.randn(2, 4, 8), ma.randn(2, 6, 8), ma.randn(2, 6, 3)
    >>> F.scaled_dot_product_attention(q, k, v, is_causal=True).shape
    (2, 4, 3)
    """
    out, _ = attention(query, key, value, attn_mask, dropout_p, is_causal, scale, impl)
    return out


__all__ = ["cross_entropy", "dropout", "embedding", "gelu", "layer_norm", "log_softmax",
           "matmul", "scaled_dot_product_attention", "softmax"]
