"""Experiment 4: dead gradients look like wrong gradients.

A saturated attention row passes back almost nothing: its entries of dq are tiny, far
below what central differences can resolve. A finite difference is only good to about
u |f| / h in absolute terms (u the unit round-off): with h = 1e-6 in float64 that is a few
times 1e-10, whatever the size of the true derivative. An entry of dq near 1e-12 is
therefore compared with numerical noise, and its element-wise relative error comes out
large, although the backward pass is right and the norm-wise error of the whole gradient
stays tiny. This is what a student sees when gradient-checking unscaled attention at
large d, and it is not a bug.

The analytical dq is minattn's hand-written backward (``impl="fused"``); the numerical one
perturbs each entry of q by +-h and reruns the forward pass, all in float64.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from ..core import no_grad, tensor
from .common import D_VALUES, SCALINGS, generator, make_row, normal, scale_for, tick

BAD = 1e-4  # an entry whose relative error is above this counts as "wrong"


def numerical_dq(q, k, v, dout, scales, h: float) -> list:
    """d<dout, attention(q, k, v)>/dq by central differences, one entry at a time, for each
    scale in ``scales``.

    Moving q_ie changes only output row i, so row i is done in one batched forward call:
    the d copies of q_i, each with one entry moved by +h (then -h), are the query rows.
    """
    xp = backend.get_array_module(q)
    L, d = q.shape
    moves = h * xp.eye(d, dtype=q.dtype)  # (d, d): row e moves entry e by h
    shifted = xp.empty_like(moves)  # (d, d): reused for every row and sign
    grads = [xp.empty_like(q) for _ in scales]  # (L, d) each
    with no_grad():
        for i in range(L):
            phi = [[] for _ in scales]  # per scale: phi(+h), phi(-h)
            for sign in (1, -1):
                xp.add(q[i], sign * moves, out=shifted)  # d perturbed copies of q_i
                for s, scale in enumerate(scales):
                    out = F.scaled_dot_product_attention(shifted, k, v, scale=scale,
                                                         impl="fused").data  # (d, dv)
                    phi[s].append(out @ dout[i])  # (d,): <dout_i, out_i> for each copy
            for s in range(len(scales)):
                grads[s][i] = (phi[s][0] - phi[s][1]) / (2 * h)
    return grads


def dead_gradients(d_values=D_VALUES, scalings=SCALINGS, seeds=(0, 1), n_queries: int = 8,
                   n_keys: int = 128, value_dim: int = 64, h: float = 1e-6,
                   device: str = "cpu", progress=None) -> list[dict]:
    """Element-wise and norm-wise error of dq against central differences; one row per d,
    scaling and seed.

    Rows hold bad_entry_fraction (entries of dq whose relative error |a - n| / max(|a|,
    |n|) is above 1e-4), normwise_error (||a - n|| / ||n|| over all of dq),
    max_entry_error, and the median size of the entries, grad_entry_median.

    >>> rows = dead_gradients(d_values=(1024,), scalings=("sqrt", "none"), seeds=(0,))
    >>> rows[0]["bad_entry_fraction"] == 0 < rows[1]["bad_entry_fraction"]
    True
    """
    rows = []
    for d in d_values:
        for seed in seeds:
            rng = generator(4, d, seed)
            q = normal(rng, (n_queries, d), device)  # (L, d)
            k = normal(rng, (n_keys, d), device)  # (n, d)
            v = normal(rng, (n_keys, value_dim), device)  # (n, dv)
            dout = normal(rng, (n_queries, value_dim), device)  # (L, dv), random upstream
            scales = [scale_for(scaling, d) for scaling in scalings]
            numerical = numerical_dq(q, k, v, dout, scales, h)  # one (L, d) per scaling
            for scaling, scale, num in zip(scalings, scales, numerical):
                qt = tensor(q, requires_grad=True)
                F.scaled_dot_product_attention(qt, k, v, scale=scale,
                                               impl="fused").backward(dout)
                analytical = backend.to_numpy(qt.grad.data)  # (L, d)
                num = backend.to_numpy(num)  # (L, d)
                diff = np.abs(analytical - num)
                size = np.maximum(np.abs(analytical), np.abs(num))
                rel = np.divide(diff, size, out=np.zeros_like(diff), where=size > 0)
                rows.append(make_row(
                    4, d, scaling, "float64", seed, h=h, n_keys=n_keys, n_queries=n_queries,
                    bad_entry_fraction=(rel > BAD).mean(), max_entry_error=rel.max(),
                    normwise_error=np.linalg.norm(analytical - num) / np.linalg.norm(num),
                    grad_entry_median=np.median(np.abs(analytical))))
            tick(progress)
    return rows
