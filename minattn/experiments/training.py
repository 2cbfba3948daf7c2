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
from .common import generator, make_row, quiet_overflow, scale_for, tick

LEARNING_RATES = {"sgd": (0.03, 0.1, 0.3, 1.0, 3.0), "adam": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)}
TRAINED = 0.1  # a run whose final loss is below this (nats) has learned the task


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


def sensitivity(final_losses, initial_loss: float) -> float:
    """Wortsman et al. 2023: mean over learning rates of min(loss, initial) - best loss."""
    capped = [min(x, initial_loss) if math.isfinite(x) else initial_loss for x in final_losses]
    return float(np.mean(capped) - min(capped))


def lr_sensitivity(d_values=(64, 512), scalings=("sqrt", "none"), optimizers=("sgd", "adam"),
                   seeds=(0, 1, 2, 3, 4), learning_rates=LEARNING_RATES, steps: int = 200,
                   batch: int = 32, n_pairs: int = 8, n_symbols: int = 16, init_std: float = 1.0,
                   dtype: str = "float32", device: str = "cpu", progress=None) -> list[dict]:
    """Train over a sweep of learning rates; rows of ``kind="run"`` (one per training run,
    with final_loss) and of ``kind="sweep"`` (one per d, scaling, optimizer and seed, with
    lr_sensitivity, best_loss, the best learning rate, and trained_fraction: the fraction of
    learning rates whose final loss is below 0.1).

    >>> rows = lr_sensitivity(d_values=(64,), optimizers=("adam",), seeds=(0,), steps=50)
    """
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
                        initial_loss=run["initial_loss"], n_pairs=n_pairs, steps=steps))
    return rows
