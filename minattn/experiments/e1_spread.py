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
from .common import (
    D_VALUES,
    SCALINGS,
    Experiment,
    Part,
    draw_qkv,
    make_row,
    scale_for,
    scaling_names,
    scalings_in,
    softmax_rows,
    tick,
)
from .plots import COLORS, log2_axis, plot_line, series
from .tables import KeyNumbers, average, fmt, legend, pick, pivot, prose

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
    >>> [round(r["score_std"], 1) for r in rows]  # sqrt, unscaled, linear
    [1.0, 8.0, 0.1]
    """
    scalings = scaling_names(scalings)  # the old "none" is "unscaled"
    rows = []
    for d in d_values:
        for seed in seeds:
            q, k = draw_qkv(1, d, seed, n_queries, n_keys, device=device)  # (L, d), (n, d)
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


# -- its table, figure, report section and key numbers --------------------------------------------


def table(rows, markdown=False) -> str:
    """One line per d: the spread of the scores, the row entropy and the saturated rows."""
    rows = pick(rows, experiment=1)
    sc = scalings_in(rows)
    cols = [(f"std {s}", "score_std", s, "g", False) for s in sc]
    cols += [(f"H {s}", "entropy_median", s, "g", False) for s in sc]
    if "unscaled" in sc:
        cols += [("H mean unscaled", "entropy_mean", "unscaled", "g", False),
                 ("top unscaled", "max_weight_mean", "unscaled", "g", False)]
    cols += [(f"sat {s}", "saturated_fraction", s, "%", False) for s in sc if s != "linear"]
    return pivot(rows, cols, markdown) + legend(
        "std: standard deviation of the scores; H: median row entropy (nats), H mean: mean; "
        "top: mean largest weight; sat: rows whose largest weight is above 0.99", markdown)


def figure(plt, rows):
    """Spread, entropy and saturated rows against d, one panel each."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    n = rows[0]["n_keys"]
    xs_all = sorted({r["d"] for r in rows})
    ax = axes[0]
    for s in scalings_in(rows):
        xs, ys = series(rows, s, "score_std")
        _, theory = series(rows, s, "score_std_theory")
        plot_line(ax, xs, ys, s)
        ax.plot(xs, theory, color=COLORS[s], ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 1e3)
    ax.set_ylabel("standard deviation of the scores")
    ax.set_title("Score spread: sqrt(d) unscaled, 1 scaled\n(dotted: theory c * sqrt(d))")
    ax.legend(title="scale c", loc="lower left")
    log2_axis(ax, xs_all)

    ax = axes[1]
    for s in scalings_in(rows):
        xs, med = series(rows, s, "entropy_median")
        _, mean = series(rows, s, "entropy_mean")
        plot_line(ax, xs, med, s)
        ax.plot(xs, mean, color=COLORS[s], ls="--", lw=1)
    ax.axhline(math.log(n), color="k", ls=":", lw=1)
    ax.axhline(math.log(n) - 0.5, color=COLORS["sqrt"], ls=":", lw=1)
    ax.text(xs_all[0], math.log(n) + 0.05, f"uniform: ln {n} = {math.log(n):.2f}", fontsize=8,
            va="bottom")
    ax.text(xs_all[0], math.log(n) - 0.55, f"theory, scaled: ln {n} - 1/2 = "
            f"{math.log(n) - 0.5:.2f}", fontsize=8, va="top", color=COLORS["sqrt"])
    ax.set_ylim(-0.1, math.log(n) + 0.45)
    ax.set_ylabel("entropy of an attention row (nats)")
    ax.set_title(f"Attention entropy over {n} keys\n(solid: median row, dashed: mean)")
    log2_axis(ax, xs_all)

    ax = axes[2]
    for s in scalings_in(rows):
        xs, ys = series(rows, s, "saturated_fraction")
        plot_line(ax, xs, ys, s)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(f"fraction of rows with largest weight > {SATURATED}")
    ax.set_title("Saturated (nearly one-hot) rows")
    log2_axis(ax, xs_all)
    return fig


def section(rows) -> str:
    """Its section of report.md, with the numbers of this run."""
    n = rows[0]["n_keys"]
    ds = sorted({r["d"] for r in rows})
    d = 512 if 512 in ds else ds[-1]
    return prose(f"""
For each d: {rows[0]['n_queries']} queries and {n} keys per seed, the scores of every
query against every key, and the softmax of each row.

**Theory.** q.k is a sum of d products of independent unit-variance numbers, so its
variance is d and the scores have standard deviation c sqrt(d): sqrt(d) unscaled, 1
scaled, 1/sqrt(d) with c = 1/d. A softmax over n scores of spread sigma has entropy close
to ln(n) - sigma^2/2 while sigma is about 1 or less: ln {n} - 1/2 =
{math.log(n) - 0.5:.2f} nats for the scaled rows, against ln {n} = {math.log(n):.2f} for
uniform weights and 0 for a one-hot row. Once sigma is well past sqrt(2 ln n) =
{math.sqrt(2 * math.log(n)):.1f}, the largest score beats the second by several units
and the row is nearly one-hot.

**What the figure shows.** Left: the spread follows sqrt(d) unscaled (slope 1/2 on
log-log axes) and stays at 1 scaled. Middle: the median scaled row keeps
{fmt(average(rows, 'entropy_median', d=d, scaling='sqrt'))} nats at d = {d}, as at every d;
the median unscaled row has {fmt(average(rows, 'entropy_median', d=d, scaling='unscaled'))}
nats. Right: at d = {d}, {fmt(average(rows, 'saturated_fraction', d=d, scaling='unscaled'), '%')}
of the unscaled rows put more than {SATURATED} of their weight on a single key.

**What it means.** Without the scale, a wider model has sharper attention before it has
learned anything: random noise in q and k decides which key wins, and (experiment 2) such
rows pass almost no gradient back. With 1/sqrt(d) the starting point is the same at every
width. Dividing by d overshoots: the spread shrinks as 1/sqrt(d) and every row is nearly
uniform, unable to prefer any key.""")


def key_numbers(rows) -> KeyNumbers:
    """What experiment 1 measured against what theory expects."""
    found = KeyNumbers()
    e1 = pick(rows, experiment=1)
    if e1:
        for d in (512, 4096):
            found.add(f"score std at d={d}, unscaled",
                      average(e1, "score_std", d=d, scaling="unscaled"),
                      f"sqrt(d) = {math.sqrt(d):.1f}")
        found.add("score std, scaled (all d)", _range(e1, "score_std", scaling="sqrt"), "1")
        found.add("median entropy at d=512, unscaled (nats)",
                  average(e1, "entropy_median", d=512, scaling="unscaled"), "about 0.02")
        found.add("saturated rows at d=512, unscaled",
                  average(e1, "saturated_fraction", d=512, scaling="unscaled"), "more than half",
                  "%")
        n = e1[0]["n_keys"]
        found.add("median entropy, scaled (all d, nats)",
                  _range(e1, "entropy_median", scaling="sqrt"),
                  f"near ln {n} - 1/2 = {math.log(n) - 0.5:.2f}")
    return found


def _range(rows, metric, **match) -> str | None:
    values = [average(rows, metric, d=d, **match) for d in sorted({r["d"] for r in rows})]
    values = [v for v in values if v is not None]
    return f"{fmt(min(values))} to {fmt(max(values))}" if values else None


EXPERIMENT = Experiment(
    1, "spread", "Score spread and attention entropy",
    heading="Score spread and attention entropy",
    parts=[Part(score_spread, quick=dict(seeds=(0,), n_queries=128),
                full=dict(seeds=(0, 1, 2, 3, 4), n_queries=256))],
    table=table, figure=figure, figure_file="fig1_spread.png",
    figure_note="Score spread, entropy and saturation against d, for the three scalings",
    section=section, key_numbers=key_numbers)
