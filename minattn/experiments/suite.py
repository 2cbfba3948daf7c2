"""The six experiments together: the list ``minattn scaling`` runs, and what is made from all
their rows at once: the terminal tables, the figures, and report.md with its key numbers.

Each experiment's own table, figure and section are in its module (``e1_spread`` to
``e6_training``); here they are put in order, one after another.
"""

from __future__ import annotations

import platform
import time

from . import e1_spread, e2_gradients, e3_stepsize, e4_dead, e5_overflow, e6_training, plots
from .common import upgrade_rows
from .tables import format_table, pick, prose

EXPERIMENTS = [e1_spread.EXPERIMENT, e2_gradients.EXPERIMENT, e3_stepsize.EXPERIMENT,
               e4_dead.EXPERIMENT, e5_overflow.EXPERIMENT, e6_training.EXPERIMENT]
BY_NUMBER = {e.number: e for e in EXPERIMENTS}
TABLES = {e.number: e.table for e in EXPERIMENTS}


def terminal_table(number: int, rows) -> str:
    return TABLES[number](upgrade_rows(rows), markdown=False)


def key_numbers(rows) -> list[tuple[str, str, str, str]]:
    """(what, measured, expected, holds) for the claims of the issue that these rows can
    check; holds is "yes", or "**no**" and what the rows show instead."""
    rows = upgrade_rows(rows)
    return [found for e in EXPERIMENTS for found in e.key_numbers(rows)]


# -- figures --------------------------------------------------------------------------------------


def make_figures(rows: list[dict], folder, say=print) -> dict[int, str]:
    """Draw the figure of every experiment present in rows; {number: file name}."""
    why = plots.matplotlib_missing()
    if why:
        say(why)
        return {}
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    drawn = {}
    rows = upgrade_rows(rows)
    for experiment in EXPERIMENTS:
        mine = [r for r in rows if r["experiment"] == experiment.number]
        if not mine:
            continue
        with plt.rc_context(plots.STYLE):
            fig = experiment.figure(plt, mine)
            fig.savefig(f"{folder}/{experiment.figure_file}", dpi=plots.DPI)
            plt.close(fig)
        drawn[experiment.number] = experiment.figure_file
    return drawn


# -- report.md: the opening, the key numbers, one section per experiment --------------------------


def _kernels(config) -> str:
    """Which kernels computed which experiment, and why some ran on the plain NumPy twins."""
    numbers = config.get("experiments") or [e.number for e in EXPERIMENTS]
    used = config.get("kernels") or {str(n): BY_NUMBER[n].kernels() for n in numbers}
    groups = {}
    for n in numbers:
        groups.setdefault(used.get(str(n), "fast"), []).append(n)
    names = {"fast": "the fast kernels (`fast`: numba where it pays off)",
             "numpy": "the plain NumPy twins (`numpy`)",
             "reference": "the plain reference code (`reference`)"}
    said = "; ".join(f"experiment{'s' if len(ns) > 1 else ''} {_and(ns)} on {names[k]}"
                     for k, ns in groups.items())
    plain = [n for n in numbers if BY_NUMBER[n].plain_kernels_why]
    why = (f" Experiment{'s' if len(plain) > 1 else ''} {_and(plain)} always "
           f"run{'' if len(plain) > 1 else 's'} on plain kernels: "
           f"{BY_NUMBER[plain[0]].plain_kernels_why}." if plain else "")
    fast = groups.get("fast", [])
    rerun = (f" The fast kernels' compiled twins are held equal to the plain code up to "
             f"rounding (tests/kernels), so a rerun's rows of experiment"
             f"{'s' if len(fast) > 1 else ''} {_and(fast)} can differ from these in the last "
             "bits" + (f"; those of experiment{'s' if len(plain) > 1 else ''} {_and(plain)} "
                       "come out the same, bit for bit" if plain else "") + "." if fast else "")
    return f"Kernels (`minattn.kernels.use`): {said}.{why}{rerun}"


def _and(numbers) -> str:
    words = [str(n) for n in numbers]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _setup(rows, config, timings) -> str:
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
    ds = sorted({r["d"] for r in rows})
    text += ["", prose(f"""
Attention scores a query q against each key k with s = c q.k, turns each row of scores
into weights p = softmax(s), and returns the weighted sum of the values. The experiments
compare three choices of the factor c, for q and k of dimension d from {ds[0]} to
{ds[-1]}:"""), "",
             "| scaling (in results.json) | c | |", "|---|---|---|",
             "| `sqrt` | 1/sqrt(d) | the standard (Vaswani et al. 2017) |",
             "| `unscaled` | 1 | no scale |", "| `linear` | 1/d | scaled too much |", "",
             prose("""
The entries of q and k are independent, with mean 0 and variance 1: what a layer norm
followed by a variance-preserving projection gives at initialization. A number is an
average over seeds unless it says otherwise ("worst seed", "worst d", "every seed");
medians and percentiles are taken over the rows (queries) of an attention matrix.
`results.json` holds every measurement, one row each, with the seed its inputs were drawn
from: the inputs depend on that seed alone, never on what ran before, so a rerun, a
resumed run or a subset of the sweep computes from the same inputs."""),
             "", _kernels(config)]
    return "\n".join(text)


def _key_numbers(rows) -> str:
    found = key_numbers(rows)
    if not found:
        return ""
    text = format_table(["quantity", "measured", "expected", "holds?"], [list(f) for f in found],
                        markdown=True).replace("|---:|---:|---:|---:|", "|:---|---:|:---|:---|")
    failed = [what for what, _, _, holds in found if holds != "yes"]
    if failed:
        summary = (f"{len(found) - len(failed)} of {len(found)} expectations hold in this "
                   f"run; the {len(failed)} that do not are marked **no**, with what the rows "
                   "show instead.")
    else:
        summary = f"All {len(found)} expectations hold in this run."
    return ("## The key numbers\n\n" + prose("""
Each expected value is a theory value, with the tolerance it is held to, or a condition;
the last column says whether the measured value meets it.""") + "\n\n" + text + "\n\n"
            + summary)


def markdown_report(rows, figures: dict, config: dict, timings: dict) -> str:
    """The whole report.md, for the experiments present in rows."""
    rows = upgrade_rows(rows)  # rows saved by an earlier minattn may say "none"
    parts = [_setup(rows, config, timings)]
    key = _key_numbers(rows)
    if key:
        parts.append(key)
    for number in sorted({r["experiment"] for r in rows}):
        mine = pick(rows, experiment=number)
        experiment = BY_NUMBER[number]
        section = [f"## {number}. {experiment.heading}"]
        if number in figures:
            section.append(f"![{experiment.figure_note}]({figures[number]})")
        else:
            section.append("_(no figure: matplotlib is not installed)_")
        section.append(experiment.section(mine))
        section.append(experiment.table(mine, markdown=True))
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
    ]) + "\n\n" + prose("""
`results.json` is a list of rows, one per measurement, with `experiment` (1 to 6), `d`,
`scaling` (`sqrt`, `unscaled`, `linear`), `dtype`, `seed` and the metrics (`score_std`,
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
