# %% [markdown]
# # 4. The matrix product's backward pass
#
# Attention is two matrix products with a softmax between them,
# $P = \operatorname{softmax}(Q K^\top)$ and $O = P V$, so after softmax the matrix product
# is the piece to understand. This
# lesson derives $dA = dO\, B^\top$ and $dB = A^\top dO$ from the element formula, checks
# them against a loop that follows the definition literally, and extends them to batches.

# %%
import os

import numpy as np

import minattn as ma
from minattn.teaching import check, expect, max_err

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")  # small sizes (unused here)


rng = np.random.default_rng(0)

# %% [markdown]
# ## Derivation
#
# For $O = A B$ with $A$ of shape $(n, k)$ and $B$ of shape $(k, m)$,
#
# $$O_{ij} = \sum_{k'} A_{ik'} B_{k'j}, \qquad\text{so}\qquad
#   \frac{\partial O_{ij}}{\partial A_{ik}} = B_{kj}.$$
#
# $A_{ik}$ appears in every $O_{ij}$ of row $i$, one term for each column $j$. The chain
# rule sums over those uses:
#
# $$dA_{ik} = \sum_j dO_{ij} B_{kj} = (dO\, B^\top)_{ik}, \qquad
#   dB_{kj} = \sum_i A_{ik}\, dO_{ij} = (A^\top dO)_{kj}.$$
#
# Here $dO = \partial \ell / \partial O$ is the upstream gradient.

# %%
n, k, m = 3, 4, 2
A = rng.standard_normal((n, k))
B = rng.standard_normal((k, m))
dO = rng.standard_normal((n, m))  # a random upstream gradient

# The definition, literally: every use of A[i, kk] (in O[i, j], for every j) adds the
# upstream dO[i, j] times the local derivative of O[i, j] with respect to A[i, kk],
# which is B[kk, j]; likewise for B[kk, j], used in O[i, j] for every i.
dA_loop = np.zeros_like(A)
dB_loop = np.zeros_like(B)
for i in range(n):
    for j in range(m):
        for kk in range(k):
            dA_loop[i, kk] += dO[i, j] * B[kk, j]
            dB_loop[kk, j] += dO[i, j] * A[i, kk]

dA_formula, dB_formula = dO @ B.T, A.T @ dO

At = ma.tensor(A, requires_grad=True)
Bt = ma.tensor(B, requires_grad=True)
(At @ Bt).backward(dO)

check("dA: dO B^T vs the loop over the definition", max_err(dA_formula, dA_loop), 1e-14)
check("dB: A^T dO vs the loop over the definition", max_err(dB_formula, dB_loop), 1e-14)
check("dA: minattn backward vs dO B^T", max_err(At.grad, dA_formula), 1e-14)
check("dB: minattn backward vs A^T dO", max_err(Bt.grad, dB_formula), 1e-14)

# %% [markdown]
# ## Let the shapes guide you
#
# A gradient always has the shape of its tensor. $dA$ must be $(n, k)$, and the only
# product of $dO$ $(n, m)$ and $B$ $(k, m)$ with that shape is $dO\, B^\top$. $dB$ must
# be $(k, m)$, and the only product of $A$ $(n, k)$ and $dO$ $(n, m)$ with that shape is
# $A^\top dO$. When you cannot remember the formula, the shapes give it back.

# %%
print(f"A {A.shape}, B {B.shape}, dO {dO.shape}")
print(f"dO @ B.T -> {(dO @ B.T).shape} = A's shape;  A.T @ dO -> {(A.T @ dO).shape} = B's shape")

# %% [markdown]
# ## Batches: a shared weight collects gradient from every example
#
# A layer applies one weight matrix $W$ $(k, m)$ to a whole batch $X$ of shape
# $(\text{batch}, n, k)$. NumPy's matmul broadcasts $W$ over the batch, so $W$ is used
# once per example, and its gradient is the **sum** over the batch of
# $X_b^\top dO_b$ (the broadcasting rule from lesson 2). Attention over batches and heads
# relies on the same rule.

# %%
batch = 6
X = rng.standard_normal((batch, n, k))
W = rng.standard_normal((k, m))
dY = rng.standard_normal((batch, n, m))

Xt = ma.tensor(X, requires_grad=True)
Wt = ma.tensor(W, requires_grad=True)
(Xt @ Wt).backward(dY)  # (batch, n, m)

dW_expected = np.einsum("bnk,bnm->km", X, dY)  # sum over b of X_b^T dY_b
check("batched: dW == sum over the batch of X_b^T dY_b", max_err(Wt.grad, dW_expected), 1e-13)
check("batched: dX == dY W^T, per example", max_err(Xt.grad, dY @ W.T), 1e-14)

# %% [markdown]
# ## Checked numerically
#
# Finite differences know nothing about the derivation, so they check it independently.

# %%
report = ma.gradcheck_report(lambda x, w: x @ w, (Xt, Wt))
print(report)
check("gradcheck of the batched product (worst absolute error)",
      max(c.max_abs_error for c in report.checks), 1e-8)

# %% [markdown]
# The backward pass costs two matrix products, each as large as the forward one, so
# training costs about three times as much as inference. That ratio holds for whole
# transformers.
#
# ## Practice
#
# 1. $A$ times a vector $v$ (1-D): what is $dv$?
# 2. $O = A A$ uses $A$ twice. What is $dA$?
# 3. For $X$ of shape `(8, 5, 4)` times $W$ of shape `(4, 3)`, what shape has $dW$, and
#    why is it not `(8, 4, 3)`?
#
# The cells below answer each question with code.

# %%
# 1. A @ v with v of shape (k,) is a column: dv = A^T dO, of shape (k,).
v = rng.standard_normal(k)
vt = ma.tensor(v, requires_grad=True)
do = rng.standard_normal(n)
(ma.tensor(A) @ vt).backward(do)
check("matrix-vector: dv == A^T dO", max_err(vt.grad, A.T @ do), 1e-14)

# %%
# 2. Two uses, two contributions (lesson 2): dA = dO A^T (A as the left factor)
#    + A^T dO (A as the right factor).
S = rng.standard_normal((k, k))
St = ma.tensor(S, requires_grad=True)
dSS = rng.standard_normal((k, k))
(St @ St).backward(dSS)
check("A @ A: dA == dO A^T + A^T dO", max_err(St.grad, dSS @ S.T + S.T @ dSS), 1e-14)

# %%
# 3. W's gradient has W's shape, (4, 3): the 8 per-example gradients are summed, because
#    the same W served all 8 examples.
X8 = ma.randn(8, 5, 4, dtype="float64")
W8 = ma.randn(4, 3, dtype="float64", requires_grad=True)
(X8 @ W8).backward(rng.standard_normal((8, 5, 3)))
print("dW shape:", W8.grad.shape)
expect("dW has W's shape (4, 3)", W8.grad.shape == (4, 3))
