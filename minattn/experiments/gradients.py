"""Experiment 2: the softmax Jacobian and the gradients that flow back to q and k.

For one row p = softmax(s), ds = J^T dp with J = diag(p) - p p^T. Its size says how much
gradient the softmax lets through: ||J||_F is at most 1/2 (a two-way tie), sqrt(n-1)/n for a
uniform row, and 0 for a one-hot row. Through attention, dq = c dS K and dk = c dS^T Q with
dS = P * (dP - rowsum(dP * P)): the scale c appears once more in the chain rule.

The Jacobian norms are plain float64 array math; the gradients of q and k come from
minattn's hand-written attention backward (``impl="fused"``), driven by a random upstream
gradient.
"""

from __future__ import annotations

from .. import backend
from .. import functional as F
from ..core import tensor
from .common import (
    D_VALUES,
    SCALINGS,
    generator,
    make_row,
    normal,
    quantiles,
    row_norms,
    scale_for,
    softmax_rows,
    tick,
)


def jacobian_fro(probs):
    """||diag(p) - p p^T||_F for every row p of probs, summed from non-negative terms.

    J_ii = p_i (1 - p_i) and J_ij = -p_i p_j, so ||J||_F^2 = sum_i p_i^2 (1 - p_i)^2 +
    sum_i p_i^2 sum_{j != i} p_j^2. Both 1 - p_i and the inner sum are summed from the
    other entries of the row (a product with 1 - I), never as 1 - p_i: for a saturated row,
    where 1 - p_max ~ 1e-12, the subtraction would keep no correct digit.
    """
    xp = backend.get_array_module(probs)
    n = probs.shape[-1]
    others = 1 - xp.eye(n, dtype=probs.dtype)  # (n, n): 1 off the diagonal, 0 on it
    rest = probs @ others  # (..., n): sum_{j != i} p_j = 1 - p_i
    p2 = probs * probs  # (..., n)
    squares = p2 * rest * rest + p2 * (p2 @ others)  # (..., n): row i of J, squared, summed
    return xp.sqrt(squares.sum(axis=-1))  # (...,)


def gradient_flow(d_values=D_VALUES, scalings=SCALINGS, seeds=(0, 1, 2), n_keys: int = 128,
                  n_queries: int = 256, value_dim: int = 64, device: str = "cpu",
                  progress=None) -> list[dict]:
    """Softmax Jacobian norms and per-row gradient norms of q and k; one row per d, scaling
    and seed.

    Rows hold the Frobenius norm of each attention row's Jacobian (jacobian_fro_median,
    _mean, _p10, _p90) and the norms of the rows of dq and dk (grad_q_median, grad_q_mean,
    grad_q_p10, grad_q_p90, grad_k_...). The values have ``value_dim`` features at every d
    and the upstream gradient dO is standard normal, so dP = dO V^T is the same size at
    every d and only the softmax and the scale change.

    >>> rows = gradient_flow(d_values=(512,), scalings=("sqrt", "none"), seeds=(0,))
    >>> rows[0]["jacobian_fro_median"] / rows[1]["jacobian_fro_median"] > 10
    True
    """
    rows = []
    for d in d_values:
        for seed in seeds:
            rng = generator(2, d, seed)
            q = normal(rng, (n_queries, d), device)  # (L, d)
            k = normal(rng, (n_keys, d), device)  # (n, d)
            v = normal(rng, (n_keys, value_dim), device)  # (n, dv)
            dout = normal(rng, (n_queries, value_dim), device)  # (L, dv), random upstream
            dots = q @ k.T  # (L, n)
            for scaling in scalings:
                scale = scale_for(scaling, d)
                probs, _, _ = softmax_rows(dots * scale)  # (L, n)
                jac = backend.to_numpy(jacobian_fro(probs))  # (L,)
                qt, kt, vt = (tensor(x, requires_grad=True) for x in (q, k, v))
                out = F.scaled_dot_product_attention(qt, kt, vt, scale=scale,
                                                     impl="fused")  # (L, dv)
                out.backward(dout)
                rows.append(make_row(
                    2, d, scaling, "float64", seed, n_keys=n_keys, n_queries=n_queries,
                    value_dim=value_dim, scale=scale, **quantiles(jac, "jacobian_fro"),
                    **quantiles(row_norms(qt.grad.data), "grad_q"),
                    **quantiles(row_norms(kt.grad.data), "grad_k")))
            tick(progress)
    return rows
