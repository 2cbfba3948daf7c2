"""Weight initialisation, as ``torch.nn.init``: each function fills a tensor in place (under
no_grad, so parameters can be filled) from minattn's generator and returns it.

    fan_in = size(1) * receptive field, fan_out = size(0) * receptive field
    xavier:  std = gain * sqrt(2 / (fan_in + fan_out))
    kaiming: std = gain / sqrt(fan),   gain = calculate_gain(nonlinearity, a)
    uniform with that std: U(-sqrt(3) std, sqrt(3) std)

>>> w = ma.nn.Parameter(ma.zeros(4, 3))
>>> ma.nn.init.normal_(w, mean=0.0, std=0.02) is w
True
"""

from __future__ import annotations

import math
import numbers

from .. import backend
from ..core import Tensor, no_grad

__all__ = ["calculate_gain", "constant_", "eye_", "kaiming_normal_", "kaiming_uniform_",
           "normal_", "ones_", "trunc_normal_", "uniform_", "xavier_normal_",
           "xavier_uniform_", "zeros_"]


def _fill(tensor: Tensor, values, op: str) -> Tensor:
    """Write ``values`` (an array of the tensor's shape, or a number) into ``tensor``."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nn.init.{op}: expected a Tensor, got {type(tensor).__name__}")
    if hasattr(values, "astype"):
        values = values.astype(tensor.dtype, copy=False)
    with no_grad():
        tensor.copy_(values)
    return tensor


def _random(tensor: Tensor, op: str):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nn.init.{op}: expected a Tensor, got {type(tensor).__name__}")
    if not backend.is_float(tensor.dtype):
        raise TypeError(f"nn.init.{op}: the tensor must be floating point, got {tensor.dtype}")
    return backend.generator(tensor.device)


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity, PyTorch's table: 1 for linear and sigmoid,
    5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + a^2)) for leaky_relu (a = 0.01 by
    default), 3/4 for selu."""
    linear = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid"]
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _fans(tensor: Tensor, op: str) -> tuple[int, int]:
    if tensor.ndim < 2:
        raise ValueError(f"nn.init.{op}: Fan in and fan out can not be computed for tensor "
                         f"with fewer than 2 dimensions (shape {tensor.shape})")
    receptive = 1
    for n in tensor.shape[2:]:
        receptive *= n
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor: Tensor, mode: str, op: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"nn.init.{op}: Mode {mode} not supported, please use one of "
                         "fan_in, fan_out")
    fan_in, fan_out = _fans(tensor, op)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    """U(a, b)."""
    gen = generator or _random(tensor, "uniform_")
    return _fill(tensor, gen.uniform(a, b, size=tensor.shape), "uniform_")


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    """N(mean, std^2)."""
    gen = generator or _random(tensor, "normal_")
    return _fill(tensor, mean + std * gen.standard_normal(tensor.shape), "normal_")


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0, generator=None) -> Tensor:
    """N(mean, std^2) restricted to [a, b] (absolute bounds, as PyTorch): samples outside
    are drawn again until every one lies inside."""
    gen = generator or _random(tensor, "trunc_normal_")
    if not a < b:
        raise ValueError(f"nn.init.trunc_normal_: need a < b, got a={a}, b={b}")
    xp = backend.xp_for(tensor.device)
    values = mean + std * gen.standard_normal(tensor.shape)
    outside = (values < a) | (values > b)
    while bool(outside.any()):  # rejection: the kept samples follow the truncated normal
        values = xp.where(outside, mean + std * gen.standard_normal(tensor.shape), values)
        outside = (values < a) | (values > b)
    return _fill(tensor, values, "trunc_normal_")


def constant_(tensor: Tensor, val: float) -> Tensor:
    return _fill(tensor, val, "constant_")


def zeros_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 0, "zeros_")


def ones_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 1, "ones_")


def eye_(tensor: Tensor) -> Tensor:
    """The identity matrix (a 2-D tensor)."""
    if tensor.ndim != 2:
        raise ValueError(f"nn.init.eye_: only tensors with 2 dimensions are supported, got "
                         f"shape {tensor.shape}")
    xp = backend.xp_for(tensor.device)
    return _fill(tensor, xp.eye(*tensor.shape), "eye_")


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fan_in, fan_out = _fans(tensor, "xavier_uniform_")
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tensor, "xavier_normal_")
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    """U(-bound, bound), bound = sqrt(3) * gain / sqrt(fan) (He et al. 2015); PyTorch's
    Linear default is a = sqrt(5), which gives bound = 1 / sqrt(fan_in)."""
    fan = _fan(tensor, mode, "kaiming_uniform_")
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    """N(0, std^2), std = gain / sqrt(fan)."""
    fan = _fan(tensor, mode, "kaiming_normal_")
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
    return normal_(tensor, 0.0, std, generator)
