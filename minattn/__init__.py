"""minattn: backpropagation through attention, by hand, on NumPy or CuPy.

>>> import minattn as ma
>>> x = ma.randn(4, 8, requires_grad=True)
>>> y = x.softmax(axis=-1)
>>> y.backward(ma.randn(4, 8))
>>> x.grad.shape
(4, 8)
"""

from . import creation, cuda, functional, kernels, nn, ops, optim, viz
from .backend import (
                      cuda_available,
                      default_device,
                      float16,
                      float32,
                      float64,
                      manual_seed,
                      set_default_device,
)
from .core import Function, Size, Tensor, is_grad_enabled, no_grad, ones, randn, tensor, zeros
from .creation import *  # noqa: F403 - arange, full, eye, long, ...
from .gradcheck import (
                      GradcheckError,
                      GradcheckReport,
                      gradcheck,
                      gradcheck_report,
                      module_gradcheck,
)
from .ops import *  # noqa: F403 - sum, matmul, where, ...: every op of minattn.ops

__version__ = "0.1.0"

__all__ = sorted({"Function", "GradcheckError", "GradcheckReport", "Size", "Tensor",
                  "cuda_available", "default_device", "float16", "float32", "float64",
                  "functional", "gradcheck", "gradcheck_report", "is_grad_enabled", "kernels",
                  "manual_seed", "module_gradcheck", "nn", "no_grad", "ones", "ops", "optim",
                  "randn", "set_default_device", "tensor", "viz", "zeros", "cuda", *ops.__all__,
                  *creation.__all__} - {"unbroadcast"})
