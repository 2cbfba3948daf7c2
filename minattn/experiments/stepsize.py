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
"""

from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from ..core import no_grad, tensor
from ..gradcheck import gradcheck_report
from .common import SCALINGS, generator, make_row, normal, scale_for, tick

H_VALUES = tuple(float(10 ** (-e / 2)) for e in range(2, 21))  # 1e-1, 3.2e-2, ..., 1e-10
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
    rows = []
    for d in d_values:
        for seed in seeds:
            rng = generator(3, d, seed)
            q = normal(rng, (n_queries, d), device)  # (L, d)
            k = normal(rng, (n_keys, d), device)  # (n, d)
            v = normal(rng, (n_keys, value_dim), device)  # (n, dv)
            u = normal(rng, (n_queries, value_dim), device)  # (L, dv), random upstream
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


def gradcheck_pass_rate(d_values=(16,), scalings=SCALINGS, dtypes=("float64", "float32"),
                        seeds=tuple(range(20)), n_queries: int = 4, n_keys: int = 8,
                        value_dim: int = 4, device: str = "cpu", progress=None) -> list[dict]:
    """Does ``ma.gradcheck`` with PyTorch's default tolerances (eps 1e-6, atol 1e-5,
    rtol 1e-3) pass? One row per d, scaling, dtype and seed (``kind="gradcheck"``).

    gradcheck hands the function float64 inputs; for "float32" the function casts them to
    float32, runs attention there and casts the output back, so the finite differences and
    the backward pass both run in float32, as they would on float32 parameters.
    """
    rows = []
    for d in d_values:
        for seed in seeds:
            rng = generator(3, d, 1000 + seed)
            q = normal(rng, (n_queries, d), device)  # (L, d)
            k = normal(rng, (n_keys, d), device)  # (n, d)
            v = normal(rng, (n_keys, value_dim), device)  # (n, dv)
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
