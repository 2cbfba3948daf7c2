"""Experiment 1: how the scaling sets the spread of the scores and the entropy of attention.

With q and k of independent unit-variance entries, q.k is a sum of d products of variance 1:
its variance is d (Vaswani et al. 2017, footnote 4). So the scores c q.k have standard
deviation c sqrt(d): sqrt(d) unscaled (c = 1), 1 scaled (c = 1/sqrt(d)), 1/sqrt(d) for
c = 1/d. A row of softmax over n keys whose scores have standard deviation sigma has
entropy close to ln(n) - sigma^2 / 2 while sigma is small; once sigma passes about
sqrt(2 ln n) the largest score wins by a wide margin and the row is nearly one-hot.
"""

from __future__ import annotations

import functools
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
from .plots import log2_axis, plot_line, series
from .tables import (
    KeyNumbers,
    average,
    fmt,
    legend,
    pick,
    pivot,
    prose,
    slope,
    span,
    times,
    within,
)

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
    [1.0, 8.1, 0.1]
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


@functools.cache
def unit_normal_scores(n_keys: int, n_rows: int = 8192) -> np.ndarray:
    """(n_rows, n_keys) standard normal numbers from a fixed stream: the draws of the theory."""
    return np.random.default_rng([7, n_keys]).standard_normal((n_rows, n_keys))


@functools.cache
def normal_scores_theory(n_keys: int, score_std: float) -> dict:
    """What rows of n independent normal scores of spread sigma give, by simulation (8192
    rows): entropy_median, entropy_mean and saturated_fraction.

    The scores of one query are c q.k_j over the keys: given q, independent normals of spread
    c |q|, with |q| close to sqrt(d). This is that model with |q| = sqrt(d) exactly.
    """
    probs, shifted, log_z = softmax_rows(unit_normal_scores(n_keys) * score_std)
    entropy = log_z - (probs * shifted).sum(axis=-1)  # (rows,), as in score_spread
    return {"entropy_median": float(np.median(entropy)), "entropy_mean": float(entropy.mean()),
            "saturated_fraction": float((probs.max(axis=-1) > SATURATED).mean())}


def _theory_series(rows, s, metric):
    """(xs, ys): normal_scores_theory's metric at every d of one scaling."""
    n = rows[0]["n_keys"]
    xs = sorted({r["d"] for r in rows if r["scaling"] == s})
    return xs, [normal_scores_theory(n, scale_for(s, d) * math.sqrt(d))[metric] for d in xs]


def figure(plt, rows):
    """Spread, entropy and saturated rows against d, one panel each, stacked."""
    fig, axes = plt.subplots(3, 1, figsize=(6.4, 10.2))
    n = rows[0]["n_keys"]
    xs_all = sorted({r["d"] for r in rows})
    theory_style = dict(color="k", ls=":", lw=1.6, zorder=4)
    ax = axes[0]
    for s in scalings_in(rows):
        xs, ys = series(rows, s, "score_std")
        _, theory = series(rows, s, "score_std_theory")
        plot_line(ax, xs, ys, s)
        ax.plot(xs, theory, **theory_style, label="theory" if s == "sqrt" else None)
    ax.set_yscale("log")
    ax.set_ylim(5e-3, 3e3)  # room for the legend above the lines
    ax.set_ylabel("std of the scores c q.k")
    ax.set_title("(a) Score spread (dotted: theory c sqrt(d))")
    ax.legend(title="scale c", loc="upper left", ncol=2)
    log2_axis(ax, xs_all)

    ax = axes[1]
    for s in scalings_in(rows):
        xs, med = series(rows, s, "entropy_median")
        _, mean = series(rows, s, "entropy_mean")
        plot_line(ax, xs, med, s)
        plot_line(ax, xs, mean, s, label="_", lw=1, ls="--", ms=0)
        ax.plot(*_theory_series(rows, s, "entropy_median"), **theory_style)
    ax.axhline(math.log(n), color="k", ls="-.", lw=1)
    ax.text(xs_all[0], math.log(n) + 0.08, f"uniform: ln {n} = {math.log(n):.2f}",
            fontsize=9, va="bottom")
    ax.set_ylim(-0.15, math.log(n) + 0.75)
    ax.set_ylabel("entropy of a row (nats)")
    ax.set_title(f"(b) Attention entropy over {n} keys (solid: median row, dashed: mean;\n"
                 "dotted: theory, independent normal scores of spread c sqrt(d))")
    log2_axis(ax, xs_all)

    ax = axes[2]
    for s in scalings_in(rows):
        xs, ys = series(rows, s, "saturated_fraction")
        plot_line(ax, xs, ys, s)
        ax.plot(*_theory_series(rows, s, "saturated_fraction"), **theory_style)
    ax.set_ylim(-0.04, 1.04)
    ax.set_ylabel(f"rows with top weight > {SATURATED}")
    ax.set_title("(c) Saturated (nearly one-hot) rows (dotted: theory)")
    log2_axis(ax, xs_all)
    return fig


def section(rows) -> str:
    """Its section of report.md, with the numbers of this run."""
    n = rows[0]["n_keys"]
    ds = sorted({r["d"] for r in rows})
    small, big = ds[0], ds[-1]
    d = 512 if 512 in ds else big
    sc = scalings_in(rows)

    def at(metric, d, s):
        return average(rows, metric, d=d, scaling=s)

    def every_d(metric, s):
        return [at(metric, x, s) for x in ds]

    def theory(metric, d, s):
        return normal_scores_theory(n, scale_for(s, d) * math.sqrt(d))[metric]

    spread = []
    for s, expected in (("unscaled", "1/2"), ("linear", "-1/2")):
        if s in sc:
            spread.append(f"{'unscaled' if s == 'unscaled' else 'with c = 1/d'} it has a slope "
                          f"of {slope(ds, every_d('score_std', s)):.2f} (theory {expected})")
    scaled_std = span(every_d("score_std", "sqrt"))
    text = [f"""
For each d: {rows[0]['n_queries']} queries and {n} keys per seed, the scores of every
query against every key, and the softmax of each row.

**Theory.** q.k is a sum of d products of independent unit-variance numbers, so its
variance is d and the scores have standard deviation c sqrt(d): sqrt(d) unscaled, 1
scaled, 1/sqrt(d) with c = 1/d. For one query the scores over the keys are, given q,
independent normals of spread c |q|, with |q| close to sqrt(d). The dotted theory lines of
the figure simulate exactly that: {len(unit_normal_scores(n))} rows of {n} independent
normal scores of spread c sqrt(d). For a small spread sigma the entropy is close to
ln(n) - sigma^2/2 (ln {n} - 1/2 = {math.log(n) - 0.5:.2f} nats at sigma = 1, against
ln {n} = {math.log(n):.2f} for uniform weights and 0 for a one-hot row); once sigma is well
past sqrt(2 ln n) = {math.sqrt(2 * math.log(n)):.1f}, the largest score beats the second by
several units and the row is nearly one-hot."""]
    shows = [f"**What the figure shows.** (a) On log-log axes, the scaled spread stays at "
             f"{scaled_std} (theory 1); " + "; ".join(spread) + "."]
    scaled_h = every_d("entropy_median", "sqrt")
    shows.append(f"(b) The median scaled row keeps {span(scaled_h)} nats at every d, the "
                 f"simulation {span([theory('entropy_median', x, 'sqrt') for x in ds])}.")
    if "unscaled" in sc:
        h_small, h_d = at("entropy_median", small, "unscaled"), at("entropy_median", d, "unscaled")
        h_big, mean_big = at("entropy_median", big, "unscaled"), at("entropy_mean", big, "unscaled")
        shows.append(f"The median unscaled row goes from {fmt(h_small)} nats at d = {small} to "
                     f"{fmt(h_d)} at d = {d} (simulation "
                     f"{fmt(theory('entropy_median', d, 'unscaled'))}) and {fmt(h_big)} at "
                     f"d = {big}; its mean (dashed) is {fmt(mean_big)} there, "
                     f"{times(mean_big, h_big)} the median: a few rows keep a near-tie while "
                     "most are nearly one-hot.")
    if "linear" in sc:
        gap = math.log(n) - at("entropy_median", big, "linear")
        shows.append(f"With c = 1/d the median row is {fmt(gap)} nats short of uniform at "
                     f"d = {big}.")
    sat_scaled = max(r["saturated_fraction"] for r in rows if r["scaling"] == "sqrt")
    sat = ["(c) No scaled row is saturated at any d" if sat_scaled == 0 else
           f"(c) At most {fmt(sat_scaled, '%')} of the scaled rows are saturated"]
    if "unscaled" in sc:
        sat.append(f"unscaled, {fmt(at('saturated_fraction', small, 'unscaled'), '%')} of the "
                   f"rows are at d = {small}, "
                   f"{fmt(at('saturated_fraction', d, 'unscaled'), '%')} at d = {d} "
                   f"(simulation {fmt(theory('saturated_fraction', d, 'unscaled'), '%')}) and "
                   f"{fmt(at('saturated_fraction', big, 'unscaled'), '%')} at d = {big}: they "
                   f"put more than {SATURATED} of their weight on a single key")
    shows.append("; ".join(sat) + ".")
    text.append(" ".join(shows))
    means = ["**What it means.**"]
    if "unscaled" in sc and at("entropy_median", big, "unscaled") < at("entropy_median", small,
                                                                       "unscaled"):
        means.append("Without the scale, a wider model has sharper attention before it has "
                     "learned anything: random noise in q and k decides which key wins, and "
                     "(experiment 2) such rows pass almost no gradient back.")
    stds, entropies = every_d("score_std", "sqrt"), every_d("entropy_median", "sqrt")
    if all(abs(x - 1) <= 0.1 for x in stds) and max(entropies) - min(entropies) <= 0.1:
        means.append("With 1/sqrt(d) the spread (within 10% of 1), and with it the entropy "
                     "(within 0.1 nats), is the same at every width.")
    if "linear" in sc and at("entropy_median", big, "linear") > at("entropy_median", small,
                                                                    "linear"):
        means.append("Dividing by d overshoots: the spread shrinks as 1/sqrt(d) and the rows "
                     "approach uniform weights, unable to prefer any key.")
    text.append(" ".join(means))
    return prose("\n\n".join(text))


def key_numbers(rows) -> KeyNumbers:
    """What experiment 1 measured against what theory expects."""
    found = KeyNumbers()
    e1 = pick(rows, experiment=1)
    if not e1:
        return found
    n = e1[0]["n_keys"]
    for d in (512, 4096):
        std = average(e1, "score_std", d=d, scaling="unscaled")
        found.add(f"score std at d={d}, unscaled", std,
                  f"sqrt(d) = {math.sqrt(d):.1f}, within 10%",
                  std is not None and abs(std / math.sqrt(d) - 1) <= 0.1,
                  note=f"{fmt(std / math.sqrt(d))} sqrt(d)" if std else "")
    stds = _every_d(e1, "score_std", scaling="sqrt")
    found.add("score std, scaled (all d)", span(stds) if stds else None, "1, within 10%",
              all(abs(x - 1) <= 0.1 for x in stds), note="some d off by more than 10%")
    sim = normal_scores_theory(n, math.sqrt(512))
    entropy = average(e1, "entropy_median", d=512, scaling="unscaled")
    found.add("median entropy at d=512, unscaled (nats)", entropy,
              f"{fmt(sim['entropy_median'])} (simulated: {n} normal scores of spread "
              "sqrt(d)), within a factor 2", within(entropy, sim["entropy_median"], 2),
              note=f"{fmt(entropy / sim['entropy_median'], 'x')} the simulation" if entropy
              else "")
    saturated = average(e1, "saturated_fraction", d=512, scaling="unscaled")
    found.add("saturated rows at d=512, unscaled", saturated,
              f"{fmt(sim['saturated_fraction'], '%')} (simulated), within 10 points",
              saturated is not None and abs(saturated - sim["saturated_fraction"]) <= 0.1,
              style="%", note="more than 10 points from the simulation")
    scaled = normal_scores_theory(n, 1.0)["entropy_median"]
    entropies = _every_d(e1, "entropy_median", scaling="sqrt")
    found.add("median entropy, scaled (all d, nats)", span(entropies) if entropies else None,
              f"{fmt(scaled)} (simulated; ln {n} - 1/2 = {math.log(n) - 0.5:.2f}), within 0.1",
              all(abs(x - scaled) <= 0.1 for x in entropies),
              note="some d more than 0.1 nats from the simulation")
    return found


def _every_d(rows, metric, **match) -> list[float]:
    """The metric's mean over seeds at every d (where the rows hold it)."""
    values = [average(rows, metric, d=d, **match) for d in sorted({r["d"] for r in rows})]
    return [v for v in values if v is not None]


EXPERIMENT = Experiment(
    1, "spread", "Score spread and attention entropy",
    heading="Score spread and attention entropy",
    parts=[Part(score_spread, quick=dict(seeds=(0,), n_queries=128),
                full=dict(seeds=(0, 1, 2, 3, 4), n_queries=256))],
    table=table, figure=figure, figure_file="fig1_spread.png",
    figure_note="Score spread, entropy and saturation against d, for the three scalings",
    section=section, key_numbers=key_numbers)
