"""Module and Parameter, as in PyTorch: modules register the parameters, buffers and
submodules assigned to them, so ``parameters()``, ``state_dict()`` and ``to(device)``
find them all. Also the two containers, ``ModuleList`` and ``Sequential``, and ``Linear``.

>>> layer = Linear(4, 3)
>>> [name for name, _ in layer.named_parameters()]
['weight', 'bias']
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict

from .. import backend
from ..core import Tensor, check_float


class Parameter(Tensor):
    """A tensor that a Module owns and an optimizer updates (requires_grad by default)."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models: subclass it, assign parameters and submodules in
    ``__init__``, and write ``forward``; calling the module calls ``forward``.

    >>> class Affine(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.scale = Parameter(ma.ones(3))
    ...     def forward(self, x):
    ...         return x * self.scale
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 "assigning attributes")
        if name in self._buffers and (value is None or isinstance(value, Tensor)) \
                and not isinstance(value, Parameter):
            self._buffers[name] = value  # assigning to a buffer updates the buffer
            object.__setattr__(self, name, value)
            return
        if name in self._parameters and value is not None and not isinstance(value, Parameter):
            raise TypeError(f"cannot assign {type(value).__name__} to parameter {name!r} of "
                            f"{type(self).__name__}: wrap it in nn.Parameter (or assign None)")
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent.discard(name)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent.discard(name)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Same as ``self.name = param``; with ``None`` the attribute is None and no
        parameter is registered (a layer without bias)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name} must be a Parameter or None, got "
                            f"{type(param).__name__}")
        setattr(self, name, param)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """A tensor the module owns but does not train (e.g. sinusoidal positions).

        Buffers move with ``to(device)``; persistent ones are saved in ``state_dict()``.
        """
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name} must be a Tensor or None, got "
                            f"{type(tensor).__name__}")
        if isinstance(tensor, Parameter):
            raise TypeError(f"register_buffer: {name} is a Parameter; assign it as an attribute")
        setattr(self, name, None)  # drop any parameter or module of that name
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name} must be a Module, got {type(module).__name__}")
        setattr(self, name, module)
        if module is None:
            self._modules[name] = None

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- walking the tree -------------------------------------------------------------------
    def named_children(self):
        return ((name, m) for name, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix: str = ""):
        """(dotted name, Parameter) pairs, each parameter once, in registration order."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self, prefix: str = ""):
        for module_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{module_name}.{name}" if module_name else name), b

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def apply(self, fn) -> Module:
        """Call ``fn(module)`` on every submodule, then on self (e.g. custom initialisation)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # -- modes, devices, gradients ----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active) or, with ``mode=False``, evaluation mode."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) takes a bool, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def to(self, device=None, dtype=None) -> Module:
        """Move (and/or cast) every parameter and buffer in place, so optimizers keep their
        references: ``model.to("cuda")``, ``model.to(ma.float64)``. Floating-point data
        only is cast; integer buffers keep their dtype. As in PyTorch, an optimizer's state
        (Adam's moments) is not cast: make the optimizer after changing the dtype."""
        device, dtype = backend.split_to_args(device, dtype)
        dtype = backend.resolve_dtype(dtype)
        if dtype is not None and not backend.is_float(dtype):
            raise TypeError(f"Module.to: only floating-point dtypes are allowed, got {dtype}")
        for t in (*self.parameters(), *self.buffers()):
            data = t.data if device is None else backend.to_device(t.data, device)
            if dtype is not None and backend.is_float(data.dtype):
                data = data.astype(dtype)
            t.data = data
            t.grad = None
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the accumulated gradients (None, or zeros with ``set_to_none=False``)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    # -- saving and loading -----------------------------------------------------------------
    def _state_items(self):
        yield from self.named_parameters()
        for module_name, module in self.named_modules():
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    yield (f"{module_name}.{name}" if module_name else name), b

    def state_dict(self) -> OrderedDict:
        """name -> Tensor: a detached copy of each parameter and persistent buffer."""
        return OrderedDict((name, Tensor(t.data.copy())) for name, t in self._state_items())

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy Tensors or arrays into the parameters and buffers of the same names, checking
        shapes; the data keeps each parameter's device and dtype."""
        own = dict(self._state_items())
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
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ")
                 for name, m in self.named_children()]
        body = "\n  " + "\n  ".join(lines) + "\n" if lines else ""
        return f"{type(self).__name__}({self.extra_repr()}{body})"


class ModuleList(Module):
    """A list of modules whose parameters are registered as ``0.weight``, ``1.weight``, ...

    >>> layers = ModuleList([Linear(4, 4) for _ in range(2)])
    >>> len(layers), [n for n, _ in layers.named_parameters()][:2]
    (2, ['0.weight', '0.bias'])
    """

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        items = list(self._modules.values())
        return ModuleList(items[i]) if isinstance(i, slice) else items[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward: iterate over its modules")


class Sequential(ModuleList):
    """Modules applied one after another: ``Sequential(Linear(4, 8), ReLU(), Linear(8, 2))``."""

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x


def check_size(value, name: str, owner: str, minimum: int = 0) -> int:
    """A layer size (features, heads, rows) as an int >= minimum, or a TypeError or ValueError
    naming the argument and its value: ``Linear(8.0, 2)`` or ``Embedding(-1, 4)`` fail here,
    before any array is made. Bools are refused too: ``Linear(4, True)`` is a slip."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        which = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{owner}: {name} must be {which}, got {value}")
    return int(value)


def uniform(shape, bound: float, device=None, dtype=None):
    """U(-bound, bound) samples from minattn's generator, as a backend array."""
    device = backend.check_device(device)
    dtype = backend.resolve_dtype(dtype) or backend.DEFAULT_DTYPE
    return (backend.generator(device).uniform(-bound, bound, size=shape)).astype(dtype)


def normal(shape, std: float = 1.0, device=None, dtype=None):
    """N(0, std^2) samples from minattn's generator, as a backend array."""
    device = backend.check_device(device)
    dtype = backend.resolve_dtype(dtype) or backend.DEFAULT_DTYPE
    return (std * backend.generator(device).standard_normal(shape)).astype(dtype)


class Linear(Module):
    """y = x @ W^T + b, with W of shape (out_features, in_features) as in PyTorch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__()
        in_features = check_size(in_features, "in_features", "Linear")
        out_features = check_size(out_features, "out_features", "Linear")
        self.in_features, self.out_features = in_features, out_features
        # PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)); with no inputs, the bias starts at 0
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        self.weight = Parameter(uniform((out_features, in_features), bound, device, dtype))
        self.bias = Parameter(uniform((out_features,), bound, device, dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        check_float(x, f"Linear({self.in_features}, {self.out_features})")
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) got input of "
                             f"shape {x.shape}: its last axis must be {self.in_features}")
        out = x @ self.weight.T  # (..., out_features); MatMul folds the batch axes for BLAS
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"
