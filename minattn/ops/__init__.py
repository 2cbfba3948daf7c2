"""Primitive differentiable ops: one Function per op, forward and backward side by side.

Each module lists its public functions in ``__all__`` and the ones that are also Tensor
methods in ``TENSOR_METHODS`` (``x.sum(-1)`` is ``sum(x, -1)``); importing this package
attaches those methods and the operators to Tensor.
"""

import importlib

from .arithmetic import *  # noqa: F403
from .elementwise import *  # noqa: F403
from .inplace import *  # noqa: F403
from .matmul import *  # noqa: F403
from .reduce import *  # noqa: F403
from .select import *  # noqa: F403
from .shape import *  # noqa: F403
from .softmax import *  # noqa: F403 - binds the names to the functions, not the modules

# the modules themselves (some share a name with a function: matmul, softmax)
_MODULES = tuple(importlib.import_module(f"{__name__}.{name}") for name in (
    "arithmetic", "elementwise", "inplace", "matmul", "reduce", "select", "shape", "softmax"))


def _attach_to_tensor() -> None:
    """Make the ops Tensor methods and operators: ``a + b`` is ``add(a, b)``, ``x.T`` is
    ``transpose(x)``, and the reflected operators (``2 * x``) swap their arguments."""
    from ..core import Tensor
    from . import arithmetic as a
    from . import shape
    from .matmul import matmul

    for module in _MODULES:
        for name, fn in getattr(module, "TENSOR_METHODS", {}).items():
            setattr(Tensor, name, fn)
    for name, op in [("add", a.add), ("sub", a.sub), ("mul", a.mul), ("truediv", a.div),
                     ("pow", a.pow), ("matmul", matmul), ("floordiv", a.floor_divide),
                     ("mod", a.remainder), ("and", a.bitwise_and), ("or", a.bitwise_or),
                     ("xor", a.bitwise_xor)]:
        setattr(Tensor, f"__{name}__", op)
        setattr(Tensor, f"__r{name}__", lambda self, other, op=op: op(other, self))
    for name, op in [("neg", a.neg), ("invert", a.bitwise_not), ("getitem", shape.getitem),
                     ("lt", a.lt), ("le", a.le), ("gt", a.gt), ("ge", a.ge), ("eq", a.eq),
                     ("ne", a.ne)]:
        setattr(Tensor, f"__{name}__", op)
    Tensor.T = property(shape.transpose, doc="All axes reversed, as NumPy's ``.T``.")


_attach_to_tensor()

__all__ = sorted({name for module in _MODULES for name in module.__all__})
