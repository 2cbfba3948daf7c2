# %% [markdown]
# # 7. Backpropagation, read on "The bank approved the loan"
#
# This lesson runs one backward pass through lesson 5's hand-set attention and reads every
# number it produces. We give the output of "bank" a target, the meaning of "loan", and
# follow the gradient of the error back: into the output $O$, the attention weights $P$,
# the scores $S$, the queries, keys and values, and finally the three weight matrices
# $W_Q, W_K, W_V$. Each gradient is derived in lesson 6's symbols, computed by hand in
# NumPy and checked against minattn's autograd. We draw $dP$ and $dS$ as heat maps, say
# which weight moves and why, and end with one step of gradient descent that makes "bank"
# look harder at "loan".

# %%
import math
import os

import numpy as np

import minattn as ma
import minattn.functional as F
from minattn import viz
from minattn.teaching import check, expect, max_err, show

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")  # small sizes (unused here)

# %% [markdown]
# ## Step 1: lesson 5's attention, with a target
#
# The same sentence, the same embeddings and the same hand-set weights as lesson 5. This
# time the weights are tensors that require grad: we are going to train them. $X$
# requires grad too, so that we can see how its gradient is assembled.
#
# The forward pass, with the scale $c = 1/\sqrt{d_k}$:
#
# $$S = c\, Q K^\top, \qquad P = \operatorname{softmax}(S) \text{ (each row)}, \qquad
# O = P V.$$
#
# `retain_grad()` asks autograd to keep the gradient of each intermediate tensor, so that
# we can compare our hand-computed gradients with it.

# %%
FEATURES = ["money", "water", "function", "ambiguous", "action"]
VOCAB = {
    "the":      [0.0, 0.0, 1.0, 0.0, 0.0],
    "bank":     [0.0, 0.0, 0.0, 1.0, 0.0],
    "approved": [0.5, 0.0, 0.0, 0.0, 1.0],  # an action, mostly about money
    "loan":     [1.0, 0.0, 0.0, 0.0, 0.0],
}
words = "the bank approved the loan".split()
BANK, APPROVED, LOAN = 1, 2, 4  # the rows (and columns) we will talk about
X = ma.tensor([VOCAB[w] for w in words], dtype="float64", requires_grad=True)  # (L, d_model)

d_k = 2
c = 1 / math.sqrt(d_k)  # the scale
W_Q = ma.tensor([[0, 0], [0, 0], [0, 0], [3, 3], [0, 0]], dtype="float64", requires_grad=True)
W_K = ma.tensor([[1, 0], [0, 1], [0, 0], [0, 0], [0, 0]], dtype="float64", requires_grad=True)
W_V = ma.tensor([[1, 0], [0, 1], [0, 0], [0, 0], [0, 0]], dtype="float64", requires_grad=True)
ROLES = ["finance", "nature"]  # the two columns of queries, keys and values


def forward(X, W_Q, W_K, W_V):
    """Lesson 5's attention, every intermediate kept: Q, K, V, S, P, O."""
    Q, K, V = X @ W_Q, X @ W_K, X @ W_V  # (L, d_k), (L, d_k), (L, d_v)
    S = c * Q @ K.T  # (L, L) scores
    P = F.softmax(S, axis=-1)  # (L, L) attention weights, rows sum to 1
    O = P @ V  # (L, d_v) output
    return Q, K, V, S, P, O


Q, K, V, S, P, O = forward(X, W_Q, W_K, W_V)
for t in (Q, K, V, S, P, O):
    t.retain_grad()
check("O == F.scaled_dot_product_attention(Q, K, V)",
      max_err(O, F.scaled_dot_product_attention(Q, K, V)), 1e-15)
show(P[BANK:BANK + 1], ["bank"], words, "P, row 'bank': where bank looks")
show(O, words, ROLES, "O = P V")

# %% [markdown]
# "bank" comes out mostly about finance, $O_\text{bank} \approx [0.69, 0]$, but not
# entirely: 30% of its attention still goes to "the", "bank" and "the", whose values are
# zero. Say we want its output to be exactly the meaning of "loan", the value
# $v_\text{loan} = [1, 0]$. That is the target $t$, and the loss is the squared error
# of bank's row (the other rows have no target):
#
# $$\text{loss} = \tfrac12 \lVert O_\text{bank} - t \rVert^2.$$

# %%
target = V.numpy()[LOAN].copy()  # (d_v,) the loan direction: [1, 0]
loss = 0.5 * ((O[BANK] - ma.tensor(target)) ** 2).sum()
print(f"target {target}, bank's output {O.numpy()[BANK].round(4)}, loss {loss.item():.5f}")
loss.backward()  # autograd fills every .grad; below we compute each one by hand

# %% [markdown]
# ## Step 2: the gradient at the output, dO
#
# Only bank's row appears in the loss, so only bank's row of $dO = \partial\,
# \text{loss}/\partial O$ is non-zero: $dO_\text{bank} = O_\text{bank} - t$. It points
# *away* from the target; gradient descent moves against it, towards the target.

# %%
q, k, v, p, o = (t.numpy() for t in (Q, K, V, P, O))  # NumPy copies for the hand computation
dO = np.zeros_like(o)  # (L, d_v)
dO[BANK] = o[BANK] - target
show(dO, words, ROLES, "dO: non-zero in bank's row only")
check("dO by hand vs autograd", max_err(dO, O.grad), 1e-15)

# %% [markdown]
# ## Step 3: through O = P V
#
# A matrix product (lesson 4) sends the gradient to both factors:
#
# $$dV = P^\top dO, \qquad dP = dO\, V^\top, \qquad\text{that is}\quad
# dP_{ij} = dO_i \cdot v_j .$$
#
# $dP_{ij}$ says how the loss would change if query $i$ took a little more of value $j$.
# Bank's row is negative for "loan" (more of loan's value helps most) and for "approved"
# (its value is half of loan's), and zero for the tokens whose values are zero.

# %%
dV = p.T @ dO  # (L, d_v)
dP = dO @ v.T  # (L, L)
show(dP, words, words, "dP = dO V^T (row: query, column: key)")
check("dV = P^T dO vs autograd", max_err(dV, V.grad), 1e-15)
check("dP = dO V^T vs autograd", max_err(dP, P.grad), 1e-15)

# %% [markdown]
# ## Step 4: through the softmax
#
# Softmax couples a row: raising one weight lowers the others (lesson 3). Its backward is
# $dS_{ij} = P_{ij}\big(dP_{ij} - \sum_k dP_{ik} P_{ik}\big)$, and the sum is
# $\sum_k (dO_i \cdot v_k) P_{ik} = dO_i \cdot O_i$ (lesson 6, practice 2), so
#
# $$dS_{ij} = P_{ij}\,\big(dO_i \cdot v_j - dO_i \cdot O_i\big).$$
#
# Read it as a comparison: is value $v_j$ better or worse, along the gradient, than what
# query $i$ gets now, $O_i$? Better ($dO_i \cdot v_j < dO_i \cdot O_i$) gives a negative
# $dS_{ij}$; the factor $P_{ij}$ says how much the weight can move at all.

# %%
dS = p * (dP - (dP * p).sum(axis=-1, keepdims=True))  # (L, L), lesson 6's line
dS_read = p * (dO @ v.T - (dO * o).sum(axis=-1, keepdims=True))  # the comparison form
show(dS, words, words, "dS = P * (dP - rowsum(dP * P))")
check("dS by hand vs autograd", max_err(dS, S.grad), 1e-15)
check("rowsum(dP * P) form == (dO . v_j - dO . O_i) form", max_err(dS, dS_read), 1e-15)

# %% [markdown]
# ## Reading dS
#
# Gradient descent changes a score by $-\text{lr}\cdot dS_{ij}$, so **a negative
# $dS_{ij}$ means the step raises score $ij$**, and with it the weight $P_{ij}$.
#
# - The most negative entry is $dS_{\text{bank},\text{loan}}$: the target wants bank to
#   take more of loan's value, so the step raises bank's weight on loan.
# - "the", "bank" and "the" share the largest positive entry. Their values are zero,
#   worse than bank's current output, so the step lowers their weights.
# - $dS_{\text{bank},\text{approved}}$ is positive too, although approved's value points
#   the right way: it carries 0.5 finance, *less* than the 0.69 that bank already has. Weight
#   moved from approved to loan is a gain.
# - Every row but bank's is zero: those outputs have no target.

# %%
i_min = np.unravel_index(np.argmin(dS), dS.shape)
i_max = np.unravel_index(np.argmax(dS), dS.shape)
print(f"most negative dS: ({words[i_min[0]]}, {words[i_min[1]]}) = {dS[i_min]:.4f}")
print(f"most positive dS: ({words[i_max[0]]}, {words[i_max[1]]}) = {dS[i_max]:.4f}")
expect("the most negative entry of dS is (bank, loan)", i_min == (BANK, LOAN))
expect("the zero-valued tokens share the largest positive entry",
       np.allclose(dS[BANK, [0, 1, 3]], dS.max()))
expect("(bank, approved) is positive: approved gives less finance than bank has now",
       dS[BANK, APPROVED] > 0 and v[APPROVED] @ dO[BANK] > o[BANK] @ dO[BANK])
expect("every row of dS but bank's is zero", not np.delete(dS, BANK, axis=0).any())

# %% [markdown]
# The same numbers as pictures: $P$, then $dP$ and $dS$ in red (positive, the step lowers
# the entry) and blue (negative, the step raises it). `viz.attention_gradients` computes
# the maps without drawing, so we check it against our own first.

# %%
maps = viz.attention_gradients(q, k, v, dO, scale=c)
check("viz.attention_gradients' dP and dS == ours",
      max(max_err(maps["dP"], dP), max_err(maps["dS"], dS)), 1e-15)
try:
    import matplotlib.pyplot as plt

    viz.plot_attention_gradients(q, k, v, dO, scale=c, tokens=words,
                                 title="bank's target pulls on one row of the scores")
    plt.show()  # the figure stays open: a notebook or the docs build shows it
except ImportError:
    print("(matplotlib is not installed: pip install matplotlib to draw the heat maps)")

# %% [markdown]
# ## Step 5: into the queries and keys
#
# $S = c\,Q K^\top$ is a matrix product times the constant $c$:
#
# $$dQ = c\, dS\, K, \qquad dK = c\, dS^\top Q.$$
#
# Only bank's row of $dS$ is non-zero, so only bank's query gets a gradient. Every key
# gets one, $dk_j = c\, dS_{\text{bank},j}\, q_\text{bank}$: along bank's query
# $[3, 3]$, in both columns, even for the keys that are zero now.

# %%
dQ = c * dS @ k  # (L, d_k)
dK = c * dS.T @ q  # (L, d_k)
show(dQ, words, ROLES, "dQ = c dS K")
show(dK, words, ROLES, "dK = c dS^T Q")
check("dQ by hand vs autograd", max_err(dQ, Q.grad), 1e-15)
check("dK by hand vs autograd", max_err(dK, K.grad), 1e-15)

# %% [markdown]
# ## Step 6: which weight moves, and why
#
# $Q = X W_Q$ and the others are matrix products too: $dW_Q = X^\top dQ$,
# $dW_K = X^\top dK$, $dW_V = X^\top dV$. Row $f$ of a weight gradient collects the
# gradients of the tokens that have feature $f$, so every entry can be read in words:
#
# - $W_Q$: only (ambiguous, finance) moves. "bank" is the only ambiguous token, and its
#   query should look harder for finance.
# - $W_K$: the money row grows in both columns (loan and approved offer more; the
#   gradient of a key points along the query it meets), the function row shrinks ("the"
#   offers less).
# - $W_V$: the finance column grows in the row of every feature that bank attends to,
#   most of all in the money row: the feature of "loan", where most of bank's weight is.
#
# The largest entry is in $W_V$. The value path is linear in $P$, while the query and
# key paths pass through the softmax, where each gradient is multiplied by a weight
# $P_{ij}$ smaller than one and by $c$.

# %%
x = X.numpy()
grads = {"W_Q": x.T @ dQ, "W_K": x.T @ dK, "W_V": x.T @ dV}  # (d_model, 2) each
for (name, g), W in zip(grads.items(), (W_Q, W_K, W_V)):
    show(g, FEATURES, ROLES, f"d{name} = X^T d{name[-1]}")
    check(f"d{name} by hand vs autograd", max_err(g, W.grad), 1e-15)
name, g = max(grads.items(), key=lambda item: np.abs(item[1]).max())
row, col = np.unravel_index(np.argmax(np.abs(g)), g.shape)
print(f"largest weight gradient: {name}[{FEATURES[row]}, {ROLES[col]}] = {g[row, col]:.4f}")
expect("the weight that moves most is W_V[money, finance]", (name, row, col) == ("W_V", 0, 0))
expect("W_Q: only (ambiguous, finance) has a gradient",
       np.count_nonzero(grads["W_Q"]) == 1 and grads["W_Q"][3, 0] < 0)

# %% [markdown]
# ## Step 7: the three-way fan-out into X
#
# $X$ is used three times, by $Q = X W_Q$, $K = X W_K$ and $V = X W_V$. Its gradient is
# the sum of the three paths (the chain rule adds over every use, lesson 1):
#
# $$dX = dQ\, W_Q^\top + dK\, W_K^\top + dV\, W_V^\top.$$
#
# To see each path on its own, we run the forward pass again with three separate copies
# of $X$, one per role: autograd then reports each path in its own copy's `.grad`. (The
# weights go in detached, so that this second backward pass adds nothing to their `.grad`.)

# %%
w_q, w_k, w_v = (W.numpy() for W in (W_Q, W_K, W_V))
paths = {"query": dQ @ w_q.T, "key": dK @ w_k.T, "value": dV @ w_v.T}  # (L, d_model) each
X_q, X_k, X_v = (ma.tensor(x, requires_grad=True) for _ in range(3))
Q3, K3, V3 = X_q @ W_Q.detach(), X_k @ W_K.detach(), X_v @ W_V.detach()
O3 = F.softmax(c * Q3 @ K3.T, axis=-1) @ V3
(0.5 * ((O3[BANK] - ma.tensor(target)) ** 2).sum()).backward()
for (role, path), copy in zip(paths.items(), (X_q, X_k, X_v)):
    show(path, words, FEATURES, f"the {role} path, d{role[0].upper()} W_{role[0].upper()}^T")
    check(f"the {role} path vs autograd on its own copy of X", max_err(path, copy.grad), 1e-15)
check("dX = sum of the three paths vs autograd", max_err(sum(paths.values()), X.grad), 1e-15)

# %% [markdown]
# The query path reaches only bank's embedding (only bank asks). The key and value paths
# reach every token that bank attends to: "loan" is asked to offer more finance in its
# key and to pass on more finance in its value.
#
# ## Step 8: one step of gradient descent
#
# SGD moves every weight against its gradient, $W \leftarrow W - \text{lr}\, dW$. We take
# one step on the three weight matrices ($X$ stays: it is the input) and compare bank's
# row before and after.

# %%
lr = 0.5
before = {name: W.numpy().copy() for name, W in zip(grads, (W_Q, W_K, W_V))}
p_before, o_before, loss_before = p[BANK].copy(), o[BANK].copy(), loss.item()
optimizer = ma.optim.SGD([W_Q, W_K, W_V], lr=lr)
optimizer.step()

for name, W in zip(grads, (W_Q, W_K, W_V)):
    show(np.hstack([before[name], W.numpy()]), FEATURES, ROLES + [r + "'" for r in ROLES],
         f"{name}: before (finance, nature) and after (finance', nature')")
    check(f"{name} after == {name} before - lr d{name}",
          max_err(W, before[name] - lr * grads[name]), 1e-15)

with ma.no_grad():
    *_, P_after, O_after = forward(X, W_Q, W_K, W_V)
    loss_after = 0.5 * float(((O_after.numpy()[BANK] - target) ** 2).sum())
p_after = P_after.numpy()[BANK]
show(np.stack([p_before, p_after]), ["before", "after"], words, "P, row 'bank'")
print(f"bank's output: {o_before.round(4)} -> {O_after.numpy()[BANK].round(4)} "
      f"(target {target})")
print(f"loss: {loss_before:.5f} -> {loss_after:.5f}")
expect("the loss went down", loss_after < loss_before)
expect("bank's weight on loan went up", p_after[LOAN] > p_before[LOAN])
expect("bank's weights on the zero-valued tokens went down",
       bool((p_after[[0, 1, 3]] < p_before[[0, 1, 3]]).all()))

# %% [markdown]
# One step did what $dS$ promised: bank's weight on loan rose, its weights on the
# zero-valued tokens fell, and its output moved towards the target. A training loop
# (lesson 11) is this step, repeated on many sentences at once.
#
# ## Practice
#
# 1. Give bank the *nature* target $t = [0, 1]$ instead. Which sign does
#    $dS_{\text{bank},\text{loan}}$ take, and what does a step do to bank's weight on loan?
# 2. Why is $dK$ non-zero for "the", whose key is zero, while $dQ$ is zero for "loan"?
# 3. Every row of $dS$ sums to zero. Why?
# 4. To first order, a step lowers the loss by $\text{lr}$ times the sum of the squared
#    gradients. Does that hold for a small step?
#
# The cells below answer each question with code.

# %%
# 1. Now dO_bank = [0.69, -1]: loan's value [1, 0] is worse than bank's output along it
#    (dO . v_loan = 0.69 > dO . O = 0.47), so dS is positive and a step lowers the weight.
nature = np.array([0.0, 1.0])
dO_nature = np.zeros_like(o)
dO_nature[BANK] = o[BANK] - nature
dS_nature = viz.attention_gradients(q, k, v, dO_nature, scale=c)["dS"]
print(f"dS[bank, loan] with the nature target: {dS_nature[BANK, LOAN]:.4f}")
expect("with the nature target, dS[bank, loan] > 0: the step lowers bank's weight on loan",
       dS_nature[BANK, LOAN] > 0)

# %%
# 2. dk_j = c * sum_i dS_ij q_i: every key is scored against bank's query, so every key
#    gets c * dS[bank, j] * q_bank, zero key or not. dq_i = c * sum_j dS_ij k_j needs a
#    non-zero row of dS, and only bank has one: no other query took part in the loss.
check("dK == c * outer(dS[bank], q_bank)", max_err(dK, c * np.outer(dS[BANK], q[BANK])), 1e-15)
expect("'the' (zero key) gets a key gradient, 'loan' no query gradient",
       np.abs(dK[0]).max() > 0 and not dQ[LOAN].any())

# %%
# 3. Adding a constant to every score in a row leaves softmax unchanged, so the loss
#    cannot depend on the row's total: the gradient has no component along (1, ..., 1).
check("every row of dS sums to zero", float(np.abs(dS.sum(axis=-1)).max()), 1e-15)

# %%
# 4. loss(W - lr dW) ~ loss(W) - lr * sum(dW**2) for small lr; at lr = 0.5 (step 8) the
#    curvature already matters, at lr = 0.01 the prediction is within a percent.
small = 0.01
weights = [ma.tensor(before[name] - small * grads[name]) for name in grads]
with ma.no_grad():
    *_, O_small = forward(X, *weights)
drop = loss_before - 0.5 * float(((O_small.numpy()[BANK] - target) ** 2).sum())
predicted = small * sum(float((g**2).sum()) for g in grads.values())
print(f"lr = {small}: loss drop {drop:.3e}, predicted {predicted:.3e}")
check("first-order prediction of the drop, relative error", abs(drop - predicted) / drop, 0.01)
