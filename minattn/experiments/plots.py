"""Figures of the scaling experiments, drawn from their result rows (one PNG each).

matplotlib is optional: ``make_figures`` returns {} with a one-line reason when it is
missing, and the rest of a run goes on without figures.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from . import stepsize
from .common import SCALING_LABELS, SCALINGS, scale_for
from .dead import BAD
from .spread import SATURATED

COLORS = {"sqrt": "#1f6fb4", "none": "#d62728", "linear": "#8c8c8c"}
MARKERS = {"sqrt": "o", "none": "s", "linear": "^"}
FILES = {1: "fig1_spread.png", 2: "fig2_gradients.png", 3: "fig3_gradcheck.png",
         4: "fig4_dead_gradients.png", 5: "fig5_overflow.png", 6: "fig6_training.png"}


def matplotlib_missing() -> str | None:
    """None when figures can be drawn, else why not (one line)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed: no figures (pip install 'minattn[plot]')"
    return None


def make_figures(rows: list[dict], folder, say=print) -> dict[int, str]:
    """Draw the figure of every experiment present in rows; {number: file name}."""
    why = matplotlib_missing()
    if why:
        say(why)
        return {}
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    drawn = {}
    for number, draw in DRAW.items():
        mine = [r for r in rows if r["experiment"] == number]
        if not mine:
            continue
        with plt.rc_context(STYLE):
            fig = draw(plt, mine)
            fig.savefig(f"{folder}/{FILES[number]}", dpi=110)
            plt.close(fig)
        drawn[number] = FILES[number]
    return drawn


STYLE = {"font.size": 9.5, "axes.titlesize": 10.5, "axes.labelsize": 9.5, "legend.fontsize": 8.5,
         "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "figure.constrained_layout.use": True}


# -- helpers ------------------------------------------------------------------------------------


def _by(rows, *keys):
    """Group rows by the values of keys: {(v1, v2, ...): [rows]}."""
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r.get(k) for k in keys)].append(r)
    return groups


def _series(rows, scaling, metric, x="d", reduce=np.mean, **match):
    """(xs, ys): metric reduced over seeds at every x, for one scaling."""
    picked = [r for r in rows if r["scaling"] == scaling and r.get(metric) is not None
              and all(r.get(k) == v for k, v in match.items())]
    groups = _by(picked, x)
    xs = sorted(k[0] for k in groups)
    return np.array(xs, dtype=float), np.array([reduce([r[metric] for r in groups[(v,)]])
                                                for v in xs])


def _log2_axis(ax, xs):
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(int(x)) for x in xs], rotation=0)
    ax.set_xlabel("d (dimension of q and k)")


def _scalings(rows):
    present = {r["scaling"] for r in rows}
    return [s for s in SCALINGS if s in present]


def _line(ax, xs, ys, scaling, label=None, **kw):
    style = dict(color=COLORS[scaling], marker=MARKERS[scaling], ms=4, lw=1.6)
    style.update(kw)
    ax.plot(xs, ys, label=label or SCALING_LABELS[scaling], **style)


def _gmean(values):
    values = [v for v in values if v is not None and v > 0]
    return math.exp(np.mean(np.log(values))) if values else np.nan


# -- one function per figure --------------------------------------------------------------------


def _fig_spread(plt, rows):
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    n = rows[0]["n_keys"]
    xs_all = sorted({r["d"] for r in rows})
    ax = axes[0]
    for s in _scalings(rows):
        xs, ys = _series(rows, s, "score_std")
        _, theory = _series(rows, s, "score_std_theory")
        _line(ax, xs, ys, s)
        ax.plot(xs, theory, color=COLORS[s], ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 1e3)
    ax.set_ylabel("standard deviation of the scores")
    ax.set_title("Score spread: sqrt(d) unscaled, 1 scaled\n(dotted: theory c * sqrt(d))")
    ax.legend(title="scale c", loc="lower left")
    _log2_axis(ax, xs_all)

    ax = axes[1]
    for s in _scalings(rows):
        xs, med = _series(rows, s, "entropy_median")
        _, mean = _series(rows, s, "entropy_mean")
        _line(ax, xs, med, s)
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
    _log2_axis(ax, xs_all)

    ax = axes[2]
    for s in _scalings(rows):
        xs, ys = _series(rows, s, "saturated_fraction")
        _line(ax, xs, ys, s)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(f"fraction of rows with largest weight > {SATURATED}")
    ax.set_title("Saturated (nearly one-hot) rows")
    _log2_axis(ax, xs_all)
    return fig


def _band(ax, rows, s, metric, color, label=None):
    """Median line with a band from the 25th to the 75th percentile (geometric means over
    seeds)."""
    xs, med = _series(rows, s, f"{metric}_median", reduce=_gmean)
    _, low = _series(rows, s, f"{metric}_p25", reduce=_gmean)
    _, high = _series(rows, s, f"{metric}_p75", reduce=_gmean)
    _line(ax, xs, med, s, label=label)
    ax.fill_between(xs, low, high, color=color, alpha=0.15, lw=0)
    return xs


def _fig_gradients(plt, rows):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.1))
    n = rows[0]["n_keys"]
    xs_all = sorted({r["d"] for r in rows})
    ax = axes[0]
    for s in _scalings(rows):
        _band(ax, rows, s, "jacobian_fro", COLORS[s])
    ax.axhline(0.5, color="k", ls=":", lw=1)
    ax.axhline(math.sqrt(n - 1) / n, color="k", ls="--", lw=0.8)
    ax.text(xs_all[0], 0.62, "largest possible: 1/2 (a two-way tie)", fontsize=8)
    ax.text(xs_all[-1], math.sqrt(n - 1) / n * 0.55, f"uniform row: {math.sqrt(n - 1) / n:.3f}",
            fontsize=8, ha="right", va="top")
    ax.set_yscale("log")
    ax.set_ylim(top=3)
    ax.set_ylabel("||diag(p) - p p^T||_F of one row")
    ax.set_title("Softmax Jacobian of the attention rows")
    ax.legend(title="scale c", loc="lower left")
    _log2_axis(ax, xs_all)

    for ax, name, symbol in ((axes[1], "grad_q", "q"), (axes[2], "grad_k", "k")):
        for s in _scalings(rows):
            xs = _band(ax, rows, s, name, COLORS[s])
            _, mean = _series(rows, s, f"{name}_mean", reduce=_gmean)
            ax.plot(xs, mean, color=COLORS[s], ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_ylabel(f"||d{symbol}_i||, gradient of one row of {symbol}")
        ax.set_title(f"Gradient reaching {symbol}")
        _log2_axis(ax, xs_all)
    axes[1].legend(handles=[Line2D([], [], color="k", lw=1.6, label="median row"),
                            Line2D([], [], color="k", ls="--", lw=1, label="mean"),
                            Patch(color="k", alpha=0.15, label="middle half of the rows")],
                   loc="lower left")
    return fig


def _fig_gradcheck(plt, rows):
    curves = [r for r in rows if r.get("kind") == "v_curve"]
    checks = [r for r in rows if r.get("kind") == "gradcheck"]
    dtypes = [t for t in ("float64", "float32") if any(r["dtype"] == t for r in curves)]
    fig, axes = plt.subplots(1, len(dtypes) + 1, figsize=(4.4 * (len(dtypes) + 1), 3.9))
    ds = sorted({r["d"] for r in curves})
    d = 64 if 64 in ds else ds[-1]
    for ax, dtype in zip(axes, dtypes):
        for s in _scalings(curves):
            picked = [r for r in curves
                      if r["d"] == d and r["scaling"] == s and r["dtype"] == dtype]
            groups = _by(picked, "h")
            hs = np.array(sorted(k[0] for k in groups))
            errs = [[r["rel_error"] for r in groups[(h,)]] for h in hs]
            mid = np.array([_gmean(e) for e in errs])
            lo = np.array([min(e) for e in errs])
            hi = np.array([max(e) for e in errs])
            _line(ax, hs, mid, s)
            ax.fill_between(hs, np.maximum(lo, 1e-17), hi, color=COLORS[s], alpha=0.12, lw=0)
        e_best = stepsize.best_error_theory(dtype)
        for s in _scalings(curves):
            h_best = stepsize.best_step_theory(dtype, scale_for(s, d))
            if 1e-10 <= h_best <= 0.1:
                ax.axvline(h_best, color=COLORS[s], ls=":", lw=1.2)
        ax.axhline(e_best, color="k", ls="--", lw=0.8)
        ax.text(1e-10, e_best * 1.5, f"u^(2/3) = {e_best:.0e}", fontsize=8, ha="right")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(top=3)
        ax.invert_xaxis()
        ax.set_xlabel("finite-difference step h (smaller to the right)")
        ax.set_ylabel("||numerical - analytical|| / ||analytical||")
        ax.set_title(f"{dtype}: truncation (left) meets round-off (right)\n"
                     f"d = {d}; dotted: theory (3u)^(1/3) / c")
        ax.legend(title="scale c", loc="upper center" if dtype == "float64" else "center right")

    ax = axes[-1]
    scalings = _scalings(checks)
    check_dtypes = [t for t in ("float64", "float32") if any(r["dtype"] == t for r in checks)]
    width = 0.8 / max(len(scalings), 1)
    for j, s in enumerate(scalings):
        rates = [np.mean([r["passed"] for r in checks if r["scaling"] == s and r["dtype"] == t])
                 for t in check_dtypes]
        pos = np.arange(len(check_dtypes)) + (j - (len(scalings) - 1) / 2) * width
        ax.bar(pos, rates, width, color=COLORS[s], label=SCALING_LABELS[s])
        for x, rate in zip(pos, rates):
            ax.text(x, rate + 0.02, f"{rate:.0%}", ha="center", fontsize=8)
    seeds = len({r["seed"] for r in checks})
    ax.set_xticks(range(len(check_dtypes)))
    ax.set_xticklabels(check_dtypes)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel(f"fraction of {seeds} seeds that pass")
    d_checks = ",".join(str(x) for x in sorted({r["d"] for r in checks}))
    ax.set_title(f"ma.gradcheck, PyTorch's tolerances, d = {d_checks}\n"
                 "(eps 1e-6, atol 1e-5, rtol 1e-3)")
    ax.legend(loc="upper right", fontsize=7.5)
    return fig


def _fig_dead(plt, rows):
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    xs_all = sorted({r["d"] for r in rows})
    h = rows[0]["h"]
    ax = axes[0]
    for s in _scalings(rows):
        xs, ys = _series(rows, s, "bad_entry_fraction")
        _line(ax, xs, ys, s)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(f"fraction of entries of dq with rel. error > {BAD:g}")
    ax.set_title(f"Entries of dq that look wrong\n(central differences, h = {h:g}, float64)")
    ax.legend(title="scale c", loc="upper left")
    _log2_axis(ax, xs_all)

    ax = axes[1]
    for s in _scalings(rows):
        xs, ys = _series(rows, s, "normwise_error", reduce=_gmean)
        _line(ax, xs, ys, s)
    ax.axhline(1e-7, color="k", ls=":", lw=1)
    ax.text(xs_all[0], 1.3e-7, "1e-7: \"good\" in CS231n's rule of thumb", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("||numerical - analytical|| / ||numerical||")
    ax.set_title("...while the whole gradient is right\n(norm-wise error)")
    _log2_axis(ax, xs_all)

    ax = axes[2]
    for s in _scalings(rows):
        xs, ys = _series(rows, s, "grad_entry_median", reduce=_gmean)
        _line(ax, xs, ys, s)
    floor = 1e-10
    ax.set_yscale("log")
    bottom = min(1e-10, ax.get_ylim()[0])
    ax.set_ylim(bottom, 10)
    ax.axhspan(bottom, floor / BAD, color="k", alpha=0.07, lw=0)
    ax.axhline(floor / BAD, color="k", ls=":", lw=1)
    ax.text(xs_all[-1], floor / BAD * 0.4, f"below ~{floor / BAD:.0e}, the finite-difference\n"
            f"noise (~{floor:.0e}) is over {BAD:g} of the entry", fontsize=8, va="top",
            ha="right")
    ax.set_ylabel("median |entry of dq|")
    ax.set_title("Why: the true entries sink below\nthe finite-difference noise")
    _log2_axis(ax, xs_all)
    return fig


def _fig_overflow(plt, rows):
    naive = [r for r in rows if r.get("kind") == "naive_softmax"]
    flash = [r for r in rows if r.get("kind") == "flash"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9))
    xs_all = sorted({r["d"] for r in rows})
    ax = axes[0]
    styles = {"float16": ":", "float32": "-", "float64": "--"}
    for dtype in ("float16", "float32", "float64"):
        if any(r["dtype"] == dtype and r["scaling"] == "none" for r in naive):
            xs, ys = _series(naive, "none", "nan_row_fraction", dtype=dtype)
            _line(ax, xs, ys, "none", label=f"unscaled, {dtype}", ls=styles[dtype],
                  lw=2.2 if dtype == "float32" else 1.2)
    for s in ("sqrt", "linear"):
        if any(r["scaling"] == s for r in naive):
            xs, ys = _series(naive, s, "nan_row_fraction", reduce=max)
            _line(ax, xs, ys, s, label=f"{SCALING_LABELS[s].split(' ')[0]}, every dtype")
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("fraction of rows with NaN")
    ax.set_title("softmax without subtracting the max\n(with the max subtracted: no NaN "
                 "anywhere)")
    ax.legend(fontsize=7.5, loc="center right")
    _log2_axis(ax, xs_all)

    ax = axes[1]
    for s in _scalings(flash):
        xs, ys = _series(flash, s, "flash_max_error", reduce=max)
        _line(ax, xs, np.maximum(ys, 1e-18), s)
    ax.axhline(1e-14, color="k", ls=":", lw=1)
    ax.axhline(2.0**-52, color="k", ls="--", lw=0.8)
    ax.text(xs_all[0], 1.3e-14, "1e-14", fontsize=8)
    ax.text(xs_all[0], 2.0**-52 * 1.3, "float64 epsilon", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(1e-18, 1e-12)
    ax.set_ylabel("max |flash - dense| / max |dense|")
    ax.set_title("Flash attention (online softmax) vs dense, float64\n(worst seed)")
    ax.legend(title="scale c", loc="upper right")
    _log2_axis(ax, xs_all)
    return fig


def _fig_training(plt, rows):
    runs = [r for r in rows if r.get("kind") == "run"]
    sweeps = [r for r in rows if r.get("kind") == "sweep"]
    ds = sorted({r["d"] for r in runs})
    optimizers = [o for o in ("sgd", "adam") if any(r["optimizer"] == o for r in runs)]
    fig, axes = plt.subplots(len(ds), len(optimizers), figsize=(5.2 * len(optimizers),
                                                                 3.2 * len(ds) + 0.5),
                             squeeze=False)
    for i, d in enumerate(ds):
        for j, opt in enumerate(optimizers):
            ax = axes[i][j]
            name = "SGD" if opt == "sgd" else "Adam"
            mine = [r for r in runs if r["d"] == d and r["optimizer"] == opt]
            initial = np.mean([r["initial_loss"] for r in mine])
            sens = []
            for s in _scalings(mine):
                groups = _by([r for r in mine if r["scaling"] == s], "lr")
                lrs = np.array(sorted(k[0] for k in groups))
                finals = [[initial if r["final_loss"] is None else min(r["final_loss"], initial)
                           for r in groups[(lr,)]] for lr in lrs]
                _line(ax, lrs, [np.median(f) for f in finals], s)
                ax.fill_between(lrs, [min(f) for f in finals], [max(f) for f in finals],
                                color=COLORS[s], alpha=0.12, lw=0)
                value = np.mean([r["lr_sensitivity"] for r in sweeps if r["d"] == d
                                 and r["optimizer"] == opt and r["scaling"] == s])
                sens.append(f"{s} {value:.2g}")
            ax.axhline(initial, color="k", ls=":", lw=1)
            ax.text(lrs[0], initial * 1.02, "loss at initialization (diverged runs count here)",
                    fontsize=7.5, va="bottom")
            ax.set_xscale("log")
            ax.set_ylim(-0.05 * initial, initial * 1.2)
            ax.set_xlabel(f"learning rate ({name})")
            ax.set_ylabel("final loss")
            ax.set_title(f"d = {d}, {name}; LR sensitivity: {', '.join(sens)}")
    fig.legend(handles=axes[0][0].get_lines()[:len(_scalings(runs))], loc="outside upper center",
               ncol=3, title="scale c (lines: median over seeds, bands: every seed)")
    return fig


DRAW = {1: _fig_spread, 2: _fig_gradients, 3: _fig_gradcheck, 4: _fig_dead, 5: _fig_overflow,
        6: _fig_training}
