"""Elementwise functions. Each backward multiplies dout by the local derivative.

(exp, like the arithmetic of arithmetic.py, asks ``kernels.array_module`` for its array
module: NumPy's own, except that large arrays are split across the CPU's cores.)"""

from __future__ import annotations

from .. import backend, kernels
from ..core import Function, Tensor


class Exp(Function):
    def forward(self, x):
        self.out = kernels.array_module(x).exp(x)  # exp(x)
        return self.out

    def backward(self, dout):
        # out = exp(x)  =>  dx = dout * exp(x) = dout * out  (save out, not x)
        return kernels.array_module(dout).multiply(dout, self.out)


class Log(Function):
    def forward(self, x):
        self.x = x
        return backend.get_array_module(x).log(x)

    def backward(self, dout):
        # out = log(x)  =>  dx = dout / x
        return dout / self.x


class Sqrt(Function):
    def forward(self, x):
        self.out = backend.get_array_module(x).sqrt(x)
        return self.out

    def backward(self, dout):
        # out = sqrt(x)  =>  dx = dout / (2 sqrt(x)) = dout / (2 out)
        return dout / (2 * self.out)


class Tanh(Function):
    def forward(self, x):
        self.out = backend.get_array_module(x).tanh(x)
        return self.out

    def backward(self, dout):
        # out = tanh(x)  =>  dx = dout * (1 - tanh(x)**2) = dout * (1 - out**2)
        return dout * (1 - self.out**2)


class Abs(Function):
    def forward(self, x):
        self.x = x
        return backend.get_array_module(x).abs(x)

    def backward(self, dout):
        # out = |x|  =>  dx = dout * sign(x)   (0 at the kink, as PyTorch)
        return dout * backend.get_array_module(dout).sign(self.x)


class ReLU(Function):
    def forward(self, x):
        self.positive = x > 0
        return backend.get_array_module(x).maximum(x, 0).astype(x.dtype, copy=False)  # -inf -> 0

    def backward(self, dout):
        # out = max(x, 0)  =>  dx = dout where x > 0, else 0
        return dout * self.positive


def exp(x) -> Tensor:
    """e ** x elementwise."""
    return Exp.apply(x)


def log(x) -> Tensor:
    """Natural logarithm, elementwise."""
    return Log.apply(x)


def sqrt(x) -> Tensor:
    """Square root, elementwise."""
    return Sqrt.apply(x)


def tanh(x) -> Tensor:
    """Hyperbolic tangent, elementwise."""
    return Tanh.apply(x)


def abs(x) -> Tensor:  # noqa: A001 - the function's name
    """|x| elementwise (gradient 0 at 0, as PyTorch)."""
    return Abs.apply(x)


def relu(x) -> Tensor:
    """max(x, 0) elementwise."""
    return ReLU.apply(x)


__all__ = ["abs", "exp", "log", "relu", "sqrt", "tanh"]
TENSOR_METHODS = {name: globals()[name] for name in __all__}  # x.exp() is exp(x)
