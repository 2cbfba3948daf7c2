"""Optimizers, as ``torch.optim``: SGD (momentum, Nesterov), Adam and AdamW.

An optimizer holds references to parameters and updates their ``.data`` in place from
their ``.grad``, on raw backend arrays (NumPy or CuPy alike) with no graph recorded.
Parameters may come as one list or as groups with their own settings:

>>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> opt = AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=3e-4)
>>> loss.backward(); opt.step(); opt.zero_grad()

The per-parameter state (momentum buffers, moment estimates, step counts) round-trips
through ``state_dict()`` / ``load_state_dict()`` so training resumes exactly.
"""

from __future__ import annotations

import math
import numbers

from . import backend
from .core import Tensor, no_grad
from .nn.utils import clip_grad_norm_

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "clip_grad_norm_"]


class Optimizer:
    """Base class: parameter groups, per-parameter state, zero_grad and checkpoints.

    Subclasses write ``update(p, grad, group, state)``: one parameter's step on raw arrays.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict = {}  # Parameter -> dict of arrays and counters
        if isinstance(params, Tensor):
            raise TypeError("optimizer params must be an iterable of tensors or of dicts, "
                            "not one tensor: wrap it in a list")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        group = dict(group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only update Tensors, got {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError(f"optimizer got a tensor of shape {p.shape} that does not "
                                 "require grad")
            if not p.is_leaf:
                raise ValueError(f"optimizer got a non-leaf tensor of shape {p.shape}: "
                                 "optimize the leaves (parameters), not results")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError("some parameters appear in more than one parameter group")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown settings {sorted(unknown)}")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check(group)
        group["params"] = params
        self.param_groups.append(group)

    def _check(self, group: dict) -> None:
        name = type(self).__name__
        for key, value in group.items():  # every setting but betas and flags is a real number
            if key in ("params", "betas") or isinstance(value, bool) or (
                    value is None and key in ("foreach", "fused")):  # None: PyTorch's choice
                continue
            if not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise TypeError(f"{name}: {key} must be a finite number, got {value!r}")
        if group["lr"] < 0:
            raise ValueError(f"{name}: invalid learning rate {group['lr']}: expected lr >= 0")
        if group.get("weight_decay", 0) < 0:
            raise ValueError(f"{name}: invalid weight_decay {group['weight_decay']}: expected "
                             ">= 0")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    @no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.data
                if backend.device_of(grad) != p.device or tuple(grad.shape) != p.shape:
                    raise RuntimeError(f"{type(self).__name__}: a gradient of shape "
                                       f"{tuple(grad.shape)} on {backend.device_of(grad)} for "
                                       f"a parameter of shape {p.shape} on {p.device}")
                self.update(p, grad, group, self.state.setdefault(p, {}))

    def update(self, p: Tensor, grad, group: dict, state: dict) -> None:
        raise NotImplementedError

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{"state": {param index: {name: array copy or number}}, "param_groups": [settings
        with "params" as indices]}: PyTorch's layout; arrays stay on their device."""
        index = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: v.copy() if hasattr(v, "copy") else v
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore settings and state saved by ``state_dict()`` (arrays may be NumPy, CuPy or
        Tensors; each is moved to its parameter's device and dtype)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(own["params"])
                for g, own in zip(groups, self.param_groups)):
            raise ValueError("load_state_dict: the saved parameter groups "
                             f"{[len(g['params']) for g in groups]} do not match this "
                             f"optimizer's {[len(g['params']) for g in self.param_groups]}")
        params = [p for group in self.param_groups for p in group["params"]]
        saved = {int(k): v for k, v in state_dict["state"].items()}
        self.state = {}
        for i, p in enumerate(params):
            if i not in saved:
                continue
            entry = {}
            for name, value in saved[i].items():
                value = value.data if isinstance(value, Tensor) else value
                if hasattr(value, "shape") and value.shape != ():
                    if tuple(value.shape) != p.shape:
                        raise ValueError(f"load_state_dict: state {name!r} of parameter {i} "
                                         f"has shape {tuple(value.shape)}, the parameter "
                                         f"{p.shape}")
                    value = backend.to_device(backend.as_array(value), p.device).astype(p.dtype)
                elif hasattr(value, "item"):
                    value = value.item()
                entry[name] = value
            self.state[p] = entry
        for own, g in zip(self.param_groups, groups):
            own.update({k: v for k, v in g.items() if k != "params"})

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            settings = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} tensors, {settings}")
        return "\n".join(lines + [")"])


class SGD(Optimizer):
    """p -= lr * g, with g = grad + weight_decay * p; momentum keeps b = momentum * b + g
    (b = g at the first step) and steps along b, or along g + momentum * b when nesterov.

    >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 foreach=None, differentiable: bool = False, fused=None):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        _plain_path("SGD", differentiable=differentiable)
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused))

    def _check(self, group: dict) -> None:
        super()._check(group)
        if group["momentum"] < 0:
            raise ValueError(f"invalid momentum {group['momentum']}")

    def update(self, p, grad, group, state) -> None:
        grad = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data  # L2 penalty's gradient
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        p.data -= (group["lr"] * grad).astype(p.dtype, copy=False)
        p._versions[0] += 1  # an in-place write, counted as PyTorch counts it


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with PyTorch's update:

        g = grad + weight_decay * p            (L2 penalty; AdamW decouples it instead)
        m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
        p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    >>> opt = Adam(model.parameters(), lr=1e-3)
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, foreach=None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused=None, decoupled_weight_decay: bool = False):
        _plain_path(type(self).__name__, capturable=capturable, differentiable=differentiable)
        super().__init__(params, dict(lr=lr, betas=_pair(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable, fused=fused,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _check(self, group: dict) -> None:
        super()._check(group)
        b1, b2 = group["betas"] = _pair(group["betas"])  # (a group's own betas too)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"invalid betas {group['betas']}: each must be in [0, 1)")
        if group["eps"] < 0:
            raise ValueError(f"invalid eps {group['eps']}")

    def decay(self, p, grad, group):
        """Adam's weight decay is an L2 penalty: it enters the gradient; AdamW's (and
        ``decoupled_weight_decay=True``'s) shrinks the parameter instead."""
        if not group["weight_decay"]:
            return grad
        if group["decoupled_weight_decay"]:
            p.data *= p.dtype.type(1 - group["lr"] * group["weight_decay"])
            return grad
        return grad + group["weight_decay"] * p.data

    def update(self, p, grad, group, state) -> None:
        xp = backend.get_array_module(p.data)
        grad = -grad if group["maximize"] else grad
        grad = self.decay(p, grad, group)
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)  # m: the mean of the gradients
            state["exp_avg_sq"] = xp.zeros_like(p.data)  # v: the mean of their squares
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)  # the largest v so far
        b1, b2 = group["betas"]
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * grad * grad
        # bias corrections: m and v start at 0, so early averages are too small by (1 - b^t)
        if group["amsgrad"]:  # AMSGrad: divide by the largest v seen, never a shrinking one
            xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step_size = group["lr"] / (1 - b1**t)
        denom = xp.sqrt(v) / math.sqrt(1 - b2**t) + group["eps"]
        p.data -= (step_size * m / denom).astype(p.dtype, copy=False)
        p._versions[0] += 1  # an in-place write, counted as PyTorch counts it


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): first
    p *= 1 - lr * weight_decay, then Adam's step on the plain gradient.

    >>> opt = AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach=None, capturable: bool = False, differentiable: bool = False,
                 fused=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)


def _plain_path(name: str, **flags) -> None:
    """``foreach`` and ``fused`` pick PyTorch's kernels, not the math: minattn accepts them
    (nanoGPT passes ``fused=True`` on CUDA; PyTorch has a fused CPU path too) and runs its
    one plain update, which gives the same numbers. ``capturable`` and ``differentiable``
    change what the step is; they are refused."""
    for flag, value in flags.items():
        if value:
            raise NotImplementedError(f"{name}: {flag}=True is not supported by minattn")


def _pair(betas) -> tuple:
    """Adam's betas as a tuple of two numbers, or a TypeError naming what was given."""
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair of numbers (beta1, beta2), got {betas!r}") from None
    for b in (b1, b2):
        if isinstance(b, bool) or not isinstance(b, numbers.Real):
            raise TypeError(f"betas must be a pair of numbers (beta1, beta2), got {betas!r}")
    return (b1, b2)
