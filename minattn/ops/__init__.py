"""Primitive differentiable ops: one Function per op, forward and backward side by side."""

from .arithmetic import add, div, eq, ge, gt, le, lt, mul, ne, neg, pow, sub, unbroadcast, where
from .elementwise import abs, exp, log, relu, sqrt, tanh
from .matmul import matmul
from .reduce import max, mean, sum
from .shape import astype, getitem, reshape, swapaxes, to, transpose
from .softmax import log_softmax, softmax  # binds the names to the functions, not the module


def _attach_to_tensor() -> None:
    """Make the ops Tensor methods and operators: ``a + b`` is ``add(a, b)``, ``x.T`` is
    ``transpose(x)``, and the reflected operators (``2 * x``) swap their arguments."""
    from ..core import Tensor

    for name in ("sum", "mean", "max", "exp", "log", "sqrt", "tanh", "abs", "relu", "reshape",
                 "transpose", "swapaxes", "to", "astype", "softmax", "log_softmax"):
        setattr(Tensor, name, globals()[name])
    for name, op in [("add", add), ("sub", sub), ("mul", mul), ("truediv", div), ("pow", pow),
                     ("matmul", matmul)]:
        setattr(Tensor, f"__{name}__", op)
        setattr(Tensor, f"__r{name}__", lambda self, other, op=op: op(other, self))
    for name, op in [("neg", neg), ("getitem", getitem), ("lt", lt), ("le", le), ("gt", gt),
                     ("ge", ge), ("eq", eq), ("ne", ne)]:
        setattr(Tensor, f"__{name}__", op)
    Tensor.T = property(transpose, doc="All axes reversed, as NumPy's ``.T``.")


_attach_to_tensor()

__all__ = ["abs", "add", "astype", "div", "eq", "exp", "ge", "getitem", "gt", "le", "log",
           "log_softmax", "lt", "matmul", "max", "mean", "mul", "ne", "neg", "pow", "relu",
           "reshape", "softmax", "sqrt", "sub", "sum", "swapaxes", "tanh", "to", "transpose",
           "unbroadcast", "where"]
