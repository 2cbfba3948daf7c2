"""What the three attention implementations share: input checks, masks turned into one
additive bias, the dropout keep-mask, and the guards that keep fully masked rows at zero.

Every mask becomes a float ``bias`` added to the scores: 0 where a key takes part,
-inf where it is masked out, plus any additive float mask. It keeps the smallest shape
that broadcasts to (..., L, S), so a (L, S) mask stays (L, S) for any batch.
"""

from __future__ import annotations

import math
import numbers

from .. import backend, kernels
from ..core import _as_tensors, constant_array

IMPLS = ("composed", "fused", "flash")


def check_inputs(query, key, value, op: str = "scaled_dot_product_attention"):
    """Tensors q (..., L, E), k (..., S, E), v (..., S, Ev) of one float dtype and device;
    returns them with the broadcast batch shape."""
    q, k, v = _as_tensors([query, key, value], op)
    shapes = f"query {q.shape}, key {k.shape}, value {v.shape}"
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not backend.is_float(t.dtype):
            raise TypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype} "
                            f"({shapes})")
        if t.ndim < 2:
            raise ValueError(f"{op}: {name} needs at least 2 dimensions (..., length, features)"
                             f"; got {shapes}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"{op}: query, key and value must share one dtype, got {q.dtype}, "
                        f"{k.dtype}, {v.dtype} ({shapes})")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{op}: query and key must have the same last dimension E; got "
                         f"{shapes} (E = {q.shape[-1]} vs {k.shape[-1]})")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{op}: key and value must have the same length S (axis -2); got "
                         f"{shapes} (S = {k.shape[-2]} vs {v.shape[-2]})")
    try:
        batch = backend.np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"{op}: the batch dimensions of {shapes} do not broadcast") from None
    return q, k, v, tuple(batch)


def check_options(attn_mask, is_causal, dropout_p, impl, scale,
                  op: str = "scaled_dot_product_attention") -> None:
    if is_causal and attn_mask is not None:
        raise ValueError(f"{op}: an explicit attn_mask cannot be combined with is_causal=True "
                         "(as in PyTorch); fold the causal mask into attn_mask instead")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1), got {dropout_p}")
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"{op}: unknown impl {impl!r}; expected one of {IMPLS} or None")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)
                              or not math.isfinite(scale)):
        raise TypeError(f"{op}: scale must be a finite number or None, got {scale!r}")


def make_bias(attn_mask, batch: tuple, L: int, S: int, dtype, device,
              op: str = "scaled_dot_product_attention"):
    """attn_mask as one additive bias array (0 kept, -inf masked, or the float mask itself)
    broadcastable to (*batch, L, S); None without a mask."""
    if attn_mask is None:
        return None
    target = (*batch, L, S)
    # a learned bias belongs in the scores: a mask that requires grad is an error here
    data = constant_array(attn_mask, device, op, "attn_mask", "query")
    try:
        fits = backend.np.broadcast_shapes(data.shape, target) == target
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{op}: attn_mask of shape {tuple(data.shape)} does not broadcast to "
                         f"the scores' shape {target} (..., L, S)")
    xp = backend.get_array_module(data)
    if data.dtype == bool:
        return xp.where(data, xp.zeros((), dtype), xp.asarray(-xp.inf, dtype))
    if not backend.is_float(data.dtype):
        raise TypeError(f"{op}: attn_mask must be boolean (True = takes part) or float "
                        f"(added to the scores), got {data.dtype} with shape {tuple(data.shape)}")
    return data.astype(dtype, copy=False)


def causal_bias(L: int, S: int, dtype, xp):
    """0 on and below the diagonal, -inf above: query i sees keys j <= i (top-left aligned,
    PyTorch's is_causal, also when L != S)."""
    keep = xp.tril(xp.ones((L, S), dtype=bool))  # (L, S)
    return xp.where(keep, xp.zeros((), dtype), xp.asarray(-xp.inf, dtype))


def dropout_keep(shape: tuple, dropout_p: float, dtype, device):
    """keep / (1 - p), with keep ~ Bernoulli(1 - p) from minattn's generator, or None.

    Dividing by 1 - p keeps the expectation: E[probs * keep / (1 - p)] = probs. Every
    implementation draws its mask here, so one seed gives one mask for all of them.
    """
    if dropout_p == 0:
        return None
    u = backend.generator(device).random(shape)  # uniform [0, 1), float64
    return (u >= dropout_p).astype(dtype) / dtype.type(1 - dropout_p)


def safe_row_max(scores):
    """Row max of the scores, with -inf (a fully masked row) replaced by 0.

    exp(scores - max) then never meets -inf - (-inf) = NaN: a fully masked row gives
    exp(-inf - 0) = 0 everywhere, and its probabilities are 0 / 1 = 0 once its row sum 0 is
    replaced by 1. A NaN or +inf max stays: that row is NaN, as in PyTorch.
    """
    xp = backend.get_array_module(scores)
    if scores.shape[-1] == 0:  # no keys at all: nothing to shift
        return xp.zeros((*scores.shape[:-1], 1), scores.dtype)
    m = kernels.array_module(scores).max(scores, axis=-1, keepdims=True)  # (..., L, 1)
    return unless_masked(m)


def unless_masked(m):
    """m with -inf (a row that every key is masked out of, so far) replaced by 0; a NaN or
    +inf (a row with a NaN or +inf score, which gives NaN) is kept, never hidden."""
    xp = backend.get_array_module(m)
    return xp.where(m == -xp.inf, xp.zeros((), m.dtype), m)
