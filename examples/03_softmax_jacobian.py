# %% [markdown]
# # 3. Softmax and its Jacobian
#
# Softmax turns a row of scores into weights that are positive and sum to 1. Attention
# applies it to every row of its score matrix, so its derivative is the heart of
# attention's backward pass. This lesson derives the Jacobian
# $J = \operatorname{diag}(p) - p p^\top$, checks it three ways, shows how backward
# avoids ever building it, and shows why checking softmax's gradient through
# `out.sum()` proves nothing.

# %%
import os

import numpy as np

import minattn as ma
import minattn.functional as F
from minattn.teaching import check, expect, max_err

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")  # small sizes (unused here)


rng = np.random.default_rng(0)

# %% [markdown]
# ## Softmax, and why it subtracts the maximum
#
# $$p_i = \frac{e^{x_i}}{\sum_j e^{x_j}}.$$
#
# Adding a constant $c$ to every $x_i$ multiplies the numerator and the denominator by
# the same $e^c$, so the result does not change. Choosing $c = -\max_j x_j$ makes every
# exponent $\le 0$, so nothing overflows. The naive formula breaks on scores of around
# 1000, which unscaled attention can produce (lesson 8).

# %%
def softmax_naive(x):
    e = np.exp(x)
    return e / e.sum()


def softmax_stable(x):
    e = np.exp(x - x.max())  # every exponent <= 0
    return e / e.sum()


big = np.array([1000.0, 1001.0, 1002.0])
with np.errstate(over="ignore", invalid="ignore"):
    print("naive :", softmax_naive(big))  # exp(1000) = inf, inf / inf = nan
print("stable:", softmax_stable(big))
print("minattn:", F.softmax(ma.tensor(big), axis=-1).numpy())
check("F.softmax vs the stable NumPy softmax on large scores",
      max_err(F.softmax(ma.tensor(big), axis=-1), softmax_stable(big)), 1e-15)

# %% [markdown]
# ## The Jacobian, derived
#
# Differentiate $p_i = e^{x_i} / Z$ with $Z = \sum_j e^{x_j}$ with respect to $x_k$,
# using $\partial Z / \partial x_k = e^{x_k}$:
#
# $$\frac{\partial p_i}{\partial x_k}
#   = \frac{\delta_{ik} e^{x_i} Z - e^{x_i} e^{x_k}}{Z^2}
#   = p_i (\delta_{ik} - p_k),
#   \qquad\text{so}\qquad J = \operatorname{diag}(p) - p p^\top.$$
#
# Every input affects every output: raising one score takes weight from all the others.
# We check the formula against two independent computations: central differences,
# column by column, and minattn's backward pass. Backward computes $u^\top J$ for an
# upstream gradient $u$, so the one-hot $u = e_i$ gives row $i$ of $J$.

# %%
n = 5
x = rng.standard_normal(n)
p = softmax_stable(x)

J_formula = np.diag(p) - np.outer(p, p)  # (n, n)

h = 1e-6
J_numeric = np.stack([(softmax_stable(x + h * e) - softmax_stable(x - h * e)) / (2 * h)
                      for e in np.eye(n)], axis=1)  # column k = dp / dx_k

rows = []
for e in np.eye(n):
    xt = ma.tensor(x, dtype="float64", requires_grad=True)
    F.softmax(xt, axis=-1).backward(e)  # u = e_i: the gradient is e_i^T J, row i of J
    rows.append(xt.grad.numpy())
J_autograd = np.stack(rows)

np.set_printoptions(precision=4, suppress=True)
print("J = diag(p) - p p^T =\n", J_formula)
check("Jacobian formula vs central differences", max_err(J_formula, J_numeric), 1e-9)
check("Jacobian formula vs minattn backward, row by row", max_err(J_formula, J_autograd), 1e-15)

# %% [markdown]
# ## Backward never builds the Jacobian
#
# For a row of $n$ scores, $J$ has $n^2$ entries; attention over 4096 positions would
# need a 4096 × 4096 Jacobian for every row. Backward only needs the product
# $dx = J^\top dy$ (here $J$ is symmetric), and that product simplifies:
#
# $$dx_k = \sum_i dy_i\, p_i (\delta_{ik} - p_k) = p_k \Big(dy_k - \sum_i dy_i p_i\Big),
#   \qquad dx = p \odot \big(dy - \langle dy, p\rangle\big).$$
#
# This is one dot product per row, $O(n)$ work, and it needs only the **output** $p$,
# which is why softmax's forward pass saves $p$ rather than $x$.

# %%
dy = rng.standard_normal(n)  # a random upstream gradient
dx_formula = p * (dy - np.dot(dy, p))
xt = ma.tensor(x, dtype="float64", requires_grad=True)
F.softmax(xt, axis=-1).backward(dy)
check("p * (dy - <dy, p>) vs J^T dy", max_err(dx_formula, J_formula.T @ dy), 1e-15)
check("p * (dy - <dy, p>) vs minattn backward", max_err(dx_formula, xt.grad), 1e-15)

# %% [markdown]
# ## Why `out.sum()` tests nothing
#
# A common way to "test" a backward pass is to call `out.sum().backward()` and compare.
# For softmax that is useless. The outputs always sum to 1, so
# $\sum_i p_i$ is constant and its true gradient is **zero**, whatever $x$ is. Any
# backward that returns zero for $dy = \mathbf{1}$ passes, right or wrong.
#
# Here is a plausible wrong backward. It forgets the factor $p$ and returns
# $dy - \langle dy, p \rangle$. For $dy = \mathbf{1}$ that is $1 - 1 = 0$, exactly the
# right answer, but for any other $dy$ it is wrong.

# %%
class WrongSoftmax(ma.Function):
    """Softmax with a broken backward: dx = dy - <dy, p> (the factor p is missing)."""

    def forward(self, x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        self.p = e / e.sum(axis=-1, keepdims=True)
        return self.p

    def backward(self, dout):
        # wrong on purpose: should be p * (dout - sum(dout * p))
        return dout - (dout * self.p).sum(axis=-1, keepdims=True)


xt = ma.tensor(x, dtype="float64", requires_grad=True)
sum_passes = ma.gradcheck(lambda t: WrongSoftmax.apply(t).sum(), (xt,), raise_exception=False)
random_passes = ma.gradcheck(lambda t: WrongSoftmax.apply(t), (xt,), raise_exception=False)
right_passes = ma.gradcheck(lambda t: F.softmax(t, axis=-1), (xt,), raise_exception=False)
print(f"wrong backward, checked through .sum():         passes = {sum_passes}")
print(f"wrong backward, checked with a random upstream: passes = {random_passes}")
print(f"right backward, checked with a random upstream: passes = {right_passes}")
expect("the .sum() check lets the wrong backward through", sum_passes)
expect("the random-upstream check catches the wrong backward", not random_passes)
expect("the random-upstream check passes the right backward", right_passes)

# %% [markdown]
# `ma.gradcheck` draws a random upstream gradient for each output (for a one-element
# output such as `.sum()` it is a random number times $\mathbf 1$, which does not help).
# With a random $u$, a wrong backward would have to get $u^\top J$ right for a direction
# chosen after it was written, and it does not. minattn's own tests always check with
# random upstream gradients for this reason.
#
# ## Practice
#
# 1. What is the sum of each row of $J$, and what does it mean for the gradient $dx$?
# 2. When does softmax pass almost no gradient back?
# 3. How large can $J$ get? Compare a uniform $p$ with a two-way tie.
#
# The cells below answer each question with code.

# %%
# 1. J 1 = p - p (p^T 1) = p - p = 0: each row sums to 0 (J is symmetric, so each column
#    too). Adding a constant to every score changes nothing, so the gradient has no
#    component along 1: dx always sums to 0.
check("rows of J sum to 0", float(np.abs(J_formula.sum(axis=1)).max()), 1e-15)
xt = ma.tensor(x, dtype="float64", requires_grad=True)
F.softmax(xt, axis=-1).backward(dy)
check("dx sums to 0", abs(float(xt.grad.numpy().sum())), 1e-15)

# %%
# 2. When p is (nearly) one-hot, diag(p) and p p^T cancel and J -> 0. Large scores
#    make p one-hot:
#    multiply the same scores by 50 and the Jacobian almost vanishes.
norms = {}
for spread in [1, 5, 20, 50]:
    p_s = softmax_stable(spread * x)
    norms[spread] = np.linalg.norm(np.diag(p_s) - np.outer(p_s, p_s), 2)
    print(f"scores x {spread:>2}: max p = {p_s.max():.6f}, ||J||_2 = {norms[spread]:.2e}")
expect("scores x 50 shrink ||J|| more than 1000-fold", norms[50] < norms[1] / 1000)

# %%
# 3. For a uniform p = 1/n, J = I/n - 11^T/n^2, with largest eigenvalue 1/n. The
#    largest possible is 1/2, for a tie between two scores: p = (1/2, 1/2, 0, ...).
uniform = np.full(n, 1 / n)
tie = np.array([0.5, 0.5] + [0.0] * (n - 2))
for name, q in [("uniform", uniform), ("two-way tie", tie)]:
    print(f"{name:<12} ||J||_2 = {np.linalg.norm(np.diag(q) - np.outer(q, q), 2):.4f}")
check("uniform: ||J|| = 1/n", abs(np.linalg.norm(np.diag(uniform) - np.outer(uniform, uniform), 2)
                                  - 1 / n), 1e-15)
check("tie: ||J|| = 1/2", abs(np.linalg.norm(np.diag(tie) - np.outer(tie, tie), 2) - 0.5), 1e-15)
