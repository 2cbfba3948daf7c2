"""Module and Parameter, as in PyTorch: modules register the parameters and submodules
assigned to them, so ``parameters()``, ``state_dict()`` and ``to(device)`` find them all."""

from __future__ import annotations

import math
from collections import OrderedDict

from .. import backend
from ..core import Tensor


class Parameter(Tensor):
    """A tensor that a Module owns and an optimizer updates (requires_grad by default)."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models: subclass it, assign parameters and submodules in
    ``__init__``, and write ``forward``; calling the module calls ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 "assigning attributes")
        for registry in (self._parameters, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- walking the tree -------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix: str = ""):
        """(dotted name, Parameter) pairs, each parameter once, in registration order."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    # -- modes, devices, gradients ----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, device=None, dtype=None) -> Module:
        """Move (and/or cast) every parameter in place, so optimizers keep their references."""
        if device is not None and not isinstance(device, str):
            device, dtype = None, device
        dtype = backend.resolve_dtype(dtype)
        for p in self.parameters():
            data = p.data if device is None else backend.to_device(p.data, device)
            p.data = data if dtype is None else data.astype(dtype)
            p.grad = None
        return self

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # -- saving and loading -----------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """name -> Tensor (a detached copy of each parameter)."""
        return OrderedDict((name, Tensor(p.data.copy())) for name, p in self.named_parameters())

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy Tensors or arrays into the parameters of the same names, checking shapes."""
        own = dict(self.named_parameters())
        missing, unexpected = own.keys() - state.keys(), state.keys() - own.keys()
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {sorted(missing)}, unexpected keys "
                           f"{sorted(unexpected)}")
        for name in own.keys() & state.keys():
            p, value = own[name], state[name]
            value = value.data if isinstance(value, Tensor) else value
            if tuple(value.shape) != p.shape:
                raise ValueError(f"load_state_dict: {name} has shape {tuple(value.shape)} in "
                                 f"the state but {p.shape} in the module")
            p.data = backend.to_device(backend.as_array(value), p.device).astype(p.dtype)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        body = "\n  " + "\n  ".join(lines) + "\n" if lines else ""
        return f"{type(self).__name__}({self.extra_repr()}{body})"


def uniform(shape, bound: float, device=None, dtype=None):
    """U(-bound, bound) samples from minattn's generator, as a backend array."""
    device = backend.check_device(device)
    dtype = backend.resolve_dtype(dtype) or backend.DEFAULT_DTYPE
    return (backend.generator(device).uniform(-bound, bound, size=shape)).astype(dtype)


class Linear(Module):
    """y = x @ W^T + b, with W of shape (out_features, in_features) as in PyTorch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)  # PyTorch's default: U(-1/sqrt(in), 1/sqrt(in))
        self.weight = Parameter(uniform((out_features, in_features), bound, device, dtype))
        self.bias = Parameter(uniform((out_features,), bound, device, dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) got input of "
                             f"shape {x.shape}: its last axis must be {self.in_features}")
        out = x @ self.weight.T  # (..., out_features)
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"
