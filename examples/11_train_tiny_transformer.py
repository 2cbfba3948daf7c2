# %% [markdown]
# # 11. Training a tiny transformer
#
# Everything so far has used fixed or random weights. Here we train them. A small
# decoder-only transformer (`ma.nn.Transformer`) learns to reverse a sequence of digits,
# with `F.cross_entropy` as the loss and `ma.optim.Adam` as the optimizer. Every gradient
# comes from the backward passes of lessons 1 to 6. At the end we look at what the trained
# attention learned to look at.

# %%
import math
import os
import time

import numpy as np

import minattn as ma
import minattn.functional as F
from minattn.teaching import check, expect

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")


# Fast mode trains a smaller model on shorter sequences, for fewer steps.
N = 4 if FAST else 6  # digits to reverse
STEPS = 30 if FAST else 100
LR = 1e-2 if FAST else 3e-3  # fast mode takes bigger steps
BATCH = 32 if FAST else 64
EMBED, HEADS, LAYERS = (32, 2, 1) if FAST else (64, 4, 2)
DELIM, VOCAB = 10, 11  # digits 0-9, then the delimiter "|"
ma.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## The task: reverse the digits
#
# Each example is $n$ random digits, a delimiter, and the same digits reversed:
# `3 1 4 1 | 1 4 1 3`. As in every language model, the model reads the sequence left to
# right and predicts each next token. The targets are the inputs shifted left by one. Only
# the predictions after the delimiter count: the first half is random, so there is
# nothing to learn there.
#
# Reversing needs attention. To write the $j$-th answer digit, the model must fetch the
# digit $n - 1 - j$ places from the start, a position that depends on where it is writing.
# A model without attention, which sees each token on its own, cannot do that.

# %%
def batch(size):
    """(inputs, targets), both (size, 2N) token ids: x | reversed(x), shifted by one."""
    x = rng.integers(0, 10, size=(size, N))  # (size, N) random digits
    seq = np.concatenate([x, np.full((size, 1), DELIM), x[:, ::-1]], axis=1)  # (size, 2N + 1)
    return seq[:, :-1], seq[:, 1:]


inputs, targets = batch(1)
def show(ids):
    return " ".join("|" if t == DELIM else str(t) for t in ids)


print("input :", show(inputs[0]))
print("target:", show(targets[0]), "  (positions", N, "onward are scored)")

# %% [markdown]
# ## The model
#
# `ma.nn.Transformer` is a GPT-style decoder:
#
# 1. a token embedding plus a learned position embedding (attention alone cannot see
#    order; lesson 5, practice 1);
# 2. `LAYERS` blocks, each computing `x + attention(layernorm(x))` and then
#    `x + mlp(layernorm(x))`. The attention is causal, multi-head (lesson 9) and scaled by
#    $1/\sqrt{d}$ (lesson 8);
# 3. a final layer norm and a linear layer that gives one score (logit) per token.

# %%
model = ma.nn.Transformer(vocab_size=VOCAB, max_len=2 * N, embed_dim=EMBED, num_heads=HEADS,
                          num_layers=LAYERS)
optimizer = ma.optim.Adam(model.parameters(), lr=LR)
print(f"{sum(p.numel() for p in model.parameters())} parameters")


def answer_loss(logits, targets):
    """Cross-entropy over the answer positions only."""
    answer = logits[:, N:]  # (B, N, VOCAB): predictions from the delimiter onward
    return F.cross_entropy(answer.reshape(-1, VOCAB), targets[:, N:].reshape(-1))


# %% [markdown]
# ## The training loop
#
# One step is always the same four lines: clear the old gradients, compute the loss,
# backpropagate, and update the parameters. Adam scales each parameter's step by a running
# estimate of the size of its gradient.

# %%
eval_inputs, eval_targets = batch(256)  # held-out examples, never trained on
with ma.no_grad():
    initial = answer_loss(model(ma.tensor(eval_inputs)), eval_targets).item()
print(f"before training: held-out loss {initial:.3f} (ln {VOCAB} = {math.log(VOCAB):.3f})")

start = time.perf_counter()
for step in range(1, STEPS + 1):
    inputs, targets = batch(BATCH)
    optimizer.zero_grad()  # gradients accumulate (lesson 2): clear them first
    loss = answer_loss(model(ma.tensor(inputs)), targets)  # forward
    loss.backward()  # every gradient, by the chain rule
    optimizer.step()  # update the parameters
    if step % max(STEPS // 5, 1) == 0:
        print(f"step {step:>4}: training loss {loss.item():.4f}")
print(f"{STEPS} steps in {time.perf_counter() - start:.1f} s")

# %% [markdown]
# ## How well did it learn?
#
# We measure on the held-out batch: the loss, and the fraction of answer digits the model
# gets right when it picks its highest-scoring token.

# %%
with ma.no_grad():
    logits, maps = model(ma.tensor(eval_inputs), need_weights=True)
final = answer_loss(logits, eval_targets).item()
accuracy = float((logits.numpy()[:, N:].argmax(axis=-1) == eval_targets[:, N:]).mean())
print(f"after training: held-out loss {final:.4f}, answer accuracy {accuracy:.1%}")
expect("training lowered the held-out loss by at least a quarter", final < 0.75 * initial)
expect("the model reverses at least 90% of the held-out digits", accuracy > 0.9)

# %% [markdown]
# ## What the attention learned
#
# At input position $p \ge n$ the model must produce digit $2n - 1 - p$ of the input, which
# sits at position $m(p) = 2n - 1 - p$. If attention learned the task, some head should put
# its weight on $m(p)$, a diagonal running backwards through the map. For each answer
# position we report the largest weight any head, in any layer, puts on $m(p)$,
# averaged over the held-out examples.

# %%
mirror = {p: 2 * N - 1 - p for p in range(N, 2 * N)}
best = {p: max(float(w.numpy()[:, h, p, m].mean()) for w in maps for h in range(HEADS))
        for p, m in mirror.items()}
for p, m in mirror.items():
    print(f"position {p} (writes the digit from position {m}): weight on it {best[p]:.2f}")
expect("for every answer position some head looks mostly at the mirrored digit",
       min(best.values()) > 0.5)

# %% [markdown]
# The same weights as pictures: the last layer's heads on the first held-out sequence,
# one row per query position, one column per key. The answer rows (the lower half) should
# show the backward diagonal.

# %%
try:
    import matplotlib.pyplot as plt

    from minattn import viz

    tokens = ["|" if t == DELIM else str(t) for t in eval_inputs[0]]  # | between the halves
    viz.attention_maps(maps[-1][0], tokens=tokens, title="last layer, first held-out sequence")
    plt.show()  # a notebook or the docs build shows it
except ImportError:
    print("(matplotlib is not installed: pip install matplotlib to draw the attention maps)")

# %% [markdown]
# Nobody told the model where to look. The loss only rewarded correct digits, and the
# gradient flowing back through softmax (lesson 3) and the score matrix (lesson 6) moved
# the queries, keys and position embeddings until the weights landed on the right digit.
# `minattn train` trains longer, on this task and on text, and
# `minattn train --compare-scaling` trains the same model with and without the
# $1/\sqrt{d}$.
#
# ## Practice
#
# 1. Why does the untrained model's loss start near $\ln 11$?
# 2. The first half of each sequence is never scored. Could the model learn to predict it?
# 3. We trust the gradients of a whole transformer block. Can we check them?
#
# The cells below answer each question with code.

# %%
# 1. An untrained model's logits are small and nearly equal, so it gives each of the 11
#    tokens probability about 1/11, and the cross-entropy is about -ln(1/11) = ln 11.
check("the initial loss is ln 11, roughly", abs(initial - math.log(VOCAB)), 0.5)

# %%
# 2. No. The first N digits are uniformly random, and no prediction can do better on
#    average than the entropy of that distribution, ln 10, however long it trains. (This
#    model does worse still: it was never trained there, and guesses with confidence.)
first_half = logits[:, : N - 1].reshape(-1, VOCAB)  # positions 0..N-2 predict digits 1..N-1
first_loss = F.cross_entropy(first_half, eval_targets[:, : N - 1].reshape(-1)).item()
print(f"loss on the random first half: {first_loss:.3f} (ln 10 = {math.log(10):.3f})")
expect("the first half's loss stays at or above ln 10 (up to sampling noise)",
       first_loss > math.log(10) - 0.1)

# %%
# 3. Yes: in float64, against central differences, with a random upstream gradient. This
#    covers layer norm, multi-head causal attention, the MLP with GELU and both residuals.
block = ma.nn.TransformerBlock(8, num_heads=2, is_causal=True, dtype="float64")
x = ma.randn(2, 4, 8, dtype="float64", requires_grad=True)
report = ma.gradcheck_report(lambda x: block(x), (x,))
print(report)
expect("a whole transformer block passes the gradient check", report.passed)
