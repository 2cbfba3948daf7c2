"""Tables computed from the result rows, and the key numbers against what theory expects.

The same tables go to the terminal (plain text) and into report.md (Markdown). Values are
averaged over seeds (geometric means for quantities that span decades), so a table is
one line per d.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict

import numpy as np

from . import stepsize
from .common import SCALINGS

# -- reading rows ---------------------------------------------------------------------------------


def pick(rows, **match) -> list[dict]:
    """The rows whose fields equal every value in match."""
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def average(rows, metric: str, geometric: bool = False, **match) -> float | None:
    """Mean of a metric over the matching rows (those where it is present), or None."""
    values = [r[metric] for r in pick(rows, **match) if r.get(metric) is not None]
    if not values:
        return None
    if geometric:
        positive = [v for v in values if v > 0]
        return math.exp(np.mean(np.log(positive))) if positive else 0.0
    return float(np.mean(values))


def best_step(rows, d: int, scaling: str, dtype: str) -> tuple[float, float] | None:
    """(h, error) at the bottom of the V: the h whose error, geometric mean over seeds, is
    smallest."""
    curve = pick(rows, experiment=3, kind="v_curve", d=d, scaling=scaling, dtype=dtype)
    by_h = defaultdict(list)
    for r in curve:
        by_h[r["h"]].append(max(r["rel_error"], 1e-300))
    if not by_h:
        return None
    means = {h: math.exp(np.mean(np.log(v))) for h, v in by_h.items()}
    h = min(means, key=means.get)
    return h, means[h]


def sensitivity_ratio(rows, d: int, optimizer: str) -> float | None:
    scaled = average(rows, "lr_sensitivity", experiment=6, kind="sweep", d=d,
                     optimizer=optimizer, scaling="sqrt")
    unscaled = average(rows, "lr_sensitivity", experiment=6, kind="sweep", d=d,
                       optimizer=optimizer, scaling="none")
    if scaled is None or unscaled is None:
        return None
    return unscaled / scaled if scaled > 0 else math.inf


# -- formatting -----------------------------------------------------------------------------------


def fmt(x, style: str = "g") -> str:
    """Numbers for tables: '-' for missing, percentages, or 3 significant digits."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if style == "%":
        return f"{100 * x:.0f}%" if x == 0 or x >= 0.01 or x == 1 else f"{100 * x:.2f}%"
    if style == "x":
        return "inf" if math.isinf(x) else f"{x:.3g}x"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.1e}"


def table(headers: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        def cells(row):  # a | inside a cell would end it: escape it
            return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

        lines = [cells(headers), "|" + "|".join("---:" for _ in headers) + "|"]
        lines += [cells(row) for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


def _scalings(rows) -> list[str]:
    present = {r["scaling"] for r in rows}
    return [s for s in SCALINGS if s in present]


def _pivot(rows, columns, markdown: bool, **match) -> str:
    """One line per d; columns are (header, metric, scaling, style, geometric)."""
    ds = sorted({r["d"] for r in pick(rows, **match)})
    body = []
    for d in ds:
        line = [str(d)]
        for _, metric, scaling, style, geometric in columns:
            line.append(fmt(average(rows, metric, geometric, d=d, scaling=scaling, **match),
                            style))
        body.append(line)
    return table(["d"] + [c[0] for c in columns], body, markdown)


# -- one table per experiment ---------------------------------------------------------------------


def _legend(text: str, markdown: bool) -> str:
    """The line under a table that says what its short headers mean."""
    return f"\n\n_{text}_" if markdown else "\n" + textwrap.fill(text, 96)


def table_1(rows, markdown=False) -> str:
    rows = pick(rows, experiment=1)
    sc = _scalings(rows)
    cols = [(f"std {s}", "score_std", s, "g", False) for s in sc]
    cols += [(f"H {s}", "entropy_median", s, "g", False) for s in sc]
    cols += [("H mean none", "entropy_mean", "none", "g", False)] if "none" in sc else []
    cols += [("top none", "max_weight_mean", "none", "g", False)] if "none" in sc else []
    cols += [(f"sat {s}", "saturated_fraction", s, "%", False) for s in sc if s != "linear"]
    return _pivot(rows, cols, markdown) + _legend(
        "std: standard deviation of the scores; H: median row entropy (nats), H mean: mean; "
        "top: mean largest weight; sat: rows whose largest weight is above 0.99", markdown)


def table_2(rows, markdown=False) -> str:
    rows = pick(rows, experiment=2)
    sc = _scalings(rows)
    cols = [(f"J {s}", "jacobian_fro_median", s, "g", True) for s in sc]
    cols += [(f"dq {s}", "grad_q_median", s, "g", True) for s in sc]
    cols += [("dq mean none", "grad_q_mean", "none", "g", True)] if "none" in sc else []
    cols += [(f"dk {s}", "grad_k_median", s, "g", True) for s in sc if s != "linear"]
    text = _pivot(rows, cols, markdown) + _legend(
        "J: median Frobenius norm of the softmax Jacobian of a row; dq, dk: median norm of "
        "a row of the gradient (dq mean: the mean)", markdown)
    if {"sqrt", "none"} <= set(sc):
        ratios = []
        for d in sorted({r["d"] for r in rows}):
            a = average(rows, "jacobian_fro_median", True, d=d, scaling="sqrt")
            b = average(rows, "jacobian_fro_median", True, d=d, scaling="none")
            ratios.append(f"d={d}: {fmt(a / b if b else math.inf, 'x')}")
        text += "\n\nmedian J, scaled over unscaled: " + ", ".join(ratios)
    return text


def table_3(rows, markdown=False) -> str:
    curves = pick(rows, experiment=3, kind="v_curve")
    body = []
    for dtype in ("float64", "float32"):
        for d in sorted({r["d"] for r in curves}):
            for s in _scalings(curves):
                best = best_step(rows, d, s, dtype)
                if best is None:
                    continue
                scale = pick(curves, d=d, scaling=s)[0]["scale"]
                body.append([dtype, str(d), s, fmt(best[0]),
                             fmt(stepsize.best_step_theory(dtype, scale)), fmt(best[1]),
                             fmt(stepsize.best_error_theory(dtype))])
    text = table(["dtype", "d", "scaling", "best h", "theory (3u)^(1/3)/c", "best error",
                  "theory u^(2/3)"], body, markdown)
    checks = pick(rows, experiment=3, kind="gradcheck")
    if checks:
        body = []
        for s in _scalings(checks):
            line = [s]
            for dtype in ("float64", "float32"):
                mine = pick(checks, scaling=s, dtype=dtype)
                line.append(f"{sum(r['passed'] for r in mine)}/{len(mine)}" if mine else "-")
            body.append(line)
        d = sorted({r["d"] for r in checks})
        text += (f"\n\nma.gradcheck passes (PyTorch's tolerances, d={','.join(map(str, d))}):\n"
                 if not markdown else
                 f"\n\n`ma.gradcheck` passes (PyTorch's tolerances, d = "
                 f"{', '.join(map(str, d))}):\n\n")
        text += table(["scaling", "float64", "float32"], body, markdown)
    return text


def table_4(rows, markdown=False) -> str:
    rows = pick(rows, experiment=4)
    sc = _scalings(rows)
    cols = [(f"bad {s}", "bad_entry_fraction", s, "%", False) for s in sc]
    cols += [(f"error {s}", "normwise_error", s, "g", True) for s in sc]
    cols += [("entry none", "grad_entry_median", "none", "g", True)] if "none" in sc else []
    return _pivot(rows, cols, markdown) + _legend(
        "bad: entries of dq with relative error above 1e-4; error: norm-wise relative error "
        "of the whole dq; entry: median size of an entry of dq", markdown)


def table_5(rows, markdown=False) -> str:
    naive = pick(rows, experiment=5, kind="naive_softmax")
    sc = _scalings(naive)
    cols = []
    for dtype in ("float32", "float16", "float64"):
        for s in sc:
            if s != "linear" and pick(naive, dtype=dtype, scaling=s) and \
                    (s == "none" or dtype == "float32"):
                cols.append((f"NaN {dtype.replace('float', 'f')} {s}", "nan_row_fraction", s,
                             "%", False, dict(kind="naive_softmax", dtype=dtype)))
    flash = pick(rows, experiment=5, kind="flash")
    for s in _scalings(flash):
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
    text = table(["d"] + [c[0] for c in cols], body, markdown) + _legend(
        "NaN f32 none: fraction of rows with NaN from a softmax without max subtraction, in "
        "float32, unscaled (f16, f64: float16, float64); flash: largest difference between "
        "flash and dense attention in float64, relative to the largest output", markdown)
    stable = [r["nan_row_fraction_stable"] for r in naive]
    if stable:
        text += (f"\n\nwith the max subtracted: NaN rows in {sum(x > 0 for x in stable)} of "
                 f"{len(stable)} cases (every d, scaling, dtype and seed)")
    return text


def table_6(rows, markdown=False) -> str:
    sweeps = pick(rows, experiment=6, kind="sweep")
    body = []
    for d in sorted({r["d"] for r in sweeps}):
        for opt in ("sgd", "adam"):
            if not pick(sweeps, d=d, optimizer=opt):
                continue
            line = [str(d), "SGD" if opt == "sgd" else "Adam"]
            for s in ("sqrt", "none"):
                line.append(fmt(average(sweeps, "lr_sensitivity", d=d, optimizer=opt,
                                        scaling=s)))
            line.append(fmt(sensitivity_ratio(rows, d, opt), "x"))
            for s in ("sqrt", "none"):
                line.append(fmt(average(sweeps, "best_loss", d=d, optimizer=opt, scaling=s)))
            for s in ("sqrt", "none"):
                line.append(fmt(average(sweeps, "trained_fraction", d=d, optimizer=opt,
                                        scaling=s), "%"))
            body.append(line)
    return table(["d", "optimizer", "sens sqrt", "sens none", "none/sqrt", "best sqrt",
                  "best none", "train sqrt", "train none"], body, markdown) + _legend(
        "sens: learning-rate sensitivity (Wortsman et al. 2023), mean over seeds; best: best "
        "final loss of the sweep; train: learning rates whose final loss is below 0.1",
        markdown)


TABLES = {1: table_1, 2: table_2, 3: table_3, 4: table_4, 5: table_5, 6: table_6}


def terminal_table(number: int, rows) -> str:
    return TABLES[number](rows, markdown=False)


# -- measured against expected --------------------------------------------------------------------


def key_numbers(rows) -> list[tuple[str, str, str]]:
    """(what, measured, expected) for the claims of the issue that these rows can check."""
    out = []

    def add(what, value, expected, style="g"):
        if value is not None:
            out.append((what, value if isinstance(value, str) else fmt(value, style), expected))

    e1 = pick(rows, experiment=1)
    if e1:
        for d in (512, 4096):
            add(f"score std at d={d}, unscaled", average(e1, "score_std", d=d, scaling="none"),
                f"sqrt(d) = {math.sqrt(d):.1f}")
        add("score std, scaled (all d)", _range(e1, "score_std", scaling="sqrt"), "1")
        add("median entropy at d=512, unscaled (nats)",
            average(e1, "entropy_median", d=512, scaling="none"), "about 0.02")
        add("saturated rows at d=512, unscaled", average(e1, "saturated_fraction", d=512,
                                                         scaling="none"), "more than half", "%")
        n = e1[0]["n_keys"]
        add("median entropy, scaled (all d, nats)", _range(e1, "entropy_median", scaling="sqrt"),
            f"near ln {n} - 1/2 = {math.log(n) - 0.5:.2f}")
    e2 = pick(rows, experiment=2)
    if e2:
        a = average(e2, "jacobian_fro_median", True, d=512, scaling="sqrt")
        b = average(e2, "jacobian_fro_median", True, d=512, scaling="none")
        if a and b:
            add("median |J| at d=512, scaled / unscaled", a / b, "over 10x (collapse)", "x")
        add("median |J| at d=4096, unscaled",
            average(e2, "jacobian_fro_median", True, d=4096, scaling="none"),
            "far below the scaled 0.09 (near one-hot rows)")
        for d in (16, 4096):
            a = average(e2, "grad_q_median", True, d=d, scaling="none")
            b = average(e2, "grad_q_median", True, d=d, scaling="sqrt")
            if a and b:
                add(f"median |dq| at d={d}, unscaled / scaled", a / b,
                    "above 1 (missing 1/sqrt(d))" if d == 16 else "far below 1 (dead)", "x")
    curves = pick(rows, experiment=3, kind="v_curve")
    d = 64 if pick(curves, d=64) else (curves[0]["d"] if curves else None)
    for dtype in ("float64", "float32"):
        for s in ("none", "sqrt"):
            best = best_step(rows, d, s, dtype) if d else None
            if not best:
                continue
            theory = stepsize.best_step_theory(dtype, pick(curves, d=d, scaling=s)[0]["scale"])
            add(f"best h, {dtype}, d={d}, {s}", best[0],
                f"about {theory:.0e}" + (" = (3u)^(1/3)" if s == "none" else
                                        " = (3u)^(1/3) sqrt(d)"))
            add(f"best error, {dtype}, d={d}, {s}", best[1],
                f"about {stepsize.best_error_theory(dtype):.1e} = u^(2/3)")
        checks = pick(rows, experiment=3, kind="gradcheck", dtype=dtype)
        if checks:
            add(f"ma.gradcheck passes, {dtype}",
                f"{sum(r['passed'] for r in checks)}/{len(checks)}",
                "all" if dtype == "float64" else "few or none")
    e4 = pick(rows, experiment=4)
    if e4:
        add("bad entries, scaled (worst d)", _max(e4, "bad_entry_fraction", scaling="sqrt"),
            "zero", "%")
        for d in (256, 4096):
            add(f"bad entries at d={d}, unscaled",
                average(e4, "bad_entry_fraction", d=d, scaling="none"),
                "about 20%" if d == 256 else "about 75%", "%")
        add("normwise error, unscaled (worst d)", _max(e4, "normwise_error", scaling="none"),
            "tiny")
    e5 = pick(rows, experiment=5)
    if e5:
        add("NaN rows, float32, d=4096, unscaled",
            average(e5, "nan_row_fraction", kind="naive_softmax", dtype="float32", d=4096,
                    scaling="none"), "all", "%")
        add("NaN rows, float32, scaled (worst d)",
            _max(e5, "nan_row_fraction", kind="naive_softmax", dtype="float32",
                 scaling="sqrt"), "none", "%")
        add("flash vs dense, float64 (worst case)", _max(e5, "flash_max_error", kind="flash"),
            "below 1e-14")
    for d in (64, 512):
        for opt in ("sgd", "adam"):
            add(f"LR sensitivity at d={d}, {opt}, unscaled / scaled",
                sensitivity_ratio(rows, d, opt), "several times", "x")
    return out


def _range(rows, metric, **match) -> str | None:
    values = [average(rows, metric, d=d, **match) for d in sorted({r["d"] for r in rows})]
    values = [v for v in values if v is not None]
    return f"{fmt(min(values))} to {fmt(max(values))}" if values else None


def _max(rows, metric, **match) -> float | None:
    values = [r[metric] for r in pick(rows, **match) if r.get(metric) is not None]
    return max(values) if values else None
