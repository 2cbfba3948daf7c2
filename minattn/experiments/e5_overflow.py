"""Experiment 5: why softmax subtracts the row max, and why flash attention still agrees.

softmax(s) = exp(s) / sum exp(s) is the same for s and s - max(s), but exp overflows to inf
beyond about 11 in float16, 88 in float32 and 709 in float64; then inf / inf = NaN. Unscaled
scores have spread sqrt(d), so their largest value over 128 keys is near 2.6 sqrt(d): past
88 from about d = 1200. Subtracting the max makes every exponent <= 0, so nothing can
overflow, whatever the scale.

Flash attention never holds a whole row: it keeps a running max and rescales its sums by
exp(m_old - m_new) when the max grows (the online softmax). Here its NumPy reference
``flash_forward`` is held against minattn's dense attention in float64, unscaled included.
"""

from __future__ import annotations

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


def figure(plt, rows):
    """NaN rows without the max subtracted, and flash against dense, against d."""
    naive = [r for r in rows if r.get("kind") == "naive_softmax"]
    flash = [r for r in rows if r.get("kind") == "flash"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9))
    xs_all = sorted({r["d"] for r in rows})
    ax = axes[0]
    styles = {"float16": ":", "float32": "-", "float64": "--"}
    for dtype in ("float16", "float32", "float64"):
        if any(r["dtype"] == dtype and r["scaling"] == "unscaled" for r in naive):
            xs, ys = series(naive, "unscaled", "nan_row_fraction", dtype=dtype)
            plot_line(ax, xs, ys, "unscaled", label=f"unscaled, {dtype}", ls=styles[dtype],
                      lw=2.2 if dtype == "float32" else 1.2)
    for s in ("sqrt", "linear"):
        if any(r["scaling"] == s for r in naive):
            xs, ys = series(naive, s, "nan_row_fraction", reduce=max)
            plot_line(ax, xs, ys, s, label=f"{SCALING_LABELS[s].split(' ')[0]}, every dtype")
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("fraction of rows with NaN")
    ax.set_title("softmax without subtracting the max\n(with the max subtracted: no NaN "
                 "anywhere)")
    ax.legend(fontsize=7.5, loc="center right")
    log2_axis(ax, xs_all)

    ax = axes[1]
    for s in scalings_in(flash):
        xs, ys = series(flash, s, "flash_max_error", reduce=max)
        plot_line(ax, xs, np.maximum(ys, 1e-18), s)
    ax.axhline(1e-14, color="k", ls=":", lw=1)
    ax.axhline(2.0**-52, color="k", ls="--", lw=0.8)
    ax.text(xs_all[0], 1.3e-14, "1e-14", fontsize=8)
    ax.text(xs_all[0], 2.0**-52 * 1.3, "float64 epsilon", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(1e-18, 1e-12)
    ax.set_ylabel("max |flash - dense| / max |dense|")
    ax.set_title("Flash attention (online softmax) vs dense, float64\n(worst seed)")
    ax.legend(title="scale c", loc="upper right")
    log2_axis(ax, xs_all)
    return fig


def section(rows) -> str:
    """Its section of report.md, with the numbers of this run."""
    naive = pick(rows, kind="naive_softmax")
    flash = pick(rows, kind="flash")
    ds = sorted({r["d"] for r in naive})

    def first(dtype):
        return next((d for d in ds if (average(naive, "nan_row_fraction", d=d, scaling="unscaled",
                                               dtype=dtype) or 0) > 0), None)

    worst = max((r["flash_max_error"] for r in flash), default=None)
    at_big = average(naive, "nan_row_fraction", d=ds[-1], scaling="unscaled", dtype="float32")
    return prose(f"""
softmax(s) = exp(s) / sum exp(s) does not change when the row max is subtracted from every
score, but without it exp overflows to inf beyond about 11 in float16, 88 in float32 and
709 in float64, and then inf / inf = NaN. The scores are computed in float64 and rounded to
each dtype, so that only the softmax differs.

**What the figure shows.** Left: unscaled, the largest of {naive[0]['n_keys']} scores is
about 2.6 sqrt(d). In float32 the first NaN rows appear at d = {first('float32') or '-'},
and at d = {ds[-1]} {fmt(at_big, '%')} of the rows are NaN; in float16 they start at
d = {first('float16') or '-'}. Scaled scores stay within a few units and never overflow,
and with the max subtracted no row is NaN anywhere, scaled or not. Right: flash attention
never holds a whole row of scores. It keeps a running max m and a running sum, and
rescales the sum by exp(m_old - m_new) whenever the max grows (the online softmax of
Milakov & Gimelshein 2018). In float64 it agrees with the dense softmax to {fmt(worst)} of
the largest output at every d, unscaled included: rescaling on the fly is as exact as
subtracting the max up front.""")


def key_numbers(rows) -> KeyNumbers:
    """What experiment 5 measured against what theory expects."""
    found = KeyNumbers()
    e5 = pick(rows, experiment=5)
    if e5:
        found.add("NaN rows, float32, d=4096, unscaled",
                  average(e5, "nan_row_fraction", kind="naive_softmax", dtype="float32", d=4096,
                          scaling="unscaled"), "all", "%")
        found.add("NaN rows, float32, scaled (worst d)",
                  largest(e5, "nan_row_fraction", kind="naive_softmax", dtype="float32",
                          scaling="sqrt"), "none", "%")
        found.add("flash vs dense, float64 (worst case)",
                  largest(e5, "flash_max_error", kind="flash"), "below 1e-14")
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
