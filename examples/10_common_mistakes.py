# %% [markdown]
# # 10. Common mistakes, and the code that exposes them
#
# Most attention bugs raise no error. They produce numbers of the right shape that are
# wrong, and the model then trains a bit worse, or not at all. This lesson makes each
# classic mistake on purpose and shows a check that exposes it. The reference is always
# the same: `F.scaled_dot_product_attention`, or a gradient check with a random upstream
# gradient.

# %%
import math
import os

import numpy as np

import minattn as ma
import minattn.functional as F
from minattn.teaching import check, expect, max_err

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")  # small sizes (unused here)


rng = np.random.default_rng(0)
L, d = 6, 256  # tokens, width of queries and keys (wide, as in real models)


def randn(*shape):
    return ma.tensor(rng.standard_normal(shape))


q, k, v = randn(L, d), randn(L, d), randn(L, d)
reference = F.scaled_dot_product_attention(q, k, v)  # (L, d)

# %% [markdown]
# ## Mistake 1: thinking the attention weights are fixed parameters
#
# The weights $W_Q, W_K, W_V$ are parameters, learned once and then fixed. The attention
# weights $\operatorname{softmax}(QK^\top/\sqrt d)$ are not. They are recomputed for
# every input. A layer that learned one fixed mixing matrix (as in lesson 5's "bank" row,
# frozen) gets every other sentence wrong. We freeze the weights computed for "The bank
# loan was approved" and reuse them for "The bank of the river". The frozen row of "bank"
# points at position 2, where "loan" was; in the new sentence, position 2 holds "of".

# %%
VOCAB = {"the": [0, 0, 1, 0], "of": [0, 0, 1, 0], "was": [0, 0, 1, 0], "bank": [0, 0, 0, 1],
         "approved": [0.5, 0, 0, 0], "loan": [1, 0, 0, 0], "river": [0, 1, 0, 0]}
W_Q = ma.tensor([[0, 0], [0, 0], [0, 0], [3, 3]], dtype="float64")  # bank seeks context
W_K = ma.tensor([[1, 0], [0, 1], [0, 0], [0, 0]], dtype="float64")  # money / water offered
W_V = W_K  # and passed on


def embed(sentence):
    return ma.tensor([VOCAB[w] for w in sentence.lower().split()], dtype="float64")


def attention_weights(X):
    return F.softmax((X @ W_Q) @ (X @ W_K).T / math.sqrt(2), axis=-1)  # (L, L)


X_loan, X_river = embed("The bank loan was approved"), embed("The bank of the river")
frozen = attention_weights(X_loan)  # computed once, then (wrongly) reused
bank_right = (attention_weights(X_river) @ (X_river @ W_V)).numpy()[1]  # (finance, nature)
bank_frozen = (frozen @ (X_river @ W_V)).numpy()[1]
print(f"'bank' in 'The bank of the river': recomputed weights -> {bank_right.round(3)}, "
      f"frozen weights -> {bank_frozen.round(3)}")
expect("recomputed: 'bank' reads as nature", bank_right[1] > 0.5)
expect("frozen: 'bank' looks at 'of', where 'loan' was, and misses the river",
       bank_frozen[1] < 0.25)

# %% [markdown]
# ## Mistake 2: forgetting the scale
#
# Dropping the $1/\sqrt{d}$ gives the right shape and plausible values. It breaks
# nothing visibly at $d = 4$, but at $d = 256$ each row of weights is almost one-hot
# and passes almost no gradient back (lesson 8). Two checks catch it: a comparison with
# the reference, and the row entropy.

# %%
def entropy(p):
    p = p.numpy()
    return float((-(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)).mean())


unscaled_weights = F.softmax(q @ k.T, axis=-1)  # the mistake: no / sqrt(d)
scaled_weights = F.softmax(q @ k.T / math.sqrt(d), axis=-1)
print(f"mean row entropy: scaled {entropy(scaled_weights):.3f}, unscaled "
      f"{entropy(unscaled_weights):.3f} (uniform: {math.log(L):.3f})")
expect("the unscaled output differs from the reference", max_err(unscaled_weights @ v,
                                                                 reference) > 0.1)
expect("the unscaled rows are almost one-hot (entropy < 0.2)", entropy(unscaled_weights) < 0.2)
check("the scaled version matches the reference", max_err(scaled_weights @ v, reference), 1e-12)

# %% [markdown]
# ## Mistake 3: confusing keys with values
#
# Keys decide **where** a token looks, and values decide **what** it takes from there.
# Summing the keys instead of the values, `weights @ K`, is a silent bug whenever the
# two have the same shape. Lesson 5 could not catch it: we set $W_K = W_V$ there, so
# keys and values were equal. With different projections it shows at once.

# %%
weights = F.softmax(q @ k.T / math.sqrt(d), axis=-1)
mixed_keys = weights @ k  # the mistake: keys passed on instead of values
expect("weights @ K differs from the reference", max_err(mixed_keys, reference) > 0.1)
check("weights @ V matches it", max_err(weights @ v, reference), 1e-12)

# %% [markdown]
# ## Mistake 4: softmax over the wrong axis
#
# The scores are (query, key): row $i$ is query $i$'s view of every key, and each
# **row** must sum to 1. Softmax over `axis=0` normalizes each key's column instead. The
# rows then no longer sum to 1 and each output is no longer an average of values. A
# one-line check catches it.

# %%
wrong_axis = F.softmax(q @ k.T / math.sqrt(d), axis=0)
row_sums = wrong_axis.sum(axis=-1).numpy()
print("row sums with axis=0:", row_sums.round(3))
expect("with axis=0 the rows do not sum to 1", float(np.abs(row_sums - 1).max()) > 0.1)
check("with axis=-1 they do", max_err(weights.sum(axis=-1), np.ones(L)), 1e-12)

# %% [markdown]
# ## Mistake 5: `Q @ K` instead of `Q @ K.T`
#
# When the number of tokens differs from the width, the shapes do not fit and minattn
# says so, naming both shapes. When they are equal (say 8 tokens of width 8), the
# product runs, and the result is wrong without any error.

# %%
try:
    q @ k  # (L, d) @ (L, d)
    expect("Q @ K with L != d raises an error", False)
except ValueError as error:
    print("ValueError:", error)

q8, k8, v8 = randn(8, 8), randn(8, 8), randn(8, 8)
silently_wrong = F.softmax(q8 @ k8 / math.sqrt(8), axis=-1) @ v8  # runs: the shapes are square
expect("square Q @ K runs but disagrees with the reference",
       max_err(silently_wrong, F.scaled_dot_product_attention(q8, k8, v8)) > 0.1)

# %% [markdown]
# ## Mistake 6: a mask with the wrong meaning
#
# In `F.scaled_dot_product_attention`, as in PyTorch, a boolean mask marks with **True**
# the keys a query **may** attend to. Some other APIs use True for "masked out", for
# example PyTorch's `key_padding_mask`. Passing a "True = hidden" causal mask inverts
# it: every token then sees only the future.

# %%
future = np.triu(np.ones((L, L), dtype=bool), k=1)  # True above the diagonal: the future
inverted = F.scaled_dot_product_attention(q, k, v, attn_mask=future)  # the mistake
causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
allowed = ~future  # True = may attend: the past and the token itself
check("mask ~future (True = may attend) == is_causal=True",
      max_err(F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), causal), 1e-12)
expect("the inverted mask gives a different output", max_err(inverted, causal) > 0.1)
print("last row with the inverted mask (sees no key, so zeros):", inverted.numpy()[-1, :4])
expect("a fully masked row gives exact zeros", not inverted.numpy()[-1].any())
expect("a plain softmax of a row of -inf gives NaN",
       bool(np.isnan(F.softmax(ma.tensor([-np.inf] * 3), axis=-1).numpy()).all()))

# %% [markdown]
# The last token has no future, so with the inverted mask it attends to nothing.
# minattn returns zeros for such a row, and so does PyTorch's `scaled_dot_product_attention`
# (2.13, with a boolean mask or an all `-inf` float one; older versions gave NaN), while a
# plain `softmax` of a row of `-inf` is NaN in both. A row of exact zeros in an attention
# output is a sign that the mask is inverted.
#
# ## Mistake 7: forgetting to zero the gradients
#
# Gradients accumulate (lesson 2). A training loop that never clears them updates step
# $t$ with the sum of all gradients so far, and the parameters run away. The fix is one
# line: `optimizer.zero_grad()`, or `model.zero_grad()`.

# %%
w = ma.tensor(rng.standard_normal(4), requires_grad=True)
x_in = ma.tensor(rng.standard_normal(4))
grads = []
for _ in range(3):  # the mistake: no w.grad = None between steps
    (w * x_in).sum().backward()
    grads.append(w.grad.numpy().copy())
check("step 3 used three times the true gradient", max_err(grads[2], 3 * x_in.numpy()), 1e-15)

# %% [markdown]
# ## Mistake 8: checking gradients through `.sum()`
#
# Lesson 3 showed it in detail: the outputs of softmax sum to 1 in every row, so the
# gradient of `out.sum()` through a softmax is zero, and a wrong backward can pass. The
# same holds for attention's weights. Always check with a random upstream gradient,
# which `ma.gradcheck` uses.

# %%
logits = ma.tensor(rng.standard_normal((3, 5)), requires_grad=True)
F.softmax(logits, axis=-1).sum().backward()
check("d/dx sum(softmax(x)) is zero, whatever backward does", float(np.abs(
    logits.grad.numpy()).max()), 1e-15)

# %% [markdown]
# ## Practice
#
# 1. Which of these mistakes raise an error, and which give wrong numbers silently?
# 2. Confusing keys with values went unnoticed in lesson 5. Why?
# 3. What one habit catches all the silent ones?
#
# The cells below answer each question with code.

# %%
# 1. Only Q @ K with non-square shapes raises. Every other mistake runs and gives numbers
#    of the right shape.
mistakes = {
    "frozen weights": lambda: frozen @ (X_river @ W_V),
    "no scale": lambda: F.softmax(q @ k.T, axis=-1) @ v,
    "keys for values": lambda: weights @ k,
    "softmax axis=0": lambda: F.softmax(q @ k.T / math.sqrt(d), axis=0) @ v,
    "Q @ K (L != d)": lambda: F.softmax(q @ k / math.sqrt(d), axis=-1) @ v,
    "Q @ K (square)": lambda: F.softmax(q8 @ k8 / math.sqrt(8), axis=-1) @ v8,
    "inverted mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=future),
}
raised = []
for name, run in mistakes.items():
    try:
        run()
        print(f"{name:<18} runs silently")
    except ValueError:
        print(f"{name:<18} raises ValueError")
        raised.append(name)
expect("only the non-square Q @ K raises", raised == ["Q @ K (L != d)"])

# %%
# 2. Lesson 5 set W_K == W_V, so K == V and weights @ K == weights @ V.
check("with W_K == W_V, keys-for-values gives the same output",
      max_err(frozen @ (X_loan @ W_K), frozen @ (X_loan @ W_V)), 0.0)

# %%
# 3. Compare with an independent reference, on random inputs (no symmetry to hide
#    behind), with random upstream gradients for the backward pass.
def my_attention(q, k, v):
    return F.softmax(q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1]), axis=-1) @ v


qs, ks, vs = (ma.tensor(rng.standard_normal(s), requires_grad=True)
              for s in [(2, 5, 4), (2, 7, 4), (2, 7, 3)])
check("my_attention vs F.scaled_dot_product_attention",
      max_err(my_attention(qs, ks, vs), F.scaled_dot_product_attention(qs, ks, vs)), 1e-12)
expect("and its gradients pass ma.gradcheck", ma.gradcheck(my_attention, (qs, ks, vs)))
