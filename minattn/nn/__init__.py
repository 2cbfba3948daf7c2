"""Neural-network modules (PyTorch's names): Module, Parameter, Linear, ..."""

from .module import Linear, Module, Parameter

__all__ = ["Linear", "Module", "Parameter"]
