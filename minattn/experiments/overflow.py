"""Experiment 5: why softmax subtracts the row max, and why flash attention still agrees.

softmax(s) = exp(s) / sum exp(s) is the same for s and s - max(s), but exp overflows to inf
beyond about 11 in float16, 88 in float32 and 709 in float64; then inf / inf = NaN. Unscaled
scores have spread sqrt(d), so their largest value over 128 keys is near 2.6 sqrt(d): past
88 from about d = 1200. Subtracting the max makes every exponent <= 0, so nothing can
overflow, whatever the scale.

Flash attention never holds a whole row: it keeps a running max and rescales its sums by
exp(m_old - m_new) when the max grows (the online softmax). Here its NumPy reference
``flash_forward`` is held against minattn's dense attention in float64, unscaled included.
"""

from __future__ import annotations

from .. import backend
from .. import functional as F
from ..attention.flash import flash_forward
from ..core import tensor
from .common import D_VALUES, SCALINGS, generator, make_row, normal, quiet_overflow, scale_for, tick


def naive_softmax(scores):
    """exp(s) / sum exp(s) with no max subtracted: overflows to inf, then NaN."""
    xp = backend.get_array_module(scores)
    e = xp.exp(scores)  # (..., n), inf where a score is beyond the dtype's exp range
    return e / e.sum(axis=-1, keepdims=True)  # inf / inf = NaN


def stable_softmax(scores):
    """exp(s - max s) / sum exp(s - max s): every exponent <= 0, the sum >= 1."""
    xp = backend.get_array_module(scores)
    e = xp.exp(scores - scores.max(axis=-1, keepdims=True))  # (..., n), in [0, 1]
    return e / e.sum(axis=-1, keepdims=True)


def _bad_rows(probs):
    """Fraction of rows holding a NaN or an infinity."""
    xp = backend.get_array_module(probs)
    bad = (~xp.isfinite(probs)).any(axis=-1)  # (L,) booleans
    return float(backend.to_numpy(bad.sum())) / bad.size


def naive_softmax_nans(d_values=D_VALUES, scalings=SCALINGS,
                       dtypes=("float16", "float32", "float64"), seeds=(0, 1, 2),
                       n_keys: int = 128, n_queries: int = 256, device: str = "cpu",
                       progress=None) -> list[dict]:
    """Fraction of rows that come out NaN from a softmax without max subtraction; one row per
    d, scaling, dtype and seed (``kind="naive_softmax"``).

    The scores are computed in float64 and rounded to the dtype, so the only thing that
    differs between dtypes is the softmax itself. Rows hold nan_row_fraction (naive),
    nan_row_fraction_stable (max subtracted, always 0) and max_score (the largest score).

    >>> rows = naive_softmax_nans(d_values=(4096,), scalings=("sqrt", "none"),
    ...                           dtypes=("float32",), seeds=(0,))
    >>> [r["nan_row_fraction"] for r in rows]
    [0.0, 1.0]
    """
    rows = []
    for d in d_values:
        for seed in seeds:
            rng = generator(5, d, seed)
            q = normal(rng, (n_queries, d), device)  # (L, d)
            k = normal(rng, (n_keys, d), device)  # (n, d)
            dots = q @ k.T  # (L, n)
            xp = backend.get_array_module(dots)
            for scaling in scalings:
                scores64 = dots * scale_for(scaling, d)  # (L, n)
                for dtype in dtypes:
                    scores = scores64.astype(dtype)  # (L, n)
                    with quiet_overflow(xp):  # overflow and inf / inf are the point here
                        naive = naive_softmax(scores)
                    rows.append(make_row(
                        5, d, scaling, dtype, seed, kind="naive_softmax", n_keys=n_keys,
                        nan_row_fraction=_bad_rows(naive),
                        nan_row_fraction_stable=_bad_rows(stable_softmax(scores)),
                        max_score=float(backend.to_numpy(scores64.max()))))
            tick(progress)
    return rows


def flash_agreement(d_values=D_VALUES, scalings=SCALINGS, seeds=(0, 1, 2), n_keys: int = 256,
                    n_queries: int = 128, value_dim: int = 64, block: int = 64,
                    device: str = "cpu", progress=None) -> list[dict]:
    """Largest difference between flash attention's forward and the dense one, in float64;
    one row per d, scaling and seed (``kind="flash"``, metric ``flash_max_error``).

    With 256 keys in blocks of 64, each row's running max is updated and its sums rescaled
    up to four times; the relative error is measured against the largest output entry.
    """
    rows = []
    for d in d_values:
        for seed in seeds:
            rng = generator(5, d, 1000 + seed)
            q = normal(rng, (1, n_queries, d), device)  # (1, L, d)
            k = normal(rng, (1, n_keys, d), device)  # (1, S, d)
            v = normal(rng, (1, n_keys, value_dim), device)  # (1, S, dv)
            xp = backend.get_array_module(q)
            for scaling in scalings:
                scale = scale_for(scaling, d)
                flash, _ = flash_forward(q, k, v, scale, block_q=block, block_k=block)
                dense = F.scaled_dot_product_attention(tensor(q), tensor(k), tensor(v),
                                                       scale=scale, impl="fused").data
                error = xp.abs(flash - dense).max() / xp.abs(dense).max()
                rows.append(make_row(
                    5, d, scaling, "float64", seed, kind="flash", n_keys=n_keys,
                    flash_max_error=float(backend.to_numpy(error)),
                    flash_nan=bool(backend.to_numpy(xp.isnan(flash).any()))))
            tick(progress)
    return rows


__all__ = ["flash_agreement", "naive_softmax", "naive_softmax_nans", "stable_softmax"]
