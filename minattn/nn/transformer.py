"""A pre-norm transformer block and a small decoder-only language model built from it.

    x = x + dropout(attn(ln1(x)))     # tokens look at each other
    x = x + dropout(mlp(ln2(x)))      # each token on its own: Linear, GELU, Linear

Pre-norm (layer norm *before* each sublayer, as GPT-2) keeps the residual path an
identity, so gradients reach the first layers unchanged; it trains without warm-up
tricks at the sizes used here. ``scale`` is handed to the attention: None is 1/sqrt(d),
1.0 is unscaled attention (what ``minattn train --compare-scaling`` studies).
"""

from __future__ import annotations

import math
import numbers

from .. import backend
from ..core import Tensor
from .attention import MultiHeadAttention, check_heads
from .layers import GELU, Dropout, Embedding, LayerNorm
from .module import Linear, Module, ModuleList, check_size


class MLP(Module):
    """fc2(dropout(gelu(fc1(x)))): (..., E) -> (..., hidden) -> (..., E)."""

    def __init__(self, embed_dim: int, hidden_dim: int, dropout: float = 0.0,
                 approximate: str = "none", device=None, dtype=None):
        super().__init__()
        self.fc1 = Linear(embed_dim, hidden_dim, device=device, dtype=dtype)
        self.act = GELU(approximate)
        self.dropout = Dropout(dropout)
        self.fc2 = Linear(hidden_dim, embed_dim, device=device, dtype=dtype)

    def forward(self, x) -> Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))  # (..., E)


class TransformerBlock(Module):
    """x + attn(ln1(x)), then x + mlp(ln2(x)), batch-first (B, L, E).

    ``is_causal=True`` makes every call causal (each position sees itself and the past)
    unless the call says otherwise. ``impl`` picks the attention implementation ("composed",
    "fused", "flash"; None lets ``scaled_dot_product_attention`` choose).

    >>> block = TransformerBlock(16, num_heads=2, is_causal=True)
    >>> block(ma.randn(3, 5, 16)).shape
    (3, 5, 16)
    """

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float = 4, dropout: float = 0.0,
                 scale: float | None = None, is_causal: bool = False, impl: str | None = None,
                 device=None, dtype=None):
        super().__init__()
        embed_dim, num_heads = check_heads(embed_dim, num_heads, "TransformerBlock")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, numbers.Real):
            raise TypeError(f"TransformerBlock: mlp_ratio must be a number, got "
                            f"{type(mlp_ratio).__name__} {mlp_ratio!r}")
        if not 0 <= mlp_ratio < math.inf:  # the MLP has int(mlp_ratio * embed_dim) hidden units
            raise ValueError(f"TransformerBlock: mlp_ratio must be a finite number >= 0, got "
                             f"{mlp_ratio!r}")
        self.embed_dim, self.num_heads, self.is_causal = embed_dim, num_heads, is_causal
        self.ln1 = LayerNorm(embed_dim, device=device, dtype=dtype)
        self.attn = MultiHeadAttention(embed_dim, num_heads, scale=scale, impl=impl,
                                       device=device, dtype=dtype)
        self.drop1 = Dropout(dropout)
        self.ln2 = LayerNorm(embed_dim, device=device, dtype=dtype)
        self.mlp = MLP(embed_dim, int(mlp_ratio * embed_dim), dropout, device=device, dtype=dtype)
        self.drop2 = Dropout(dropout)

    def forward(self, x, attn_mask=None, is_causal: bool | None = None,
                need_weights: bool = False):
        """(B, L, E) -> (B, L, E); with ``need_weights=True``, (out, attention weights)."""
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"TransformerBlock(embed_dim={self.embed_dim}) expects input of "
                             f"shape (B, L, {self.embed_dim}), got {x.shape}")
        is_causal = self.is_causal if is_causal is None else is_causal
        h = self.ln1(x)  # (B, L, E)
        attn_out, weights = self.attn(h, h, h, attn_mask=attn_mask, is_causal=is_causal,
                                      need_weights=need_weights)  # (B, L, E)
        x = x + self.drop1(attn_out)  # (B, L, E)
        x = x + self.drop2(self.mlp(self.ln2(x)))  # (B, L, E)
        return (x, weights) if need_weights else x

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, " \
               f"is_causal={self.is_causal}"


def sinusoidal_positions(max_len: int, embed_dim: int, device=None, dtype=None):
    """pe[pos, 2i] = sin(pos / 10000^(2i/E)), pe[pos, 2i+1] = cos(pos / 10000^(2i/E)): (L, E)."""
    xp = backend.xp_for(backend.check_device(device))
    dtype = backend.resolve_dtype(dtype) or backend.DEFAULT_DTYPE
    pos = xp.arange(max_len, dtype=xp.float64)[:, None]  # (L, 1)
    freq = xp.exp(-math.log(10000.0) * xp.arange(0, embed_dim, 2) / embed_dim)  # (ceil(E/2),)
    pe = xp.zeros((max_len, embed_dim))  # (L, E)
    pe[:, 0::2] = xp.sin(pos * freq)
    pe[:, 1::2] = xp.cos(pos * freq[: embed_dim // 2])
    return pe.astype(dtype)


class Transformer(Module):
    """A decoder-only language model: token ids (B, L) -> next-token logits (B, L, vocab).

    Token embedding plus positions (``"learned"``: an Embedding of ``max_len`` rows;
    ``"sinusoidal"``: the fixed table of Vaswani et al., a non-persistent buffer), then
    ``num_layers`` causal pre-norm blocks, a final layer norm and a linear head.

    >>> model = Transformer(vocab_size=12, max_len=32, embed_dim=32, num_heads=4, num_layers=2)
    >>> model(ma.tensor([[1, 2, 3, 4]])).shape
    (1, 4, 12)
    """

    def __init__(self, vocab_size: int, max_len: int, embed_dim: int, num_heads: int,
                 num_layers: int, positions: str = "learned", scale: float | None = None,
                 mlp_ratio: float = 4, dropout: float = 0.0, impl: str | None = None,
                 device=None, dtype=None):
        super().__init__()
        if positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions must be 'learned' or 'sinusoidal', got {positions!r}")
        embed_dim, num_heads = check_heads(embed_dim, num_heads, "Transformer")
        vocab_size = check_size(vocab_size, "vocab_size", "Transformer", minimum=1)
        max_len = check_size(max_len, "max_len", "Transformer", minimum=1)
        num_layers = check_size(num_layers, "num_layers", "Transformer")
        self.vocab_size, self.max_len, self.positions = vocab_size, max_len, positions
        self.tok_emb = Embedding(vocab_size, embed_dim, device=device, dtype=dtype)
        if positions == "learned":
            self.pos_emb = Embedding(max_len, embed_dim, device=device, dtype=dtype)
        else:
            self.register_buffer("pos_enc", Tensor(sinusoidal_positions(
                max_len, embed_dim, device, dtype)), persistent=False)
        self.drop = Dropout(dropout)
        self.blocks = ModuleList(TransformerBlock(embed_dim, num_heads, mlp_ratio, dropout, scale,
                                                  is_causal=True, impl=impl, device=device,
                                                  dtype=dtype)
                                 for _ in range(num_layers))
        self.ln_f = LayerNorm(embed_dim, device=device, dtype=dtype)
        self.head = Linear(embed_dim, vocab_size, device=device, dtype=dtype)

    def forward(self, idx, need_weights: bool = False):
        """(B, L) integer ids -> logits (B, L, vocab); with ``need_weights=True``,
        (logits, [attention weights of each layer])."""
        shape = tuple(idx.shape)
        if len(shape) != 2:
            raise ValueError(f"Transformer expects token ids of shape (B, L), got {shape}")
        L = shape[1]
        if L > self.max_len:
            raise ValueError(f"sequence of length {L} is longer than max_len={self.max_len}")
        tok = self.tok_emb(idx)  # (B, L, E)
        pos = self.pos_emb.weight[:L] if self.positions == "learned" else self.pos_enc[:L]
        x = self.drop(tok + pos)  # (B, L, E)
        maps = []
        for block in self.blocks:
            if need_weights:
                x, weights = block(x, need_weights=True)  # (B, L, E), (B, H, L, L)
                maps.append(weights)
            else:
                x = block(x)  # (B, L, E)
        logits = self.head(self.ln_f(x))  # (B, L, vocab)
        return (logits, maps) if need_weights else logits

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, max_len={self.max_len}, " \
               f"positions={self.positions!r}"
