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

from .. import backend
from ..attention import attention
from ..core import Tensor, constant_array
from .module import Linear, Module, check_size


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
