# %% [markdown]
# # 5. Self-attention from scratch
#
# In "The bank approved the loan", the word "bank" means a financial institution. In
# "The bank of the river" it means the edge of a river. A model can only tell the two apart
# by looking at the other words. Self-attention is the mechanism that lets each word's
# representation draw on the words around it. This lesson builds it step by step from
# hand-set vectors, so that every number means something, and compares the result with
# `F.scaled_dot_product_attention`.

# %%
import math
import os

import numpy as np

import minattn as ma
import minattn.functional as F
from minattn.teaching import check, expect, max_err, show

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")  # small sizes (unused here)


# %% [markdown]
# ## Step 1: tokens as vectors
#
# A model first turns each word (token) into a vector, its **embedding**. Real
# embeddings are learned and have hundreds of dimensions. Ours have five, set by hand so
# that each dimension has a meaning:
#
# | dimension | meaning |
# |---|---|
# | 0 | about money |
# | 1 | about water and nature |
# | 2 | a function word (the, of) |
# | 3 | an ambiguous noun that needs context |
# | 4 | an action |

# %%
FEATURES = ["money", "water", "function", "ambiguous", "action"]
VOCAB = {
    "the":      [0.0, 0.0, 1.0, 0.0, 0.0],
    "of":       [0.0, 0.0, 1.0, 0.0, 0.0],
    "bank":     [0.0, 0.0, 0.0, 1.0, 0.0],
    "approved": [0.5, 0.0, 0.0, 0.0, 1.0],  # an action, mostly about money
    "loan":     [1.0, 0.0, 0.0, 0.0, 0.0],
    "river":    [0.0, 1.0, 0.0, 0.0, 0.0],
    "by":       [0.0, 0.0, 1.0, 0.0, 0.0],
}


def embed(sentence):
    """The sentence's tokens as the rows of a (L, d_model) tensor."""
    words = sentence.lower().split()
    return words, ma.tensor([VOCAB[w] for w in words], dtype="float64")


words, X = embed("The bank approved the loan")
show(X, words, FEATURES, "X: one row per token, (L, d_model) = " + str(X.shape))

# %% [markdown]
# ## Step 2: queries, keys and values
#
# Each token plays three roles, and each role gets a vector of its own, computed from the
# embedding by a weight matrix:
#
# - its **query** $q = x W_Q$: what this token is *looking for* in the others;
# - its **key** $k = x W_K$: what this token *offers*, the thing a query can match;
# - its **value** $v = x W_V$: what this token *passes on* to whoever attends to it.
#
# A model learns these matrices (lesson 11 trains them). Here we set them by hand.
# Queries and keys live in a small space with two dimensions, "finance context" and
# "nature context":
#
# - "bank", the ambiguous noun, looks for both kinds of context (a query of $[3, 3]$);
#   the other words look for nothing (their queries are zero);
# - words about money offer the finance key, words about water offer the nature key;
# - the values carry the meaning a word lends to others: money words pass on "finance",
#   water words pass on "nature".

# %%
d_k = 2  # the width of queries and keys
W_Q = ma.tensor([[0, 0], [0, 0], [0, 0], [3, 3], [0, 0]], dtype="float64")  # (d_model, d_k)
W_K = ma.tensor([[1, 0], [0, 1], [0, 0], [0, 0], [0, 0]], dtype="float64")  # (d_model, d_k)
W_V = ma.tensor([[1, 0], [0, 1], [0, 0], [0, 0], [0, 0]], dtype="float64")  # (d_model, d_v)

Q = X @ W_Q  # (L, d_k)
K = X @ W_K  # (L, d_k)
V = X @ W_V  # (L, d_v)
show(Q, words, ["finance?", "nature?"], "Q: what each token looks for")
show(K, words, ["finance", "nature"], "K: what each token offers")
show(V, words, ["finance", "nature"], "V: what each token passes on")

# %% [markdown]
# ## Step 3: scores, a query against every key
#
# How well does token $i$'s query match token $j$'s key? Their dot product $q_i \cdot k_j$
# is large when they point the same way. One matrix product computes all $L \times L$ of
# these numbers at once: $\text{scores} = Q K^\top$. Row $i$ holds token $i$'s scores for
# every token, itself included.

# %%
scores = Q @ K.T  # (L, L)
show(scores, words, words, "scores = Q K^T (row: the query's token, column: the key's token)")

# %% [markdown]
# ## Step 4: scale, then softmax turns scores into weights
#
# Softmax (lesson 3) turns each row of scores into **attention weights**: positive
# numbers that sum to 1. Before the softmax, the scores are divided by $\sqrt{d_k}$. A dot
# product of $d_k$ terms grows with $d_k$, and without the division wide queries and keys
# would give huge scores and a saturated softmax (lesson 8 shows why that is bad).
#
# $$A = \operatorname{softmax}\!\Big(\frac{Q K^\top}{\sqrt{d_k}}\Big).$$

# %%
weights = F.softmax(scores / math.sqrt(d_k), axis=-1)  # (L, L), each row sums to 1
show(weights, words, words, "attention weights: row i says how much token i draws on each token")
check("every row of weights sums to 1", max_err(weights.sum(axis=-1), np.ones(len(words))), 1e-15)

# %% [markdown]
# Row "bank" puts most of its weight on "loan", some on "approved" (an action about
# money), and little on the rest. The other rows are uniform: their queries are zero, so
# every score is 0 and softmax spreads the weight evenly.
#
# ## Step 5: the weighted sum of values
#
# Each token's output is the average of all the values, weighted by its attention
# weights: $\text{out}_i = \sum_j A_{ij} v_j$, or for all tokens at once
# $\text{out} = A V$.

# %%
out = weights @ V  # (L, d_v)
show(out, words, ["finance", "nature"], "out = weights @ V: what each token took from the others")

# %% [markdown]
# The output for "bank" is now mostly **finance**. It took its meaning from "loan" and
# "approved". In a transformer this output is added to the token's own embedding (the
# residual connection), so "bank" continues through the network as "the financial bank".
#
# These five steps together are **scaled dot-product attention**, and minattn has them as
# one function. We check our step-by-step result against it and against plain NumPy.

# %%
reference = F.scaled_dot_product_attention(Q, K, V)  # scale defaults to 1/sqrt(d_k)
q_np, k_np, v_np = Q.numpy(), K.numpy(), V.numpy()
s_np = q_np @ k_np.T / np.sqrt(d_k)
p_np = np.exp(s_np - s_np.max(axis=-1, keepdims=True))
p_np /= p_np.sum(axis=-1, keepdims=True)
check("step by step vs F.scaled_dot_product_attention", max_err(out, reference), 1e-12)
check("step by step vs plain NumPy", max_err(out, p_np @ v_np), 1e-12)

# %% [markdown]
# ## The weights depend on the input
#
# The weights $W_Q, W_K, W_V$ are fixed. The **attention weights** are not: they are
# computed from the sentence each time. Give the same model "The bank of the river", and
# "bank" now attends to "river" and comes out meaning nature.

# %%
def attend(sentence):
    words, X = embed(sentence)
    Q, K, V = X @ W_Q, X @ W_K, X @ W_V  # (L, d_k), (L, d_k), (L, d_v)
    weights = F.softmax(Q @ K.T / math.sqrt(d_k), axis=-1)  # (L, L)
    return words, weights, weights @ V


words_a, weights_a, out_a = attend("The bank approved the loan")
words_b, weights_b, out_b = attend("The bank of the river")
show(weights_b, words_b, words_b, "attention weights for 'The bank of the river'")
show(out_b, words_b, ["finance", "nature"], "out")

bank_a, bank_b = weights_a.numpy()[1], weights_b.numpy()[1]
expect("in sentence A, 'bank' attends most to 'loan'", words_a[int(np.argmax(bank_a))] == "loan")
expect("in sentence B, 'bank' attends most to 'river'", words_b[int(np.argmax(bank_b))] == "river")
expect("'bank' comes out as finance in A and as nature in B",
       out_a.numpy()[1, 0] > 0.5 > out_a.numpy()[1, 1] and out_b.numpy()[1, 1] > 0.5)

# %% [markdown]
# ## Every token at once
#
# Nothing in attention makes token $i$ wait for token $i-1$. Each row of the output uses
# only its own query and the shared keys and values. One matrix product computes all rows
# together, and the result is exactly what a loop over the tokens, one at a time, would
# give. The parallel form is what a GPU runs, and it is one reason transformers train
# faster than recurrent networks, which must step through a sentence in order.

# %%
rows = []
for i in range(len(words)):  # one token at a time
    q_i = X[i] @ W_Q  # (d_k,): this token's query
    w_i = F.softmax(K @ q_i / math.sqrt(d_k), axis=-1)  # (L,): its weights over all tokens
    rows.append((w_i @ V).numpy())  # (d_v,): its output
check("loop over tokens == one matrix product for all", max_err(np.stack(rows), out), 1e-15)

# %% [markdown]
# Real models run several attentions side by side, each with its own $W_Q, W_K, W_V$
# (**heads**), so that one can track meaning while another tracks word order. Lesson 9
# builds them. Lesson 6 takes attention's derivative.
#
# ## Practice
#
# 1. Shuffle the words: "loan the approved bank the". What happens to the weights of
#    "bank"?
# 2. What does a token whose query is zero attend to, and what is its output?
# 3. In "The bank by the river approved the loan", where does "bank" look?
# 4. Swap two rows of $W_V$ so that money words pass on "nature". Do the attention
#    weights change?
#
# The cells below answer each question with code.

# %%
# 1. Attention has no notion of order: shuffling the tokens shuffles the rows and
#    columns of the weights the same way, and "bank" draws on the same words as before.
#    (This is why transformers add position information to the embeddings.)
perm = [4, 0, 2, 1, 3]  # "loan the approved bank the"
words_p, weights_p, out_p = attend(" ".join(words_a[j] for j in perm))
print("shuffled:", words_p)
check("shuffled weights == original weights, permuted",
      max_err(weights_p, weights_a.numpy()[np.ix_(perm, perm)]), 1e-15)
check("shuffled outputs == original outputs, permuted", max_err(out_p, out_a.numpy()[perm]), 1e-15)

# %%
# 2. A zero query scores 0 against every key, so softmax gives every token 1/L, and the
#    output is the plain average of the values.
the_row = weights_a.numpy()[0]
check("'the' (zero query) has uniform weights 1/L", max_err(the_row, np.full(5, 1 / 5)), 1e-15)
check("its output is the mean of the values", max_err(out_a.numpy()[0], V.numpy().mean(axis=0)),
      1e-15)

# %%
# 3. Both kinds of context are present, so "bank" splits its attention between "river"
#    and "loan": it is ambiguous, and its output mixes finance and nature.
words_c, weights_c, out_c = attend("The bank by the river approved the loan")
show(weights_c.numpy()[1:2], ["bank"], words_c, "weights of 'bank'")
row = dict(zip(words_c, weights_c.numpy()[1]))
check("'bank' gives 'river' and 'loan' equal weight", abs(row["river"] - row["loan"]), 1e-15)

# %%
# 4. Values do not take part in the scores, so the weights stay the same; only what is
#    passed on changes. The keys decide *where* to look, the values *what* is taken.
W_V_swapped = ma.tensor(W_V.numpy()[[1, 0, 2, 3, 4]])
V_swapped = X @ W_V_swapped
out_swapped = F.scaled_dot_product_attention(Q, K, V_swapped)
print("bank's output with swapped values (finance, nature):", out_swapped.numpy()[1].round(3))
expect("swapping values leaves 'bank' reading as nature in a sentence about a loan",
       out_swapped.numpy()[1, 1] > 0.5 > out_swapped.numpy()[1, 0])
