"""Elementwise functions. Each backward multiplies dout by the local derivative.

(exp, like the arithmetic of arithmetic.py, asks ``kernels.array_module`` for its array
module: NumPy's own, except that large arrays are split across the CPU's cores.)"""

from __future__ import annotations

from .. import backend, kernels
from ..core import Function, Tensor, _as_tensors, check_float


class Exp(Function):
    saves_inputs, saves_output = False, True

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
    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = backend.get_array_module(x).sqrt(x)
        return self.out

    def backward(self, dout):
        # out = sqrt(x)  =>  dx = dout / (2 sqrt(x)) = dout / (2 out)
        return dout / (2 * self.out)


class Tanh(Function):
    saves_inputs, saves_output = False, True

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
    saves_inputs = False  # its own mask, not x

    def forward(self, x):
        self.positive = x > 0
        return backend.get_array_module(x).maximum(x, 0).astype(x.dtype, copy=False)  # -inf -> 0

    def backward(self, dout):
        # out = max(x, 0)  =>  dx = dout where x > 0, else 0
        return dout * self.positive


def _sigmoid(x):
    """1 / (1 + e^-x) without overflow: e^x / (1 + e^x) where x < 0 (e^-|x| never overflows)."""
    xp = backend.get_array_module(x)
    e = xp.exp(-xp.abs(x))  # (...,) in (0, 1]
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


class SigmoidFunction(Function):
    """y = sigmoid(x) = 1 / (1 + e^-x)."""

    saves_inputs, saves_output = False, True

    def forward(self, x):
        self.out = _sigmoid(x)  # saved: the derivative is a function of y alone
        return self.out

    def backward(self, dout):
        # y = 1 / (1 + e^-x)  =>  dy/dx = e^-x / (1 + e^-x)^2 = y (1 - y)
        y = self.out
        return dout * y * (1 - y)


class SiLUFunction(Function):
    """y = x * sigmoid(x) (also called swish)."""

    def forward(self, x):
        self.x, self.s = x, _sigmoid(x)  # (...,)
        return x * self.s

    def backward(self, dout):
        # y = x s, s = sigmoid(x), ds/dx = s (1 - s)
        # =>  dy/dx = s + x s (1 - s) = s (1 + x (1 - s))
        s = self.s
        return dout * s * (1 + self.x * (1 - s))


class LogSigmoidFunction(Function):
    """y = log sigmoid(x) = -log(1 + e^-x) = min(x, 0) - log1p(e^-|x|): finite for any x."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.x = x
        return xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, dout):
        # y = -log(1 + e^-x)  =>  dy/dx = e^-x / (1 + e^-x) = 1 - sigmoid(x) = sigmoid(-x)
        return dout * _sigmoid(-self.x)


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


class Sin(Function):
    def forward(self, x):
        self.x = x
        return backend.get_array_module(x).sin(x)

    def backward(self, dout):
        # out = sin(x)  =>  dx = dout * cos(x)
        return dout * backend.get_array_module(dout).cos(self.x)


class Cos(Function):
    def forward(self, x):
        self.x = x
        return backend.get_array_module(x).cos(x)

    def backward(self, dout):
        # out = cos(x)  =>  dx = -dout * sin(x)
        return -dout * backend.get_array_module(dout).sin(self.x)


class Log1p(Function):
    def forward(self, x):
        self.x = x
        return backend.get_array_module(x).log1p(x)

    def backward(self, dout):
        # out = log(1 + x)  =>  dx = dout / (1 + x)
        return dout / (1 + self.x)


class Clamp(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        out = x
        if self.low is not None:
            out = xp.maximum(out, xp.asarray(self.low, dtype=x.dtype))
        if self.high is not None:
            out = xp.minimum(out, xp.asarray(self.high, dtype=x.dtype))
        # PyTorch's gradient mask: 1 where low <= x <= high (the bounds included), else 0
        self.inside = xp.ones(x.shape, dtype=bool)
        if self.low is not None:
            self.inside &= x >= self.low
        if self.high is not None:
            self.inside &= x <= self.high
        return out

    saves_inputs = False  # its own mask

    def backward(self, dout):
        # out = min(max(x, low), high)  =>  dx = dout where low <= x <= high, else 0
        return dout * self.inside


class Extremum(Function):
    """out = maximum(a, b) (or minimum): the larger (smaller) of the two, elementwise."""

    def forward(self, a, b):
        from .arithmetic import check_broadcast
        xp = backend.get_array_module(a, b)
        check_broadcast(self.op, a.shape, b.shape)
        self.a_shape, self.b_shape = a.shape, b.shape
        out = xp.maximum(a, b) if self.op == "maximum" else xp.minimum(a, b)
        self.a_wins = (a > b) if self.op == "maximum" else (a < b)  # (...,) broadcast
        self.tie = a == b
        return out

    saves_inputs = False  # its own masks

    def backward(self, dout):
        # out = a where a wins, b where b wins  =>  da = dout where a wins, db where b wins;
        # on a tie each gets half, as PyTorch
        from .arithmetic import unbroadcast
        share_a = self.a_wins + 0.5 * self.tie  # 1, 0 or 1/2
        da = unbroadcast(dout * share_a, self.a_shape) if self.needs_input_grad[0] else None
        db = unbroadcast(dout * (1 - share_a), self.b_shape) if self.needs_input_grad[1] \
            else None
        return da, db


def _unary(cls, name: str, doc: str):
    def op(x) -> Tensor:
        (x,) = _as_tensors([x], name)
        check_float(x, name)
        return cls.apply(x)

    op.__name__, op.__doc__ = name, doc
    return op


sin = _unary(Sin, "sin", "Sine, elementwise.")
cos = _unary(Cos, "cos", "Cosine, elementwise.")
log1p = _unary(Log1p, "log1p", "log(1 + x), accurate for small x.")


def clamp(x, min=None, max=None) -> Tensor:  # noqa: A002 - PyTorch's names
    """x limited to [min, max] (either may be None), as ``torch.clamp``; the gradient is 1
    where min <= x <= max and 0 outside."""
    (x,) = _as_tensors([x], "clamp")
    if min is None and max is None:
        raise RuntimeError("clamp: at least one of min or max must not be None")
    low, high = (float(v) if isinstance(v, Tensor) else v for v in (min, max))
    return Clamp.apply(x, low=low, high=high)


def maximum(a, b) -> Tensor:
    """The larger of a and b, elementwise (ties share the gradient equally, as PyTorch)."""
    from .arithmetic import promoted
    return Extremum.apply(*promoted("maximum", a, b), op="maximum")


def minimum(a, b) -> Tensor:
    """The smaller of a and b, elementwise (ties share the gradient equally, as PyTorch)."""
    from .arithmetic import promoted
    return Extremum.apply(*promoted("minimum", a, b), op="minimum")


def rsqrt(x) -> Tensor:
    """1 / sqrt(x), elementwise."""
    return 1 / sqrt(x)


def square(x) -> Tensor:
    """x * x, elementwise."""
    return x * x


def _rounding(name: str):
    def op(x) -> Tensor:
        (x,) = _as_tensors([x], name)
        xp = backend.get_array_module(x.data)
        return Tensor(getattr(xp, name)(x.data))  # piecewise constant: no gradient flows

    op.__name__ = name
    op.__doc__ = f"{name}, elementwise; piecewise constant, so it carries no gradient."
    return op


sign, floor, ceil, round, trunc = (_rounding(n) for n in  # noqa: A001
                                   ("sign", "floor", "ceil", "round", "trunc"))


def sigmoid(x) -> Tensor:
    """1 / (1 + e^-x), as ``torch.sigmoid``.

    >>> sigmoid(ma.tensor([0.0])).item()
    0.5
    """
    (x,) = _as_tensors([x], "sigmoid")
    check_float(x, "sigmoid")
    return SigmoidFunction.apply(x)


__all__ = ["abs", "ceil", "clamp", "cos", "exp", "floor", "log", "log1p", "maximum",
           "minimum", "relu", "round", "rsqrt", "sigmoid", "sign", "sin", "sqrt", "square",
           "tanh", "trunc"]
clip = clamp  # NumPy's and PyTorch's alias
__all__.append("clip")
TENSOR_METHODS = {name: globals()[name] for name in __all__}  # x.exp() is exp(x)
