"""The losses of ``torch.nn.functional``: nll_loss, cross_entropy, mse_loss and
binary_cross_entropy_with_logits, with PyTorch's arguments and reductions.

Each is composed from differentiable ops (log_softmax, indexing, where, products, sums), so
autograd derives the backward; the only new backward, log-sigmoid's, is in ``functional_nn``.

    nll:            loss_i = -w[t_i] * logp[i, t_i]          (0 where t_i == ignore_index)
    mean:           sum_i loss_i / sum_i w[t_i]              (over the targets not ignored)
    cross_entropy:  nll of log_softmax(input) over the class axis (axis 1; axis 0 for (C,))
"""

from __future__ import annotations

import numbers

from .. import backend
from ..core import Tensor, _as_tensors, check_float, constant_array
from ..ops import where
from ..ops.softmax import log_softmax
from .functional_nn import logsigmoid

REDUCTIONS = ("mean", "sum", "none")


def _reduction(reduction: str, size_average, reduce, op: str) -> str:
    if size_average is not None or reduce is not None:
        raise TypeError(f"{op}: size_average and reduce are deprecated in PyTorch and not "
                        "supported by minattn; use reduction='mean', 'sum' or 'none'")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: {reduction!r} is not a valid value for reduction (one of "
                         f"{', '.join(map(repr, REDUCTIONS))})")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def _class_weight(weight, C: int, like: Tensor, op: str):
    """The per-class weight as a constant array of the input's dtype (ones when None)."""
    xp = backend.get_array_module(like.data)
    if weight is None:
        return xp.ones(C, dtype=like.dtype)
    weight = constant_array(weight, like.device, op, "weight", "input")
    if tuple(weight.shape) != (C,):
        raise RuntimeError(f"{op}: weight tensor should be defined either for all {C} classes "
                           f"or no classes but got weight tensor of shape {tuple(weight.shape)}")
    return weight.astype(like.dtype, copy=False)


def _check_input(x, op: str) -> Tensor:
    (x,) = _as_tensors([x], op)
    if not backend.is_float(x.dtype):
        raise TypeError(f"{op}: input must be floating point, got {x.dtype} with shape "
                        f"{x.shape}")
    if x.ndim == 0:
        raise ValueError(f"{op}: input must be (C,), (N, C) or (N, C, d1, ...), got a 0-d tensor")
    return x


def _class_targets(target, x: Tensor, ignore_index: int, op: str):
    """Integer targets checked against the input: shape x.shape without the class axis,
    values in [0, C) or ignore_index. Returns (target, valid mask, safe target)."""
    target = constant_array(target, x.device, op, "target", "input")
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got {target.dtype} "
                        f"with shape {tuple(target.shape)} (or class probabilities: floats of "
                        f"the input's shape {x.shape})")
    expected = x.shape[1:] if x.ndim == 1 else (x.shape[0], *x.shape[2:])
    expected = () if x.ndim == 1 else tuple(expected)
    if tuple(target.shape) != expected:
        raise ValueError(f"{op}: target of shape {tuple(target.shape)} does not fit input of "
                         f"shape {x.shape}: expected shape {expected}")
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    xp = backend.get_array_module(target)
    valid = xp.asarray(target != ignore_index)  # (N, d1, ...); an array also when 0-d
    bad = valid & ((target < 0) | (target >= C))
    if bool(bad.any()):
        raise IndexError(f"{op}: Target {int(target[bad].reshape(-1)[0])} is out of bounds: "
                         f"class indices must lie in [0, {C}) (input of shape {x.shape}), "
                         f"got values outside [0, {C})")
    return target, valid, xp.where(valid, target, 0)


def _pick(logp: Tensor, safe):
    """logp[n, safe[n, d...], d...]: each element's entry on the class axis (axis 1)."""
    if logp.ndim == 1:
        return logp[safe]  # () for one sample
    xp = backend.get_array_module(safe)
    rest = safe.ndim
    index = [xp.arange(n).reshape([n if j == i else 1 for j in range(rest)])
             for i, n in enumerate(safe.shape)]  # broadcasting aranges: n, d1, d2, ...
    return logp[(index[0], safe, *index[1:])]  # (N, d1, ...)


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100,
             reduce=None, reduction: str = "mean") -> Tensor:
    """-input[target] (input holds log-probabilities), weighted per class, as
    ``torch.nn.functional.nll_loss``; "mean" divides by the weights of the targets that are
    not ``ignore_index`` (NaN when every target is ignored, as in PyTorch).

    >>> nll_loss(F.log_softmax(ma.randn(3, 5), dim=1), [1, 0, 4]).shape
    ()
    """
    op = "nll_loss"
    reduction = _reduction(reduction, size_average, reduce, op)
    # --8<-- [start:nll_loss]
    logp = _check_input(input, op)
    _, valid, safe = _class_targets(target, logp, ignore_index, op)
    C = logp.shape[0] if logp.ndim == 1 else logp.shape[1]
    w = _class_weight(weight, C, logp, op)[safe] * valid  # (N, d1, ...) 0 where ignored
    loss = where(valid, -_pick(logp, safe) * w, 0.0)  # (N, d1, ...); where: no 0 * inf
    if reduction == "mean":
        return loss.sum() / w.sum()
    return _reduce(loss, reduction)
    # --8<-- [end:nll_loss]


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100,
                  reduce=None, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """-log softmax(input)[target], as ``torch.nn.functional.cross_entropy``.

    input (C,), (N, C) or (N, C, d1, ...) (classes on axis 1); target either integer class
    indices of shape (), (N,) or (N, d1, ...), or class probabilities of the input's shape.
    ``weight`` (C,) weighs each class; ``ignore_index`` targets count for nothing (also
    not in the mean); ``label_smoothing`` eps mixes the target with the uniform
    distribution: (1 - eps) * nll + eps / C * sum over the classes of -w_c logp_c.

    >>> loss = F.cross_entropy(ma.randn(4, 10, requires_grad=True), [1, 0, 9, 3])
    >>> loss.backward()
    """
    op = "cross_entropy"
    reduction = _reduction(reduction, size_average, reduce, op)
    x = _check_input(input, op)
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got "
                         f"{label_smoothing!r}")
    # --8<-- [start:cross_entropy]
    class_dim = 0 if x.ndim == 1 else 1
    C = x.shape[class_dim]
    logp = log_softmax(x, dim=class_dim)  # (N, C, d1, ...)
    w_shape = [C if i == class_dim else 1 for i in range(x.ndim)]  # w broadcast on axis 1
    if _is_probabilities(target):
        return _soft_cross_entropy(logp, target, weight, reduction, label_smoothing, w_shape)
    nll = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing == 0.0:
        return nll
    # --8<-- [end:cross_entropy]
    _, valid, safe = _class_targets(target, logp, ignore_index, op)
    w = _class_weight(weight, C, logp, op)
    smooth = where(valid, -(logp * w.reshape(w_shape)).sum(dim=class_dim), 0.0)  # (N, d1, ..)
    if reduction == "mean":
        smooth = smooth.sum() / (w[safe] * valid).sum() if weight is not None \
            else smooth.sum() / valid.sum()
    else:
        smooth = _reduce(smooth, reduction)
    return (1 - label_smoothing) * nll + smooth * (label_smoothing / C)


def _is_probabilities(target) -> bool:
    dtype = target.dtype if hasattr(target, "dtype") else None
    return dtype is not None and backend.is_float(dtype)


def _soft_cross_entropy(logp: Tensor, target, weight, reduction, label_smoothing, w_shape):
    """-sum_c w_c t_c logp_c with probability targets t; "mean" divides by the number of
    samples (N * d1 * ...), not by the weights, as PyTorch does."""
    op = "cross_entropy"
    if not isinstance(target, Tensor):
        target = Tensor(constant_array(target, logp.device, op, "target", "input"))
    if target.shape != logp.shape:
        raise TypeError(f"{op}: target must hold integer class indices, or class "
                        f"probabilities of the input's shape {logp.shape}; got a "
                        f"{target.dtype} target of shape {target.shape}")
    class_dim = 0 if logp.ndim == 1 else 1
    C = logp.shape[class_dim]
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / C
    terms = logp * target  # (N, C, d1, ...)
    if weight is not None:
        terms = terms * _class_weight(weight, C, logp, op).reshape(w_shape)
    loss = -terms.sum(dim=class_dim)  # (N, d1, ...)
    if reduction == "mean":
        return loss.sum() / (logp.numel() // C) if C else loss.sum()
    return _reduce(loss, reduction)


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
             weight=None) -> Tensor:
    """(input - target)^2, reduced; with ``weight`` w (the input's shape), "mean" is
    sum(w d^2) / sum(w), as in PyTorch 2.13.

    >>> F.mse_loss(ma.tensor([1.0, 2.0]), ma.tensor([1.0, 4.0])).item()
    2.0
    """
    op = "mse_loss"
    reduction = _reduction(reduction, size_average, reduce, op)
    x, y = _as_tensors([input, target], op)
    check_float(x, op)
    sq = (x - y) ** 2  # (...,) broadcast, as PyTorch (which warns)
    if weight is None:
        return _reduce(sq, reduction)
    (w,) = _as_tensors([weight], op)
    if w.shape != x.shape:
        raise ValueError(f"{op}: Weights and input must have the same size; got weight "
                         f"{w.shape} and input {x.shape}")
    weighted = sq * w
    return weighted.sum() / w.sum() if reduction == "mean" else _reduce(weighted, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction: str = "mean",
                                     pos_weight=None) -> Tensor:
    """-[p t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], p the ``pos_weight``, computed
    as PyTorch does: (1 - t) x - (1 + (p - 1) t) log sigmoid(x), with the stable log-sigmoid
    (finite for any logit); times ``weight``, then reduced.

    >>> F.binary_cross_entropy_with_logits(ma.tensor([0.0]), ma.tensor([1.0])).item()
    0.6931...
    """
    op = "binary_cross_entropy_with_logits"
    reduction = _reduction(reduction, size_average, reduce, op)
    x, t = _as_tensors([input, target], op)
    check_float(x, op)
    if t.shape != x.shape:
        raise ValueError(f"{op}: Target size ({t.shape}) must be the same as input size "
                         f"({x.shape})")
    log_sig = logsigmoid(x)  # (...,) log sigmoid(x)
    if pos_weight is not None:
        (p,) = _as_tensors([pos_weight], op)
        log_sig = log_sig * ((p - 1) * t + 1)
    loss = (1 - t) * x - log_sig
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)
