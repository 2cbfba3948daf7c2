"""Training utilities, as ``torch.nn.utils``: gradient-norm clipping."""

from __future__ import annotations

import math

from .. import backend
from ..core import Tensor


def _with_grads(parameters) -> list:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def grad_norm(parameters, norm_type: float = 2.0) -> float:
    """||(g_1, ..., g_n)||: the norm of all gradients taken together as one vector."""
    params = _with_grads(parameters)
    if not params:
        return 0.0
    norm_type = float(norm_type)
    xp = backend.get_array_module(params[0].grad.data)
    if math.isinf(norm_type):
        return float(max(float(xp.abs(p.grad.data).max()) for p in params))
    total = sum(xp.sum(xp.abs(p.grad.data.astype(xp.float64)) ** norm_type) for p in params)
    return float(total) ** (1.0 / norm_type)  # one host sync, at the end


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale all gradients in place by min(1, max_norm / total_norm); return total_norm.

    total_norm is the norm of every gradient concatenated, measured before clipping, as
    ``torch.nn.utils.clip_grad_norm_`` (which returns it as a 0-d tensor; here a float).
    A non-finite norm leaves the gradients untouched (or raises with error_if_nonfinite).

    >>> total = clip_grad_norm_(model.parameters(), max_norm=1.0)
    """
    params = _with_grads(parameters)
    total = grad_norm(params, norm_type)
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {total}; "
                               "set error_if_nonfinite=False to clip anyway")
        return total
    coef = max_norm / (total + 1e-6)  # PyTorch's epsilon, so a zero norm never divides
    if coef < 1:
        for p in params:
            p.grad.data *= p.grad.data.dtype.type(coef)
    return total
