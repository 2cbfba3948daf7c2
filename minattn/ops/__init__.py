"""Primitive differentiable ops: one Function per op, forward and backward side by side."""

from .arithmetic import add, div, eq, ge, gt, le, lt, mul, ne, neg, pow, sub, unbroadcast, where
from .elementwise import abs, exp, log, relu, sqrt, tanh
from .matmul import matmul
from .reduce import max, mean, sum
from .shape import astype, getitem, reshape, swapaxes, to, transpose


def softmax(x, axis=-1):
    from ..functional import softmax

    return softmax(x, axis)


def log_softmax(x, axis=-1):
    from ..functional import log_softmax

    return log_softmax(x, axis)


__all__ = ["abs", "add", "astype", "div", "eq", "exp", "ge", "getitem", "gt", "le", "log",
           "log_softmax", "lt", "matmul", "max", "mean", "mul", "ne", "neg", "pow", "relu",
           "reshape", "softmax", "sqrt", "sub", "sum", "swapaxes", "tanh", "to", "transpose",
           "unbroadcast", "where"]
