"""Experiment 3: gradient checks against central differences: step size, precision, scaling.

The central difference (f(x + h) - f(x - h)) / 2h misses the derivative by two errors:
truncation, about h^2 f''' / 6, which shrinks with h, and round-off, about u f / h (u the
unit round-off of the dtype), which grows as h shrinks. On a log-log plot the error is a
V; its bottom sits near h = (3u)^(1/3) with an error near u^(2/3) (Nocedal & Wright,
section 8.1): h ~ 7e-6 and error ~ 2e-11 in float64, h ~ 6e-3 and error ~ 1.5e-5 in
float32. Larger scores make f''' larger, which moves the best h down.

The analytical gradient is minattn's hand-written attention backward (``impl="fused"``);
the numerical one perturbs every element of q, k and v in turn and reruns the forward pass
in the same dtype, as a gradient check does. Since q and k enter through the scores c q.k,
a step h in q is a step c h in the scores: the best h is (3u)^(1/3) / c, sqrt(d) times larger
scaled than unscaled (``best_step_theory``).

Both functions run on the NumPy twins of minattn's kernels (``on_plain_kernels``): a check
of the last bits must give the same bits on every run, and numba's compiled softmax rounds
some of them differently when freshly compiled and when loaded from its cache.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .. import backend
from .. import functional as F
from ..core import no_grad, tensor
from ..gradcheck import gradcheck_report
from .common import (
    PLAIN_KERNELS_WHY,
    SCALING_LABELS,
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
from .plots import COLORS, gmean, group_by, plot_line
from .tables import KeyNumbers, above, fmt, format_table, pick, prose, slope, within

H_VALUES = tuple(float(10 ** (-e / 2)) for e in range(-2, 21))  # 10, 3.2, 1, ..., 1e-10
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11}
TORCH_TOLERANCES = {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3}  # torch.autograd.gradcheck's
CHUNK = 1024  # perturbed copies per forward call, to bound memory


def best_step_theory(dtype: str, scale: float = 1.0) -> float:
    """(3u)^(1/3) / c: where truncation (h^2) meets round-off (u/h).

    (3u)^(1/3) is the best step for a function whose size and third derivative are alike.
    Attention sees q and k only through the scores c q.k: moving q by h moves the scores by
    about c h, so f(q) = g(c q) with g of unit scale, f''' = c^3 g''', and the best step in
    q is the best step in the scores divided by c. (The best error does not depend on c.)
    """
    return (3 * UNIT_ROUNDOFF[dtype]) ** (1 / 3) / scale


def best_error_theory(dtype: str) -> float:
    """u^(2/3): the relative error at the best step."""
    return UNIT_ROUNDOFF[dtype] ** (2 / 3)


def _attention(scale):
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=scale, impl="fused")


def numerical_gradients(fn, inputs: list, upstream, h: float) -> list:
    """d<u, fn(x)>/dx by central differences, element by element, in the inputs' dtype.

    For input i, a stack of copies of it, each with one element moved by +h (then -h), goes
    through ``fn`` in one batched call (the other inputs broadcast over the stack); the
    products with u are summed in float64 so that only the forward pass rounds in dtype.
    """
    xp = backend.get_array_module(inputs[0])
    step = xp.asarray(h, dtype=inputs[0].dtype)
    u = upstream.astype(xp.float64)
    grads = []
    for i, x in enumerate(inputs):
        grad = xp.empty(x.size, dtype=xp.float64)
        for start in range(0, x.size, CHUNK):
            stop = min(start + CHUNK, x.size)
            moves = xp.zeros((stop - start, x.size), dtype=x.dtype)  # (m, N)
            moves[xp.arange(stop - start), xp.arange(start, stop)] = step
            moves = moves.reshape(stop - start, *x.shape)  # (m, *x.shape): one element each
            phi = []
            for sign in (1, -1):
                shifted = list(inputs)
                shifted[i] = x + sign * moves  # rounded in dtype, as a gradient check does
                with no_grad():
                    out = fn(*shifted).data  # (m, L, dv)
                phi.append((out.astype(xp.float64) * u).sum(axis=(-2, -1)))  # (m,)
            grad[start:stop] = (phi[0] - phi[1]) / (2 * h)
        grads.append(grad.reshape(x.shape))
    return grads


def analytical_gradients(fn, inputs: list, upstream) -> list:
    """d<u, fn(x)>/dx through minattn's backward pass, in the inputs' dtype."""
    tensors = [tensor(x, requires_grad=True) for x in inputs]
    fn(*tensors).backward(upstream)
    return [t.grad.data for t in tensors]


def _relative_error(numerical: list, analytical: list) -> float:
    """||n - a|| / ||a|| over all inputs' gradients together, in float64."""
    diff = sum(float(backend.to_numpy(((n - a.astype(n.dtype)) ** 2).sum()))
               for n, a in zip(numerical, analytical))
    size = sum(float(backend.to_numpy((a.astype(n.dtype) ** 2).sum()))
               for n, a in zip(numerical, analytical))
    return float(np.sqrt(diff / size))


@on_plain_kernels
def step_size_curve(d_values=(16, 64), scalings=SCALINGS, dtypes=("float64", "float32"),
                    seeds=(0, 1, 2), h_values=H_VALUES, n_queries: int = 4, n_keys: int = 16,
                    value_dim: int = 16, device: str = "cpu", progress=None) -> list[dict]:
    """Relative error of the attention backward against central differences, for every
    step h; one row per d, scaling, dtype, seed and h (``kind="v_curve"``).

    >>> rows = step_size_curve(d_values=(64,), scalings=("sqrt",), dtypes=("float64",),
    ...                        seeds=(0,))
    >>> best = min(rows, key=lambda r: r["rel_error"])
    >>> 1e-5 < best["h"] < 1e-3 and best["rel_error"] < 1e-9  # (3u)^(1/3) sqrt(64) = 5.5e-5
    True
    """
    scalings = scaling_names(scalings)  # the old "none" is "unscaled"
    rows = []
    for d in d_values:
        for seed in seeds:
            # q (L, d), k (n, d), v (n, dv), u (L, dv): a random upstream gradient
            q, k, v, u = draw_qkv(3, d, seed, n_queries, n_keys, value_dim, dout=True,
                                  device=device)
            for scaling in scalings:
                fn = _attention(scale_for(scaling, d))
                for dtype in dtypes:
                    inputs = [x.astype(dtype) for x in (q, k, v)]
                    analytical = analytical_gradients(fn, inputs, u.astype(dtype))
                    for h in h_values:
                        numerical = numerical_gradients(fn, inputs, u.astype(dtype), h)
                        rows.append(make_row(
                            3, d, scaling, dtype, seed, kind="v_curve", h=h,
                            scale=scale_for(scaling, d),
                            rel_error=_relative_error(numerical, analytical),
                            n_keys=n_keys, n_queries=n_queries, value_dim=value_dim))
            tick(progress)
    return rows


@on_plain_kernels
def gradcheck_pass_rate(d_values=(16,), scalings=SCALINGS, dtypes=("float64", "float32"),
                        seeds=tuple(range(20)), n_queries: int = 4, n_keys: int = 8,
                        value_dim: int = 4, device: str = "cpu", progress=None) -> list[dict]:
    """Does ``ma.gradcheck`` with PyTorch's default tolerances (eps 1e-6, atol 1e-5,
    rtol 1e-3) pass? One row per d, scaling, dtype and seed (``kind="gradcheck"``).

    gradcheck hands the function float64 inputs; for "float32" the function casts them to
    float32, runs attention there and casts the output back, so the finite differences and
    the backward pass both run in float32, as they would on float32 parameters.
    """
    scalings = scaling_names(scalings)  # the old "none" is "unscaled"
    rows = []
    for d in d_values:
        for seed in seeds:
            q, k, v = draw_qkv(3, d, 1000 + seed, n_queries, n_keys, value_dim,
                               device=device)  # (L, d), (n, d), (n, dv)
            for scaling in scalings:
                attention = _attention(scale_for(scaling, d))
                for dtype in dtypes:
                    def fn(q, k, v, dtype=dtype, attention=attention):
                        return attention(q.astype(dtype), k.astype(dtype),
                                         v.astype(dtype)).astype("float64")

                    inputs = [tensor(x, requires_grad=True) for x in (q, k, v)]
                    report = gradcheck_report(fn, inputs, seed=seed, **TORCH_TOLERANCES)
                    rows.append(make_row(
                        3, d, scaling, dtype, seed, kind="gradcheck", h=TORCH_TOLERANCES["eps"],
                        passed=report.passed,
                        rel_error=max(c.max_rel_error for c in report.checks)))
            tick(progress)
    return rows


# -- its table, figure, report section and key numbers --------------------------------------------


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


def table(rows, markdown=False) -> str:
    """The bottom of each V against theory, then how often ma.gradcheck passes."""
    curves = pick(rows, experiment=3, kind="v_curve")
    body = []
    for dtype in ("float64", "float32"):
        for d in sorted({r["d"] for r in curves}):
            for s in scalings_in(curves):
                best = best_step(rows, d, s, dtype)
                if best is None:
                    continue
                scale = pick(curves, d=d, scaling=s)[0]["scale"]
                body.append([dtype, str(d), s, fmt(best[0]),
                             fmt(best_step_theory(dtype, scale)), fmt(best[1]),
                             fmt(best_error_theory(dtype))])
    text = format_table(["dtype", "d", "scaling", "best h", "theory (3u)^(1/3)/c",
                         "best error", "theory u^(2/3)"], body, markdown)
    checks = pick(rows, experiment=3, kind="gradcheck")
    if checks:
        body = []
        for s in scalings_in(checks):
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
        text += format_table(["scaling", "float64", "float32"], body, markdown)
    return text


def _curve(rows, d, s, dtype):
    """(hs, geometric mean, min, max) of the error over seeds, at every h."""
    picked = [r for r in rows if r.get("kind") == "v_curve" and r["d"] == d
              and r["scaling"] == s and r["dtype"] == dtype]
    groups = group_by(picked, "h")
    hs = np.array(sorted(k[0] for k in groups))
    errs = [[r["rel_error"] for r in groups[(h,)]] for h in hs]
    return (hs, np.array([gmean(e) for e in errs]), np.array([min(e) for e in errs]),
            np.array([max(e) for e in errs]))


def branch_slopes(rows, d, s, dtype) -> tuple[float | None, float | None]:
    """Measured slopes of log error against log h, on each side of the bottom of the V:
    truncation (h from 10 times the best step upwards) and round-off (h from a tenth of the
    best step downwards), each up to where the error first passes 1e-2 (beyond it the
    error saturates: nothing of the derivative is left)."""
    best = best_step(rows, d, s, dtype)
    if best is None:
        return None, None
    hs, mid, _, _ = _curve(rows, d, s, dtype)

    def branch(points):  # from the bottom outwards, while the error is below 1e-2
        kept = []
        for h, e in points:
            if e >= 1e-2:
                break
            kept.append((h, e))
        return slope(*zip(*kept)) if len(kept) > 1 else None

    up = [(h, e) for h, e in zip(hs, mid) if h >= 10 * best[0]]  # hs ascending
    down = [(h, e) for h, e in zip(hs[::-1], mid[::-1]) if h <= best[0] / 10]
    return branch(up), branch(down)


def _round_off_end(curves, d, dtype) -> str:
    """What the smallest steps give in dtype: the largest error of the round-off branch, and
    the steps at which every seed's numerical gradient is exactly 0 (error exactly 1)."""
    mine = pick(curves, d=d, dtype=dtype)
    hs = sorted({r["h"] for r in mine})
    zero = []  # the smallest steps, as long as every row at them has error 1 exactly
    for h in hs:
        if not all(r["rel_error"] == 1.0 for r in pick(mine, h=h)):
            break
        zero.append(h)
    text = ""
    peak = max(mine, key=lambda r: r["rel_error"])
    if peak["rel_error"] > 1:
        text += (f" Towards small h the error passes 1, up to {fmt(peak['rel_error'])} (worst "
                 f"seed, h = {fmt(peak['h'])}, {names_of(peak['scaling'])}): the numerical "
                 "gradient is then mostly round-off.")
    if zero:
        text += (f" For h up to {fmt(zero[-1])} the perturbed forward passes come out the same "
                 f"in {dtype}, for every seed and scaling: the numerical gradient is 0 and the "
                 "error exactly 1.")
    return text


def names_of(scaling: str) -> str:
    return {"sqrt": "scaled", "unscaled": "unscaled", "linear": "c = 1/d"}[scaling]


def figure(plt, rows):
    """The V of the error against h, per dtype, and the gradcheck pass rates, stacked."""
    curves = [r for r in rows if r.get("kind") == "v_curve"]
    checks = [r for r in rows if r.get("kind") == "gradcheck"]
    dtypes = [t for t in ("float64", "float32") if any(r["dtype"] == t for r in curves)]
    fig, axes = plt.subplots(len(dtypes) + 1, 1, figsize=(6.4, 3.6 * (len(dtypes) + 1)))
    ds = sorted({r["d"] for r in curves})
    d = 64 if 64 in ds else ds[-1]
    for ax, dtype, letter in zip(axes, dtypes, "abc"):
        for s in scalings_in(curves):
            hs, mid, lo, hi = _curve(rows, d, s, dtype)
            plot_line(ax, hs, mid, s)
            ax.fill_between(hs, np.maximum(lo, 1e-17), hi, color=COLORS[s], alpha=0.12, lw=0)
            h_best, e_best = best_step(rows, d, s, dtype)
            ax.plot([h_best], [e_best], marker="*", ms=15, color=COLORS[s], mec="k", ls="none",
                    zorder=5)
        for s in scalings_in(curves):
            ax.axvline(best_step_theory(dtype, scale_for(s, d)), color=COLORS[s], ls=":",
                       lw=1.6, zorder=4)
        e_theory = best_error_theory(dtype)
        ax.axhline(e_theory, color="k", ls="--", lw=1, zorder=4)
        ax.text(min(H_VALUES), e_theory * 1.6, f"u^(2/3) = {e_theory:.0e}", fontsize=9,
                ha="right")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(top=30)
        ax.set_xlim(max(H_VALUES) * 2, min(H_VALUES) / 2)  # inverted: smaller h to the right
        ax.set_xlabel("finite-difference step h (smaller to the right)")
        ax.set_ylabel("||num. - anal.|| / ||anal.||")
        ax.set_title(f"({letter}) {dtype}, d = {d}: truncation (left) meets round-off (right)\n"
                     "star: best measured h; dotted: theory (3u)^(1/3) / c")
        if letter == "a":  # (c) repeats the colours; in (b) a legend would hide the V
            ax.legend(title="scale c", loc="upper right")

    ax = axes[-1]
    scalings = scalings_in(checks)
    check_dtypes = [t for t in ("float64", "float32") if any(r["dtype"] == t for r in checks)]
    width = 0.8 / max(len(scalings), 1)
    for j, s in enumerate(scalings):
        rates = [np.mean([r["passed"] for r in checks if r["scaling"] == s and r["dtype"] == t])
                 for t in check_dtypes]
        pos = np.arange(len(check_dtypes)) + (j - (len(scalings) - 1) / 2) * width
        ax.bar(pos, rates, width, color=COLORS[s], label=SCALING_LABELS[s])
        for x, rate in zip(pos, rates):
            ax.text(x, rate + 0.02, f"{rate:.0%}", ha="center", fontsize=9)
    seeds = len({r["seed"] for r in checks})
    ax.set_xticks(range(len(check_dtypes)))
    ax.set_xticklabels(check_dtypes)
    ax.set_xlabel("dtype the function and its backward run in")
    ax.set_ylim(0, 1.15)
    ax.set_ylabel(f"fraction of {seeds} seeds that pass")
    d_checks = ",".join(str(x) for x in sorted({r["d"] for r in checks}))
    ax.set_title(f"({'abc'[len(dtypes)]}) ma.gradcheck with PyTorch's tolerances, d = "
                 f"{d_checks}\n(eps 1e-6, atol 1e-5, rtol 1e-3)")
    ax.legend(loc="upper right")
    return fig


def section(rows) -> str:
    """Its section of report.md, with the numbers of this run."""
    curves = pick(rows, kind="v_curve")
    ds = sorted({r["d"] for r in curves})
    d = 64 if 64 in ds else ds[-1]
    sc = scalings_in(curves)
    names = {s: names_of(s) for s in sc}
    u = {t: UNIT_ROUNDOFF[t] for t in ("float64", "float32")}
    h_th = {t: best_step_theory(t) for t in u}
    e_th = {t: best_error_theory(t) for t in u}
    panels = []
    for dtype in ("float64", "float32"):  # panels (a) and (b), as in the figure
        found, edge, branches = [], [], []
        for s in sc:
            best = best_step(rows, d, s, dtype)
            if not best:
                continue
            scale = pick(curves, d=d, scaling=s)[0]["scale"]
            found.append(f"{names[s]}, best h {fmt(best[0])} (theory "
                         f"{best_step_theory(dtype, scale):.1e}), error {fmt(best[1])}")
            hs = sorted({r["h"] for r in pick(curves, d=d, scaling=s, dtype=dtype)})
            if best[0] in (hs[0], hs[-1]):
                edge.append(names[s])
            left, right = branch_slopes(rows, d, s, dtype)
            if left is not None and right is not None:
                branches.append(f"{names[s]} {left:.1f} and {right:.1f}")
        if not found:
            continue
        text = f"({'abc'[len(panels)]}) {dtype}: " + "; ".join(found) + "."
        if branches:
            text += (" Measured slopes of the truncation and round-off branches: "
                     + ", ".join(branches) + " (theory 2 and -1).")
        if edge:
            text += (f" The best h of {', '.join(edge)} is at the edge of the sweep: the true "
                     "bottom may lie beyond it.")
        text += _round_off_end(curves, d, dtype)
        panels.append(text)
    compare = []
    if {"sqrt", "unscaled"} <= set(sc):
        for dtype in ("float64", "float32"):
            hb = {s: best_step(rows, d, s, dtype) for s in ("sqrt", "unscaled")}
            if not all(hb.values()):
                continue
            where = above(hb["unscaled"][0], hb["sqrt"][0], ("a larger", "a smaller", "the same"))
            height = above(hb["unscaled"][1], hb["sqrt"][1], ("higher", "lower", "as high"))
            compare.append(f"in {dtype} the unscaled bottom sits at {where} h (the scaled "
                           f"one's times {fmt(hb['unscaled'][0] / hb['sqrt'][0])}) and "
                           f"{height} (error times {fmt(hb['unscaled'][1] / hb['sqrt'][1])})")
    compare_text = (f"Comparing unscaled with scaled (theory: best h times 1/sqrt(d) = "
                    f"{fmt(1 / math.sqrt(d))}, the same error): " + "; ".join(compare) + "."
                    ) if compare else ""
    checks = pick(rows, kind="gradcheck")
    check_text = ""
    if checks:
        rate = {t: (sum(r["passed"] for r in pick(checks, dtype=t)), len(pick(checks, dtype=t)))
                for t in ("float64", "float32")}
        d_checks = ", ".join(str(x) for x in sorted({r["d"] for r in checks}))
        eps = TORCH_TOLERANCES["eps"]
        if rate["float64"][0] == rate["float64"][1] and rate["float32"][0] < rate["float32"][1]:
            verdict = ("Gradient checks belong in float64, which is why `ma.gradcheck` casts its "
                       "inputs to float64 (here the checked function casts them back to float32 "
                       "inside, to show what happens otherwise).")
        else:
            verdict = ("Here not every float64 check passes, or float32 passes as often: look "
                       "at the seeds before trusting either.")
        check_text = f"""

({'abc'[len(panels)]}) **ma.gradcheck with PyTorch's default tolerances** (eps = {eps:g},
atol = {TORCH_TOLERANCES['atol']:g}, rtol = {TORCH_TOLERANCES['rtol']:g}) passes
{rate['float64'][0]} of {rate['float64'][1]} checks in float64 and {rate['float32'][0]} of
{rate['float32'][1]} in float32 (every scaling, d = {d_checks}). In float32 the round-off
alone is about u/h = {u['float32']:.0e} / {eps:g}, {fmt(u['float32'] / eps, '%')} of the
derivative, far above rtol. {verdict}"""
    return prose(f"""
Every entry of q, k and v is moved by +h and by -h in turn, the forward pass is rerun in
the same dtype, and (f(x + h) - f(x - h)) / 2h is compared with the hand-written backward.
The error is ||numerical - analytical|| / ||analytical||, over the three gradients.

**Theory.** A central difference makes two errors: truncation, about h^2 f'''/6, which
shrinks with h, and round-off, about u f / h (u the unit round-off: {u['float64']:.1e} in
float64, {u['float32']:.1e} in float32), which grows as h shrinks. On log-log axes their
sum is a V, with its bottom near h = (3u)^(1/3) and an error near u^(2/3) (Nocedal &
Wright, section 8.1): {h_th['float64']:.0e} and {e_th['float64']:.0e} in float64,
{h_th['float32']:.0e} and {e_th['float32']:.1e} in float32. That assumes f and f''' of
similar size. Attention sees q and k only through the scores c q.k, so a step h in q is a
step c h in the scores: f''' carries a factor c^3 and the best h is (3u)^(1/3) / c, which
is (3u)^(1/3) unscaled and sqrt(d) times more scaled. The best error does not depend on
c. A softmax close to saturation has a larger third derivative, which moves the unscaled
bottom to a smaller h and can raise it.

**What the figure shows** (d = {d}; stars mark the best measured h, dotted lines the
theory). {' '.join(panels)} {compare_text}{check_text}""")


def key_numbers(rows) -> KeyNumbers:
    """What experiment 3 measured against what theory expects."""
    found = KeyNumbers()
    curves = pick(rows, experiment=3, kind="v_curve")
    d = 64 if pick(curves, d=64) else (curves[0]["d"] if curves else None)
    for dtype in ("float64", "float32"):
        for s in ("unscaled", "sqrt"):
            best = best_step(rows, d, s, dtype) if d else None
            if not best:
                continue
            theory = best_step_theory(dtype, pick(curves, d=d, scaling=s)[0]["scale"])
            found.add(f"best h, {dtype}, d={d}, {s}", best[0],
                      f"{theory:.0e} = (3u)^(1/3)" + ("" if s == "unscaled" else " sqrt(d)")
                      + ", within 10x", within(best[0], theory, 10),
                      note=f"{fmt(best[0] / theory, 'x')} the theory")
            error = best_error_theory(dtype)
            found.add(f"best error, {dtype}, d={d}, {s}", best[1],
                      f"{error:.1e} = u^(2/3), within 10x", within(best[1], error, 10),
                      note=f"{fmt(best[1] / error, 'x')} the theory")
        checks = pick(rows, experiment=3, kind="gradcheck", dtype=dtype)
        if checks:
            passed = sum(r["passed"] for r in checks)
            if dtype == "float64":
                expected, holds = "all", passed == len(checks)
            else:
                noise = UNIT_ROUNDOFF["float32"] / TORCH_TOLERANCES["eps"]
                expected = (f"none: round-off u/eps = {fmt(noise, '%')} is above rtol = "
                            f"{fmt(TORCH_TOLERANCES['rtol'], '%')}")
                holds = passed == 0
            found.add(f"ma.gradcheck passes, {dtype}", f"{passed}/{len(checks)}", expected, holds)
    return found


EXPERIMENT = Experiment(
    3, "stepsize", "Gradient checks: step size, precision and scaling",
    heading="Gradient checks: step size, precision and scaling",
    parts=[Part(step_size_curve,
                quick=dict(d_values=(64,), scalings=("sqrt", "unscaled"), seeds=(0,)),
                full=dict(d_values=(16, 64), seeds=(0, 1, 2))),
           Part(gradcheck_pass_rate,
                quick=dict(scalings=("sqrt", "unscaled"), seeds=tuple(range(4))),
                full=dict(seeds=tuple(range(20))))],
    table=table, figure=figure, figure_file="fig3_gradcheck.png",
    figure_note="Central-difference error against the step h, and how often gradcheck passes",
    section=section, key_numbers=key_numbers, plain_kernels_why=PLAIN_KERNELS_WHY)
