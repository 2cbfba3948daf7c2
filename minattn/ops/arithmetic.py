"""Broadcasting arithmetic: + - * / ** and unary minus, plus where() and comparisons.

NumPy broadcasting stretches an input of shape (3, 1) to (3, 4) in the forward pass;
the chain rule then sums the gradient over the stretched axes, so each input receives
a gradient of its own shape (``unbroadcast``).
"""

from __future__ import annotations

from .. import backend, kernels
from ..core import Function, Tensor, _as_tensors


def unbroadcast(grad, shape: tuple):
    """Sum grad over the axes that broadcasting added or stretched, back to ``shape``."""
    xp = kernels.array_module(grad)
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))  # leading axes that were added
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = xp.sum(grad, axis=stretched, keepdims=True)  # stretched size-1 axes
    return grad


def unbroadcast_product(x, y, shape: tuple):
    """unbroadcast(x * y, shape), the gradient of a factor that was broadcast: where only its
    last axis was stretched (a row sum, as in softmax's e / e.sum(-1)) each row's dot product
    is taken without making the (..., C) product first."""
    xp = kernels.array_module(x, y)
    if (x.shape == y.shape and len(shape) == x.ndim >= 2 and shape[-1] == 1 != x.shape[-1]
            and shape[:-1] == x.shape[:-1] and x.dtype == y.dtype):
        return xp.einsum("...i,...i->...", x, y)[..., None]  # (..., 1): sum_i x_i y_i per row
    return unbroadcast(xp.multiply(x, y), shape)


def check_broadcast(op: str, *shapes) -> tuple:
    xp = backend.np
    try:
        return xp.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{op}: shapes {' and '.join(map(str, shapes))} do not broadcast "
                         "(NumPy rules: trailing axes must match or be 1)") from None


class Add(Function):
    def forward(self, a, b):
        check_broadcast("add", a.shape, b.shape)
        self.a_shape, self.b_shape = a.shape, b.shape
        return kernels.array_module(a, b).add(a, b)  # a + b

    def backward(self, dout):
        # out = a + b  =>  da = dout, db = dout, each summed over the axes its input was
        # broadcast along (None for an input that needs no gradient: that sum is skipped)
        da = unbroadcast(dout, self.a_shape) if self.needs_input_grad[0] else None
        db = unbroadcast(dout, self.b_shape) if self.needs_input_grad[1] else None
        return da, db


class Sub(Function):
    def forward(self, a, b):
        check_broadcast("sub", a.shape, b.shape)
        self.a_shape, self.b_shape = a.shape, b.shape
        return kernels.array_module(a, b).subtract(a, b)  # a - b

    def backward(self, dout):
        # out = a - b  =>  da = dout, db = -dout (each unbroadcast to its input's shape)
        xp = kernels.array_module(dout)
        da = unbroadcast(dout, self.a_shape) if self.needs_input_grad[0] else None
        db = unbroadcast(xp.negative(dout), self.b_shape) if self.needs_input_grad[1] else None
        return da, db


class Mul(Function):
    def forward(self, a, b):
        check_broadcast("mul", a.shape, b.shape)
        self.a, self.b = a, b
        return kernels.array_module(a, b).multiply(a, b)  # a * b

    def backward(self, dout):
        # out = a * b  =>  da = dout * b, db = dout * a, each summed over the axes its
        # input was broadcast along (for a row factor, (..., 1), each row's dot product)
        da = db = None
        if self.needs_input_grad[0]:
            da = unbroadcast_product(dout, self.b, self.a.shape)
        if self.needs_input_grad[1]:
            db = unbroadcast_product(dout, self.a, self.b.shape)
        return da, db


class Div(Function):
    def forward(self, a, b):
        check_broadcast("div", a.shape, b.shape)
        self.a, self.b = a, b
        return kernels.array_module(a, b).divide(a, b)  # a / b

    def backward(self, dout):
        # out = a / b  =>  da = dout / b, db = -dout * a / b**2
        # b is constant along the axes it was broadcast over, so db sums -dout * a over
        # them first and divides the (smaller) sum by b**2: softmax's e / e.sum() divides
        # a row sum once instead of every (L, S) entry.
        xp = kernels.array_module(dout)
        da = db = None
        if self.needs_input_grad[0]:
            da = unbroadcast(xp.divide(dout, self.b), self.a.shape)
        if self.needs_input_grad[1]:
            db = -unbroadcast_product(dout, self.a, self.b.shape) / self.b**2
        return da, db


class Pow(Function):
    def forward(self, a, b):
        check_broadcast("pow", a.shape, b.shape)
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, dout):
        # out = a ** b  =>  da = dout * b * a**(b - 1), db = dout * out * log(a)
        # (b = 0: da = 0 even at a = 0, where a**(b - 1) = inf; the exponent 1 stands in)
        xp = backend.get_array_module(dout)
        da = db = None
        if self.needs_input_grad[0]:
            da = unbroadcast(dout * self.b * self.a ** xp.where(self.b == 0, 1, self.b - 1),
                             self.a.shape)
        if self.needs_input_grad[1]:
            db = unbroadcast(dout * self.out * xp.log(self.a), self.b.shape)
        return da, db


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, dout):
        # out = -x  =>  dx = -dout
        return -dout


class Where(Function):
    def forward(self, cond, a, b):
        xp = backend.get_array_module(a, b)
        self.cond, self.a_shape, self.b_shape = cond, a.shape, b.shape
        check_broadcast("where", cond.shape, a.shape, b.shape)
        return xp.where(cond, a, b)

    def backward(self, dout):
        # out = a where cond else b  =>  da = dout where cond, db = dout where not cond
        xp = backend.get_array_module(dout)
        zero = xp.zeros((), dout.dtype)
        return (None, unbroadcast(xp.where(self.cond, dout, zero), self.a_shape),
                unbroadcast(xp.where(self.cond, zero, dout), self.b_shape))


def add(a, b) -> Tensor:
    """a + b, broadcasting as NumPy."""
    return Add.apply(a, b)


def sub(a, b) -> Tensor:
    """a - b, broadcasting as NumPy."""
    return Sub.apply(a, b)


def mul(a, b) -> Tensor:
    """a * b elementwise, broadcasting as NumPy."""
    return Mul.apply(a, b)


def div(a, b) -> Tensor:
    """a / b elementwise, broadcasting as NumPy."""
    return Div.apply(a, b)


def pow(a, b) -> Tensor:  # noqa: A001 - the operator's name
    """a ** b elementwise; b may be a number or a tensor."""
    return Pow.apply(a, b)


def neg(x) -> Tensor:
    """-x."""
    return Neg.apply(x)


def where(cond, a, b) -> Tensor:
    """a where cond is True, else b (cond is a boolean tensor or array; no gradient)."""
    cond, a, b = _as_tensors([cond, a, b], "where")
    if cond.dtype != bool:
        raise TypeError(f"where: condition must be boolean, got {cond.dtype}")
    return Where.apply(cond, a, b)


def _compare(name: str):
    def compare(a, b) -> Tensor:
        a, b = _as_tensors([a, b], name)
        xp = backend.get_array_module(a.data)
        return Tensor(getattr(xp, name)(a.data, b.data))  # boolean: no gradient

    compare.__name__ = name
    compare.__doc__ = f"Elementwise {name} as a boolean tensor (not differentiable)."
    return compare


lt, le, gt, ge = _compare("less"), _compare("less_equal"), _compare("greater"), \
    _compare("greater_equal")
eq, ne = _compare("equal"), _compare("not_equal")


__all__ = ["add", "div", "eq", "ge", "gt", "le", "lt", "mul", "ne", "neg", "pow", "sub",
           "unbroadcast", "where"]
