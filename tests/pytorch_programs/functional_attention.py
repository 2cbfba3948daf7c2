"""Attention as a plain function plus a multi-head module around it, in the idiom of many
transformer tutorials: ``torch.matmul``, ``masked_fill(mask == 0, -1e9)``, four projections
cloned with ``copy.deepcopy`` into an ``nn.ModuleList``, heads split with ``view`` and
``transpose``. Forward with a padding mask and a causal mask, backward, and two SGD steps.

Weights and inputs come from a seeded NumPy generator. ``python functional_attention.py
OUT.npz`` or ``python -m minattn run functional_attention.py OUT.npz``. Written for minattn's
tests (no third-party code).
"""

import copy
import math
import sys

import numpy as np
import torch
import torch.nn as nn


def attention(query, key, value, mask=None):
    """softmax(q k^T / sqrt(d_k)) v, where mask == 0 marks the keys a query may not see."""
    d_k = query.size(-1)
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(d_k)  # (B, h, L, S)
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)
    p_attn = scores.softmax(dim=-1)
    return torch.matmul(p_attn, value), p_attn


class MultiHeaded(nn.Module):
    def __init__(self, h, d_model):
        super().__init__()
        assert d_model % h == 0
        self.d_k, self.h = d_model // h, h
        self.linears = nn.ModuleList([copy.deepcopy(nn.Linear(d_model, d_model))
                                      for _ in range(4)])
        self.attn = None

    def forward(self, query, key, value, mask=None):
        if mask is not None:
            mask = mask.unsqueeze(1)  # the same mask for every head
        n = query.size(0)
        query, key, value = [lin(x).view(n, -1, self.h, self.d_k).transpose(1, 2)
                             for lin, x in zip(self.linears, (query, key, value))]
        x, self.attn = attention(query, key, value, mask=mask)
        x = x.transpose(1, 2).contiguous().view(n, -1, self.h * self.d_k)
        return self.linears[-1](x)


rng = np.random.default_rng(11)
B, L, D, HEADS = 2, 6, 12, 3
model = MultiHeaded(HEADS, D)
model.load_state_dict({name: torch.from_numpy(0.25 * rng.standard_normal(tuple(t.shape))
                                              .astype(np.float32))
                       for name, t in model.state_dict().items()})
x = torch.from_numpy(rng.standard_normal((B, L, D)).astype(np.float32)).requires_grad_()
dout = torch.from_numpy(rng.standard_normal((B, L, D)).astype(np.float32))

lengths = np.array([6, 4])
pad_mask = torch.from_numpy(np.arange(L)[None, :] < lengths[:, None]).unsqueeze(-2)  # (B,1,L)
causal_mask = torch.from_numpy(np.tril(np.ones((1, L, L), dtype=np.uint8)))  # (1, L, L)
out = {}
for name, mask in (("pad", pad_mask), ("causal", causal_mask & pad_mask)):
    y = model(x, x, x, mask=mask)
    out[f"{name}_out"] = y.detach().numpy()
    out[f"{name}_attn"] = model.attn.detach().numpy()

(y * dout).sum().backward()
out["x_grad"] = x.grad.numpy().copy()  # a copy: later backward passes add into x.grad
for name, p in model.named_parameters():
    out[f"grad/{name}"] = p.grad.numpy().copy()

optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
for _ in range(2):
    optimizer.step()
    optimizer.zero_grad()
    loss = ((model(x, x, x, mask=pad_mask) - dout) ** 2).mean()
    loss.backward()
out["loss"] = np.array(loss.item())
for name, p in model.named_parameters():
    out[f"param/{name}"] = p.detach().numpy().copy()
np.savez(sys.argv[1], **out)
