"""Experiment 5: why softmax subtracts the row max, and why flash attention still agrees.

softmax(s) = exp(s) / sum exp(s) is the same for s and s - max(s), but exp overflows to inf
beyond about 11 in float16, 88 in float32 and 709 in float64; then inf / inf = NaN. Unscaled
scores have spread sqrt(d), so their largest value over 128 keys is near 2.6 sqrt(d)
(``expected_max``): past 88 from about d = 1200. Subtracting the max makes every exponent
<= 0, so nothing can overflow, whatever the scale.

Flash attention never holds a whole row: it keeps a running max and rescales its sums by
exp(m_old - m_new) when the max grows (the online softmax). Here its NumPy reference
``flash_forward`` is held against minattn's dense attention in float64, unscaled included.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import functional as F
from ..attention.flash import flash_forward
from ..core import tensor
from .common import (
    D_VALUES,
    SCALING_LABELS,
    SCALINGS,
    Experiment,
    Part,
    draw_qkv,
    make_row,
    quiet_overflow,
    scale_for,
    scaling_names,
    scalings_in,
    tick,
)
from .plots import log2_axis, plot_line, series
from .tables import KeyNumbers, average, fmt, format_table, largest, legend, pick, prose


def naive_softmax(scores):
    """exp(s) / sum exp(s) with no max subtracted: overflows to inf, then NaN."""
    xp = backend.get_array_module(scores)
    e = xp.exp(scores)  # (..., n), inf where a score is beyond the dtype's exp range
    return e / e.sum(axis=-1, keepdims=True)  # inf / inf = NaN


def stable_softmax(scores):
    """exp(s - max s) / sum exp(s - max s): every exponent <= 0, the sum >= 1."""
    xp = backend.get_array_module(scores)
    e = xp.exp(scores - scores.max(axis=-1, keepdims=True))  # (..., n), in [0, 1]
    return e / e.sum(axis=-1, keepdims=True)


def _bad_rows(probs):
    """Fraction of rows holding a NaN or an infinity."""
    xp = backend.get_array_module(probs)
    bad = (~xp.isfinite(probs)).any(axis=-1)  # (L,) booleans
    return float(backend.to_numpy(bad.sum())) / bad.size


def naive_softmax_nans(d_values=D_VALUES, scalings=SCALINGS,
                       dtypes=("float16", "float32", "float64"), seeds=(0, 1, 2),
                       n_keys: int = 128, n_queries: int = 256, device: str = "cpu",
                       progress=None) -> list[dict]:
    """Fraction of rows that come out NaN from a softmax without max subtraction; one row per
    d, scaling, dtype and seed (``kind="naive_softmax"``).

    The scores are computed in float64 and rounded to the dtype, so the only thing that
    differs between dtypes is the softmax itself. Rows hold nan_row_fraction (naive),
    nan_row_fraction_stable (max subtracted, always 0) and max_score (the largest score).

    >>> rows = naive_softmax_nans(d_values=(4096,), scalings=("sqrt", "unscaled"),
    ...                           dtypes=("float32",), seeds=(0,))
    >>> [r["nan_row_fraction"] for r in rows]
    [0.0, 1.0]
    """
    scalings = scaling_names(scalings)  # the old "none" is "unscaled"
    rows = []
    for d in d_values:
        for seed in seeds:
            q, k = draw_qkv(5, d, seed, n_queries, n_keys, device=device)  # (L, d), (n, d)
            dots = q @ k.T  # (L, n)
            xp = backend.get_array_module(dots)
            for scaling in scalings:
                scores64 = dots * scale_for(scaling, d)  # (L, n)
                for dtype in dtypes:
                    scores = scores64.astype(dtype)  # (L, n)
                    with quiet_overflow(xp):  # overflow and inf / inf are the point here
                        naive = naive_softmax(scores)
                    rows.append(make_row(
                        5, d, scaling, dtype, seed, kind="naive_softmax", n_keys=n_keys,
                        nan_row_fraction=_bad_rows(naive),
                        nan_row_fraction_stable=_bad_rows(stable_softmax(scores)),
                        max_score=float(backend.to_numpy(scores64.max()))))
            tick(progress)
    return rows


def flash_agreement(d_values=D_VALUES, scalings=SCALINGS, seeds=(0, 1, 2), n_keys: int = 256,
                    n_queries: int = 128, value_dim: int = 64, block: int = 64,
                    device: str = "cpu", progress=None) -> list[dict]:
    """Largest difference between flash attention's forward and the dense one, in float64;
    one row per d, scaling and seed (``kind="flash"``, metric ``flash_max_error``).

    With 256 keys in blocks of 64, each row's running max is updated and its sums rescaled
    up to four times; the relative error is measured against the largest output entry.
    """
    scalings = scaling_names(scalings)  # the old "none" is "unscaled"
    rows = []
    for d in d_values:
        for seed in seeds:
            qkv = draw_qkv(5, d, 1000 + seed, n_queries, n_keys, value_dim, device=device)
            q, k, v = (x[None] for x in qkv)  # (1, L, d), (1, S, d), (1, S, dv): one batch
            xp = backend.get_array_module(q)
            for scaling in scalings:
                scale = scale_for(scaling, d)
                flash, _ = flash_forward(q, k, v, scale, block_q=block, block_k=block)
                dense = F.scaled_dot_product_attention(tensor(q), tensor(k), tensor(v),
                                                       scale=scale, impl="fused").data
                error = xp.abs(flash - dense).max() / xp.abs(dense).max()
                rows.append(make_row(
                    5, d, scaling, "float64", seed, kind="flash", n_keys=n_keys,
                    flash_max_error=float(backend.to_numpy(error)),
                    flash_nan=bool(backend.to_numpy(xp.isnan(flash).any()))))
            tick(progress)
    return rows


# -- its table, figure, report section and key numbers --------------------------------------------


def table(rows, markdown=False) -> str:
    """One line per d: NaN rows without the max subtracted, and flash's error."""
    naive = pick(rows, experiment=5, kind="naive_softmax")
    sc = scalings_in(naive)
    cols = []
    for dtype in ("float32", "float16", "float64"):
        for s in sc:
            if s != "linear" and pick(naive, dtype=dtype, scaling=s) and \
                    (s == "unscaled" or dtype == "float32"):
                cols.append((f"NaN {dtype.replace('float', 'f')} {s}", "nan_row_fraction", s,
                             "%", False, dict(kind="naive_softmax", dtype=dtype)))
    flash = pick(rows, experiment=5, kind="flash")
    for s in scalings_in(flash):
        cols.append((f"flash {s}", "flash_max_error", s, "g", False, dict(kind="flash")))
    ds = sorted({r["d"] for r in pick(rows, experiment=5)})
    body = []
    for d in ds:
        line = [str(d)]
        for _, metric, s, style, _, match in cols:
            mine = pick(rows, experiment=5, d=d, scaling=s, **match)
            values = [r[metric] for r in mine if r.get(metric) is not None]
            value = (max(values) if metric == "flash_max_error" else float(np.mean(values))) \
                if values else None
            line.append(fmt(value, style))
        body.append(line)
    text = format_table(["d"] + [c[0] for c in cols], body, markdown) + legend(
        "NaN f32 unscaled: fraction of rows with NaN from a softmax without max subtraction, in "
        "float32, unscaled (f16, f64: float16, float64); flash: largest difference between "
        "flash and dense attention in float64, relative to the largest output", markdown)
    stable = [r["nan_row_fraction_stable"] for r in naive]
    if stable:
        text += (f"\n\nwith the max subtracted: NaN rows in {sum(x > 0 for x in stable)} of "
                 f"{len(stable)} cases (every d, scaling, dtype and seed)")
    return text


def _normal_cdf(x):
    """Phi(x) for an array x (float64, on the host), with the library's erf."""
    return 0.5 * (1 + backend.erf(np.asarray(x, dtype=np.float64) / math.sqrt(2)))


def exp_limit(dtype: str) -> float:
    """ln of the largest finite number of dtype: exp overflows beyond it (88.7 in float32)."""
    return math.log(float(np.finfo(dtype).max))


def nan_row_theory(n_keys: int, score_std: float, dtype: str) -> float:
    """1 - Phi(t / sigma)^n: the chance that one of n independent normal scores of spread
    sigma passes t = exp_limit(dtype), so that exp overflows and the row is NaN."""
    return float(1 - _normal_cdf(exp_limit(dtype) / score_std) ** n_keys)


def expected_max(n: int) -> float:
    """E[max of n standard normals] = integral of x n phi(x) Phi(x)^(n-1), on a grid."""
    x = np.linspace(-8, 8, 4001)
    density = n * np.exp(-x * x / 2) / math.sqrt(2 * math.pi) * _normal_cdf(x) ** (n - 1)
    return float((x * density).sum() * (x[1] - x[0]))


def figure(plt, rows):
    """NaN rows without the max subtracted, and flash against dense, against d, stacked."""
    naive = [r for r in rows if r.get("kind") == "naive_softmax"]
    flash = [r for r in rows if r.get("kind") == "flash"]
    fig, axes = plt.subplots(2, 1, figsize=(6.4, 7.6))
    xs_all = sorted({r["d"] for r in rows})
    ax = axes[0]
    styles = {"float16": ":", "float32": "-", "float64": "--"}
    n = naive[0]["n_keys"] if naive else 128
    theory_label = "theory"  # on the first theory line only
    for dtype in ("float16", "float32", "float64"):
        if any(r["dtype"] == dtype and r["scaling"] == "unscaled" for r in naive):
            xs, ys = series(naive, "unscaled", "nan_row_fraction", dtype=dtype)
            never = not ys.any()  # then it lies at 0, under the scaled lines
            plot_line(ax, xs, ys, "unscaled", ls=styles[dtype],
                      label=f"unscaled, {dtype}" + (" (none: at 0)" if never else ""),
                      lw=2.2 if dtype == "float32" else 1.2)
            ax.plot(xs, [nan_row_theory(n, math.sqrt(x), dtype) for x in xs], color="k",
                    ls=":", lw=1.6, zorder=4, label=theory_label)
            theory_label = None
    for s in ("sqrt", "linear"):
        if any(r["scaling"] == s for r in naive):
            xs, ys = series(naive, s, "nan_row_fraction", reduce=max)
            plot_line(ax, xs, ys, s, label=f"{SCALING_LABELS[s].split(' ')[0]}, every dtype")
    ax.set_ylim(-0.04, 1.04)
    ax.set_ylabel("fraction of rows with NaN")
    ax.set_title("(a) softmax without subtracting the max (dotted: theory, normal scores;\n"
                 "with the max subtracted: no NaN anywhere)")
    # between the float16 curve (up at d >= 64) and the float32 one (up from d = 1024)
    ax.legend(loc="center", bbox_to_anchor=(0.44, 0.5))
    log2_axis(ax, xs_all)

    ax = axes[1]
    for s in scalings_in(flash):
        xs, ys = series(flash, s, "flash_max_error", reduce=max)
        plot_line(ax, xs, np.maximum(ys, 1e-18), s)
    ax.axhline(1e-14, color="k", ls=":", lw=1.2, zorder=4)
    ax.axhline(2.0**-52, color="k", ls="--", lw=1, zorder=4)
    ax.text(xs_all[0], 1.3e-14, "1e-14", fontsize=9)
    ax.text(xs_all[0], 2.0**-52 * 1.3, "float64 epsilon", fontsize=9)
    ax.set_yscale("log")
    ax.set_ylim(1e-18, 1e-12)
    ax.set_ylabel("max |flash - dense| / max |dense|")
    ax.set_title("(b) Flash attention (online softmax) against dense, float64 (worst seed)")
    ax.legend(title="scale c", loc="upper right")
    log2_axis(ax, xs_all)
    return fig


def section(rows) -> str:
    """Its section of report.md, with the numbers of this run."""
    naive = pick(rows, kind="naive_softmax")
    flash = pick(rows, kind="flash")
    ds = sorted({r["d"] for r in naive})
    n = naive[0]["n_keys"]
    limits = {t: exp_limit(t) for t in ("float16", "float32", "float64")}
    top = expected_max(n)

    def first(dtype):
        return next((d for d in ds if (average(naive, "nan_row_fraction", d=d,
                                               scaling="unscaled", dtype=dtype) or 0) > 0), None)

    def starts(dtype):
        d = first(dtype)
        return f"start at d = {d}" if d else f"never appear up to d = {ds[-1]}"

    d32 = first("float32")
    predicted = ""
    if d32:
        nan = average(naive, "nan_row_fraction", d=d32, scaling="unscaled", dtype="float32")
        predicted = (f" ({fmt(nan, '%')} of them; theory "
                     f"{fmt(nan_row_theory(n, math.sqrt(d32), 'float32'), '%')})")
    at_big = average(naive, "nan_row_fraction", d=ds[-1], scaling="unscaled", dtype="float32")
    scaled_nan = max((r["nan_row_fraction"] for r in naive if r["scaling"] != "unscaled"),
                     default=0)
    scaled_top = max((r["max_score"] for r in naive if r["scaling"] == "sqrt"), default=None)
    stable = max((r["nan_row_fraction_stable"] for r in naive), default=0)
    scaled_words = (f"Scaled scores never overflow: the largest of them is {fmt(scaled_top)}"
                    if scaled_nan == 0 else
                    f"Even scaled or with c = 1/d, up to {fmt(scaled_nan, '%')} of the rows "
                    "overflow")
    stable_words = ("with the max subtracted no row is NaN anywhere, scaled or not" if stable == 0
                    else f"even with the max subtracted, up to {fmt(stable, '%')} of the rows "
                    "are NaN")
    worst = max((r["flash_max_error"] for r in flash), default=None)
    flash_words = ""
    if worst is not None:
        eps = float(np.finfo(np.float64).eps)
        flash_words = (f" In float64 it agrees with the dense softmax to {fmt(worst)} of the "
                       f"largest output ({worst / eps:.0f} times float64's epsilon) at worst, "
                       "unscaled included: "
                       + ("rescaling on the fly is as exact as subtracting the max up front."
                          if worst < 1e-14 else "further from exact than the 1e-14 expected."))
    return prose(f"""
softmax(s) = exp(s) / sum exp(s) does not change when the row max is subtracted from every
score, but without it exp overflows to inf beyond ln(largest number): {limits['float16']:.1f}
in float16, {limits['float32']:.1f} in float32 and {limits['float64']:.0f} in float64, and
then inf / inf = NaN. The scores are computed in float64 and rounded to each dtype, so that
only the softmax differs.

**Theory.** Unscaled, a row's scores are close to independent normals of spread sqrt(d),
and the largest of {n} standard normals is {top:.2f} on average: the largest score of a row
is about {top:.1f} sqrt(d), past {limits['float32']:.1f} from about
d = {(limits['float32'] / top) ** 2:.0f}. A row is NaN when one of its scores passes the
limit t: with probability 1 - Phi(t / (c sqrt(d)))^{n} (the dotted lines).

**What the figure shows.** (a) In float32 the first unscaled NaN rows appear at
d = {d32 or '-'}{predicted}, and at d = {ds[-1]} {fmt(at_big, '%')} of the rows are NaN; in
float16 they {starts('float16')}, in float64 they {starts('float64')}. {scaled_words}, and
{stable_words}. (b) Flash attention never holds a whole row of scores. It keeps a running
max m and a running sum, and rescales the sum by exp(m_old - m_new) whenever the max grows
(the online softmax of Milakov & Gimelshein 2018).{flash_words}""")


def key_numbers(rows) -> KeyNumbers:
    """What experiment 5 measured against what theory expects."""
    found = KeyNumbers()
    naive = pick(rows, experiment=5, kind="naive_softmax")
    if naive:
        n = naive[0]["n_keys"]
        for d in (1024, 4096):
            nan = average(naive, "nan_row_fraction", dtype="float32", d=d, scaling="unscaled")
            theory = nan_row_theory(n, math.sqrt(d), "float32")
            found.add(f"NaN rows, float32, d={d}, unscaled", nan,
                      f"{fmt(theory, '%')} = 1 - Phi(t / sqrt(d))^{n}, within 10 points",
                      nan is not None and abs(nan - theory) <= 0.1, style="%")
        worst = largest(naive, "nan_row_fraction", dtype="float32", scaling="sqrt")
        found.add("NaN rows, float32, scaled (worst d)", worst,
                  f"none: a scaled score would be {exp_limit('float32'):.1f} standard "
                  "deviations out", worst == 0, style="%")
    error = largest(rows, "flash_max_error", experiment=5, kind="flash")
    found.add("flash vs dense, float64 (worst case)", error, "below 1e-14",
              error is not None and error < 1e-14)
    return found


EXPERIMENT = Experiment(
    5, "overflow", "Why the max is subtracted",
    heading="Why the max is subtracted",
    parts=[Part(naive_softmax_nans, quick=dict(seeds=(0,), n_queries=128),
                full=dict(seeds=(0, 1, 2, 3, 4))),
           Part(flash_agreement, quick=dict(seeds=(0,), n_queries=32),
                full=dict(seeds=(0, 1, 2)))],
    table=table, figure=figure, figure_file="fig5_overflow.png",
    figure_note="NaN rows without max subtraction, and flash against dense attention",
    section=section, key_numbers=key_numbers)


__all__ = ["flash_agreement", "naive_softmax", "naive_softmax_nans", "stable_softmax"]
