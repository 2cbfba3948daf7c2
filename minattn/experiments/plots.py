"""What the figures of the scaling experiments share: colours, style, and the helpers that turn
result rows into lines and bands (each experiment's own figure is in its module).

matplotlib is optional: ``matplotlib_missing`` says why no figure can be drawn, and the
rest of a run goes on without figures.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .common import SCALING_LABELS

COLORS = {"sqrt": "#1f6fb4", "unscaled": "#d62728", "linear": "#7a7a7a"}
MARKERS = {"sqrt": "o", "unscaled": "s", "linear": "^"}
# Where two scalings give the same numbers (no saturated row, scaled or 1/d), the scaled line
# stays visible: it is drawn on top with filled markers, 1/d dashed with larger open ones.
LINES = {"sqrt": dict(ls="-", ms=4.5, zorder=2.6),
         "unscaled": dict(ls="-", ms=4.5, zorder=2.5),
         "linear": dict(ls="--", ms=7, mfc="none", mew=1.2, zorder=2.4)}
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9,
         "legend.title_fontsize": 9, "xtick.labelsize": 9.5, "ytick.labelsize": 9.5,
         "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "figure.constrained_layout.use": True}
DPI = 110  # 6.4 in wide: about 700 px, a docs column


def matplotlib_missing() -> str | None:
    """None when figures can be drawn, else why not (one line)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed: no figures (pip install 'minattn[plot]')"
    return None


def group_by(rows, *keys):
    """Group rows by the values of keys: {(v1, v2, ...): [rows]}."""
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r.get(k) for k in keys)].append(r)
    return groups


def series(rows, scaling, metric, x="d", reduce=np.mean, **match):
    """(xs, ys): metric reduced over seeds at every x, for one scaling."""
    picked = [r for r in rows if r["scaling"] == scaling and r.get(metric) is not None
              and all(r.get(k) == v for k, v in match.items())]
    groups = group_by(picked, x)
    xs = sorted(k[0] for k in groups)
    return np.array(xs, dtype=float), np.array([reduce([r[metric] for r in groups[(v,)]])
                                                for v in xs])


def log2_axis(ax, xs):
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(int(x)) for x in xs], rotation=0)
    ax.set_xlabel("d (dimension of q and k)")


def plot_line(ax, xs, ys, scaling, label=None, **kw):
    """One scaling's line, in its colour and marker, labelled with its name by default."""
    style = dict(color=COLORS[scaling], marker=MARKERS[scaling], lw=1.6, **LINES[scaling])
    style.update(kw)
    ax.plot(xs, ys, label=label or SCALING_LABELS[scaling], **style)


def gmean(values):
    values = [v for v in values if v is not None and v > 0]
    return math.exp(np.mean(np.log(values))) if values else np.nan


def band(ax, rows, s, metric, color, label=None):
    """Median line with a band from the 25th to the 75th percentile (geometric means over
    seeds)."""
    xs, med = series(rows, s, f"{metric}_median", reduce=gmean)
    _, low = series(rows, s, f"{metric}_p25", reduce=gmean)
    _, high = series(rows, s, f"{metric}_p75", reduce=gmean)
    plot_line(ax, xs, med, s, label=label)
    ax.fill_between(xs, low, high, color=color, alpha=0.15, lw=0)
    return xs
