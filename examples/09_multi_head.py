# %% [markdown]
# # 9. Multi-head attention
#
# One attention head computes one set of weights per token, so it can answer only one
# question at a time, such as "which word gives me my meaning?". A word also needs to know
# other things, such as "which word came right before me?". Multi-head attention runs
# several heads side by side on the same input. Each head has its own queries, keys and
# values, and so its own question. This lesson sets up two heads by hand, one for word
# order and one for meaning, and runs them through `ma.nn.MultiHeadAttention`. It then
# rebuilds the module's forward pass with one batched matrix product and shows what a
# single head loses.

# %%
import math
import os

import numpy as np

import minattn as ma
import minattn.functional as F
from minattn.teaching import check, expect, max_err, show

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")  # small sizes (unused here)


# %% [markdown]
# ## The input: meaning and position
#
# Each token's embedding now has two parts. The first five features are lesson 5's
# meaning (money, water, function word, ambiguous noun, action). The last five say where
# the token sits, as a one-hot vector over positions 0 to 4. Attention by itself cannot
# see word order (lesson 5, practice 1), so models add position information like this.

# %%
VOCAB = {
    "the":      [0.0, 0.0, 1.0, 0.0, 0.0],
    "bank":     [0.0, 0.0, 0.0, 1.0, 0.0],
    "approved": [0.5, 0.0, 0.0, 0.0, 1.0],
    "loan":     [1.0, 0.0, 0.0, 0.0, 0.0],
}
words = "the bank approved the loan".split()
L = len(words)
E, H = 10, 2  # model width, number of heads
D = E // H  # each head's width: 5
X = np.array([VOCAB[w] + list(np.eye(L)[i]) for i, w in enumerate(words)])  # (L, E)

# %% [markdown]
# ## Two heads, two questions
#
# `ma.nn.MultiHeadAttention(E, H)` projects the input to queries, keys and values of
# width $E$, and splits each into $H$ heads of width $D = E/H$: head $h$ owns features
# $hD$ to $(h+1)D - 1$. We set its projection weights by hand (PyTorch's convention:
# `Linear` computes $x W^\top$, so row $a$ of a weight matrix makes output feature $a$):
#
# - **head 0, "previous word"**: the query of the token at position $i$ is the position
#   $i-1$, and each key is the token's own position, so the query matches the key of the
#   word before. Its value passes on that word's meaning.
# - **head 1, "meaning"**: lesson 5's head. "bank" looks for finance and nature context,
#   money words offer the finance key and water words the nature key, and the values pass
#   on finance or nature.
#
# The output projection is the identity, so the output is the two heads' results side by
# side.

# %%
W_q, W_k, W_v = np.zeros((E, E)), np.zeros((E, E)), np.zeros((E, E))
for i in range(1, L):  # head 0 (rows 0..4): position i asks for position i - 1
    W_q[i - 1, 5 + i] = 6.0
for j in range(L):  # head 0: each key is its own position
    W_k[j, 5 + j] = 1.0
for a in range(5):  # head 0: the value is the word's meaning
    W_v[a, a] = 1.0
W_q[D + 0, 3] = W_q[D + 1, 3] = 5.0  # head 1 (rows 5..9): "bank" seeks finance and nature
W_k[D + 0, 0] = W_k[D + 1, 1] = 1.0  # money words offer finance, water words nature
W_v[D + 0, 0] = W_v[D + 1, 1] = 1.0  # and pass it on

mha = ma.nn.MultiHeadAttention(E, num_heads=H, bias=False, dtype="float64")
mha.load_state_dict({"q_proj.weight": W_q, "k_proj.weight": W_k, "v_proj.weight": W_v,
                     "out_proj.weight": np.eye(E)})
x = ma.tensor(X[None])  # (1, L, E): a batch of one sentence
out, weights = mha(x, need_weights=True)  # (1, L, E), (1, H, L, L)

show(weights.numpy()[0, 0], words, words, "head 0, 'previous word': attention weights")
show(weights.numpy()[0, 1], words, words, "head 1, 'meaning': attention weights")

w0, w1 = weights.numpy()[0, 0], weights.numpy()[0, 1]
expect("head 0: every token after the first attends most to the word before it",
       all(int(np.argmax(w0[i])) == i - 1 for i in range(1, L)))
expect("head 1: 'bank' attends most to 'loan'", words[int(np.argmax(w1[1]))] == "loan")

# %% [markdown]
# The same token, "bank", attends to "the" in head 0 and to "loan" in head 1. Its output
# carries both answers: the first five features are the meaning of the word before it,
# the next five what it learned from its context.

# %%
show(out.numpy()[0, 1:2], ["bank"], ["money", "water", "function", "ambig.", "action",
                                      "finance", "nature", "-", "-", "-"], "output of 'bank'")

# %% [markdown]
# ## All heads in one matrix product
#
# The module does not loop over heads. It projects once, reshapes the $E$ features of
# each token into $H$ heads of $D$, moves the head axis to the front, and then a single
# batched matrix product computes every head's scores. We rebuild its forward pass from
# primitive ops and compare it with the module and with a plain loop over the heads,
# lesson 5 style.

# %%
q = (x @ ma.tensor(W_q).T).reshape(1, L, H, D).swapaxes(1, 2)  # (1, H, L, D)
k = (x @ ma.tensor(W_k).T).reshape(1, L, H, D).swapaxes(1, 2)  # (1, H, L, D)
v = (x @ ma.tensor(W_v).T).reshape(1, L, H, D).swapaxes(1, 2)  # (1, H, L, D)
scores = q @ k.swapaxes(-1, -2) / math.sqrt(D)  # (1, H, L, L): every head at once
heads = F.softmax(scores, axis=-1) @ v  # (1, H, L, D)
merged = heads.swapaxes(1, 2).reshape(1, L, E)  # (1, L, E): heads side by side again
by_hand = merged @ ma.tensor(np.eye(E)).T  # the output projection
check("one batched product for all heads vs ma.nn.MultiHeadAttention", max_err(by_hand, out),
      1e-14)

looped = []
for h in range(H):  # one head at a time, on its own slice of the projections
    rows = slice(h * D, (h + 1) * D)
    q_h, k_h, v_h = X @ W_q[rows].T, X @ W_k[rows].T, X @ W_v[rows].T  # (L, D) each
    looped.append(F.scaled_dot_product_attention(ma.tensor(q_h), ma.tensor(k_h),
                                                 ma.tensor(v_h)).numpy())
check("loop over heads vs the module", max_err(np.concatenate(looped, axis=-1), out.numpy()[0]),
      1e-14)

# %% [markdown]
# ## What one head would lose
#
# Why not one head of width $E$ that asks both questions at once? A head has a single
# softmax per token, so it must blend the two questions into one set of weights. Here is
# the same query, key and value content as a single head: "bank"'s query now matches both
# the word before it and "loan", and the softmax splits the weight between them.

# %%
single = ma.nn.MultiHeadAttention(E, num_heads=1, bias=False, dtype="float64")
single.load_state_dict({"q_proj.weight": W_q, "k_proj.weight": W_k, "v_proj.weight": W_v,
                        "out_proj.weight": np.eye(E)})
_, w_single = single(x, need_weights=True)  # (1, 1, L, L)
bank_single = w_single.numpy()[0, 0, 1]
show(np.stack([w0[1], w1[1], bank_single]), ["head 0", "head 1", "one head"], words,
     "weights of 'bank'")
expect("one head gives 'the' (previous word) less weight than head 0", bank_single[0] < w0[1, 0])
expect("one head gives 'loan' less weight than head 1", bank_single[4] < w1[1, 4])

# %% [markdown]
# The single head blurs the two answers together and gets neither as sharply. With two
# heads, each softmax is free to pick its own word. Real models use many heads (GPT-2 small
# has 12 in each layer), and their learned heads are often found to specialize: some
# attend to the previous token, others follow syntax or meaning.
#
# ## Multi-head attention's backward
#
# The backward pass runs the forward's steps in reverse, and there is little new in it.
# The output projection and the three input projections are `Linear` layers (lesson 4).
# Each head's attention is lesson 6's backward, on its own $D$ features. What remains is
# the split and the merge, and they do no arithmetic: `reshape` and `swapaxes` only move
# numbers, so their backward moves the gradients back. The gradient of head $h$'s query
# at token $i$, feature $d$, lands at feature $hD + d$ of token $i$ in the gradient of the
# projection's output, which is exactly the merge applied to the heads' gradients. The
# input $x$ feeds every head through $W_Q$, $W_K$ and $W_V$, so its gradient adds up all
# of those paths (lesson 7's fan-out, once more per head).
#
# We run the forward pass of the previous section again with tensors that require grad,
# keep the gradients of the projections' outputs and of the heads, and check both claims.

# %%
rng = np.random.default_rng(1)
xg = ma.tensor(X[None], requires_grad=True)  # (1, L, E)
Wg_q, Wg_k, Wg_v = (ma.tensor(W, requires_grad=True) for W in (W_q, W_k, W_v))
proj = [xg @ W.T for W in (Wg_q, Wg_k, Wg_v)]  # (1, L, E) each: the projections' outputs
for t in proj:
    t.retain_grad()
q, k, v = (t.reshape(1, L, H, D).swapaxes(1, 2) for t in proj)  # (1, H, L, D): the split
for t in (q, k, v):
    t.retain_grad()
heads = F.scaled_dot_product_attention(q, k, v)  # (1, H, L, D)
heads.retain_grad()
dout = rng.standard_normal((1, L, E))  # a random upstream gradient
heads.swapaxes(1, 2).reshape(1, L, E).backward(dout)  # the merge (output projection: I)

for name, t, t_proj in zip("qkv", (q, k, v), proj):
    merged_grad = t.grad.swapaxes(1, 2).reshape(1, L, E)  # the heads' gradients, merged
    check(f"d{name} of the projection == the merge of every head's d{name}",
          max_err(merged_grad, t_proj.grad), 0.0)
check("the merge's backward is the split of dout",
      max_err(heads.grad, dout.reshape(1, L, H, D).swapaxes(1, 2)), 0.0)
for h in range(H):  # each head: lesson 6's backward on its own slice
    mine = ma.viz.attention_gradients(q[0, h], k[0, h], v[0, h], heads.grad[0, h])
    check(f"head {h}: dq, dk, dv == lesson 6's backward on its D features",
          max(max_err(mine["dq"], q.grad[0, h]), max_err(mine["dk"], k.grad[0, h]),
              max_err(mine["dv"], v.grad[0, h])), 1e-13)

# %% [markdown]
# Finally, every parameter of a multi-head module against central differences.
# `ma.module_gradcheck(module, *inputs, names=...)` checks the module's gradient with
# respect to its inputs and the named parameters, in float64, with a random upstream
# gradient. A module with random weights and biases exercises every path (the hand-set
# one above saturates its softmax, where gradients are tiny).

# %%
ma.manual_seed(0)
module = ma.nn.MultiHeadAttention(E, num_heads=H, dtype="float64")  # with biases
x_check = ma.tensor(rng.standard_normal((2, L, E)))  # (B, L, E), B = 2
for name, param in module.named_parameters():
    expect(f"module_gradcheck: {name} {param.shape}",
           ma.module_gradcheck(module, x_check, names=[name]))
expect("module_gradcheck: the input x",
       ma.module_gradcheck(module, ma.tensor(x_check.numpy(), requires_grad=True), names=[]))

# %% [markdown]
# ## Practice
#
# 1. Does more heads mean more parameters?
# 2. Is the order of the heads meaningful?
# 3. Heads with random weights (no hand-setting): do they attend differently?
#
# The cells below answer each question with code.

# %%
# 1. No: the four projections are E x E whatever H is; heads split the width, they do not
#    add to it. (Here without bias: 4 E^2 parameters.)
for n_heads in [1, 2, 5]:
    count = sum(p.numel() for p in ma.nn.MultiHeadAttention(E, n_heads, bias=False).parameters())
    print(f"H = {n_heads}: {count} parameters")
    check(f"H = {n_heads}: 4 E^2 parameters", abs(count - 4 * E * E), 0)

# %%
# 2. No: swap the two heads' rows in the q, k, v projections and the matching columns of
#    the output projection, and the output is the same.
swap = np.r_[D:E, 0:D]  # head 1's features first, then head 0's
swapped = ma.nn.MultiHeadAttention(E, H, bias=False, dtype="float64")
swapped.load_state_dict({"q_proj.weight": W_q[swap], "k_proj.weight": W_k[swap],
                         "v_proj.weight": W_v[swap], "out_proj.weight": np.eye(E)[:, swap]})
check("heads swapped (with the output projection): same output", max_err(swapped(x)[0], out),
      1e-14)

# %%
# 3. Yes: each head has its own projections, so even at random initialization every head
#    computes its own weights for the same input.
ma.manual_seed(0)
random_mha = ma.nn.MultiHeadAttention(E, num_heads=H, dtype="float64")
_, w_random = random_mha(ma.tensor(np.random.default_rng(0).standard_normal((1, L, E))),
                         need_weights=True)
difference = max_err(w_random[0, 0], w_random[0, 1])
print(f"largest difference between the two random heads' weights: {difference:.3f}")
expect("two random heads attend differently", difference > 0.05)
