"""Experiment 2: the softmax Jacobian and the gradients that flow back to q and k.

For one row p = softmax(s), ds = J^T dp with J = diag(p) - p p^T. Its size says how much
gradient the softmax lets through: ||J||_F is at most 1/2 (a two-way tie), sqrt(n-1)/n for a
uniform row, and 0 for a one-hot row. Through attention, dq = c dS K and dk = c dS^T Q with
dS = P * (dP - rowsum(dP * P)): the scale c appears once more in the chain rule.

The Jacobian norms are plain float64 array math; the gradients of q and k come from
minattn's hand-written attention backward (``impl="fused"``), driven by a random upstream
gradient.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import backend
from .. import functional as F
from ..core import tensor
from .common import (
    D_VALUES,
    SCALINGS,
    Experiment,
    Part,
    draw_qkv,
    make_row,
    quantiles,
    row_norms,
    scale_for,
    scaling_names,
    scalings_in,
    softmax_rows,
    tick,
)
from .e1_spread import unit_normal_scores
from .plots import COLORS, band, gmean, log2_axis, series
from .tables import (
    KeyNumbers,
    average,
    fmt,
    legend,
    listing,
    pick,
    pivot,
    prose,
    span,
    times,
    within,
)


def jacobian_fro(probs):
    """||diag(p) - p p^T||_F for every row p of probs, summed from non-negative terms.

    J_ii = p_i (1 - p_i) and J_ij = -p_i p_j, so ||J||_F^2 = sum_i p_i^2 (1 - p_i)^2 +
    sum_i p_i^2 sum_{j != i} p_j^2. Both 1 - p_i and the inner sum are summed from the
    other entries of the row (a product with 1 - I), never as 1 - p_i: for a saturated row,
    where 1 - p_max ~ 1e-12, the subtraction would keep no correct digit.
    """
    xp = backend.get_array_module(probs)
    n = probs.shape[-1]
    others = 1 - xp.eye(n, dtype=probs.dtype)  # (n, n): 1 off the diagonal, 0 on it
    rest = probs @ others  # (..., n): sum_{j != i} p_j = 1 - p_i
    p2 = probs * probs  # (..., n)
    squares = p2 * rest * rest + p2 * (p2 @ others)  # (..., n): row i of J, squared, summed
    return xp.sqrt(squares.sum(axis=-1))  # (...,)


@functools.cache
def jacobian_theory(n_keys: int, score_std: float) -> float:
    """The median ||J||_F over rows of n independent normal scores of spread sigma, by
    simulation: the rows of experiment 1's theory (``e1_spread.normal_scores_theory``)."""
    probs, _, _ = softmax_rows(unit_normal_scores(n_keys) * score_std)
    return float(np.median(jacobian_fro(probs)))


def gradient_flow(d_values=D_VALUES, scalings=SCALINGS, seeds=(0, 1, 2), n_keys: int = 128,
                  n_queries: int = 256, value_dim: int = 64, device: str = "cpu",
                  progress=None) -> list[dict]:
    """Softmax Jacobian norms and per-row gradient norms of q and k; one row per d, scaling
    and seed.

    Rows hold the Frobenius norm of each attention row's Jacobian (jacobian_fro_median,
    _mean, _p10, _p90) and the norms of the rows of dq and dk (grad_q_median, grad_q_mean,
    grad_q_p10, grad_q_p90, grad_k_...). The values have ``value_dim`` features at every d
    and the upstream gradient dO is standard normal, so dP = dO V^T is the same size at
    every d and only the softmax and the scale change.

    >>> rows = gradient_flow(d_values=(512,), scalings=("sqrt", "unscaled"), seeds=(0,))
    >>> round(rows[0]["jacobian_fro_median"] / rows[1]["jacobian_fro_median"], 1)  # collapse
    7.8
    """
    scalings = scaling_names(scalings)  # the old "none" is "unscaled"
    rows = []
    for d in d_values:
        for seed in seeds:
            # q (L, d), k (n, d), v (n, dv), dout (L, dv): a random upstream gradient
            q, k, v, dout = draw_qkv(2, d, seed, n_queries, n_keys, value_dim, dout=True,
                                     device=device)
            dots = q @ k.T  # (L, n)
            for scaling in scalings:
                scale = scale_for(scaling, d)
                probs, _, _ = softmax_rows(dots * scale)  # (L, n)
                jac = backend.to_numpy(jacobian_fro(probs))  # (L,)
                qt, kt, vt = (tensor(x, requires_grad=True) for x in (q, k, v))
                out = F.scaled_dot_product_attention(qt, kt, vt, scale=scale,
                                                     impl="fused")  # (L, dv)
                out.backward(dout)
                rows.append(make_row(
                    2, d, scaling, "float64", seed, n_keys=n_keys, n_queries=n_queries,
                    value_dim=value_dim, scale=scale, **quantiles(jac, "jacobian_fro"),
                    **quantiles(row_norms(qt.grad.data), "grad_q"),
                    **quantiles(row_norms(kt.grad.data), "grad_k")))
            tick(progress)
    return rows


# -- its table, figure, report section and key numbers --------------------------------------------


def table(rows, markdown=False) -> str:
    """One line per d: the Jacobian norm and the norms of the rows of dq and dk."""
    rows = pick(rows, experiment=2)
    sc = scalings_in(rows)
    cols = [(f"J {s}", "jacobian_fro_median", s, "g", True) for s in sc]
    cols += [(f"dq {s}", "grad_q_median", s, "g", True) for s in sc]
    cols += [("dq mean unscaled", "grad_q_mean", "unscaled", "g", True)] if "unscaled" in sc else []
    cols += [(f"dk {s}", "grad_k_median", s, "g", True) for s in sc if s != "linear"]
    text = pivot(rows, cols, markdown) + legend(
        "J: median Frobenius norm of the softmax Jacobian of a row; dq, dk: median norm of "
        "a row of the gradient (dq mean: the mean)", markdown)
    if {"sqrt", "unscaled"} <= set(sc):
        ratios = []
        for d in sorted({r["d"] for r in rows}):
            a = average(rows, "jacobian_fro_median", True, d=d, scaling="sqrt")
            b = average(rows, "jacobian_fro_median", True, d=d, scaling="unscaled")
            ratios.append(f"d={d}: {fmt(a / b if b else math.inf, 'x')}")
        text += "\n\nmedian J, scaled over unscaled: " + ", ".join(ratios)
    return text


def figure(plt, rows):
    """The Jacobian norm, and the gradients reaching q and k, against d, stacked."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(3, 1, figsize=(6.4, 10.8))
    n = rows[0]["n_keys"]
    xs_all = sorted({r["d"] for r in rows})
    ax = axes[0]
    for s in scalings_in(rows):
        band(ax, rows, s, "jacobian_fro", COLORS[s])
    ax.axhline(0.5, color="k", ls=":", lw=1.2, zorder=4)
    ax.axhline(math.sqrt(n - 1) / n, color="k", ls="-.", lw=1, zorder=4)
    ax.text(xs_all[0], 0.7, "largest possible: 1/2 (a two-way tie)", fontsize=9, va="bottom")
    ax.text(xs_all[-1], math.sqrt(n - 1) / n * 0.55, f"uniform row: {math.sqrt(n - 1) / n:.3f}",
            fontsize=9, ha="right", va="top")
    ax.set_yscale("log")
    ax.set_ylim(top=8)
    ax.set_ylabel("||diag(p) - p p^T||_F of a row")
    ax.set_title("(a) Softmax Jacobian of the attention rows")
    ax.legend(title="scale c", loc="lower left")
    log2_axis(ax, xs_all)

    for ax, name, symbol, letter in ((axes[1], "grad_q", "q", "b"), (axes[2], "grad_k", "k", "c")):
        for s in scalings_in(rows):
            xs = band(ax, rows, s, name, COLORS[s])
            _, mean = series(rows, s, f"{name}_mean", reduce=gmean)
            ax.plot(xs, mean, color=COLORS[s], ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_ylabel(f"||d{symbol}_i||, one row of d{symbol}")
        ax.set_title(f"({letter}) Gradient reaching {symbol}"
                     + (" (a row of dk sums over every query)" if symbol == "k" else ""))
        log2_axis(ax, xs_all)
    axes[1].legend(handles=[Line2D([], [], color="k", lw=1.6, label="median row"),
                            Line2D([], [], color="k", ls="--", lw=1, label="mean"),
                            Patch(color="k", alpha=0.15, label="middle half of the rows")],
                   loc="lower left")
    return fig


def section(rows) -> str:
    """Its section of report.md, with the numbers of this run."""
    n = rows[0]["n_keys"]
    L = rows[0]["n_queries"]
    ds = sorted({r["d"] for r in rows})
    small, big = ds[0], ds[-1]
    d = 512 if 512 in ds else big
    sc = scalings_in(rows)

    def g(metric, d, s):
        return average(rows, metric, True, d=d, scaling=s)

    def of(ratio):  # "7.3 times" the scaled one, or "7.0e-05 of" it
        return f"{fmt(ratio)} times" if ratio >= 1 else f"{fmt(ratio)} of"

    jac = "jacobian_fro_median"
    uniform = math.sqrt(n - 1) / n
    text = [f"""
The same setup, now with values (dimension {rows[0]['value_dim']}) and a random upstream
gradient dO (standard normal; never the gradient of a sum, which is zero through a softmax
whatever the backward does). The gradients of q and k come from minattn's hand-written
attention backward.

**Theory.** For one row p = softmax(s) the Jacobian is J = diag(p) - p p^T. Its Frobenius
norm is 0 for a one-hot row, sqrt(n-1)/n = {uniform:.3f} for a uniform row of
n = {n}, and at most 1/2 (two keys tied). Through s = c q.k the chain rule gives

    dS = P * (dP - rowsum(dP * P))   (J dP, row by row)
    dq = c dS K,   dk = c dS^T Q

A row of dq comes from one row of dS, a row of dk from one column: the sum over all
{L} queries."""]
    shows = [f"**What the figure shows.** (a) Scaled, the median Jacobian norm is "
             f"{span([g(jac, x, 'sqrt') for x in ds])} at every d, "
             f"{times(g(jac, d, 'sqrt'), uniform)} the uniform row's {uniform:.3f}."]
    if "unscaled" in sc:
        live = [x for x in ds if g(jac, x, "unscaled") > g(jac, x, "sqrt")]
        if live:
            where = (f"up to d = {live[-1]}" if live == ds[:len(live)] else
                     f"at d = {listing(live)}")
            shows.append(f"Unscaled it is larger than scaled {where} "
                         f"({fmt(g(jac, small, 'unscaled'))} at d = {small}): scores of spread "
                         "a few units leave two or three keys sharing a row, where J is largest.")
        shows.append(f"At d = {d} the unscaled one is "
                     f"{times(g(jac, d, 'unscaled'), g(jac, d, 'sqrt'))} the scaled one, and at "
                     f"d = {big} it is {fmt(g(jac, big, 'unscaled'))}.")
    if "linear" in sc:
        shows.append(f"With c = 1/d the rows are nearly uniform: {fmt(g(jac, big, 'linear'))} at "
                     f"d = {big}.")
    q_s = [g("grad_q_median", x, "sqrt") for x in ds]
    k_s = [g("grad_k_median", x, "sqrt") for x in ds]
    shows.append(f"(b) Scaled, the median row of dq is {span(q_s)} at every d and (c) the "
                 f"median row of dk {span(k_s)}.")
    if "unscaled" in sc:
        q0, q1 = (g("grad_q_median", x, "unscaled") / g("grad_q_median", x, "sqrt")
                  for x in (small, big))
        k1 = g("grad_k_median", big, "unscaled") / g("grad_k_median", big, "sqrt")
        above = [x for x in ds if g("grad_q_mean", x, "unscaled") > g("grad_q_mean", x, "sqrt")]
        mean_words = ("stays above the scaled mean at every d" if len(above) == len(ds) else
                      f"is above the scaled mean at {len(above)} of the {len(ds)} d")
        shows.append(f"Unscaled, the median row of dq is {of(q0)} the scaled one at "
                     f"d = {small} and {of(q1)} it at d = {big}, while "
                     f"its mean (dashed) "
                     f"{mean_words}.")
        shows.append(f"The median row of dk is {of(k1)} the scaled one at d = {big}, "
                     f"{times(k1, q1)} the ratio for dq: a row of dk adds up the {L} queries, "
                     "and the few that still have a near-tie on that key keep it alive, while a "
                     "row of dq has only its own row of the softmax.")
    text.append(" ".join(shows))
    if "unscaled" in sc and q0 > 1 > q1:  # what the next paragraph explains
        text.append(f"""
**Why unscaled gradients are larger at small d, and die at large d.** Two factors meet
in dq = c (J dP) K. The first is c: unscaled, it is 1 instead of 1/sqrt(d), and the rows
of K have length about sqrt(d), so for the same J dP the unscaled gradient is sqrt(d)
times larger ({math.sqrt(small):.0f} times at d = {small}): the 1/sqrt(d) that the chain
rule should carry is missing. The second is J, which shrinks like exp(-gap), where the
gap between the two largest scores of a row grows like sqrt(d). At small d the first
factor wins; as d grows the exponential wins and the typical row passes almost nothing
back. A few rows still have two keys nearly tied: there J is as large as it gets, and the
missing 1/sqrt(d) makes their gradient large. Most rows dead, a few large: the
distribution is heavy-tailed, and its mean hides the dead majority, which is why the
table and the figure show medians and percentiles.""")
    return prose("\n\n".join(text))


def key_numbers(rows) -> KeyNumbers:
    """What experiment 2 measured against what theory expects."""
    found = KeyNumbers()
    e2 = pick(rows, experiment=2)
    if not e2:
        return found
    n = e2[0]["n_keys"]

    def median_j(d, s):
        return average(e2, "jacobian_fro_median", True, d=d, scaling=s)

    a, b = median_j(512, "sqrt"), median_j(512, "unscaled")
    if a and b:
        sim = jacobian_theory(n, 1.0) / jacobian_theory(n, math.sqrt(512))
        found.add("median |J| at d=512, scaled / unscaled", a / b,
                  f"{fmt(sim, 'x')} (simulated normal scores), within a factor 2",
                  within(a / b, sim, 2), style="x", note=f"{fmt(a / b / sim, 'x')} the simulation")
    unscaled = median_j(4096, "unscaled")
    if unscaled is not None:
        sim = jacobian_theory(n, math.sqrt(4096))
        found.add("median |J| at d=4096, unscaled", unscaled,
                  f"{fmt(sim)} (simulated), within 10x; scaled {fmt(median_j(4096, 'sqrt'))}, "
                  f"uniform row {math.sqrt(n - 1) / n:.3f}", within(unscaled, sim, 10),
                  note=f"{fmt(unscaled / sim, 'x')} the simulation")
    for d, expected, holds in ((16, "above 1 (c = 1 instead of 1/sqrt(d))", lambda r: r > 1),
                               (4096, "below 0.01 (dead)", lambda r: r < 0.01)):
        a = average(e2, "grad_q_median", True, d=d, scaling="unscaled")
        b = average(e2, "grad_q_median", True, d=d, scaling="sqrt")
        if a and b:
            found.add(f"median |dq| at d={d}, unscaled / scaled", a / b, expected,
                      holds(a / b), style="x")
    return found


EXPERIMENT = Experiment(
    2, "gradients", "Jacobian and gradient flow",
    heading="The softmax Jacobian and gradient flow",
    parts=[Part(gradient_flow, quick=dict(seeds=(0,), n_queries=128),
                full=dict(seeds=(0, 1, 2), n_queries=256))],
    table=table, figure=figure, figure_file="fig2_gradients.png",
    figure_note="Softmax Jacobian and gradient norms against d",
    section=section, key_numbers=key_numbers)
