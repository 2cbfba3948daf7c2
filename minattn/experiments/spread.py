"""Experiment 1: how the scaling sets the spread of the scores and the entropy of attention.

With q and k of independent unit-variance entries, q.k is a sum of d products of variance 1:
its variance is d (Vaswani et al. 2017, footnote 4). So the scores c q.k have standard
deviation c sqrt(d): sqrt(d) unscaled (c = 1), 1 scaled (c = 1/sqrt(d)), 1/sqrt(d) for
c = 1/d. A row of softmax over n keys whose scores have standard deviation sigma has
entropy close to ln(n) - sigma^2 / 2 while sigma is small; once sigma passes about
sqrt(2 ln n) the largest score wins by a wide margin and the row is nearly one-hot.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from .common import D_VALUES, SCALINGS, generator, make_row, normal, scale_for, softmax_rows, tick

SATURATED = 0.99  # a row whose largest weight is above this is called saturated


def entropy_theory(n_keys: int, score_std: float) -> float | None:
    """ln(n) - sigma^2 / 2: the expected entropy of softmax over n normal scores of spread
    sigma, for sigma up to about 1 (None beyond: there the rows saturate instead)."""
    return math.log(n_keys) - score_std**2 / 2 if score_std <= 1.0 + 1e-9 else None


def score_spread(d_values=D_VALUES, scalings=SCALINGS, seeds=(0, 1, 2), n_keys: int = 128,
                 n_queries: int = 256, device: str = "cpu", progress=None) -> list[dict]:
    """Score spread and attention entropy for every d, scaling and seed; one row each.

    Rows hold score_std (and its theory c sqrt(d)), entropy_mean, entropy_median (nats),
    max_weight_mean (the mean over rows of the largest weight) and saturated_fraction
    (rows whose largest weight is above 0.99). Plain float64 array math: no gradients.

    >>> rows = score_spread(d_values=(64,), seeds=(0,))
    >>> [round(r["score_std"], 1) for r in rows]  # sqrt, none, linear
    [1.0, 8.0, 0.1]
    """
    rows = []
    for d in d_values:
        for seed in seeds:
            rng = generator(1, d, seed)
            q = normal(rng, (n_queries, d), device)  # (L, d), unit-variance entries
            k = normal(rng, (n_keys, d), device)  # (n, d)
            dots = q @ k.T  # (L, n): each a sum of d unit-variance products, variance d
            for scaling in scalings:
                scale = scale_for(scaling, d)
                scores = dots * scale  # (L, n)
                probs, shifted, log_z = softmax_rows(scores)
                # H = -sum p log p with log p = shifted - log Z: H = log Z - sum p shifted.
                # Both terms use the max-shifted scores, so a saturated row (H ~ 0) does
                # not come out as the difference of two numbers near the max score.
                entropy = backend.to_numpy(log_z - (probs * shifted).sum(axis=-1))  # (L,)
                top = backend.to_numpy(probs.max(axis=-1))  # (L,)
                std = float(backend.to_numpy(scores.std()))
                theory = scale * math.sqrt(d)
                rows.append(make_row(
                    1, d, scaling, "float64", seed, n_keys=n_keys, n_queries=n_queries,
                    scale=scale, score_std=std, score_std_theory=theory,
                    entropy_mean=entropy.mean(), entropy_median=np.median(entropy),
                    entropy_theory=entropy_theory(n_keys, theory), entropy_max=math.log(n_keys),
                    max_weight_mean=top.mean(), saturated_fraction=(top > SATURATED).mean()))
            tick(progress)
    return rows
