# %% [markdown]
# # 8. Why divide by √d
#
# Attention computes $\operatorname{softmax}(Q K^\top / \sqrt{d})$. Where does the
# $\sqrt{d}$ come from, and what goes wrong without it? This lesson measures three things
# as the width $d$ of queries and keys grows: how large the scores get, how sharp the
# softmax becomes, and how much gradient gets back through it. Each is measured with
# and without the scale. Lesson 12 and `minattn scaling` run the full experiment.

# %%
import math
import os

import numpy as np

import minattn as ma
import minattn.functional as F
from minattn.teaching import check, expect, max_err

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")


rng = np.random.default_rng(0)
WIDTHS = [4, 16, 64, 256] if FAST else [4, 16, 64, 256, 1024]
N_KEYS = 32  # keys each query chooses among
N_QUERIES = 128 if FAST else 512  # rows measured per width

# %% [markdown]
# ## Dot products grow like $\sqrt{d}$
#
# Take $q$ and $k$ with independent entries of mean 0 and variance 1, as they roughly are
# at initialization. Their dot product $q \cdot k = \sum_{i=1}^{d} q_i k_i$ is a sum of
# $d$ independent terms, each of variance 1, so
#
# $$\operatorname{Var}(q \cdot k) = d, \qquad \operatorname{std}(q \cdot k) = \sqrt{d}.$$
#
# Dividing by $\sqrt{d}$ brings the standard deviation back to 1, whatever the width.
# (This is the argument in footnote 4 of "Attention Is All You Need".)

# %%
print(f"{'d':>6} {'std(q.k)':>10} {'sqrt(d)':>9} {'std(q.k / sqrt(d))':>20}")
for d in WIDTHS:
    q = rng.standard_normal((4000, d))
    k = rng.standard_normal((4000, d))
    dots = (q * k).sum(axis=1)  # 4000 independent dot products
    print(f"{d:>6} {dots.std():>10.2f} {math.sqrt(d):>9.2f} {(dots / math.sqrt(d)).std():>20.3f}")
    check(f"d={d}: std(q.k) / sqrt(d) is 1", abs(dots.std() / math.sqrt(d) - 1), 0.06)

# %% [markdown]
# ## Large scores saturate the softmax
#
# Softmax only cares about the differences between scores. When they are spread over
# a range of $\sqrt{d} \approx 32$ (at $d = 1024$), the largest score beats the next one
# by several units, $e^{\text{gap}}$ is huge, and the row becomes almost one-hot. We
# measure that in two ways: the typical largest weight in a row, and the row's
# **entropy** $-\sum_j p_j \ln p_j$ ($\ln n$ for a uniform row over $n$ keys, 0 for a
# one-hot row).
#
# Then the gradient. Lesson 3 showed that softmax's Jacobian vanishes when $p$ is
# one-hot. We measure the gradient that reaches each row of scores, $\|dS_i\|$, for a
# random upstream gradient, and count the rows where it is practically zero ("dead"
# rows, which can no longer learn where to look).

# %%
def measure(d, scale):
    """(median max weight, mean entropy, median |dS_row|, fraction of rows with |dS| < 1e-3)."""
    q = ma.tensor(rng.standard_normal((N_QUERIES, d)))
    k = ma.tensor(rng.standard_normal((N_KEYS, d)))
    v = ma.tensor(rng.standard_normal((N_KEYS, 8)))
    scores = ((q @ k.T) * scale).detach()  # (N_QUERIES, N_KEYS)
    scores.requires_grad = True  # a leaf, so its .grad is the gradient reaching the scores
    probs = F.softmax(scores, axis=-1)  # (N_QUERIES, N_KEYS)
    (probs @ v).backward(rng.standard_normal((N_QUERIES, 8)))
    p = probs.numpy()
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)
    ds_rows = np.linalg.norm(scores.grad.numpy(), axis=-1)
    return np.median(p.max(axis=-1)), entropy.mean(), np.median(ds_rows), (ds_rows < 1e-3).mean()


results = {}
print(f"{'d':>6} {'':>9} {'max p':>7} {'entropy':>8} {'median |dS|':>12} {'dead rows':>10}")
for d in WIDTHS:
    for name, scale in [("scaled", 1 / math.sqrt(d)), ("unscaled", 1.0)]:
        results[d, name] = measure(d, scale)
        max_p, ent, ds, dead = results[d, name]
        print(f"{d:>6} {name:>9} {max_p:>7.3f} {ent:>8.3f} {ds:>12.2e} {dead:>10.0%}")
print(f"(uniform rows would have entropy ln {N_KEYS} = {math.log(N_KEYS):.3f})")

# %% [markdown]
# With the scale, nothing changes as $d$ grows: the typical largest weight stays between
# 0.12 and 0.15, the entropy stays near $\ln n - \tfrac12$ (the expected entropy of a softmax over
# $n$ standard normal scores), and every row receives gradient. Without it, the rows
# become one-hot, the entropy falls toward 0, and a growing share of the rows receive no
# gradient at all.

# %%
d_max = WIDTHS[-1]
for d in WIDTHS:
    check(f"scaled, d={d}: entropy near ln(n) - 1/2",
          abs(results[d, "scaled"][1] - (math.log(N_KEYS) - 0.5)), 0.15)
    expect(f"scaled, d={d}: no dead rows", results[d, "scaled"][3] == 0)
expect(f"unscaled, d={d_max}: the median row gets under a tenth of the scaled gradient",
       results[d_max, "unscaled"][2] < 0.1 * results[d_max, "scaled"][2])
expect(f"unscaled, d={d_max}: more than a fifth of the rows are dead",
       results[d_max, "unscaled"][3] > 0.2)

# %% [markdown]
# A dead row is stuck. Its gradient is zero, so training cannot move it away from the key
# it happens to prefer. A wider model would make this worse, when it should make the
# model better. The $1/\sqrt{d}$ keeps the scores' spread at about 1 for every width, so
# the same initialization and learning rate work for narrow and wide heads alike.
#
# ## Practice
#
# 1. If the entries of $q$ and $k$ have variance $\sigma^2$ rather than 1, how large is
#    $q \cdot k$?
# 2. Why not divide by $d$ instead, to be safe?
# 3. What do `scale=None` and `scale=1.0` mean in `F.scaled_dot_product_attention`?
#
# The cells below answer each question with code.

# %%
# 1. Each term q_i k_i has variance sigma^4, so Var(q.k) = sigma^4 d, std = sigma^2 sqrt(d):
#    the scale assumes unit variance, which is one reason models normalize their inputs.
sigma, d = 2.0, 64
dots = (sigma * rng.standard_normal((4000, d)) * sigma * rng.standard_normal((4000, d))).sum(1)
print(f"sigma = {sigma}: std(q.k) = {dots.std():.1f}, "
      f"sigma^2 sqrt(d) = {sigma**2 * math.sqrt(d):.1f}")
check("std(q.k) / (sigma^2 sqrt(d)) is 1", abs(dots.std() / (sigma**2 * math.sqrt(d)) - 1), 0.06)

# %%
# 2. Dividing by d shrinks the scores like 1/sqrt(d): for wide heads every score is
#    near 0 and every row near uniform, so attention cannot focus on anything.
_, entropy_over_d, _, _ = measure(d_max, 1 / d_max)
print(f"d = {d_max}, scale 1/d: entropy {entropy_over_d:.3f} (uniform: {math.log(N_KEYS):.3f})")
check("scale 1/d: rows are almost uniform", abs(entropy_over_d - math.log(N_KEYS)), 0.05)

# %%
# 3. scale=None is 1/sqrt(E), E the width of the queries; scale=1.0 is unscaled attention.
q, k, v = (ma.tensor(rng.standard_normal(shape)) for shape in [(5, 16), (7, 16), (7, 3)])
unscaled = F.softmax(q @ k.T, axis=-1) @ v
scaled = F.softmax(q @ k.T / 4.0, axis=-1) @ v  # sqrt(16) = 4
check("scale=1.0 is unscaled attention",
      max_err(F.scaled_dot_product_attention(q, k, v, scale=1.0), unscaled), 1e-14)
check("scale=None divides by sqrt(E)", max_err(F.scaled_dot_product_attention(q, k, v), scaled),
      1e-14)
