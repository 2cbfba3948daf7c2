"""report.md: the figures, the tables and a few sentences per experiment that a student can
follow, with the numbers of this run filled in."""

from __future__ import annotations

import math
import platform
import time

import numpy as np

from . import stepsize
from .dead import BAD
from .spread import SATURATED
from .tables import TABLES, average, best_step, fmt, key_numbers, pick, sensitivity_ratio, table
from .training import LEARNING_RATES, TRAINED

TITLES = {1: "Score spread and attention entropy", 2: "The softmax Jacobian and gradient flow",
          3: "Gradient checks: step size, precision and scaling",
          4: "Dead gradients look like wrong gradients", 5: "Why the max is subtracted",
          6: "Training: sensitivity to the learning rate"}
FIGURE_NOTES = {
    1: "Score spread, entropy and saturation against d, for the three scalings",
    2: "Softmax Jacobian and gradient norms against d",
    3: "Central-difference error against the step h, and how often gradcheck passes",
    4: "Entries that look wrong, the norm-wise error, and the size of the true gradient",
    5: "NaN rows without max subtraction, and flash against dense attention",
    6: "Final loss against the learning rate",
}


def _n(value, style="g") -> str:
    return fmt(value, style)


def _prose(text: str) -> str:
    """Join the lines of each paragraph (the source wraps them for reading)."""
    paragraphs = text.strip().split("\n\n")
    return "\n\n".join(p if p.startswith("    ") else " ".join(p.split()) for p in paragraphs)


# -- the opening ----------------------------------------------------------------------------------


def _setup(config, timings) -> str:
    import numpy

    from .. import __version__

    quick = config.get("quick")
    total = sum(timings.values())
    made = (f"Made by `minattn scaling{' --quick' if quick else ''}` on "
            f"{time.strftime('%Y-%m-%d %H:%M')} (minattn {__version__}, NumPy "
            f"{numpy.__version__}, Python {platform.python_version()}, device "
            f"`{config.get('device', 'cpu')}`"
            + (f", {total:.0f} s of computing" if timings else "") + ").")
    text = ["# Why attention divides by sqrt(d): the scaling experiments", "", made]
    if quick:
        text += ["", "> This is the **quick** version: one or two seeds and small samples, for "
                 "a first look. `minattn scaling` runs the full sweep in a few minutes."]
    text += ["", _prose("""
Attention scores a query q against each key k with s = c q.k, turns each row of scores
into weights p = softmax(s), and returns the weighted sum of the values. The experiments
compare three choices of the factor c, for q and k of dimension d from 16 to 4096:"""), "",
             "| scaling (in results.json) | c | |", "|---|---|---|",
             "| `sqrt` | 1/sqrt(d) | the standard (Vaswani et al. 2017) |",
             "| `none` | 1 | unscaled |", "| `linear` | 1/d | scaled too much |", "",
             _prose("""
The entries of q and k are independent, with mean 0 and variance 1: what a layer norm
followed by a variance-preserving projection gives at initialization. Every number is an
average over seeds; `results.json` holds every measurement, each one reproducible from its
seed. Medians and percentiles are taken over the rows (queries) of an attention matrix.""")]
    return "\n".join(text)


def _key_numbers(rows) -> str:
    found = key_numbers(rows)
    if not found:
        return ""
    body = [[what, measured, expected] for what, measured, expected in found]
    text = table(["quantity", "measured", "expected"], body, markdown=True)
    return "## The key numbers\n\n" + text.replace("|---:|---:|---:|", "|:---|---:|:---|")


# -- one section per experiment -------------------------------------------------------------------


def _section_1(rows) -> str:
    n = rows[0]["n_keys"]
    ds = sorted({r["d"] for r in rows})
    d = 512 if 512 in ds else ds[-1]
    return _prose(f"""
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
{_n(average(rows, 'entropy_median', d=d, scaling='sqrt'))} nats at d = {d}, as at every d;
the median unscaled row has {_n(average(rows, 'entropy_median', d=d, scaling='none'))}
nats. Right: at d = {d}, {_n(average(rows, 'saturated_fraction', d=d, scaling='none'), '%')}
of the unscaled rows put more than {SATURATED} of their weight on a single key.

**What it means.** Without the scale, a wider model has sharper attention before it has
learned anything: random noise in q and k decides which key wins, and (experiment 2) such
rows pass almost no gradient back. With 1/sqrt(d) the starting point is the same at every
width. Dividing by d overshoots: the spread shrinks as 1/sqrt(d) and every row is nearly
uniform, unable to prefer any key.""")


def _section_2(rows) -> str:
    n = rows[0]["n_keys"]
    ds = sorted({r["d"] for r in rows})
    small, big = ds[0], ds[-1]
    d = 512 if 512 in ds else big

    def g(metric, d, s):
        return average(rows, metric, True, d=d, scaling=s)

    jac = "jacobian_fro_median"
    return _prose(f"""
The same setup, now with values (dimension {rows[0]['value_dim']}) and a random upstream
gradient dO (standard normal; never the gradient of a sum, which is zero through a softmax
whatever the backward does). The gradients of q and k come from minattn's hand-written
attention backward.

**Theory.** For one row p = softmax(s) the Jacobian is J = diag(p) - p p^T. Its Frobenius
norm is 0 for a one-hot row, sqrt(n-1)/n = {math.sqrt(n - 1) / n:.3f} for a uniform row of
n = {n}, and at most 1/2 (two keys tied). Through s = c q.k the chain rule gives

    dS = P * (dP - rowsum(dP * P))   (J dP, row by row)
    dq = c dS K,   dk = c dS^T Q

**What the figure shows.** Left: the median Jacobian norm stays at
{_n(g(jac, d, 'sqrt'))} for every d when scaled; unscaled it is
{_n(g(jac, d, 'sqrt') / g(jac, d, 'none'), 'x')} smaller at d = {d} and
{_n(g(jac, big, 'none'))} at d = {big}. Middle and right: the norms of the rows of dq and
dk. Scaled, they do not depend on d. Unscaled, the median row of dq is
{_n(g('grad_q_median', small, 'none') / g('grad_q_median', small, 'sqrt'), 'x')} the
scaled one at d = {small} and
{_n(g('grad_q_median', big, 'none') / g('grad_q_median', big, 'sqrt'), 'x')} of it at
d = {big}, while the mean (dashed) stays above the scaled one at every d.

**Why unscaled gradients are larger at small d, and die at large d.** Two factors meet
in dq = c (J dP) K. The first is c: unscaled, it is 1 instead of 1/sqrt(d), and the rows
of K have length about sqrt(d), so for the same J dP the unscaled gradient is sqrt(d)
times larger (4 times at d = 16): the 1/sqrt(d) that the chain rule should carry is
missing. The second is J, which shrinks like exp(-gap), where the gap between the two
largest scores of a row grows like sqrt(d). At small d the first factor wins; as d grows
the exponential wins and the typical row passes nothing back. A few rows still have two
keys nearly tied: there J is as large as it gets, and the missing 1/sqrt(d) makes their
gradient huge. Most rows dead, a few enormous: the distribution is heavy-tailed, and its
mean hides the dead majority, which is why the table and the figure show medians and
percentiles. In training, most queries would learn nothing while a few take large,
erratic steps.""")


def _section_3(rows) -> str:
    curves = pick(rows, kind="v_curve")
    ds = sorted({r["d"] for r in curves})
    d = 64 if 64 in ds else ds[-1]
    found = []
    for dtype in ("float64", "float32"):
        for s, name in (("none", "unscaled"), ("sqrt", "scaled")):
            best = best_step(rows, d, s, dtype)
            if best:
                scale = pick(curves, d=d, scaling=s)[0]["scale"]
                found.append(f"{dtype} {name}: best h {_n(best[0])} (theory "
                             f"{stepsize.best_step_theory(dtype, scale):.1e}), error "
                             f"{_n(best[1])}")
    checks = pick(rows, kind="gradcheck")
    check_text = ""
    if checks:
        rate = {t: (sum(r["passed"] for r in pick(checks, dtype=t)), len(pick(checks, dtype=t)))
                for t in ("float64", "float32")}
        d_checks = ", ".join(str(x) for x in sorted({r["d"] for r in checks}))
        check_text = f"""

**ma.gradcheck with PyTorch's default tolerances** (eps = 1e-6, atol = 1e-5, rtol =
1e-3) passes {rate['float64'][0]} of {rate['float64'][1]} checks in float64 and
{rate['float32'][0]} of {rate['float32'][1]} in float32 (every scaling, d = {d_checks}).
In float32 the round-off alone is about u/h = 6e-8 / 1e-6, 6% of the derivative. Gradient
checks belong in float64, which is why `ma.gradcheck` casts its inputs to float64 (here
the checked function casts them back to float32 inside, to show what happens otherwise)."""
    return _prose(f"""
Every entry of q, k and v is moved by +h and by -h in turn, the forward pass is rerun in
the same dtype, and (f(x + h) - f(x - h)) / 2h is compared with the hand-written backward.
The error is ||numerical - analytical|| / ||analytical||, over the three gradients.

**Theory.** A central difference makes two errors: truncation, about h^2 f'''/6, which
shrinks with h, and round-off, about u f / h (u the unit round-off: 1.1e-16 in float64,
6e-8 in float32), which grows as h shrinks. On log-log axes their sum is a V, with its
bottom near h = (3u)^(1/3) and an error near u^(2/3) (Nocedal & Wright, section 8.1):
7e-6 and 2e-11 in float64, 6e-3 and 1.5e-5 in float32. That assumes f and f''' of similar
size. Attention sees q and k only through the scores c q.k, so a step h in q is a step c h
in the scores: f''' carries a factor c^3 and the best h is (3u)^(1/3) / c, which is
(3u)^(1/3) unscaled and sqrt(d) times more scaled. The best error does not depend on c.

**What the figure shows** (d = {d}). {'; '.join(found)}. Each V has a left branch of
slope 2 (truncation) and a right branch of slope -1 (round-off); the dotted lines mark
(3u)^(1/3) / c. Unscaled, the scores are sqrt(d) times larger, the truncation branch sits
higher, and the bottom is at a smaller h. A softmax that is close to saturation also has
a larger third derivative, so the unscaled V bottoms out higher.{check_text}""")


def _section_4(rows) -> str:
    ds = sorted({r["d"] for r in rows})
    big = ds[-1]
    h = rows[0]["h"]
    worst_sqrt = max(r["bad_entry_fraction"] for r in pick(rows, scaling="sqrt"))
    low = next((d for d in ds if d >= 256), ds[0])

    def bad(d):
        return _n(average(rows, "bad_entry_fraction", d=d, scaling="none"), "%")

    return _prose(f"""
Element by element: every entry q_ie is moved by +-h (h = {h:g}, float64), the forward
pass rerun, and the numerical derivative compared with the hand-written backward. An entry
counts as wrong when its relative error |a - n| / max(|a|, |n|) is above {BAD:g} (CS231n's
limit of the acceptable).

**What the figure shows.** Left: scaled, at most {_n(worst_sqrt, '%')} of the entries look
wrong (at large d a few entries happen to be near zero); unscaled, {bad(low)} at d = {low}
and {bad(big)} at d = {big}. Middle: the norm-wise error of the whole gradient stays tiny,
about 1e-9 to 1e-8, scaled or not. Right: why. A central difference is only good to about
u f / h, around 1e-10 here, in absolute terms, whatever the size of the true derivative.
Unscaled, the typical entry of dq sinks towards and below 1e-6 as d grows (the dead
gradients of experiment 2); below that, the finite-difference noise is more than {BAD:g}
of the entry.

**What it means.** The backward pass is right. The entries flagged are those whose true
value is below the finite-difference noise floor: there the numerical side is noise, not
the analytical one. A student who gradient-checks unscaled attention at large d and sees
many failing entries has not found a bug. Look at the size of the failing entries and at
the norm-wise error, and check again with the scale (or a small d) before hunting for one.
The over-scaled c = 1/d shows a little of the same effect, for the same reason: its
gradients are small too.""")


def _section_5(rows) -> str:
    naive = pick(rows, kind="naive_softmax")
    flash = pick(rows, kind="flash")
    ds = sorted({r["d"] for r in naive})

    def first(dtype):
        return next((d for d in ds if (average(naive, "nan_row_fraction", d=d, scaling="none",
                                               dtype=dtype) or 0) > 0), None)

    worst = max((r["flash_max_error"] for r in flash), default=None)
    at_big = average(naive, "nan_row_fraction", d=ds[-1], scaling="none", dtype="float32")
    return _prose(f"""
softmax(s) = exp(s) / sum exp(s) does not change when the row max is subtracted from every
score, but without it exp overflows to inf beyond about 11 in float16, 88 in float32 and
709 in float64, and then inf / inf = NaN. The scores are computed in float64 and rounded to
each dtype, so that only the softmax differs.

**What the figure shows.** Left: unscaled, the largest of {naive[0]['n_keys']} scores is
about 2.6 sqrt(d). In float32 the first NaN rows appear at d = {first('float32') or '-'},
and at d = {ds[-1]} {_n(at_big, '%')} of the rows are NaN; in float16 they start at
d = {first('float16') or '-'}. Scaled scores stay within a few units and never overflow,
and with the max subtracted no row is NaN anywhere, scaled or not. Right: flash attention
never holds a whole row of scores. It keeps a running max m and a running sum, and
rescales the sum by exp(m_old - m_new) whenever the max grows (the online softmax of
Milakov & Gimelshein 2018). In float64 it agrees with the dense softmax to {_n(worst)} of
the largest output at every d, unscaled included: rescaling on the fly is as exact as
subtracting the max up front.""")


def _section_6(rows) -> str:
    runs = pick(rows, kind="run")
    sweeps = pick(rows, kind="sweep")
    ds = sorted({r["d"] for r in sweeps})
    seeds = len({r["seed"] for r in sweeps})
    sgd = ", ".join(f"{x:g}" for x in LEARNING_RATES["sgd"])
    adam = ", ".join(f"{x:g}" for x in LEARNING_RATES["adam"])
    initial = np.mean([r["initial_loss"] for r in runs])
    findings, close, never = [], [], []
    for d in ds:
        for opt in ("sgd", "adam"):
            ratio = sensitivity_ratio(rows, d, opt)
            if ratio is None:
                continue
            name = "SGD" if opt == "sgd" else "Adam"
            best = {s: average(sweeps, "best_loss", d=d, optimizer=opt, scaling=s)
                    for s in ("sqrt", "none")}
            trained = {s: average(sweeps, "trained_fraction", d=d, optimizer=opt, scaling=s)
                       for s in ("sqrt", "none")}
            findings.append(f"d = {d} with {name}: sensitivity {_n(ratio, 'x')} the scaled "
                            f"one; {_n(trained['sqrt'], '%')} of the learning rates train the "
                            f"scaled head, {_n(trained['none'], '%')} the unscaled one (best "
                            f"loss {_n(best['sqrt'])} against {_n(best['none'])})")
            if best["none"] <= best["sqrt"] + TRAINED:
                close.append(f"d = {d} with {name}")
            if trained["none"] == 0:
                never.append(f"d = {d} with {name}")
    verdict = []
    if close:
        verdict.append(f"That happens here for {', '.join(close)}.")
    if never:
        verdict.append(f"Here, from unit-variance q and k, the unscaled head does not get that "
                       f"far for {', '.join(never)}: no learning rate of the sweep trains it. "
                       "Its attention is saturated on arbitrary keys from the first step "
                       "(experiment 1), and the gradients that should teach it which key to "
                       "read are dead (experiment 2). Its sensitivity is then measured from its "
                       "own best loss, itself poor, and can even come out smaller than the "
                       "scaled one: read it together with the best loss and the fraction of "
                       "learning rates that train.")
    return _prose(f"""
**Task.** Associative recall: a sequence of {sweeps[0]['n_pairs']} (key, value) pairs of
symbols, then a query that repeats one of the keys; the answer is the value stored with
it. One attention head solves it by attending from the query to the matching key, so the
task rewards sharp attention. **Model.** Every symbol has a learned query, key and value
vector of dimension d, of unit variance at initialization as everywhere above;
logits = softmax(c q k^T) v Wo and a cross-entropy loss (about {initial:.1f} at
initialization). Float32, batches of 32, {runs[0]['steps']} steps, {seeds} seeds; SGD with
learning rates {sgd}, Adam with {adam}; both scalings start from the same parameters and
see the same batches.

**Learning-rate sensitivity** (Wortsman et al. 2023): over the sweep, the mean of
min(final loss, initial loss) minus the best final loss; a run that diverges counts as
the initial loss. It is the price of a poorly chosen learning rate, relative to the best
one of the same setup.

**What the figure shows.** {'; '.join(findings)}.

**How to read it.** Judge a setup by its sensitivity, not by its best loss alone: on a
task that rewards sharp attention, a well-tuned unscaled run can match the scaled one,
and then only the sensitivity tells them apart. {' '.join(verdict)}""")


SECTIONS = {1: _section_1, 2: _section_2, 3: _section_3, 4: _section_4, 5: _section_5,
            6: _section_6}


def markdown_report(rows, figures: dict, config: dict, timings: dict) -> str:
    """The whole report.md, for the experiments present in rows."""
    parts = [_setup(config, timings)]
    key = _key_numbers(rows)
    if key:
        parts.append(key)
    for number in sorted({r["experiment"] for r in rows}):
        mine = pick(rows, experiment=number)
        section = [f"## {number}. {TITLES[number]}"]
        if number in figures:
            section.append(f"![{FIGURE_NOTES[number]}]({figures[number]})")
        else:
            section.append("_(no figure: matplotlib is not installed)_")
        section.append(SECTIONS[number](mine))
        section.append(TABLES[number](mine, markdown=True))
        if number in timings:
            section.append(f"_Computed in {timings[number]:.1f} s._")
        parts.append("\n\n".join(section))
    parts.append(_reproduce(config))
    return "\n\n".join(parts) + "\n"


def _reproduce(config) -> str:
    return "## Reproducing and reusing\n\n" + "\n".join([
        f"    minattn scaling{' --quick' if config.get('quick') else ''}   # this report",
        "    minattn scaling --only 2,4     # some experiments only",
        "    minattn scaling --resume       # continue an interrupted run",
    ]) + "\n\n" + _prose("""
`results.json` is a list of rows, one per measurement, with `experiment` (1 to 6), `d`,
`scaling` (`sqrt`, `none`, `linear`), `dtype`, `seed` and the metrics (`score_std`,
`entropy_mean`, `entropy_median`, `max_weight_mean`, `saturated_fraction`,
`jacobian_fro_median`, `grad_q_median`, `grad_q_mean`, `grad_k_median`, `h`, `rel_error`,
`bad_entry_fraction`, `nan_row_fraction`, `lr_sensitivity`, ...). The same rows come from
the functions of `minattn.experiments`, e.g. `score_spread(d_values=(64, 512))`.

**References.** Vaswani et al. 2017, *Attention Is All You Need*, section 3.2.1. Nocedal &
Wright, *Numerical Optimization*, section 8.1. The CS231n notes on gradient checks. Milakov
& Gimelshein 2018, *Online normalizer calculation for softmax*. Dao et al. 2022,
*FlashAttention*. Zhai et al. 2023, *Stabilizing Transformer Training by Preventing
Attention Entropy Collapse*. Wortsman et al. 2023, *Small-scale proxies for large-scale
Transformer training instabilities*.""")
