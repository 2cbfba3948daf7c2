# %% [markdown]
# # 6. Attention's backward pass: by hand, by autograd, by gradcheck
#
# Lesson 5 built attention from three pieces: a matrix product, a softmax, and another
# matrix product. Lessons 3 and 4 derived the backward pass of each piece. This lesson
# chains them into attention's backward pass, written by hand in NumPy. It then checks
# the result three ways: against minattn's autograd through the composed ops, against the
# library's three implementations, and against central differences with `ma.gradcheck`.
# A deliberately broken version shows that the check can fail.

# %%
import os

import numpy as np

import minattn as ma
import minattn.functional as F
from minattn.teaching import check, expect, max_err

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")


rng = np.random.default_rng(0)
B, L, S, E, Ev = (2, 4, 5, 3, 2) if FAST else (4, 12, 16, 8, 6)  # batch, queries, keys, widths
scale = 1 / np.sqrt(E)

# %% [markdown]
# ## Forward, keeping what backward needs
#
# $$S = c\, Q K^\top, \qquad P = \operatorname{softmax}(S) \text{ (each row)}, \qquad O = P V,$$
#
# with $Q$ of shape $(B, L, E)$, $K$ of shape $(B, S, E)$, $V$ of shape $(B, S, E_v)$, and
# $c = 1/\sqrt{E}$ (`scale` in the code). The backward pass needs $P$ (for the softmax
# and for $dV$) and the three inputs, so the forward pass returns them alongside $O$, the
# way llm.c and nanoGPT's walkthroughs do it.

# %%
def attention_forward(q, k, v):
    scores = scale * q @ k.swapaxes(-1, -2)  # (B, L, S)
    scores = scores - scores.max(axis=-1, keepdims=True)  # softmax is shift-invariant
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)  # (B, L, S), rows sum to 1
    out = probs @ v  # (B, L, Ev)
    return out, (q, k, v, probs)


# %% [markdown]
# ## Backward, one piece at a time, from the output back
#
# Start from the upstream gradient $dO = \partial \ell/\partial O$ and undo each step:
#
# 1. $O = P V$ is a matrix product (lesson 4): $dP = dO\, V^\top$ and $dV = P^\top dO$.
# 2. $P = \operatorname{softmax}(S)$ row by row (lesson 3):
#    $dS = P \odot \big(dP - \operatorname{rowsum}(dP \odot P)\big)$.
# 3. $S = c\, Q K^\top$ is a matrix product times a constant (lesson 4):
#    $dQ = c\, dS\, K$ and $dK = c\, dS^\top Q$.

# %%
def attention_backward(dout, cache):
    q, k, v, probs = cache
    dprobs = dout @ v.swapaxes(-1, -2)  # (B, L, S)
    dv = probs.swapaxes(-1, -2) @ dout  # (B, S, Ev)
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))  # (B, L, S)
    dq = scale * dscores @ k  # (B, L, E)
    dk = scale * dscores.swapaxes(-1, -2) @ q  # (B, S, E)
    return dq, dk, dv


q, k, v = rng.standard_normal((B, L, E)), rng.standard_normal((B, S, E)), \
    rng.standard_normal((B, S, Ev))
dout = rng.standard_normal((B, L, Ev))  # a random upstream gradient, never ones
out, cache = attention_forward(q, k, v)
dq, dk, dv = attention_backward(dout, cache)
print("out", out.shape, " dq", dq.shape, " dk", dk.shape, " dv", dv.shape)

# %% [markdown]
# ## Check 1: autograd through the composed ops
#
# The same forward pass written with minattn tensors records a graph of primitive ops
# (matmul, multiply, max, exp, sum, divide), and autograd differentiates it without
# knowing it is attention. If our chain of three hand-derived steps is right, the two
# must agree to round-off.

# %%
qt, kt, vt = (ma.tensor(a, requires_grad=True) for a in (q, k, v))
scores_t = scale * qt @ kt.swapaxes(-1, -2)  # (B, L, S)
e = (scores_t - scores_t.max(axis=-1, keepdims=True).detach()).exp()
out_t = (e / e.sum(axis=-1, keepdims=True)) @ vt  # (B, L, Ev)
out_t.backward(dout)
check("forward: by hand vs composed minattn ops", max_err(out, out_t), 1e-14)
for name, mine, auto in [("dq", dq, qt.grad), ("dk", dk, kt.grad), ("dv", dv, vt.grad)]:
    check(f"{name}: by hand vs autograd through the composed ops", max_err(mine, auto), 1e-13)

# %% [markdown]
# The `.detach()` on the row maximum is allowed because softmax is shift-invariant: the
# gradient that would flow through the maximum sums to zero (lesson 3, practice 1).
#
# ## Check 2: the library's three implementations
#
# `F.scaled_dot_product_attention` has three implementations that must agree:
# `"composed"` (primitive ops, like check 1), `"fused"` (one op whose backward is the
# five lines of `attention_backward`), and `"flash"` (blocks and an online softmax, which
# never stores $P$).

# %%
for impl in ["composed", "fused", "flash"]:
    qi, ki, vi = (ma.tensor(a, requires_grad=True) for a in (q, k, v))
    out_i = F.scaled_dot_product_attention(qi, ki, vi, impl=impl)
    out_i.backward(dout)
    worst = max(max_err(out, out_i), max_err(dq, qi.grad), max_err(dk, ki.grad),
                max_err(dv, vi.grad))
    check(f"impl={impl!r}: output and all three gradients vs by hand", worst, 1e-12)

# %% [markdown]
# ## Check 3: central differences, with a Function of our own
#
# Autograd and the library could share a mistake. Finite differences cannot. We wrap our
# forward and backward as a minattn `Function` (the way you would add any op) and let
# `ma.gradcheck` compare its gradients with central differences, using a random upstream
# gradient.

# %%
class HandAttention(ma.Function):
    """out = softmax(scale * q k^T) v, with the backward written above."""

    def forward(self, q, k, v):
        out, self.cache = attention_forward(q, k, v)
        return out

    def backward(self, dout):
        # dP = dO V^T, dV = P^T dO; dS = P (dP - rowsum(dP P)); dQ = s dS K, dK = s dS^T Q
        return attention_backward(dout, self.cache)


inputs = [ma.tensor(a, requires_grad=True) for a in (q, k, v)]
report = ma.gradcheck_report(HandAttention.apply, inputs)
print(report)
expect("gradcheck passes the hand-written backward", report.passed)

# %% [markdown]
# A check that never fails proves nothing. So here is the same op with one classic slip,
# the scale forgotten in $dK$. `gradcheck` catches it and names the input.

# %%
class SlippedAttention(HandAttention):
    def backward(self, dout):
        dq, dk, dv = attention_backward(dout, self.cache)
        return dq, dk / scale, dv  # wrong on purpose: dk without the factor s


try:
    ma.gradcheck(SlippedAttention.apply, [ma.tensor(a, requires_grad=True) for a in (q, k, v)])
    expect("gradcheck catches the forgotten scale", False)
except ma.GradcheckError as error:
    print(str(error).splitlines()[0][:160], "...")
    expect("gradcheck catches the forgotten scale, in input 1 (k)", "input 1" in str(error))

# %% [markdown]
# ## Practice
#
# 1. Why is $dV = P^\top dO$? Which queries send gradient to value $j$?
# 2. Flash attention does not keep $P$, yet it needs $\operatorname{rowsum}(dP \odot P)$.
#    How does it get it?
# 3. If key $j$ is masked out for every query, what gradients do $k_j$ and $v_j$ get?
#
# The cells below answer each question with code.

# %%
# 1. Value j is used by every query i, with weight P[i, j]: out_i = sum_j P[i, j] v_j.
#    So dv_j = sum_i P[i, j] dout_i, which is row j of P^T dO. A value that no query
#    attends to gets no gradient.
probs = cache[3]
j = 1
dv_j = sum(probs[:, i, j, None] * dout[:, i] for i in range(L))  # (B, Ev)
check("dv_j == sum over queries of P[i, j] * dout_i", max_err(dv[:, j], dv_j), 1e-14)

# %%
# 2. rowsum(dP * P) = sum_j (dO_i . v_j) P_ij = dO_i . (sum_j P_ij v_j) = dO_i . O_i.
#    So D = rowsum(dO * O) needs only the output, which flash attention keeps.
dprobs = dout @ v.swapaxes(-1, -2)
check("rowsum(dP * P) == rowsum(dO * O)",
      max_err((dprobs * probs).sum(axis=-1), (dout * out).sum(axis=-1)), 1e-14)

# %%
# 3. A masked key has probability 0 in every row, so it passes on nothing (dv_j = 0) and
#    its score does not matter (dk_j = 0).
mask = np.ones((L, S), dtype=bool)
mask[:, j] = False  # no query may look at key j
qm, km, vm = (ma.tensor(a, requires_grad=True) for a in (q, k, v))
F.scaled_dot_product_attention(qm, km, vm, attn_mask=mask).backward(dout)
check("masked key: its dk is zero", float(np.abs(km.grad.numpy()[:, j]).max()), 0.0)
check("masked key: its dv is zero", float(np.abs(vm.grad.numpy()[:, j]).max()), 0.0)
