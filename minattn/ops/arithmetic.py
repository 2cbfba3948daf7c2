"""Broadcasting arithmetic: + - * / ** and unary minus, plus where() and comparisons.

NumPy broadcasting stretches an input of shape (3, 1) to (3, 4) in the forward pass;
the chain rule then sums the gradient over the stretched axes, so each input receives
a gradient of its own shape (``unbroadcast``).
"""

from __future__ import annotations

import numbers

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


_NOTHING = object()  # where(cond) has no a and b


class Add(Function):
    saves_inputs = False  # backward needs only the shapes

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
    saves_inputs = False

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
    def saved_inputs(self, inputs):  # da reads b, db reads a
        a, b = inputs
        return [t for t, other in ((a, b), (b, a)) if other.requires_grad]

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
    def saved_inputs(self, inputs):  # da reads b; db reads a and b
        a, b = inputs
        return [b, a] if b.requires_grad else [b]

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
    saves_output = True  # db = dout * out * log(a)

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
    saves_inputs = False

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


def _category(dtype) -> int:
    """0 bool, 1 integer, 2 floating point: the kinds that PyTorch's promotion ranks."""
    return 2 if backend.is_float(dtype) else (0 if dtype.kind == "b" else 1)


def _promote_types(a, b):
    """The dtype holding both: an integer with a float is the float (PyTorch's rule; NumPy
    would widen int64 + float32 to float64), otherwise NumPy's promote_types."""
    if _category(a) != _category(b) and 2 in (_category(a), _category(b)):
        return a if _category(a) == 2 else b
    return backend.np.promote_types(a, b)


def _combine(higher, lower):
    """PyTorch's combine_categories: a lower-priority group changes the result only when it
    is of a higher category (a float 0-d tensor or number with integer tensors)."""
    if higher is None:
        return lower
    if lower is None or _category(higher) == 2:
        return higher
    if _category(higher) == 0 or _category(lower) == 2:
        return _promote_types(higher, lower)
    return higher


def result_type(inputs, tensors):
    """The dtype of an op on ``inputs`` (as given) after ``_as_tensors`` made ``tensors``, by
    PyTorch's rules: tensors with dimensions decide; 0-d tensors, then Python numbers, count
    only when they are of a higher category. So float32 (3,) + float64 0-d stays float32,
    int64 + 2.5 is float32 (the default float dtype), uint8 + 1 stays uint8."""
    groups = [None, None, None]  # dimensioned tensors, 0-d tensors, Python numbers
    for given, t in zip(inputs, tensors):
        if backend.is_number(given):
            group = 2
            dtype = (backend.np.dtype(bool) if isinstance(given, bool) else backend.np.dtype(
                "int64") if isinstance(given, numbers.Integral) else backend.DEFAULT_DTYPE
                if isinstance(given, numbers.Real) and not isinstance(given, backend.np.generic)
                else t.dtype)
        else:
            group, dtype = (0 if t.ndim else 1), t.dtype
        groups[group] = dtype if groups[group] is None else _promote_types(groups[group], dtype)
    return _combine(groups[0], _combine(groups[1], groups[2]))


def promoted(op: str, *inputs, numbers_ok: bool = True) -> list:
    """The inputs in one dtype, PyTorch's ``result_type`` (differentiable casts): tensors,
    except that Python numbers beside a float tensor are left as they are when
    ``numbers_ok`` (Function.apply gives them the tensor's dtype)."""
    dtypes = {x.dtype for x in inputs if isinstance(x, Tensor)}
    if len(dtypes) == 1 and all(isinstance(x, Tensor) or (
            isinstance(x, (int, float)) and not isinstance(x, bool)) for x in inputs):
        (dtype,) = dtypes  # the common cases: one dtype, or a float tensor and numbers
        if all(isinstance(x, Tensor) for x in inputs):
            return list(inputs)
        if dtype.kind == "f":  # the numbers take the float tensor's dtype
            return list(inputs) if numbers_ok else _as_tensors(inputs, op)
    tensors = _as_tensors(inputs, op)
    dtype = result_type(inputs, tensors)
    from .shape import astype
    return [t if t.dtype == dtype else astype(t, dtype) for t in tensors]


def add(a, b) -> Tensor:
    """a + b, broadcasting as NumPy, promoting dtypes as PyTorch."""
    return Add.apply(*promoted("add", a, b))


def sub(a, b) -> Tensor:
    """a - b, broadcasting as NumPy, promoting dtypes as PyTorch."""
    return Sub.apply(*promoted("sub", a, b))


def mul(a, b) -> Tensor:
    """a * b elementwise, broadcasting as NumPy, promoting dtypes as PyTorch."""
    return Mul.apply(*promoted("mul", a, b))


def div(a, b) -> Tensor:
    """a / b elementwise (true division: integers give the default float dtype, as PyTorch)."""
    a, b = promoted("div", a, b)  # tensors of one dtype, or a float tensor and a number
    if isinstance(a, Tensor) and isinstance(b, Tensor) and not backend.is_float(a.dtype):
        from .shape import astype
        a, b = astype(a, backend.DEFAULT_DTYPE), astype(b, backend.DEFAULT_DTYPE)
    return Div.apply(a, b)


def pow(a, b) -> Tensor:  # noqa: A001 - the operator's name
    """a ** b elementwise; b may be a number or a tensor."""
    return Pow.apply(*promoted("pow", a, b))


def neg(x) -> Tensor:
    """-x."""
    return Neg.apply(x)


def where(cond, a=_NOTHING, b=_NOTHING):
    """a where cond is True, else b (cond is a boolean tensor or array; no gradient).

    ``where(cond)`` alone is ``nonzero(cond, as_tuple=True)``: the indices of the True
    entries, one int64 tensor per axis.
    """
    if a is _NOTHING and b is _NOTHING:
        (cond,) = _as_tensors([cond], "where")
        xp = backend.get_array_module(cond.data)
        return tuple(Tensor(i.astype(xp.int64)) for i in xp.nonzero(cond.data))
    (cond,) = _as_tensors([cond], "where")
    if cond.dtype != bool:
        raise TypeError(f"where: condition must be boolean, got {cond.dtype}")
    a, b = promoted("where", a, b)
    return Where.apply(cond, a, b)


def nonzero(x, *, as_tuple: bool = False):
    """The indices of the nonzero entries: an (n, ndim) int64 tensor, or with ``as_tuple``
    one (n,) tensor per axis (as ``torch.nonzero``)."""
    (x,) = _as_tensors([x], "nonzero")
    xp = backend.get_array_module(x.data)
    indices = xp.nonzero(x.data) if x.ndim else xp.nonzero(x.data.reshape(1))
    if as_tuple:
        return tuple(Tensor(i.astype(xp.int64)) for i in indices)
    return Tensor(xp.stack(indices, axis=-1).astype(xp.int64).reshape(-1, x.ndim))


def _compare(name: str):
    def compare(a, b) -> Tensor:
        a, b = promoted(name, a, b, numbers_ok=False)
        xp = backend.get_array_module(a.data)
        return Tensor(getattr(xp, name)(a.data, b.data))  # boolean: no gradient

    compare.__name__ = name
    compare.__doc__ = f"Elementwise {name} as a boolean tensor (not differentiable)."
    return compare


class Remainder(Function):
    def forward(self, a, b):
        check_broadcast("remainder", a.shape, b.shape)
        xp = backend.get_array_module(a, b)
        self.a_shape, self.b_shape = a.shape, b.shape
        self.quotient = xp.floor_divide(a, b)  # floor(a / b), constant almost everywhere
        return xp.remainder(a, b)  # a - floor(a / b) * b, the sign of b (Python's %)

    def backward(self, dout):
        # out = a - floor(a / b) b  =>  da = dout, db = -floor(a / b) dout
        # (floor is a step function: its derivative is 0 wherever it is defined)
        da = unbroadcast(dout, self.a_shape) if self.needs_input_grad[0] else None
        db = unbroadcast(-self.quotient * dout, self.b_shape) if self.needs_input_grad[1] \
            else None
        return da, db


def remainder(a, b) -> Tensor:
    """a % b elementwise with the sign of b (Python's and PyTorch's %); differentiable."""
    return Remainder.apply(*promoted("remainder", a, b))


def floor_divide(a, b) -> Tensor:
    """a // b elementwise, rounded down (PyTorch's //); not differentiable."""
    a, b = promoted("floor_divide", a, b, numbers_ok=False)
    return Tensor(backend.get_array_module(a.data).floor_divide(a.data, b.data))


def _logical(name: str, numpy_name: str):
    def op(a, b=None) -> Tensor:
        if b is None:  # logical_not, bitwise_not: one input
            (a,) = _as_tensors([a], name)
            return Tensor(getattr(backend.get_array_module(a.data), numpy_name)(a.data))
        a, b = promoted(name, a, b, numbers_ok=False)
        if backend.is_float(a.dtype) and name.startswith("bitwise"):
            raise TypeError(f"{name}: bitwise ops need bool or integer tensors, got "
                            f"{a.dtype} and {b.dtype}")
        return Tensor(getattr(backend.get_array_module(a.data), numpy_name)(a.data, b.data))

    op.__name__ = name
    op.__doc__ = f"Elementwise {name} (not differentiable); ``&``, ``|``, ``^``, ``~`` on tensors."
    return op


bitwise_and, bitwise_or, bitwise_xor = (_logical("bitwise_and", "bitwise_and"),
                                        _logical("bitwise_or", "bitwise_or"),
                                        _logical("bitwise_xor", "bitwise_xor"))
logical_and, logical_or, logical_xor = (_logical("logical_and", "logical_and"),
                                        _logical("logical_or", "logical_or"),
                                        _logical("logical_xor", "logical_xor"))
logical_not, bitwise_not = _logical("logical_not", "logical_not"), _logical("bitwise_not", "invert")


lt, le, gt, ge = _compare("less"), _compare("less_equal"), _compare("greater"), \
    _compare("greater_equal")
eq, ne = _compare("equal"), _compare("not_equal")


__all__ = ["add", "bitwise_and", "bitwise_not", "bitwise_or", "bitwise_xor", "div", "eq",
           "floor_divide", "ge", "gt", "le", "logical_and", "logical_not", "logical_or",
           "logical_xor", "lt", "mul", "ne", "neg", "nonzero", "pow", "remainder", "sub",
           "unbroadcast",
           "where"]
# PyTorch's aliases: torch.greater is gt, torch.true_divide is div, ...
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne
subtract, multiply, divide, true_divide, negative = sub, mul, div, div, neg
__all__ += ["greater", "greater_equal", "less", "less_equal", "not_equal", "subtract",
            "multiply", "divide", "true_divide", "negative"]
TENSOR_METHODS = {name: globals()[name] for name in (
    "add", "sub", "mul", "div", "pow", "neg", "remainder", "floor_divide", "eq", "ne", "lt",
    "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "logical_not", "bitwise_and",
    "bitwise_or", "bitwise_xor", "bitwise_not", "greater", "less", "subtract", "multiply",
    "divide", "true_divide", "negative", "nonzero")}
TENSOR_METHODS["where"] = lambda x, condition, other: where(condition, x, other)  # x.where(c, y)
