"""Experiment 6: how sensitive training is to the learning rate, scaled against unscaled.

The task is associative recall: a sequence holds ``n_pairs`` (key, value) pairs with
distinct keys drawn from ``n_symbols`` symbols, then a query that repeats one of the keys;
the answer is the value stored with it. One attention head solves it by making the query
attend to the matching key and reading out its value: the scores must learn to single out
one position among ``n_pairs``.

Model (all parameters trained):

    q = Q[query],  k_j = K[key_j],  v_j = V[value_j]     (learned d-vectors per symbol)
    out = softmax(c q k^T) v,   logits = out Wo,   loss = cross-entropy(logits, answer)

with c = 1/sqrt(d) (scaled) or 1 (unscaled). Learning-rate sensitivity follows Wortsman et
al. 2023: over a sweep of learning rates, the mean of min(final loss, initial loss) minus
the best final loss; a diverged run counts as the initial loss. A small number means that
most learning rates do about as well as the best one.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import functional as F
from ..core import no_grad
from ..nn import Module, Parameter
from ..optim import SGD, Adam
from .common import (
    Experiment,
    Part,
    generator,
    make_row,
    quiet_overflow,
    scale_for,
    scaling_names,
    scalings_in,
    tick,
)
from .e1_spread import normal_scores_theory
from .e2_gradients import jacobian_theory
from .plots import COLORS, group_by, plot_line
from .tables import KeyNumbers, average, fmt, format_table, legend, listing, pick, prose

LEARNING_RATES = {"sgd": (0.03, 0.1, 0.3, 1.0, 3.0), "adam": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)}
TRAINED = 0.1  # a run whose final loss is below this (nats) has learned the task
SEVERAL = 2.0  # "several times more sensitive": unscaled over scaled, at least this


class RecallHead(Module):
    """One attention head over (key, value) pairs: logits = softmax(c q k^T) v Wo."""

    def __init__(self, n_symbols: int, d: int, scale: float, rng: np.random.Generator,
                 init_std: float = 1.0, device: str = "cpu", dtype: str = "float32"):
        super().__init__()
        self.scale = scale

        def init(*shape, std):
            data = (rng.standard_normal(shape) * std).astype(dtype)
            return Parameter(backend.to_device(data, device))

        # One learned d-vector per symbol for each role: the rows of W_q E, W_k E and W_v E
        # of a head with projections, trained directly (unit variance, as after a
        # variance-preserving projection of unit-variance embeddings).
        self.query_embed = init(n_symbols, d, std=init_std)  # Q
        self.key_embed = init(n_symbols, d, std=init_std)  # K
        self.value_embed = init(n_symbols, d, std=1.0)  # V
        self.w_out = init(d, n_symbols, std=1 / math.sqrt(d))  # Wo

    def forward(self, query, keys, values):
        """query (B,), keys and values (B, n) of symbol ids -> logits (B, n_symbols)."""
        q = self.query_embed[query][:, None, :]  # (B, 1, d)
        k = self.key_embed[keys]  # (B, n, d)
        v = self.value_embed[values]  # (B, n, d)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale, impl="fused")  # (B, 1, d)
        return out[:, 0, :] @ self.w_out  # (B, n_symbols)


def recall_batch(rng: np.random.Generator, batch: int, n_pairs: int, n_symbols: int,
                 device: str = "cpu"):
    """(query, keys, values, answer): distinct keys per sequence, the query one of them."""
    keys = np.argsort(rng.random((batch, n_symbols)), axis=1)[:, :n_pairs]  # (B, n) distinct
    values = rng.integers(0, n_symbols, (batch, n_pairs))  # (B, n)
    where = rng.integers(0, n_pairs, batch)  # (B,): the position asked for
    rows = np.arange(batch)
    query, answer = keys[rows, where], values[rows, where]  # (B,), (B,)
    return tuple(backend.to_device(x, device) for x in (query, keys, values, answer))


def train_recall(d: int, scaling: str, optimizer: str, lr: float, seed: int, steps: int = 200,
                 batch: int = 32, n_pairs: int = 8, n_symbols: int = 16, eval_batch: int = 1024,
                 init_std: float = 1.0, dtype: str = "float32", device: str = "cpu") -> dict:
    """Train one head with SGD or Adam; return the initial and final loss on a fixed
    evaluation batch (the same one for every learning rate of a seed) and whether it
    diverged. Model and data depend only on (d, seed), not on the scaling or the learning
    rate, so every run of a sweep starts from the same point."""
    rng = generator(6, d, seed)
    model = RecallHead(n_symbols, d, scale_for(scaling, d), rng, init_std, device, dtype)
    evaluation = recall_batch(rng, eval_batch, n_pairs, n_symbols, device)
    data_rng = np.random.default_rng([seed, 6, d, 1])
    params = list(model.parameters())
    opt = SGD(params, lr=lr) if optimizer == "sgd" else Adam(params, lr=lr)

    def evaluate() -> float:
        with no_grad():
            return F.cross_entropy(model(*evaluation[:3]), evaluation[3]).item()

    initial = evaluate()
    diverged = False
    with quiet_overflow(backend.get_array_module(model.w_out.data)):  # a diverging run overflows
        for _ in range(steps):
            *inputs, answer = recall_batch(data_rng, batch, n_pairs, n_symbols, device)
            loss = F.cross_entropy(model(*inputs), answer)
            if not math.isfinite(loss.item()):
                diverged = True
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        final = math.nan if diverged else evaluate()
    return {"initial_loss": initial, "final_loss": final,
            "diverged": diverged or not math.isfinite(final)}


def counted(run: dict) -> float:
    """A run's final loss as the sensitivity counts it: a diverged run, or one that ends
    above where it started, counts as the loss at initialization."""
    final = run["final_loss"]
    if final is None or not math.isfinite(final):
        return run["initial_loss"]
    return min(final, run["initial_loss"])


def sensitivity(final_losses, initial_loss: float) -> float:
    """Wortsman et al. 2023: mean over learning rates of min(loss, initial) - best loss."""
    capped = [min(x, initial_loss) if math.isfinite(x) else initial_loss for x in final_losses]
    return float(np.mean(capped) - min(capped))


def lr_sensitivity(d_values=(64, 512), scalings=("sqrt", "unscaled"), optimizers=("sgd", "adam"),
                   seeds=(0, 1, 2, 3, 4), learning_rates=LEARNING_RATES, steps: int = 200,
                   batch: int = 32, n_pairs: int = 8, n_symbols: int = 16, init_std: float = 1.0,
                   dtype: str = "float32", device: str = "cpu", progress=None) -> list[dict]:
    """Train over a sweep of learning rates; rows of ``kind="run"`` (one per training run,
    with final_loss) and of ``kind="sweep"`` (one per d, scaling, optimizer and seed, with
    lr_sensitivity, best_loss, the best learning rate, and trained_fraction: the fraction of
    learning rates whose final loss is below 0.1).

    >>> rows = lr_sensitivity(d_values=(64,), optimizers=("adam",), seeds=(0,), steps=50)
    """
    scalings = scaling_names(scalings)  # the old "none" is "unscaled"
    rows = []
    for d in d_values:
        for seed in seeds:
            for scaling in scalings:
                for optimizer in optimizers:
                    finals = []
                    for lr in learning_rates[optimizer]:
                        run = train_recall(d, scaling, optimizer, lr, seed, steps, batch,
                                           n_pairs, n_symbols, init_std=init_std, dtype=dtype,
                                           device=device)
                        finals.append(run["final_loss"])
                        rows.append(make_row(6, d, scaling, dtype, seed, kind="run",
                                             optimizer=optimizer, lr=lr, steps=steps, **run))
                        tick(progress)
                    best = int(np.nanargmin(finals)) if not all(map(math.isnan, finals)) else 0
                    rows.append(make_row(
                        6, d, scaling, dtype, seed, kind="sweep", optimizer=optimizer,
                        lr_sensitivity=sensitivity(finals, run["initial_loss"]),
                        best_loss=finals[best], best_lr=learning_rates[optimizer][best],
                        trained_fraction=np.mean([x < TRAINED for x in finals]),
                        initial_loss=run["initial_loss"], n_pairs=n_pairs,
                        n_symbols=n_symbols, steps=steps, batch=batch))
    return rows


# -- its table, figure, report section and key numbers --------------------------------------------


def sensitivity_ratio(rows, d: int, optimizer: str) -> float | None:
    """Unscaled over scaled learning-rate sensitivity at d (means over seeds), or None."""
    scaled = average(rows, "lr_sensitivity", experiment=6, kind="sweep", d=d,
                     optimizer=optimizer, scaling="sqrt")
    unscaled = average(rows, "lr_sensitivity", experiment=6, kind="sweep", d=d,
                       optimizer=optimizer, scaling="unscaled")
    if scaled is None or unscaled is None:
        return None
    return unscaled / scaled if scaled > 0 else math.inf


def table(rows, markdown=False) -> str:
    """One line per d and optimizer: sensitivity, best loss, learning rates that train."""
    sweeps = pick(rows, experiment=6, kind="sweep")
    body = []
    for d in sorted({r["d"] for r in sweeps}):
        for opt in ("sgd", "adam"):
            if not pick(sweeps, d=d, optimizer=opt):
                continue
            line = [str(d), "SGD" if opt == "sgd" else "Adam"]
            for s in ("sqrt", "unscaled"):
                line.append(fmt(average(sweeps, "lr_sensitivity", d=d, optimizer=opt,
                                        scaling=s)))
            line.append(fmt(sensitivity_ratio(rows, d, opt), "x"))
            for s in ("sqrt", "unscaled"):
                line.append(fmt(average(sweeps, "best_loss", d=d, optimizer=opt, scaling=s)))
            for s in ("sqrt", "unscaled"):
                line.append(fmt(average(sweeps, "trained_fraction", d=d, optimizer=opt,
                                        scaling=s), "%"))
            body.append(line)
    headers = ["d", "optimizer", "sens sqrt", "sens unscaled", "unscaled/sqrt", "best sqrt",
               "best unscaled", "train sqrt", "train unscaled"]
    return format_table(headers, body, markdown) + legend(
        "sens: learning-rate sensitivity (Wortsman et al. 2023), mean over seeds; best: best "
        "final loss of the sweep; train: learning rates whose final loss is below 0.1",
        markdown)


def panels(rows) -> list[tuple[int, str]]:
    """(d, optimizer) of each panel of the figure, in the order (a), (b), ..."""
    runs = [r for r in rows if r.get("kind") == "run"]
    return [(d, opt) for d in sorted({r["d"] for r in runs})
            for opt in ("sgd", "adam") if any(r["d"] == d and r["optimizer"] == opt
                                              for r in runs)]


OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam"}


def figure(plt, rows):
    """Final loss against the learning rate, one panel per d and optimizer, stacked."""
    runs = [r for r in rows if r.get("kind") == "run"]
    sweeps = [r for r in rows if r.get("kind") == "sweep"]
    where = panels(rows)
    fig, axes = plt.subplots(len(where), 1, figsize=(6.4, 2.9 * len(where) + 0.9),
                             squeeze=False)
    for ax, (d, opt), letter in zip(axes[:, 0], where, "abcdefgh"):
        mine = [r for r in runs if r["d"] == d and r["optimizer"] == opt]
        sens, top = [], 0.0
        for s in scalings_in(mine):
            own = [r for r in mine if r["scaling"] == s]
            initial = np.mean([r["initial_loss"] for r in own])  # the same for every lr
            groups = group_by(own, "lr")
            lrs = np.array(sorted(k[0] for k in groups))
            finals = [[counted(r) for r in groups[(lr,)]] for lr in lrs]
            plot_line(ax, lrs, [np.median(f) for f in finals], s)
            ax.fill_between(lrs, [min(f) for f in finals], [max(f) for f in finals],
                            color=COLORS[s], alpha=0.12, lw=0)
            ax.axhline(initial, color=COLORS[s], ls=":", lw=1.4, zorder=4)
            top = max(top, initial)
            value = average(sweeps, "lr_sensitivity", d=d, optimizer=opt, scaling=s)
            sens.append(f"{s} {fmt(value)}")
        ax.text(lrs[0], top * 1.04, "dotted: loss at initialization (worse or diverged runs "
                "count as it)", fontsize=9, va="bottom")
        ax.set_xscale("log")
        ax.set_xticks(lrs)
        ax.set_xticklabels([f"{x:g}" for x in lrs])
        ax.set_ylim(-0.05 * top, top * 1.28)
        ax.set_xlabel(f"learning rate ({OPTIMIZER_NAMES[opt]})")
        ax.set_ylabel("final loss")
        ax.set_title(f"({letter}) d = {d}, {OPTIMIZER_NAMES[opt]}; LR sensitivity: "
                     f"{', '.join(sens)}")
    labelled = [line for line in axes[0, 0].get_lines() if not line.get_label().startswith("_")]
    fig.legend(handles=labelled, loc="outside upper center", ncol=2,
               title="scale c (lines: median over seeds, bands: every seed)")
    return fig


def _setting(rows, d: int, opt: str) -> dict:
    """What the section and the key numbers say about one panel: per scaling, the mean
    sensitivity, best loss and fraction of learning rates that train, the learning rates
    swept, and the best one of each seed."""
    sweeps = pick(rows, experiment=6, kind="sweep", d=d, optimizer=opt)
    runs = pick(rows, experiment=6, kind="run", d=d, optimizer=opt)
    found = {"ratio": sensitivity_ratio(rows, d, opt),
             "lrs": sorted({r["lr"] for r in runs})}
    for s in ("sqrt", "unscaled"):
        found[s] = {metric: average(sweeps, metric, scaling=s)
                    for metric in ("lr_sensitivity", "best_loss", "trained_fraction")}
        found[s]["best_lrs"] = [r["best_lr"] for r in pick(sweeps, scaling=s)]
        found[s]["diverged"] = sum(bool(r["diverged"]) for r in pick(runs, scaling=s))
        found[s]["runs"] = len(pick(runs, scaling=s))
    return found


def section(rows) -> str:
    """Its section of report.md, with the numbers of this run."""
    runs = pick(rows, kind="run")
    sweeps = pick(rows, kind="sweep")
    seeds = len({r["seed"] for r in sweeps})
    n_pairs = sweeps[0]["n_pairs"]
    sgd = ", ".join(f"{x:g}" for x in LEARNING_RATES["sgd"])
    adam = ", ".join(f"{x:g}" for x in LEARNING_RATES["adam"])
    initial = {s: np.mean([r["initial_loss"] for r in pick(runs, scaling=s)])
               for s in ("sqrt", "unscaled")}
    findings, untrained, edges = [], [], []
    for (d, opt), letter in zip(panels(rows), "abcdefgh"):
        got = _setting(rows, d, opt)
        if got["ratio"] is None:
            continue
        a, b = got["sqrt"], got["unscaled"]
        name = f"d = {d} with {OPTIMIZER_NAMES[opt]}"
        diverged = (f"; {b['diverged']} of the {b['runs']} unscaled runs diverge"
                    if b["diverged"] else "")
        findings.append(
            f"({letter}) {name}: the unscaled sensitivity is {fmt(got['ratio'], 'x')} the "
            f"scaled one ({fmt(b['lr_sensitivity'])} against {fmt(a['lr_sensitivity'])}); "
            f"{fmt(a['trained_fraction'], '%')} of the learning rates train the scaled head "
            f"and {fmt(b['trained_fraction'], '%')} the unscaled one, whose best loss is "
            f"{fmt(b['best_loss'])} against {fmt(a['best_loss'])}{diverged}.")
        if b["trained_fraction"] == 0:
            untrained.append(name)
        if a["best_lrs"] and all(lr == got["lrs"][-1] for lr in a["best_lrs"]):
            edges.append((name, got["lrs"][-1], a["trained_fraction"] < 1))
    shows = ("Each panel gives the final loss at every learning rate (lines: median over "
             "seeds, bands: every seed); the dotted lines are each head's loss at "
             "initialization. " + " ".join(findings))
    if edges:
        shows += (" For " + listing(n for n, _, _ in edges) + ", every seed's best learning "
                  "rate for the scaled head is the largest of the sweep ("
                  + listing(f"{lr:g}" for _, lr, _ in edges) + "): a larger one might do "
                  "better still.")
        if any(slow for _, _, slow in edges):
            shows += (" There the smaller learning rates, whose runs are not trained after "
                      f"{runs[0]['steps']} steps, are what makes the scaled sensitivity large.")
    ds = sorted({d for d, _ in panels(rows)})
    entropy = {d: normal_scores_theory(n_pairs, math.sqrt(d))["entropy_median"] for d in ds}
    shrink = {d: jacobian_theory(n_pairs, 1.0) / jacobian_theory(n_pairs, math.sqrt(d))
              for d in ds}
    start = ("At initialization the unscaled scores have spread sqrt(d) ("
             + listing(f"{math.sqrt(d):.0f} at d = {d}" for d in ds) + f"). Over {n_pairs} "
             "keys, the normal-score model of experiments 1 and 2 gives the median row an "
             "entropy of " + listing(f"{fmt(entropy[d])} nats at d = {d}" for d in ds)
             + f" (uniform: ln {n_pairs} = {math.log(n_pairs):.2f}) and a median softmax "
             "Jacobian " + listing(f"{fmt(shrink[d])} times smaller than scaled at d = {d}"
                                   for d in ds) + ".")
    if all(h < math.log(n_pairs) / 4 for h in entropy.values()):
        start += (" Attention starts sharp, on a key picked by the random initialization, "
                  "and the gradient that should move it to the matching key goes through "
                  "that smaller Jacobian.")
    if untrained and len(untrained) == len(findings):
        read = (f"Here no learning rate of the sweep trains the unscaled head, for any d or "
                "optimizer. The sensitivity ratio then compares a trained setup with an "
                "untrained one: the unscaled sensitivity cannot exceed the gap between its "
                "initial loss and its own poor best loss, so a small value says nothing of "
                "robustness. Read the sensitivity together with the best loss and the "
                f"fraction of learning rates that train. {start}")
    elif untrained:
        read = (f"For {listing(untrained)} no learning rate of the sweep trains the unscaled "
                "head, so its sensitivity there is measured from its own poor best loss: read "
                f"it together with the best loss. {start}")
    else:
        read = ("Every setting has learning rates that train the unscaled head too, so the "
                "sensitivities compare two trained setups: the larger one pays more for a "
                "poorly chosen learning rate.")
    n_symbols = sweeps[0].get("n_symbols")  # rows of an earlier minattn do not say
    batches = f"batches of {sweeps[0]['batch']}, " if sweeps[0].get("batch") else ""
    uniform = (f", against ln {n_symbols} = {math.log(n_symbols):.2f} for a uniform guess"
               if n_symbols else "")
    return prose(f"""
**Task.** Associative recall: a sequence of {n_pairs} (key, value) pairs of
symbols, then a query that repeats one of the keys; the answer is the value stored with
it. One attention head solves it by attending from the query to the matching key, so the
task rewards sharp attention on the right key. **Model.** Every symbol has a learned
query, key and value vector of dimension d, of unit variance at initialization as
everywhere above; logits = softmax(c q k^T) v Wo and a cross-entropy loss (at
initialization {initial['sqrt']:.2f} scaled and {initial['unscaled']:.2f} unscaled{uniform}).
{runs[0]['dtype'].capitalize()}, {batches}{runs[0]['steps']} steps, {seeds} seeds; SGD with
learning rates {sgd}, Adam with {adam}; both scalings start from the same parameters and
see the same batches. A run trains when its final loss is below {TRAINED:g}.

**Learning-rate sensitivity** (Wortsman et al. 2023): over the sweep, the mean of
min(final loss, initial loss) minus the best final loss; a run that diverges counts as
the initial loss. It is the price of a poorly chosen learning rate, relative to the best
one of the same setup.

**What the figure shows.** {shows}

**How to read it.** {read}""")


def key_numbers(rows) -> KeyNumbers:
    """What experiment 6 measured against what theory expects."""
    found = KeyNumbers()
    for d in (64, 512):
        for opt in ("sgd", "adam"):
            got = _setting(rows, d, opt)
            if got["ratio"] is None:
                continue
            trains = got["unscaled"]["trained_fraction"] > 0
            if not trains:
                note = (f"no learning rate trains the unscaled head (best loss "
                        f"{fmt(got['unscaled']['best_loss'])} against "
                        f"{fmt(got['sqrt']['best_loss'])} scaled), so its sensitivity is "
                        "measured from its own poor best loss; read it with the best loss")
            else:
                note = f"only {fmt(got['ratio'], 'x')}"
            found.add(f"LR sensitivity at d={d}, {opt}, unscaled / scaled", got["ratio"],
                      f"at least {SEVERAL:g}x (several times), both heads trained by some "
                      "learning rate", trains and got["ratio"] >= SEVERAL, style="x", note=note)
    return found


EXPERIMENT = Experiment(
    6, "training", "Training sensitivity to the learning rate",
    heading="Training: sensitivity to the learning rate",
    parts=[Part(lr_sensitivity, quick=dict(d_values=(64,), seeds=(0, 1), steps=150),
                full=dict(d_values=(64, 512), seeds=(0, 1, 2, 3, 4), steps=200),
                loops=("d_values", "seeds", "scalings", "optimizers", "learning_rates"))],
    table=table, figure=figure, figure_file="fig6_training.png",
    figure_note="Final loss against the learning rate",
    section=section, key_numbers=key_numbers)
