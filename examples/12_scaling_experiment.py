# %% [markdown]
# # 12. The scaling experiment
#
# Lesson 8 argued for the $1/\sqrt{d}$ with a few measurements. `minattn scaling` runs the
# full experiment, and its building blocks are library functions in
# `minattn.experiments` that return plain rows of numbers. This lesson calls them at a
# small size and reads the results, for three choices of the factor $c$ in
# $\operatorname{softmax}(c\, Q K^\top)$: the standard $c = 1/\sqrt{d}$ (`"sqrt"`),
# no scale at all (`"unscaled"`, $c = 1$), and too much (`"linear"`, $c = 1/d$). Four questions:
# how spread out are the scores, how much gradient passes through the softmax, do
# gradient checks still work, and does the model train?

# %%
import math
import os

import numpy as np

from minattn.experiments import dead_gradients, gradient_flow, lr_sensitivity, score_spread
from minattn.teaching import check, expect

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")


def table(rows, columns, formats):
    """Print the chosen columns of experiment rows, one line per row."""
    widths = [max(len(c), 8) + 2 for c in columns]
    print("".join(f"{c:>{w}}" for c, w in zip(columns, widths)))
    for row in rows:
        print("".join(f"{format(row[c], f):>{w}}" for c, f, w in zip(columns, formats, widths)))


def pick(rows, **where):
    """The rows whose fields equal the given values."""
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


D_VALUES = (16, 64, 256, 1024) if FAST else (16, 64, 256, 1024, 4096)
SEEDS = (0,) if FAST else (0, 1, 2)
N_KEYS = 64  # keys each query attends over
d_max = D_VALUES[-1]

# %% [markdown]
# ## 1. How spread out are the scores?
#
# `score_spread` draws queries and keys with unit-variance entries for each width $d$ and
# scaling, and measures the standard deviation of the scores, the mean entropy of the
# attention rows, and the fraction of rows whose largest weight is above 0.99
# ("saturated"). The theory from lesson 8: the spread is $c\sqrt{d}$, so $1$ with the
# standard scale, $\sqrt{d}$ without it, and $1/\sqrt{d}$ with $1/d$.

# %%
spread = score_spread(d_values=D_VALUES, seeds=SEEDS, n_keys=N_KEYS, n_queries=64)
table(pick(spread, seed=0), ["d", "scaling", "score_std", "score_std_theory", "entropy_mean",
                             "saturated_fraction"], ["d", "s", ".3f", ".3f", ".3f", ".0%"])

check("the score spread is c sqrt(d) for every d and scaling (worst relative error)",
      max(abs(r["score_std"] / r["score_std_theory"] - 1) for r in spread), 0.1)
unscaled_sat = [r["saturated_fraction"] for r in pick(spread, seed=0, scaling="unscaled")]
print("unscaled, saturated rows by d:", [f"{s:.0%}" for s in unscaled_sat])
expect("without the scale, the share of saturated rows grows with d and passes one half",
       unscaled_sat[-1] > 0.5 and unscaled_sat[-1] >= unscaled_sat[0])
expect("with the scale, no row saturates at any d",
       all(r["saturated_fraction"] == 0 for r in pick(spread, scaling="sqrt")))

# %% [markdown]
# ## 2. How much gradient gets through the softmax?
#
# `gradient_flow` measures, for every attention row, the Frobenius norm of the softmax
# Jacobian $J = \operatorname{diag}(p) - pp^\top$ (lesson 3), together with the norms of
# the rows of $dQ$ that minattn's hand-written backward pass computes for a random
# upstream gradient. The Jacobian is the gate every gradient passes through on its way to
# the queries and keys. It is largest for spread-out rows, and for a uniform row over $n$
# keys it equals $\sqrt{n-1}/n$. For a one-hot row it is 0.

# %%
flow = gradient_flow(d_values=D_VALUES, seeds=SEEDS, n_keys=N_KEYS, n_queries=64)
table(pick(flow, seed=0), ["d", "scaling", "jacobian_fro_median", "grad_q_median"],
      ["d", "s", ".2e", ".2e"])

jac = {(r["d"], r["scaling"]): r["jacobian_fro_median"] for r in pick(flow, seed=0)}
expect(f"unscaled, d={d_max}: the median Jacobian is over 100 times smaller than scaled",
       jac[d_max, "unscaled"] < jac[d_max, "sqrt"] / 100)
check(f"1/d, d={d_max}: rows are uniform, so ||J|| is sqrt(n-1)/n",
      abs(jac[d_max, "linear"] - math.sqrt(N_KEYS - 1) / N_KEYS), 0.01)
scaled_jac = [jac[d, "sqrt"] for d in D_VALUES]
check("scaled: the median Jacobian is the same at every d (spread over mean)",
      (max(scaled_jac) - min(scaled_jac)) / np.mean(scaled_jac), 0.1)

# %% [markdown]
# Without the scale, the gate closes as $d$ grows. With $1/d$, every row is close to
# uniform, so the gate is open but attention cannot single anything out. Only
# $1/\sqrt{d}$ keeps the rows the same at every width.
#
# ## 3. Do gradient checks still work?
#
# A saturated row passes back gradients near $10^{-7}$ or smaller. Central differences
# cannot resolve numbers that small: their round-off is about $u\,|f|/h \approx 10^{-10}$
# in float64, whatever the true derivative is. `dead_gradients` compares the backward
# pass's $dQ$ with central differences entry by entry (the fraction of entries whose
# relative error is above $10^{-4}$) and as a whole (the norm-wise error
# $\|a - n\| / \|n\|$).

# %%
dead_d = (64, 1024) if FAST else (64, 256, 1024)
dead = dead_gradients(d_values=dead_d, seeds=(0,), n_queries=4 if FAST else 8, n_keys=N_KEYS)
table(dead, ["d", "scaling", "grad_entry_median", "bad_entry_fraction", "normwise_error"],
      ["d", "s", ".1e", ".1%", ".1e"])

worst = pick(dead, d=dead_d[-1], scaling="unscaled")[0]
expect(f"unscaled, d={dead_d[-1]}: {worst['bad_entry_fraction']:.0%} of the entries of dq "
       "look wrong entry by entry (more than a tenth)", worst["bad_entry_fraction"] > 0.1)
check(f"unscaled, d={dead_d[-1]}: yet the gradient as a whole is right (norm-wise error)",
      worst["normwise_error"], 1e-3)
expect("scaled: fewer than 1 entry in 1000 looks wrong, at any d (an entry that happens to be"
       " near 0 can)", all(r["bad_entry_fraction"] < 1e-3 for r in pick(dead, scaling="sqrt")))

# %% [markdown]
# The backward pass is the same code in every row of this table. What changes is the
# size of the gradients: under unscaled attention most entries are "dead", far below
# what finite differences can measure, so an element-wise gradient check fails on a
# correct implementation. The norm-wise comparison, or `ma.gradcheck`'s directional
# mode, still passes.
#
# ## 4. Does it train?
#
# `lr_sensitivity` trains one attention head on a recall task (find the value stored
# under a key), over a sweep of learning rates, from the same initialization for every
# scaling. We compare the best loss each scaling reaches anywhere in the sweep.

# %%
train_d = (64,) if FAST else (64, 256)
runs = lr_sensitivity(d_values=train_d, optimizers=("adam",) if FAST else ("sgd", "adam"),
                      seeds=(0,) if FAST else (0, 1), steps=50 if FAST else 100)
sweeps = [r for r in runs if r["kind"] == "sweep"]
table(sweeps, ["d", "seed", "scaling", "optimizer", "initial_loss", "best_loss", "best_lr"],
      ["d", "d", "s", "s", ".3f", ".2e", "g"])
for d in train_d:
    for optimizer in {r["optimizer"] for r in sweeps}:
        for seed in {r["seed"] for r in sweeps}:
            best = {r["scaling"]: r["best_loss"] for r in pick(sweeps, d=d, seed=seed,
                                                               optimizer=optimizer)}
            expect(f"d={d}, {optimizer}, seed {seed}: the scaled head reaches a lower loss "
                   f"({best['sqrt']:.2e} vs {best['unscaled']:.2e} unscaled)",
                   best["sqrt"] < best["unscaled"])

# %% [markdown]
# With the scale, the head learns the task at some learning rate in the sweep. Without
# it, no learning rate gets close in the same number of steps: the saturated rows from
# section 1 pass back too little gradient (section 2) to move the queries and keys.
# `minattn scaling` runs all of this with more seeds and widths, adds the step-size and
# overflow experiments, and writes tables and figures; `make demo` runs its quick version.
#
# ## Practice
#
# 1. With $c = 1/d$, what does attention look like at large $d$?
# 2. With $c = 1/\sqrt{d}$, is attention as sharp at $d = 4096$ as at $d = 16$?
# 3. The scale appears in the backward pass too ($dQ = c\, dS\, K$). How does $dQ$ shrink
#    with $c = 1/d$?
#
# The cells below answer each question with code.

# %%
# 1. The scores shrink to a spread of 1/sqrt(d), so every row is nearly uniform: its
#    entropy approaches ln(n), the most it can be, and attention averages everything.
linear_entropy = pick(spread, d=d_max, scaling="linear", seed=0)[0]["entropy_mean"]
print(f"1/d, d={d_max}: entropy {linear_entropy:.4f}, ln(n) = {math.log(N_KEYS):.4f}")
check("1/d: the rows are nearly uniform", abs(linear_entropy - math.log(N_KEYS)), 0.01)

# %%
# 2. Yes: the scores have spread 1 at every d, so the rows have the same entropy.
entropies = [pick(spread, d=d, scaling="sqrt", seed=0)[0]["entropy_mean"] for d in D_VALUES]
print("scaled entropy by d:", [f"{e:.3f}" for e in entropies])
check("scaled: entropy is the same at every d (largest difference)",
      max(entropies) - min(entropies), 0.1)

# %%
# 3. Near-uniform rows give dS of about the same size at every d, and dQ = c dS K with
#    rows of K of norm sqrt(d): so |dQ| ~ (1/d) sqrt(d) = 1/sqrt(d). grad_q * sqrt(d) is
#    then the same at every width.
rescaled = [pick(flow, d=d, scaling="linear", seed=0)[0]["grad_q_median"] * math.sqrt(d)
            for d in D_VALUES]
print("1/d: median |dq| * sqrt(d) by d:", [f"{g:.3f}" for g in rescaled])
check("1/d: |dq| shrinks like 1/sqrt(d) (spread of |dq| sqrt(d) over its mean)",
      (max(rescaled) - min(rescaled)) / np.mean(rescaled), 0.15)
