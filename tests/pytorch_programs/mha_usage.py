"""``nn.MultiheadAttention`` the way PyTorch code uses it: self-attention with a causal
boolean mask, cross-attention with a key padding mask and per-head weights, an additive
float mask, the sequence-first layout, and a small classifier built around it, trained for
a few Adam steps.

Every weight and input comes from a seeded NumPy generator, so PyTorch and minattn see the
same numbers. ``python mha_usage.py OUT.npz`` or ``python -m minattn run mha_usage.py
OUT.npz``. Written for minattn's tests (no third-party code).
"""

import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

E, H, B, L, S = 8, 2, 2, 5, 6
VOCAB, CLASSES = 11, 3


def seeded(module, scale=0.5):
    """Load one array per state_dict entry, drawn from a generator seeded by its name."""
    state = {}
    for name, tensor in module.state_dict().items():
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        values = scale * rng.standard_normal(tuple(tensor.shape))
        if name.endswith("norm.weight"):
            values += 1.0
        state[name] = torch.tensor(values.astype(np.float32))
    module.load_state_dict(state)
    return module


def array(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


rng = np.random.default_rng(5)
out = {}

# 1. self-attention, batch first, a causal boolean mask (True: may NOT attend)
mha = seeded(nn.MultiheadAttention(E, H, batch_first=True))
x = torch.from_numpy(array(rng, B, L, E)).requires_grad_(True)
causal = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)
y, weights = mha(x, x, x, attn_mask=causal)  # (B, L, E), (B, L, L) averaged over heads
out["self_out"], out["self_weights"] = y.detach().numpy(), weights.detach().numpy()

# 2. cross-attention to a memory, the second sequence's last two keys padded out
memory = torch.from_numpy(array(rng, B, S, E)).requires_grad_(True)
pad = torch.tensor([[False] * S, [False] * (S - 2) + [True] * 2])
z, head_weights = mha(x, memory, memory, key_padding_mask=pad, average_attn_weights=False)
out["cross_out"], out["cross_weights"] = z.detach().numpy(), head_weights.detach().numpy()

# 3. an additive float mask, and no weights asked for
bias = torch.from_numpy(array(rng, L, S))
w, nothing = mha(x, memory, memory, attn_mask=bias, need_weights=False)
assert nothing is None
out["float_mask_out"] = w.detach().numpy()

# one backward through all three, with fixed upstream gradients
loss = (y * torch.from_numpy(array(rng, B, L, E))).sum() \
    + (z * torch.from_numpy(array(rng, B, L, E))).sum() + (w ** 2).mean()
loss.backward()
out["loss"] = np.array(loss.item())
out["x_grad"], out["memory_grad"] = x.grad.numpy().copy(), memory.grad.numpy().copy()
for name, p in mha.named_parameters():
    out[f"grad/{name}"] = p.grad.numpy().copy()

# 4. the same weights, sequence first (L, B, E): the same numbers, transposed
seq_first = nn.MultiheadAttention(E, H)
seq_first.load_state_dict(mha.state_dict())
with torch.no_grad():
    y_sf, weights_sf = seq_first(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1),
                                 attn_mask=causal)
out["seq_first_out"], out["seq_first_weights"] = y_sf.numpy(), weights_sf.numpy()


# 5. a small classifier around it, trained for a few Adam steps
class AttentionClassifier(nn.Module):
    def __init__(self, vocab, embed_dim, num_heads, classes):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed_dim)
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, classes)

    def forward(self, tokens, pad):
        h = self.embed(tokens)  # (B, L, E)
        a, _ = self.attn(h, h, h, key_padding_mask=pad, need_weights=False)
        h = self.norm(h + a)
        keep = (~pad).unsqueeze(-1).float()  # (B, L, 1)
        pooled = (h * keep).sum(dim=1) / keep.sum(dim=1)  # mean over the real tokens
        return self.head(pooled)  # (B, classes)


model = seeded(AttentionClassifier(VOCAB, E, H, CLASSES), scale=0.3)
tokens = torch.from_numpy(rng.integers(0, VOCAB, size=(4, L)))
lengths = torch.tensor([5, 3, 4, 2])
pad = torch.arange(L).unsqueeze(0) >= lengths.unsqueeze(1)  # (4, L): True past the end
labels = torch.tensor([0, 2, 1, 2])
# eps=1e-3, not 1e-8: the key part of in_proj_bias has an exactly zero gradient (it shifts
# each row of scores by a constant, which softmax ignores), so each framework's gradient there
# is its own rounding noise (~1e-9), which Adam with eps=1e-8 would turn into a full step
optimizer = torch.optim.Adam(model.parameters(), lr=0.05, eps=1e-3)
losses = []
for _ in range(5):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(tokens, pad), labels)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
out["classifier_losses"] = np.array(losses)
with torch.no_grad():
    out["classifier_predictions"] = model(tokens, pad).argmax(dim=-1).numpy()
for name, tensor in model.state_dict().items():
    out[f"classifier/{name}"] = tensor.numpy().copy()

np.savez(sys.argv[1], **out)
