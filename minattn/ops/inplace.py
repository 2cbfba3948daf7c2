"""In-place ops, PyTorch's way: ``x += y``, ``x.add_(y)``, ``x.zero_()``, ``x[i] = v``, ...

Each is the out-of-place op written back into the tensor's own memory by
``Tensor._inplace`` (core.py), which also keeps PyTorch's safety rules: the version
counter goes up with every write, so a backward that saved the old values raises instead of
using the new ones, and a leaf that requires grad may be modified only under ``no_grad``
(how an optimizer step, ``p -= lr * p.grad``, is written).

Two ops are new here, with their own backward: item assignment (``SetItem``) and ``copy_``
(``CopyInto``); the others reuse add, mul, ... from the other op modules.
"""

from __future__ import annotations

from .. import backend
from ..core import Function, Tensor, _as_tensors
from .arithmetic import add, div, mul, neg, pow, sub, unbroadcast
from .shape import index_parts


class SetItem(Function):
    """out = x with out[index] = value (value broadcast to the indexed shape)."""

    saves_inputs = False  # backward needs only the index and the shapes

    def forward(self, x, value):
        self.value_shape = value.shape
        out = x.copy()
        out[self.index] = value
        return out

    def backward(self, dout):
        # out = x, except out[index] = value  =>
        #   dx = dout with zeros at index (those entries of x were overwritten),
        #   dvalue = dout[index], summed over the axes value was broadcast along
        dx = dvalue = None
        if self.needs_input_grad[0]:
            dx = dout.copy()
            dx[self.index] = 0
        if self.needs_input_grad[1]:
            dvalue = unbroadcast(dout[self.index], self.value_shape)
        return dx, dvalue


class CopyInto(Function):
    """out = src broadcast to x's shape, in x's dtype (x's old values are dropped)."""

    saves_inputs = False

    def forward(self, x, src):
        self.src_shape, self.src_dtype = src.shape, src.dtype
        xp = backend.get_array_module(x)
        return xp.broadcast_to(src, x.shape).astype(x.dtype)  # (*x.shape,): a fresh array

    def backward(self, dout):
        # out = src (broadcast)  =>  dx = 0 (x does not reach out), dsrc = dout summed over
        # the broadcast axes, in src's dtype
        xp = backend.get_array_module(dout)
        dx = xp.zeros_like(dout) if self.needs_input_grad[0] else None
        dsrc = None
        if self.needs_input_grad[1]:
            dsrc = unbroadcast(dout, self.src_shape).astype(self.src_dtype)
        return dx, dsrc


class Clone(Function):
    saves_inputs = False

    def forward(self, x):
        return x.copy()

    def backward(self, dout):
        # out = x (a copy in new memory)  =>  dx = dout
        return dout


def clone(x: Tensor) -> Tensor:
    """A copy in its own memory, still in the graph (so the copy may be modified in place)."""
    return Clone.apply(x)


def setitem(x: Tensor, index, value) -> None:
    """``x[index] = value``: ints, slices, None, Ellipsis, integer and boolean index tensors;
    value a tensor, array or number (broadcast to the indexed shape)."""
    index = index_parts(x, index)
    (value,) = _as_tensors([value], "setitem") if not isinstance(value, Tensor) else (value,)
    try:
        x.data[index]  # an index that does not fit x fails here, before anything is written
    except IndexError as exc:
        raise IndexError(f"indexing a tensor of shape {x.shape} with {index!r}: {exc}") from None
    x._inplace("setitem", lambda old, v: SetItem.apply(old, v, index=index), value)


def copy_(x: Tensor, src) -> Tensor:
    """Write src (a tensor, array or number, broadcast to x's shape) into x, in x's dtype;
    differentiable with respect to src, as PyTorch's."""
    (src,) = _as_tensors([src], "copy_") if not isinstance(src, Tensor) else (src,)
    if src.device != x.device:  # PyTorch copies across devices; so does minattn, explicitly
        src = src.to(x.device)
    return x._inplace("copy_", lambda old, s: CopyInto.apply(old, s), src)


def fill_(x: Tensor, value) -> Tensor:
    """Set every element to value (a number or one-element tensor)."""
    return copy_(x, value)


def zero_(x: Tensor) -> Tensor:
    """Set every element to 0."""
    return copy_(x, 0)


def _with_alpha(op, name: str):
    def method(x: Tensor, other, alpha=1) -> Tensor:
        other = other if alpha == 1 else mul(other, alpha)
        return x._inplace(name, op, other)

    method.__name__ = name
    method.__doc__ = f"x.{name}(other, alpha=1): x = x {'+' if op is add else '-'} alpha * other."
    return method


def _inplace_of(op, name: str):
    def method(x: Tensor, *args, **kwargs) -> Tensor:
        return x._inplace(name, op, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"In-place {op.__name__}: x.{name}(...) writes {op.__name__}(x, ...) into x."
    return method


def _ops(name: str):
    """A function of minattn.ops looked up when called (some come from other op modules)."""
    def call(*args, **kwargs):
        from .. import ops
        return getattr(ops, name)(*args, **kwargs)

    call.__name__ = name
    return call


def requires_grad_(x: Tensor, requires_grad: bool = True) -> Tensor:
    """Set requires_grad in place and return the tensor (PyTorch's spelling)."""
    if not requires_grad and x._ctx is not None:
        raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use detach() to take "
                           "it out of the graph")
    x.requires_grad = requires_grad
    return x


TENSOR_METHODS = {
    "__setitem__": setitem,
    "clone": clone,
    "copy_": copy_,
    "fill_": fill_,
    "zero_": zero_,
    "requires_grad_": requires_grad_,
    "add_": _with_alpha(add, "add_"),
    "sub_": _with_alpha(sub, "sub_"),
    "mul_": _inplace_of(mul, "mul_"),
    "div_": _inplace_of(div, "div_"),
    "pow_": _inplace_of(pow, "pow_"),
    "neg_": _inplace_of(neg, "neg_"),
    "__iadd__": _inplace_of(add, "+="),
    "__isub__": _inplace_of(sub, "-="),
    "__imul__": _inplace_of(mul, "*="),
    "__itruediv__": _inplace_of(div, "/="),
    "__ipow__": _inplace_of(pow, "**="),
}
for _name in ("clamp", "masked_fill", "exp", "relu", "sqrt", "tanh", "sigmoid", "abs", "log",
              "sin", "cos"):
    TENSOR_METHODS[f"{_name}_"] = _inplace_of(_ops(_name), f"{_name}_")
TENSOR_METHODS["clip_"] = TENSOR_METHODS["clamp_"]

__all__ = ["clone"]
