"""Multi-head attention: project, split into heads, attend, merge, project.

    q = x_q W_q^T + b_q    (B, L, E) -> (B, H, L, D)     with D = E / H
    k = x_k W_k^T + b_k    (B, S, E) -> (B, H, S, D)
    v = x_v W_v^T + b_v    (B, S, E) -> (B, H, S, D)
    heads = scaled_dot_product_attention(q, k, v)        (B, H, L, D)
    out = merge(heads) W_o^T + b_o                       (B, L, E)

Splitting E into H heads of D features is only a reshape and a transpose; every head
attends on its own, and the output projection mixes them again.
"""

from __future__ import annotations

import math

from .. import backend
from ..attention import attention
from ..core import Tensor, constant_array
from ..ops.softmax import softmax
from .functional_nn import dropout
from .module import Linear, Module, Parameter, check_size


class MultiHeadAttention(Module):
    """Multi-head attention on batch-first inputs, as ``torch.nn.MultiheadAttention(...,
    batch_first=True)`` with separate q/k/v projections (``q_proj``, ``k_proj``, ``v_proj``,
    ``out_proj``, each a Linear(E, E)).

    ``scale=None`` is 1/sqrt(D), D = embed_dim / num_heads; ``scale=1.0`` is unscaled.
    ``impl`` picks the attention implementation (None, "composed", "fused", "flash").

    ``forward(query, key=None, value=None, attn_mask=None, is_causal=False,
    need_weights=False) -> (out, weights)``: key defaults to query and value to key
    (self-attention). Unlike torch.nn.MultiheadAttention, a boolean ``attn_mask`` marks
    with True the keys that take part, as ``scaled_dot_product_attention`` does; a float
    one is added to the scores. It is (L, S), (B, L, S) (the same for every head) or
    broadcastable to (B, H, L, S). ``weights`` is None unless ``need_weights=True``; then
    it is the per-head attention (B, H, L, S), not averaged over the heads.

    ``record = True`` keeps, after each call, ``recorded``: the heads' q, k, v (B, H, ., D),
    their output ``heads`` (B, H, L, D), whose ``.grad`` after a backward pass is dO, and the
    call's ``is_causal``, ``attn_mask`` and scale: what ``viz.plot_attention_gradients``
    needs to draw P, dP and dS of a trained model (``minattn train`` does).

    >>> mha = MultiHeadAttention(16, num_heads=4)
    >>> out, _ = mha(ma.randn(2, 5, 16), is_causal=True)
    >>> out.shape
    (2, 5, 16)
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, scale=None,
                 impl=None, device=None, dtype=None):
        super().__init__()
        embed_dim, num_heads = check_heads(embed_dim, num_heads, "MultiHeadAttention")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.scale, self.impl = scale, impl
        self.record, self.recorded = False, None  # see the class docstring
        self.q_proj = Linear(embed_dim, embed_dim, bias, device=device, dtype=dtype)
        self.k_proj = Linear(embed_dim, embed_dim, bias, device=device, dtype=dtype)
        self.v_proj = Linear(embed_dim, embed_dim, bias, device=device, dtype=dtype)
        self.out_proj = Linear(embed_dim, embed_dim, bias, device=device, dtype=dtype)

    def forward(self, query, key=None, value=None, attn_mask=None, is_causal: bool = False,
                need_weights: bool = False):
        key = query if key is None else key
        value = key if value is None else value
        query, key, value = (x if isinstance(x, Tensor) else Tensor(backend.as_array(x))
                             for x in (query, key, value))
        unbatched = query.ndim == 2
        if unbatched:  # (L, E): one sequence, as PyTorch allows
            query, key, value = (x.reshape(1, *x.shape) for x in (query, key, value))
        self._check_shapes(query, key, value)
        B, L, _ = query.shape
        S = key.shape[1]
        q = self._split_heads(self.q_proj(query))  # (B, H, L, D)
        k = self._split_heads(self.k_proj(key))  # (B, H, S, D)
        v = self._split_heads(self.v_proj(value))  # (B, H, S, D)
        if attn_mask is not None:
            attn_mask = _head_broadcast(attn_mask, query.device)  # broadcasts to (B, H, L, S)
        heads, weights = attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                   scale=self.scale, impl=self.impl,
                                   need_weights=need_weights)  # (B, H, L, D)
        if self.record:
            if heads.requires_grad:
                heads.retain_grad()  # dO, once a backward pass has run
            self.recorded = {"q": q, "k": k, "v": v, "heads": heads, "is_causal": is_causal,
                             "attn_mask": attn_mask,
                             "scale": self.head_dim**-0.5 if self.scale is None else self.scale}
        merged = heads.swapaxes(1, 2).reshape(B, L, self.embed_dim)  # (B, L, E)
        out = self.out_proj(merged)  # (B, L, E)
        if unbatched:
            out = out.reshape(L, self.embed_dim)
            weights = None if weights is None else weights.reshape(self.num_heads, L, S)
        return out, weights

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, n, E) -> (B, H, n, D): head h holds features h*D .. (h+1)*D - 1."""
        B, n, _ = x.shape
        return x.reshape(B, n, self.num_heads, self.head_dim).swapaxes(1, 2)

    def _check_shapes(self, query, key, value) -> None:
        shapes = f"query {query.shape}, key {key.shape}, value {value.shape}"
        E = self.embed_dim
        if query.ndim != 3 or key.ndim != 3 or value.ndim != 3:
            raise ValueError(f"MultiHeadAttention expects batch-first (B, L, {E}) inputs (or "
                             f"(L, {E}) for all three); got {shapes}")
        if query.shape[-1] != E or key.shape[-1] != E or value.shape[-1] != E:
            raise ValueError(f"MultiHeadAttention(embed_dim={E}): every input's last axis must "
                             f"be {E}; got {shapes}")
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(f"MultiHeadAttention: key and value must be (B, S, {E}) with the "
                             f"query's B; got {shapes}")

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, scale={self.scale}, " \
               f"impl={self.impl}"


def check_heads(embed_dim, num_heads, owner: str) -> tuple[int, int]:
    """embed_dim and num_heads as positive ints, E divisible by H (each head gets D = E / H)."""
    embed_dim = check_size(embed_dim, "embed_dim", owner, minimum=1)
    num_heads = check_size(num_heads, "num_heads", owner, minimum=1)
    if embed_dim % num_heads:
        raise ValueError(f"{owner}: embed_dim {embed_dim} must be divisible by num_heads "
                         f"{num_heads} (each head takes embed_dim / num_heads features)")
    return embed_dim, num_heads


def _head_broadcast(mask, device):
    """The mask as a backend array; a (B, L, S) one becomes (B, 1, L, S), the same for
    every head (it would otherwise broadcast B against H)."""
    mask = constant_array(mask, device, "MultiHeadAttention", "attn_mask", "query")
    return mask[:, None] if mask.ndim == 3 else mask  # (B, 1, L, S)


class MultiheadAttention(Module):
    """``torch.nn.MultiheadAttention``: PyTorch's parameters, masks and outputs, built from
    minattn ops (so a PyTorch state_dict loads and gives the same numbers).

    Parameters: ``in_proj_weight`` (3E, E) holding W_q, W_k, W_v one under the other (or
    ``q_proj_weight``, ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim) when kdim or
    vdim differ from E), ``in_proj_bias`` (3E,) and ``out_proj`` (a Linear(E, E)).

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None)``. Inputs are
    (L, N, E) or, with ``batch_first``, (N, L, E); or unbatched (L, E). Unlike
    ``scaled_dot_product_attention``, a boolean mask marks with True the positions that are
    masked OUT (PyTorch's convention here); a float mask is added to the scores.
    ``attn_mask`` is (L, S) or (N * num_heads, L, S); ``key_padding_mask`` is (N, S) (or (S,)
    unbatched). ``is_causal`` is only a hint that ``attn_mask`` is the causal mask, which
    must then be given (as in PyTorch). ``weights`` (N, L, S) is averaged over the heads
    (``average_attn_weights``) or (N, num_heads, L, S); it is taken after dropout.

    >>> mha = MultiheadAttention(16, num_heads=4, batch_first=True)
    >>> out, weights = mha(x, x, x)    # x (B, L, 16) -> out (B, L, 16), weights (B, L, L)
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        from . import init
        from .functional_nn import check_probability

        embed_dim, num_heads = check_heads(embed_dim, num_heads, "MultiheadAttention")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are "
                                      "not supported by minattn")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.kdim = embed_dim if kdim is None else check_size(kdim, "kdim", "MultiheadAttention")
        self.vdim = embed_dim if vdim is None else check_size(vdim, "vdim", "MultiheadAttention")
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.dropout = check_probability(dropout, "MultiheadAttention", "dropout")
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        xp = backend.xp_for(backend.check_device(device))
        dtype = backend.resolve_dtype(dtype) or backend.DEFAULT_DTYPE

        def empty(*shape):
            return Parameter(xp.zeros(shape, dtype=dtype))

        if self._qkv_same_embed_dim:  # PyTorch's registration order, hence its state_dict's
            self.in_proj_weight = empty(3 * embed_dim, embed_dim)
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = empty(embed_dim, embed_dim)
            self.k_proj_weight = empty(embed_dim, self.kdim)
            self.v_proj_weight = empty(embed_dim, self.vdim)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = empty(3 * embed_dim)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias, device=device, dtype=dtype)
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False
        # PyTorch's _reset_parameters: xavier_uniform_ on the input projections, zero biases
        for w in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight,
                  self.v_proj_weight):
            if w is not None:
                init.xavier_uniform_(w)
        for b in (self.in_proj_bias, self.out_proj.bias):
            if b is not None:
                init.zeros_(b)

    def _projections(self):
        """(W_q, W_k, W_v) and (b_q, b_k, b_v): slices of the packed parameters (gradients
        flow back into them through the slicing)."""
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            weights = (w[:E], w[E:2 * E], w[2 * E:])
        else:
            weights = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        b = self.in_proj_bias
        biases = (None, None, None) if b is None else (b[:E], b[E:2 * E], b[2 * E:])
        return weights, biases

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        query, key, value = (x if isinstance(x, Tensor) else Tensor(backend.as_array(x))
                             for x in (query, key, value))
        if is_causal and attn_mask is None:
            raise RuntimeError("MultiheadAttention: Need attn_mask if specifying the "
                               "is_causal hint (is_causal only tells that attn_mask is the "
                               "causal mask)")
        unbatched = query.ndim == 2
        if unbatched:  # (L, E): one sequence
            query, key, value = (x.reshape(1, *x.shape) for x in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = constant_array(key_padding_mask, query.device,
                                                  "MultiheadAttention", "key_padding_mask",
                                                  "query")[None]
        elif not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = (x.swapaxes(0, 1) for x in (query, key, value))
        self._check_shapes(query, key, value)
        N, L, E = query.shape
        S, H, D = key.shape[1], self.num_heads, self.head_dim
        (w_q, w_k, w_v), (b_q, b_k, b_v) = self._projections()
        q = _linear(query, w_q, b_q).reshape(N, L, H, D).swapaxes(1, 2)  # (N, H, L, D)
        k = _linear(key, w_k, b_k).reshape(N, S, H, D).swapaxes(1, 2)  # (N, H, S, D)
        v = _linear(value, w_v, b_v).reshape(N, S, H, D).swapaxes(1, 2)  # (N, H, S, D)
        scores = (q * (1.0 / math.sqrt(D))) @ k.swapaxes(-1, -2)  # (N, H, L, S), as PyTorch
        bias = self._mask_bias(attn_mask, key_padding_mask, N, L, S, query)
        if bias is not None:
            scores = scores + bias  # (N, H, L, S)
        probs = softmax(scores, dim=-1)  # (N, H, L, S)
        if self.training and self.dropout > 0:
            probs = dropout(probs, self.dropout)
        heads = probs @ v  # (N, H, L, D)
        out = self.out_proj(heads.swapaxes(1, 2).reshape(N, L, E))  # (N, L, E)
        weights = None
        if need_weights:
            weights = probs.mean(dim=1) if average_attn_weights else probs  # (N, [H,] L, S)
        if unbatched:
            out = out.reshape(L, E)
            weights = None if weights is None else weights.reshape(*weights.shape[1:])
        elif not self.batch_first:
            out = out.swapaxes(0, 1)  # (L, N, E)
        return out, weights

    def _mask_bias(self, attn_mask, key_padding_mask, N, L, S, query):
        """Both masks as one additive float array broadcasting to (N, H, L, S): True (masked
        out) becomes -inf; float masks are added as they are."""
        bias = None
        if attn_mask is not None:
            mask = _additive(attn_mask, query, "attn_mask")
            if mask.shape == (L, S):
                mask = mask[None, None]  # (1, 1, L, S)
            elif mask.shape == (N * self.num_heads, L, S):
                mask = mask.reshape(N, self.num_heads, L, S)
            else:
                raise RuntimeError(f"MultiheadAttention: attn_mask of shape {mask.shape}; "
                                   f"expected ({L}, {S}) or ({N * self.num_heads}, {L}, {S})")
            bias = mask
        if key_padding_mask is not None:
            pad = _additive(key_padding_mask, query, "key_padding_mask")
            if pad.shape != (N, S):
                raise RuntimeError(f"MultiheadAttention: key_padding_mask of shape "
                                   f"{pad.shape}; expected ({N}, {S})")
            pad = pad[:, None, None, :]  # (N, 1, 1, S)
            bias = pad if bias is None else bias + pad
        return bias

    def _check_shapes(self, query, key, value) -> None:
        shapes = f"query {query.shape}, key {key.shape}, value {value.shape}"
        if query.ndim != 3 or key.ndim != 3 or value.ndim != 3:
            raise ValueError(f"MultiheadAttention expects 3-D inputs (or 2-D for all three); "
                             f"got {shapes}")
        if (query.shape[-1], key.shape[-1], value.shape[-1]) != (self.embed_dim, self.kdim,
                                                                   self.vdim):
            raise ValueError(f"MultiheadAttention(embed_dim={self.embed_dim}, kdim="
                             f"{self.kdim}, vdim={self.vdim}): the last axes do not fit; got "
                             f"{shapes}")
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(f"MultiheadAttention: key and value must share the batch and "
                             f"sequence axes, and the batch with the query; got {shapes}")

    def extra_repr(self) -> str:
        return ""


def _linear(x: Tensor, weight: Tensor, bias) -> Tensor:
    out = x @ weight.T  # (..., out)
    return out if bias is None else out + bias


def _additive(mask, query: Tensor, name: str):
    """A boolean mask (True = masked out) as 0 / -inf in the query's dtype; a float mask
    as it is, cast to the query's dtype."""
    mask = constant_array(mask, query.device, "MultiheadAttention", name, "query")
    xp = backend.get_array_module(mask)
    if mask.dtype == bool:
        return xp.where(mask, -xp.inf, 0).astype(query.dtype)
    if not backend.is_float(mask.dtype):
        raise TypeError(f"MultiheadAttention: only bool and float masks are supported, got "
                        f"{name} of dtype {mask.dtype}")
    return mask.astype(query.dtype, copy=False)
