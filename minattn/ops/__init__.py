"""Primitive differentiable ops: one Function per op, forward and backward side by side.

Each module lists its public functions in ``__all__`` and the ones that are also Tensor
methods in ``TENSOR_METHODS`` (``x.sum(-1)`` is ``sum(x, -1)``); importing this package
attaches those methods and the operators to Tensor.
"""

import importlib

from .arithmetic import *  # noqa: F403
from .arithmetic import add, div, eq, ge, gt, le, lt, mul, ne, neg, pow, sub
from .elementwise import *  # noqa: F403
from .matmul import *  # noqa: F403
from .matmul import matmul
from .reduce import *  # noqa: F403
from .select import *  # noqa: F403
from .shape import *  # noqa: F403
from .shape import getitem, transpose
from .softmax import *  # noqa: F403 - binds the names to the functions, not the modules

# the modules themselves (some share a name with a function: matmul, softmax)
_MODULES = tuple(importlib.import_module(f"{__name__}.{name}") for name in (
    "arithmetic", "elementwise", "matmul", "reduce", "select", "shape", "softmax"))


def _attach_to_tensor() -> None:
    """Make the ops Tensor methods and operators: ``a + b`` is ``add(a, b)``, ``x.T`` is
    ``transpose(x)``, and the reflected operators (``2 * x``) swap their arguments."""
    from ..core import Tensor

    for module in _MODULES:
        for name, fn in getattr(module, "TENSOR_METHODS", {}).items():
            setattr(Tensor, name, fn)
    for name, op in [("add", add), ("sub", sub), ("mul", mul), ("truediv", div), ("pow", pow),
                     ("matmul", matmul)]:
        setattr(Tensor, f"__{name}__", op)
        setattr(Tensor, f"__r{name}__", lambda self, other, op=op: op(other, self))
    for name, op in [("neg", neg), ("getitem", getitem), ("lt", lt), ("le", le), ("gt", gt),
                     ("ge", ge), ("eq", eq), ("ne", ne)]:
        setattr(Tensor, f"__{name}__", op)
    Tensor.T = property(transpose, doc="All axes reversed, as NumPy's ``.T``.")


_attach_to_tensor()

__all__ = sorted({name for module in _MODULES for name in module.__all__})
