"""minattn.functional: PyTorch's ``torch.nn.functional`` (also ``minattn.nn.functional``).

Activations (relu, gelu, silu, sigmoid, tanh, softmax, log_softmax), dropout, pad, one_hot,
linear, layer_norm, embedding, the losses (cross_entropy, nll_loss, mse_loss,
binary_cross_entropy_with_logits) and scaled_dot_product_attention, with PyTorch's
arguments.

>>> import minattn.nn.functional as F
>>> p = F.softmax(ma.randn(2, 5), dim=-1)
>>> out = F.scaled_dot_product_attention(ma.randn(2, 4, 8), ma.randn(2, 6, 8), ma.randn(2, 6, 3))
"""

from __future__ import annotations

import sys

from . import backend
from .attention import attention
from .core import Tensor, _as_tensors, constant_array
from .nn import functional_nn as _fnn
from .nn.functional_nn import embedding, gelu, layer_norm, logsigmoid, pad, sigmoid
from .nn.losses import binary_cross_entropy_with_logits, cross_entropy, mse_loss, nll_loss
from .ops import matmul, tanh
from .ops import relu as _relu
from .ops.softmax import log_softmax as _log_softmax
from .ops.softmax import softmax as _softmax


def relu(input, inplace: bool = False) -> Tensor:
    """max(x, 0), as ``torch.nn.functional.relu`` (``inplace``: written over the input)."""
    return input._inplace("relu", _relu) if inplace else _relu(input)


def silu(input, inplace: bool = False) -> Tensor:
    """x * sigmoid(x), as ``torch.nn.functional.silu`` (``inplace``: written over the input)."""
    return input._inplace("silu", _fnn.silu) if inplace else _fnn.silu(input)


def softmax(input, dim=None, _stacklevel: int = 3, dtype=None, *, axis=None) -> Tensor:
    """e^x / sum(e^x) along ``dim`` (``axis`` is NumPy's alias); ``dtype`` casts the input
    first, as PyTorch."""
    return _softmax(_cast(input, dtype, "softmax"), dim, axis=axis)


def log_softmax(input, dim=None, _stacklevel: int = 3, dtype=None, *, axis=None) -> Tensor:
    """x - log sum(e^x) along ``dim``; ``dtype`` casts the input first, as PyTorch."""
    return _log_softmax(_cast(input, dtype, "log_softmax"), dim, axis=axis)


def _cast(x, dtype, op: str):
    if dtype is None:
        return x
    (x,) = _as_tensors([x], op)
    return x.astype(backend.resolve_dtype(dtype))


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity when
    ``training`` is False), as ``torch.nn.functional.dropout``. With ``inplace=True`` the
    result is also written into ``input`` when no graph runs through it.

    >>> F.dropout(ma.ones(2, 3), p=0.5, training=False).numpy().tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    if inplace and isinstance(input, Tensor):  # written over the input, in the graph or not
        return input._inplace("dropout", lambda x: _fnn.dropout(x, p, training))
    return _fnn.dropout(input, p, training)


def linear(input, weight, bias=None) -> Tensor:
    """input @ weight^T + bias, weight (out_features, in_features), as ``F.linear``."""
    input, weight = _as_tensors([input, weight], "linear")
    if weight.ndim not in (1, 2) or input.shape[-1:] != weight.shape[-1:]:
        raise RuntimeError(f"linear: input of shape {input.shape} and weight of shape "
                           f"{weight.shape} cannot be multiplied (the last axes must match)")
    out = input @ weight.T if weight.ndim == 2 else input @ weight  # (..., out_features)
    return out if bias is None else out + bias


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """Integer class indices (...) -> int64 (..., num_classes) with a 1 at each index;
    ``num_classes=-1`` is max + 1. Not differentiable, as in PyTorch.

    >>> F.one_hot(ma.tensor([0, 2])).numpy().tolist()
    [[1, 0, 0], [0, 0, 1]]
    """
    device = tensor.device if isinstance(tensor, Tensor) else backend.default_device()
    index = constant_array(tensor, device, "one_hot", "tensor", "it")
    if index.dtype.kind not in "iu":
        raise RuntimeError(f"one_hot is only applicable to index tensors, got {index.dtype}")
    xp = backend.get_array_module(index)
    if num_classes == -1:
        if index.size == 0:
            raise RuntimeError("one_hot: can not infer total number of classes from an empty "
                               "tensor")
        num_classes = int(index.max()) + 1
    if index.size and int(index.min()) < 0:
        raise RuntimeError("one_hot: Class values must be non-negative.")
    if index.size and int(index.max()) >= num_classes:
        raise RuntimeError(f"one_hot: Class values must be smaller than num_classes "
                           f"({num_classes}), got {int(index.max())}")
    out = (index[..., None] == xp.arange(num_classes)).astype(xp.int64)  # (..., num_classes)
    return Tensor(out)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, enable_gqa: bool = False,
                                 impl=None) -> Tensor:
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
    - ``enable_gqa``: grouped-query attention, as PyTorch: query (..., Hq, L, E) with key
      and value (..., Hkv, S, .), Hq a multiple of Hkv; each key/value head serves Hq / Hkv
      consecutive query heads.
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
    if enable_gqa:
        key, value = _repeat_kv_heads(query, key, value)
    out, _ = attention(query, key, value, attn_mask, dropout_p, is_causal, scale, impl)
    return out


def _repeat_kv_heads(query, key, value):
    """Key and value heads repeated to the query's head count (axis -3), as
    ``repeat_interleave``: head h of the query reads key head h // (Hq / Hkv)."""
    query, key, value = _as_tensors([query, key, value], "scaled_dot_product_attention")
    if min(query.ndim, key.ndim, value.ndim) < 3:
        raise ValueError(f"scaled_dot_product_attention: enable_gqa needs a head axis (-3); "
                         f"got query {query.shape}, key {key.shape}, value {value.shape}")
    Hq, Hk, Hv = query.shape[-3], key.shape[-3], value.shape[-3]
    if Hk != Hv or Hk == 0 or Hq % Hk:
        raise RuntimeError(f"scaled_dot_product_attention: with enable_gqa the query heads "
                           f"({Hq}) must be a multiple of the key and value heads ({Hk}, {Hv})")
    if Hq == Hk:
        return key, value
    xp = backend.get_array_module(key.data)
    heads = xp.arange(Hq) // (Hq // Hk)  # (Hq,) the key head of each query head
    index = (Ellipsis, heads, slice(None), slice(None))
    return key[index], value[index]


__all__ = ["binary_cross_entropy_with_logits", "cross_entropy", "dropout", "embedding",
           "gelu", "layer_norm", "linear", "log_softmax", "logsigmoid", "matmul", "mse_loss",
           "nll_loss", "one_hot", "pad", "relu", "scaled_dot_product_attention", "sigmoid",
           "silu", "softmax", "tanh"]

# ``import minattn.nn.functional as F`` and ``minattn.nn.functional`` name this module
sys.modules[f"{__package__}.nn.functional"] = sys.modules[__name__]
sys.modules[f"{__package__}.nn"].functional = sys.modules[__name__]
