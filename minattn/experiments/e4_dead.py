"""Experiment 4: dead gradients look like wrong gradients.

A saturated attention row passes back almost nothing: its entries of dq are tiny, far
below what central differences can resolve. A finite difference is only good to about
u |f| / h in absolute terms (u the unit round-off): with h = 1e-6 in float64 that is a few
times 1e-10, whatever the size of the true derivative. An entry of dq near 1e-12 is
therefore compared with numerical noise, and its element-wise relative error comes out
large, although the backward pass is right and the norm-wise error of the whole gradient
stays tiny. This is what a student sees when gradient-checking unscaled attention at
large d, and it is not a bug.

The analytical dq is minattn's hand-written backward (``impl="fused"``); the numerical one
perturbs each entry of q by +-h and reruns the forward pass, all in float64, on the NumPy
twins of minattn's kernels (``on_plain_kernels``): numba's compiled softmax rounds the last
bit of some results differently when freshly compiled and when loaded from its cache, and
a check of the last bits must give the same bits on every run.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from ..core import no_grad, tensor
from .common import (
    D_VALUES,
    PLAIN_KERNELS_WHY,
    SCALINGS,
    Experiment,
    Part,
    draw_qkv,
    make_row,
    on_plain_kernels,
    scale_for,
    scaling_names,
    scalings_in,
    tick,
)
from .plots import gmean, log2_axis, plot_line, series
from .tables import (
    KeyNumbers,
    average,
    fmt,
    largest,
    legend,
    listing,
    pick,
    pivot,
    prose,
    span,
    times,
    within,
)

BAD = 1e-4  # an entry whose relative error is above this counts as "wrong"
UNIT_ROUNDOFF = 2.0**-53  # float64


def numerical_dq(q, k, v, dout, scales, h: float) -> list:
    """d<dout, attention(q, k, v)>/dq by central differences, one entry at a time, for each
    scale in ``scales``.

    Moving q_ie changes only output row i, so row i is done in one batched forward call:
    the d copies of q_i, each with one entry moved by +h (then -h), are the query rows.
    """
    xp = backend.get_array_module(q)
    L, d = q.shape
    moves = h * xp.eye(d, dtype=q.dtype)  # (d, d): row e moves entry e by h
    shifted = xp.empty_like(moves)  # (d, d): reused for every row and sign
    grads = [xp.empty_like(q) for _ in scales]  # (L, d) each
    with no_grad():
        for i in range(L):
            phi = [[] for _ in scales]  # per scale: phi(+h), phi(-h)
            for sign in (1, -1):
                xp.add(q[i], sign * moves, out=shifted)  # d perturbed copies of q_i
                for s, scale in enumerate(scales):
                    out = F.scaled_dot_product_attention(shifted, k, v, scale=scale,
                                                         impl="fused").data  # (d, dv)
                    phi[s].append(out @ dout[i])  # (d,): <dout_i, out_i> for each copy
            for s in range(len(scales)):
                grads[s][i] = (phi[s][0] - phi[s][1]) / (2 * h)
    return grads


@on_plain_kernels
def dead_gradients(d_values=D_VALUES, scalings=SCALINGS, seeds=(0, 1), n_queries: int = 8,
                   n_keys: int = 128, value_dim: int = 64, h: float = 1e-6,
                   device: str = "cpu", progress=None) -> list[dict]:
    """Element-wise and norm-wise error of dq against central differences; one row per d,
    scaling and seed.

    Rows hold bad_entry_fraction (entries of dq whose relative error |a - n| / max(|a|,
    |n|) is above 1e-4), normwise_error (||a - n|| / ||n|| over all of dq),
    max_entry_error, the median size of the entries, grad_entry_median, the finite-difference
    noise floor u sum|dout_i * out_i| / h (median over rows, noise_floor), and the prediction
    below_noise_fraction: the entries smaller than their row's noise floor / 1e-4.

    >>> rows = dead_gradients(d_values=(1024,), scalings=("sqrt", "unscaled"), seeds=(0,))
    >>> rows[0]["bad_entry_fraction"] == 0 < rows[1]["bad_entry_fraction"]
    True
    """
    scalings = scaling_names(scalings)  # the old "none" is "unscaled"
    rows = []
    for d in d_values:
        for seed in seeds:
            # q (L, d), k (n, d), v (n, dv), dout (L, dv): a random upstream gradient
            q, k, v, dout = draw_qkv(4, d, seed, n_queries, n_keys, value_dim, dout=True,
                                     device=device)
            scales = [scale_for(scaling, d) for scaling in scalings]
            numerical = numerical_dq(q, k, v, dout, scales, h)  # one (L, d) per scaling
            for scaling, scale, num in zip(scalings, scales, numerical):
                qt = tensor(q, requires_grad=True)
                out = F.scaled_dot_product_attention(qt, k, v, scale=scale, impl="fused")
                out.backward(dout)
                analytical = backend.to_numpy(qt.grad.data)  # (L, d)
                # The round-off of phi = <dout_i, out_i> is about u sum |dout_i * out_i|: the
                # difference phi(+h) - phi(-h), over 2h, cannot resolve less than that over h.
                terms = backend.to_numpy(abs(dout * out.data).sum(axis=-1))  # (L,)
                noise = UNIT_ROUNDOFF * terms / h  # (L,): the noise floor of each row of dq
                num = backend.to_numpy(num)  # (L, d)
                diff = np.abs(analytical - num)
                size = np.maximum(np.abs(analytical), np.abs(num))
                rel = np.divide(diff, size, out=np.zeros_like(diff), where=size > 0)
                rows.append(make_row(
                    4, d, scaling, "float64", seed, h=h, n_keys=n_keys, n_queries=n_queries,
                    bad_entry_fraction=(rel > BAD).mean(), max_entry_error=rel.max(),
                    normwise_error=np.linalg.norm(analytical - num) / np.linalg.norm(num),
                    grad_entry_median=np.median(np.abs(analytical)),
                    noise_floor=np.median(noise),
                    below_noise_fraction=(np.abs(analytical) < noise[:, None] / BAD).mean()))
            tick(progress)
    return rows


# -- its table, figure, report section and key numbers --------------------------------------------


def table(rows, markdown=False) -> str:
    """One line per d: entries that look wrong, the norm-wise error, the entry size."""
    rows = pick(rows, experiment=4)
    sc = scalings_in(rows)
    cols = [(f"bad {s}", "bad_entry_fraction", s, "%", False) for s in sc]
    cols += [(f"error {s}", "normwise_error", s, "g", True) for s in sc]
    if "unscaled" in sc:
        cols += [("entry unscaled", "grad_entry_median", "unscaled", "g", True)]
    return pivot(rows, cols, markdown) + legend(
        "bad: entries of dq with relative error above 1e-4; error: norm-wise relative error "
        "of the whole dq; entry: median size of an entry of dq", markdown)


def figure(plt, rows):
    """Entries that look wrong, the norm-wise error and the size of the entries of dq, stacked."""
    fig, axes = plt.subplots(3, 1, figsize=(6.4, 10.4))
    xs_all = sorted({r["d"] for r in rows})
    h = rows[0]["h"]
    theory_style = dict(color="k", ls=":", lw=1.6, zorder=4)
    ax = axes[0]
    for s in scalings_in(rows):
        xs, ys = series(rows, s, "bad_entry_fraction")
        plot_line(ax, xs, ys, s)
        _, predicted = series(rows, s, "below_noise_fraction")
        ax.plot(xs, predicted, **theory_style,
                label="predicted: entries below noise / 1e-4" if s == "sqrt" else None)
    ax.set_ylim(-0.04, 1.04)
    ax.set_ylabel(f"entries with rel. error > {BAD:g}")
    ax.set_title(f"(a) Entries of dq that look wrong (central differences, h = {h:g}, "
                 "float64)")
    ax.legend(title="scale c", loc="upper left")
    log2_axis(ax, xs_all)

    ax = axes[1]
    for s in scalings_in(rows):
        xs, ys = series(rows, s, "normwise_error", reduce=gmean)
        plot_line(ax, xs, ys, s)
    ax.axhline(1e-7, color="k", ls="-.", lw=1, zorder=4)
    ax.text(xs_all[0], 1.4e-7, "1e-7: \"good\" in CS231n's rule of thumb", fontsize=9)
    ax.set_yscale("log")
    ax.set_ylabel("||num. - anal.|| / ||num.||")
    ax.set_title("(b) Norm-wise error of the whole dq")
    log2_axis(ax, xs_all)

    ax = axes[2]
    for s in scalings_in(rows):
        xs, ys = series(rows, s, "grad_entry_median", reduce=gmean)
        plot_line(ax, xs, ys, s)
    floor = float(np.median([r["noise_floor"] for r in rows]))  # as in the section
    ax.set_yscale("log")
    bottom = min(floor, ax.get_ylim()[0])
    ax.set_ylim(bottom, 10)
    ax.axhspan(bottom, floor / BAD, color="k", alpha=0.07, lw=0)
    ax.axhline(floor / BAD, color="k", ls=":", lw=1.6, zorder=4)
    ax.text(xs_all[0], floor / BAD * 0.4, f"below {floor / BAD:.0e}, the finite-difference\n"
            f"noise (~{floor:.0e}) is over {BAD:g} of the entry", fontsize=9, va="top",
            ha="left")
    ax.set_ylabel("median |entry of dq|")
    ax.set_title("(c) Why: the true entries sink below the finite-difference noise")
    log2_axis(ax, xs_all)
    return fig


def section(rows) -> str:
    """Its section of report.md, with the numbers of this run."""
    ds = sorted({r["d"] for r in rows})
    small, big = ds[0], ds[-1]
    h = rows[0]["h"]
    sc = scalings_in(rows)
    names = {"sqrt": "scaled", "unscaled": "unscaled", "linear": "c = 1/d"}
    low = next((d for d in ds if d >= 256), ds[0])
    floor = float(np.median([r["noise_floor"] for r in rows]))

    def at(metric, d, s, geometric=False):
        return average(rows, metric, geometric, d=d, scaling=s)

    worst_sqrt = max(r["bad_entry_fraction"] for r in pick(rows, scaling="sqrt"))
    shows = ["**What the figure shows.** (a) " +
             ("No entry of the scaled dq looks wrong at any d" if worst_sqrt == 0 else
              f"Scaled, at most {fmt(worst_sqrt, '%')} of the entries look wrong")]
    if "unscaled" in sc:
        shows[-1] += (f"; unscaled, {fmt(at('bad_entry_fraction', low, 'unscaled'), '%')} do at "
                      f"d = {low} and {fmt(at('bad_entry_fraction', big, 'unscaled'), '%')} at "
                      f"d = {big}")
    if "linear" in sc:
        worst_linear = max(r["bad_entry_fraction"] for r in pick(rows, scaling="linear"))
        shows[-1] += "; with c = 1/d, " + ("none" if worst_linear == 0 else
                                           f"up to {fmt(worst_linear, '%')}")
    shows[-1] += "."
    predicted = [(r["bad_entry_fraction"], r["below_noise_fraction"]) for r in rows]
    gap = max(abs(a - b) for a, b in predicted)
    over = sum(a > b for a, b in predicted)
    shows.append(f"The dotted lines predict them without looking at the numerical gradient: the "
                 f"entries whose true size is below their row's noise floor divided by {BAD:g}. "
                 f"Prediction and count differ by at most {fmt(gap * 100)} percentage points, "
                 + ("and the count never exceeds the prediction (not every entry below the "
                    "noise comes out wrong)." if over == 0 else
                    f"and the count exceeds the prediction in {over} of {len(rows)} rows."))
    errors = []
    for s in sc:
        values = [at("normwise_error", d, s, True) for d in ds]
        over = [d for d, v in zip(ds, values) if v > 1e-7]
        errors.append(f"{names[s]} {span(values)}"
                      + (f" (above 1e-7 at d = {listing(over)})" if over else ""))
    shows.append("(b) The norm-wise error of the whole dq is " + "; ".join(errors) + ".")
    if "linear" in sc and "sqrt" in sc:
        e_lin, e_sqrt = at("normwise_error", big, "linear", True), at("normwise_error", big,
                                                                      "sqrt", True)
        g_lin, g_sqrt = at("grad_entry_median", big, "linear", True), at("grad_entry_median",
                                                                         big, "sqrt", True)
        same = within(e_lin / e_sqrt, g_sqrt / g_lin, 3)  # error ~ noise / gradient size
        shows.append(f"At d = {big} the error with c = 1/d is {times(e_lin, e_sqrt)} the scaled "
                     f"one, and its median entry {times(g_lin, g_sqrt)} the scaled one's"
                     + (": about the same absolute noise over a smaller gradient, not a wrong "
                        "backward." if same else
                        ", ratios too far apart to be the same noise over a smaller gradient."))
    shows.append(f"(c) Why. A central difference is only good to about u sum|dout_i out_i| / h "
                 f"in absolute terms, whatever the size of the true derivative: {floor:.0e} "
                 f"here (median over rows).")
    if "unscaled" in sc:
        g_small, g_big = at("grad_entry_median", small, "unscaled", True), \
            at("grad_entry_median", big, "unscaled", True)
        under = [d for d in ds if at("grad_entry_median", d, "unscaled", True) < floor / BAD]
        shows.append(f"Unscaled, the median entry of dq is {fmt(g_small)} at d = {small} and "
                     f"{fmt(g_big)} at d = {big}"
                     + (f"; it is below {floor / BAD:.0e}, where the noise is more than {BAD:g} "
                        f"of the entry, at d = {listing(under)}" if under else "") + ".")
    linear_text = ""
    if "linear" in sc:
        linear_text = (" The over-scaled c = 1/d shows a little of the same effect, for the "
                       "same reason: its gradients are small too." if worst_linear > 0 else
                       " The over-scaled c = 1/d has small gradients too, but none of its "
                       "entries falls below the noise here.")
    return prose(f"""
Element by element: every entry q_ie is moved by +-h (h = {h:g}, float64), the forward
pass rerun, and the numerical derivative compared with the hand-written backward. An entry
counts as wrong when its relative error |a - n| / max(|a|, |n|) is above {BAD:g} (CS231n's
limit of the acceptable).

{' '.join(shows)}

**What it means.** The backward pass is right. The entries flagged are those whose true
value is below the finite-difference noise floor: there the numerical side is noise, not
the analytical one. A student who gradient-checks unscaled attention at large d and sees
many failing entries has not found a bug. Look at the size of the failing entries and at
the norm-wise error, and check again with the scale (or a small d) before hunting for
one.{linear_text}""")


def key_numbers(rows) -> KeyNumbers:
    """What experiment 4 measured against what theory expects."""
    found = KeyNumbers()
    e4 = pick(rows, experiment=4)
    if not e4:
        return found

    def bad_against_prediction(what, d, s):
        bad = average(e4, "bad_entry_fraction", d=d, scaling=s)
        predicted = average(e4, "below_noise_fraction", d=d, scaling=s)
        if bad is not None and predicted is not None:
            found.add(what, bad, f"at most {fmt(predicted, '%')}, the entries below noise / "
                      f"{BAD:g} (predicted)", bad <= predicted, style="%",
                      note="more entries look wrong than are below the noise")

    scaled = pick(e4, scaling="sqrt")
    if scaled:
        worst = max(scaled, key=lambda r: r["bad_entry_fraction"])
        bad_against_prediction("bad entries, scaled " + (f"(worst d, {worst['d']})" if
                                                         worst["bad_entry_fraction"] else
                                                         "(every d)"), worst["d"], "sqrt")
    for d in (256, 4096):
        bad_against_prediction(f"bad entries at d={d}, unscaled", d, "unscaled")
    error = largest(e4, "normwise_error", scaling="unscaled")
    found.add("normwise error, unscaled (worst d)", error, "below 1e-7 (CS231n's \"good\")",
              error is not None and error < 1e-7)
    return found


EXPERIMENT = Experiment(
    4, "dead", "Dead gradients look like wrong gradients",
    heading="Dead gradients look like wrong gradients",
    parts=[Part(dead_gradients, quick=dict(d_values=(64, 512, 2048), seeds=(0,), n_queries=4),
                full=dict(d_values=D_VALUES, seeds=(0, 1), n_queries=8))],
    table=table, figure=figure, figure_file="fig4_dead_gradients.png",
    figure_note="Entries that look wrong, the norm-wise error, and the size of the true gradient",
    section=section, key_numbers=key_numbers, plain_kernels_why=PLAIN_KERNELS_WHY)
