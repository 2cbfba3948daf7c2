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
        if value is None and (name in self._parameters or name in self._modules):
            registry = self._parameters if name in self._parameters else self._modules
            registry[name] = None  # the slot stays (a layer without bias), as in PyTorch
            object.__setattr__(self, name, None)
            return
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
        """Same as ``self.name = param``; with ``None`` the attribute is None and the slot is
        registered without a parameter (a layer without bias)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} object to parameter "
                            f"{name!r} (nn.Parameter or None required)")
        if param is None:
            for registry in (self._buffers, self._modules):
                registry.pop(name, None)
            self._parameters[name] = None
            object.__setattr__(self, name, None)
            return
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
        """(name, module) of the direct submodules, each module once."""
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """(dotted name, module) of self and every submodule, depth first; a module reached
        twice is listed once (unless ``remove_duplicate=False``), as in PyTorch."""
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                               remove_duplicate)

    def modules(self):
        return (m for _, m in self.named_modules())

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) \
            if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, t in getattr(module, registry).items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield (f"{module_name}.{name}" if module_name else name), t

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True):
        """(dotted name, Parameter) pairs in registration order; a shared (tied) parameter
        once, under the first name that reaches it, as in PyTorch."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        return (b for _, b in self.named_buffers(recurse=recurse))

    def get_submodule(self, target: str) -> Module:
        module = self
        for name in target.split(".") if target else ():
            if name not in module._modules or module._modules[name] is None:
                raise AttributeError(f"{type(module).__name__} has no submodule {name!r}")
            module = module._modules[name]
        return module

    def get_parameter(self, target: str) -> Parameter:
        module_name, _, name = target.rpartition(".")
        module = self.get_submodule(module_name)
        if module._parameters.get(name) is None:
            raise AttributeError(f"{type(module).__name__} has no parameter {name!r}")
        return module._parameters[name]

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
                data = data.astype(dtype, copy=False)
            if data is not t.data:  # nothing changes (and grads stay) when nothing moves
                t.data = data
                t.grad = None
        return self

    def float(self) -> Module:
        return self.to(dtype="float32")

    def double(self) -> Module:
        return self.to(dtype="float64")

    def half(self) -> Module:
        return self.to(dtype="float16")

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device=None) -> Module:
        return self.to("cuda")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the accumulated gradients (None, or zeros with ``set_to_none=False``)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    # -- saving and loading -----------------------------------------------------------------
    def _state_items(self, prefix: str = ""):
        """PyTorch's order: each module's own parameters, then its persistent buffers, then
        its children's; a tied parameter appears under every name that holds it."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                yield prefix + name, b
        for name, child in self._modules.items():
            if child is not None:
                yield from child._state_items(f"{prefix}{name}.")

    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """name -> Tensor for each parameter and persistent buffer. As in PyTorch, each entry
        is detached but shares the array: writing into it (``sd[k].copy_(w)`` under no_grad)
        changes the module. ``keep_vars=True`` gives the Parameters themselves."""
        destination = OrderedDict() if destination is None else destination
        for name, t in self._state_items(prefix):
            destination[name] = t if keep_vars else t.detach()
        return destination

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy Tensors or arrays into the parameters and buffers of the same names, in place
        (optimizers and state_dict entries keep seeing them), cast to each one's dtype.

        Missing or unexpected keys (with ``strict``) and shape mismatches raise PyTorch's
        RuntimeError; returns ``(missing_keys, unexpected_keys)`` as a named tuple.
        """
        own = OrderedDict(self._state_items())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict:
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
        for name, t in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            value = value.data if isinstance(value, Tensor) else value
            if tuple(value.shape) != t.shape:
                errors.append(f"size mismatch for {name}: copying a param with shape "
                              f"{tuple(value.shape)} from checkpoint, the shape in current "
                              f"model is {t.shape}.")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        for name, t in own.items():
            if name in state_dict:
                value = state_dict[name]
                value = value.data if isinstance(value, Tensor) else value
                value = backend.to_device(backend.as_array(value), t.device)
                t._write("load_state_dict", value.astype(t.dtype, copy=False))  # as copy_
        return IncompatibleKeys(missing, unexpected)

    def extra_repr(self) -> str:
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def _child_lines(self) -> list:
        return [f"({name}): " + _indent(repr(m)) for name, m in self._modules.items()
                if m is not None]

    def __repr__(self) -> str:
        """PyTorch's layout: ``Name(extra)``, or the extra lines and ``(child): ...`` lines
        indented by two, one per line."""
        extra = self.extra_repr().split("\n") if self.extra_repr() else []
        children = self._child_lines()
        lines = extra + children
        body = ""
        if len(extra) == 1 and not children:
            body = extra[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{self._get_name()}({body})"


def _indent(text: str) -> str:
    return text.replace("\n", "\n  ")


class IncompatibleKeys(tuple):
    """What load_state_dict returns: (missing_keys, unexpected_keys), as PyTorch's."""

    def __new__(cls, missing_keys, unexpected_keys):
        return super().__new__(cls, (missing_keys, unexpected_keys))

    missing_keys = property(lambda self: self[0])
    unexpected_keys = property(lambda self: self[1])

    def __repr__(self) -> str:
        if not self[0] and not self[1]:
            return "<All keys matched successfully>"
        return f"_IncompatibleKeys(missing_keys={self[0]}, unexpected_keys={self[1]})"


class ModuleList(Module):
    """A list of modules whose parameters are registered as ``0.weight``, ``1.weight``, ...

    >>> layers = ModuleList([Linear(4, 4) for _ in range(2)])
    >>> len(layers), [n for n, _ in layers.named_parameters()][:2]
    (2, ['0.weight', '0.bias'])
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        self.extend(items)

    def _index(self, i: int) -> int:
        n = len(self._modules)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for {type(self).__name__} of "
                             f"length {n}")
        return i % n

    def __getitem__(self, i):
        items = list(self._modules.values())
        return type(self)(items[i]) if isinstance(i, slice) else items[self._index(i)]

    def __setitem__(self, i: int, module: Module) -> None:
        self.add_module(str(self._index(i)), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def _child_lines(self) -> list:
        """PyTorch's ModuleList repr: a run of identical modules is one line, ``(0-2): 3 x``."""
        reprs = [_indent(repr(m)) for m in self._modules.values()]
        lines, start = [], 0
        for i in range(1, len(reprs) + 1):
            if i == len(reprs) or reprs[i] != reprs[start]:
                count = i - start
                label = f"({start})" if count == 1 else f"({start}-{i - 1}): {count} x"
                sep = ": " if count == 1 else " "
                lines.append(f"{label}{sep}{reprs[start]}")
                start = i
        return lines

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward: iterate over its modules")


class Sequential(ModuleList):
    """Modules applied one after another: ``Sequential(Linear(4, 8), ReLU(), Linear(8, 2))``;
    ``Sequential(OrderedDict(fc=Linear(4, 8), act=ReLU()))`` names them."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            self.extend(modules)

    _child_lines = Module._child_lines  # no "3 x" runs in a Sequential's repr

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(OrderedDict(list(self._modules.items())[i]))
        return super().__getitem__(i)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x


class ModuleDict(Module):
    """Modules by name, registered as submodules: ``ModuleDict(dict(wte=Embedding(10, 4)))``;
    ``d["wte"]`` and ``d.wte`` are the same module.

    >>> d = ModuleDict({"proj": Linear(4, 4)})
    >>> [n for n, _ in d.named_parameters()]
    ['proj.weight', 'proj.bias']
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def update(self, modules) -> None:
        items = modules.items() if hasattr(modules, "items") else modules
        for name, m in items:
            self[name] = m

    def __getitem__(self, name: str) -> Module:
        return self._modules[name]

    def __setitem__(self, name: str, module: Module) -> None:
        self.add_module(name, module)

    def __delitem__(self, name: str) -> None:
        delattr(self, name)

    def pop(self, name: str) -> Module:
        module = self._modules[name]
        del self[name]
        return module

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, name) -> bool:
        return name in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward: call its modules")


def _as_parameter(value) -> Parameter:
    """A Parameter stays itself; a tensor or array becomes one (as PyTorch's ParameterList)."""
    if isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor):
        return Parameter(value.data, requires_grad=value.requires_grad)
    return Parameter(backend.as_array(value))


class ParameterList(Module):
    """Parameters in a list, registered as ``0``, ``1``, ...; plain tensors become Parameters."""

    def __init__(self, values=None):
        super().__init__()
        for v in values or ():
            self.append(v)

    def append(self, value) -> ParameterList:
        setattr(self, str(len(self._parameters)), _as_parameter(value))
        return self

    def extend(self, values) -> ParameterList:
        for v in values:
            self.append(v)
        return self

    def __getitem__(self, i):
        items = list(self._parameters.values())
        return items[i]

    def __setitem__(self, i: int, value) -> None:
        n = len(self._parameters)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for ParameterList of length {n}")
        setattr(self, str(i % n), _as_parameter(value))

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self):
        return iter(self._parameters.values())

    def extra_repr(self) -> str:
        return "\n".join(f"({i}): Parameter containing: [{p.dtype} of size "
                         f"{'x'.join(map(str, p.shape))}]" for i, p in enumerate(self))


class ParameterDict(Module):
    """Parameters by name; plain tensors become Parameters."""

    def __init__(self, parameters=None):
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def update(self, parameters) -> None:
        items = parameters.items() if hasattr(parameters, "items") else parameters
        for name, p in items:
            self[name] = p

    def __getitem__(self, name: str) -> Parameter:
        return self._parameters[name]

    def __setitem__(self, name: str, value) -> None:
        setattr(self, name, _as_parameter(value))

    def __delitem__(self, name: str) -> None:
        delattr(self, name)

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self):
        return iter(self._parameters)

    def __contains__(self, name) -> bool:
        return name in self._parameters

    def keys(self):
        return self._parameters.keys()

    def values(self):
        return self._parameters.values()

    def items(self):
        return self._parameters.items()

    def extra_repr(self) -> str:
        return "\n".join(f"({k}): Parameter containing: [{p.dtype} of size "
                         f"{'x'.join(map(str, p.shape))}]" for k, p in self.items())


class Identity(Module):
    """y = x (any arguments accepted and ignored, as PyTorch's)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
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
