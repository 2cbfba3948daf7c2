"""minattn: backpropagation through attention, by hand, on NumPy or CuPy.

>>> import minattn as ma
>>> x = ma.randn(4, 8, requires_grad=True)
>>> y = x.softmax(axis=-1)
>>> y.backward(ma.randn(4, 8))
>>> x.grad.shape
(4, 8)
"""

from . import functional, kernels, nn, ops, optim, viz
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
from .gradcheck import GradcheckError, GradcheckReport, gradcheck, gradcheck_report
from .ops import (
                      abs,
                      exp,
                      log,
                      matmul,
                      max,
                      mean,
                      relu,
                      reshape,
                      sqrt,
                      sum,
                      swapaxes,
                      tanh,
                      transpose,
                      where,
)

__version__ = "0.1.0"

__all__ = ["Function", "GradcheckError", "GradcheckReport", "Size", "Tensor", "abs", "cuda_available",
           "default_device", "exp", "float16", "float32", "float64", "functional", "gradcheck",
           "gradcheck_report", "is_grad_enabled", "kernels", "log", "manual_seed", "matmul", "max",
           "mean", "nn", "no_grad", "ones", "ops", "optim", "randn", "relu", "reshape",
           "set_default_device", "sqrt", "sum", "swapaxes", "tanh", "tensor", "transpose", "viz",
           "where", "zeros"]
