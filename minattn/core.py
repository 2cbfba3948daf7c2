"""The engine: Tensor, Function, backward and no_grad, in one file.

A Tensor wraps a backend array (NumPy or CuPy). Every differentiable operation is a
Function: ``forward`` works on raw arrays and keeps what ``backward`` needs;
``Function.apply`` wraps the result in a Tensor that remembers the Function, which
remembers its input Tensors. That chain of references *is* the graph.
``Tensor.backward`` sorts the graph topologically and applies the chain rule once
per node, from the output back to the leaves.
"""

from __future__ import annotations

import contextlib
import numbers
import threading

from . import backend, kernels

_local = threading.local()  # grad mode is per thread, as in PyTorch
_accumulating = threading.Lock()  # backward passes on two threads may reach one leaf at once


def is_grad_enabled() -> bool:
    return getattr(_local, "enabled", True)


class no_grad(contextlib.ContextDecorator):
    """Inside ``with ma.no_grad():`` (or a function decorated with it) no graph is recorded.

    Nests and recurses: each entry saves the mode it found on this thread's stack and
    each exit restores it.
    """

    def __enter__(self):
        _local.__dict__.setdefault("saved", []).append(is_grad_enabled())
        _local.enabled = False

    def __exit__(self, *exc):
        _local.enabled = _local.saved.pop()
        return False


class Function:
    """Base class of every differentiable op; subclass it to write your own.

    ``forward(*arrays) -> array`` and ``backward(dout) -> grad or tuple of grads``, both
    on raw backend arrays. Keyword arguments of ``apply`` become attributes (``self.axis``).
    During backward, ``self.needs_input_grad`` says which inputs want a gradient, so a
    backward may return None for the others.

    >>> class Cube(Function):
    ...     def forward(self, x):
    ...         self.x = x
    ...         return x ** 3
    ...     def backward(self, dout):
    ...         return 3 * self.x ** 2 * dout
    """

    # What backward reads of what forward saw, for the in-place check (see Tensor._version):
    # an op that keeps its input arrays (x * y keeps both) sets saves_inputs; one that keeps
    # its output (exp keeps exp(x)) sets saves_output. Modifying a saved array in place before
    # backward is then an error instead of a wrong gradient.
    saves_inputs = True
    saves_output = False

    def __init__(self, **params):
        self.__dict__.update(params)

    def forward(self, *arrays):
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    @classmethod
    def apply(cls, *inputs, **params) -> Tensor:
        fn = cls(**params)
        tensors = _as_tensors(inputs, cls.__name__)
        out = fn.forward(*(t.data for t in tensors))
        out = backend.get_array_module(out).asarray(out)  # a NumPy scalar -> 0-d array
        needs_grad = (is_grad_enabled() and backend.is_float(out.dtype)
                      and any(t.requires_grad for t in tensors))
        result = Tensor(out, requires_grad=needs_grad)
        base = _viewed(out, tensors)
        if base is not None:  # a view (reshape, transpose, x[1:]): one memory, one version
            result._versions = base._versions
            result._base = base if base._base is None else base._base
        if needs_grad:  # keep the graph: this Function, its inputs, what forward saved
            fn.inputs = tensors
            fn.input_nodes = tuple(t._ctx for t in tensors)  # who made each input, now
            fn.needs_input_grad = tuple(t.requires_grad for t in tensors)
            saved = fn.saved_inputs(tensors) + ([result] if cls.saves_output else [])
            fn.saved_versions = [(t, t._versions, t._versions[0]) for t in saved]
            result._ctx = fn
        return result

    def saved_inputs(self, inputs) -> list:
        """The inputs whose arrays backward will read (all of them if ``saves_inputs``); an
        op whose gradients need only some of them says which (x * 2 reads no x)."""
        return list(inputs) if self.saves_inputs else []

    def check_saved_versions(self) -> None:
        """PyTorch's in-place check: an array this op saved for backward was changed since."""
        for t, versions, seen in self.saved_versions:
            if versions[0] != seen:
                positions = [i for i, x in enumerate(self.inputs) if x is t]
                what = f"input {positions[0]}" if positions else "output"
                raise RuntimeError(
                    f"one of the tensors needed for gradient computation has been modified by "
                    f"an inplace operation: the {what} of {type(self).__name__}, "
                    f"{describe(t)}, is at version {versions[0]}; expected version {seen} "
                    "instead. Modify a copy (x.clone()) or do the in-place op after backward()")


def _viewed(out, tensors):
    """The input whose memory the output array shares (a view of it), else None."""
    if getattr(out, "base", None) is None:
        return None
    xp = backend.get_array_module(out)
    for t in tensors:
        if t.data.size and out.size and xp.may_share_memory(out, t.data):
            return t
    return None


def constant_array(value, device: str, op: str, name: str, other: str):
    """The array behind a constant argument of op (a mask, class indices): a Tensor that needs
    no gradient, a NumPy or CuPy array, or nested lists (made on ``device``).

    An array on another device than ``other`` (on ``device``) is an error naming both; so is
    a Tensor that requires grad, since nothing would carry its gradient.
    """
    if isinstance(value, Tensor):
        if value.requires_grad:
            raise ValueError(f"{op}: {name} is a constant here and gets no gradient; pass "
                             f"{name}.detach()")
        value = value.data
    elif not (backend.is_cupy_array(value) or hasattr(value, "__array__")):
        return backend.as_array(value, device=device)  # nested lists
    if backend.device_of(value) != device:
        raise RuntimeError(f"{op}: {name} is on {backend.device_of(value)} but {other} is on "
                           f"{device}")
    return value


def describe(x) -> str:
    """'int64 tensor of shape (3,) on cpu': what an error message says about a tensor or array."""
    device = x.device if isinstance(x, Tensor) else backend.device_of(x)
    return f"{x.dtype} tensor of shape {tuple(x.shape)} on {device}"


def check_float(x, op: str, name: str = "input") -> None:
    """A TypeError unless x (a Tensor or array) is floating point: softmax, layer norm and the
    like have no integer version (PyTorch: "not implemented for 'Long'")."""
    if not backend.is_float(x.dtype):
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {describe(x)}; "
                        "cast it first, e.g. with .to(ma.float32)")


def check_shape(shape: tuple, op: str, infer: bool = False) -> tuple:
    """The dimensions of a new shape as ints >= 0 (one may be -1, to infer, when ``infer``)."""
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"{op}: a shape holds ints, got {shape!r} with the "
                            f"{type(n).__name__} {n!r}")
        if n < (-1 if infer else 0):
            allowed = "ints >= 0, or -1 for one inferred dimension" if infer else "ints >= 0"
            raise ValueError(f"{op}: shape {shape!r} has the dimension {n}; allowed: {allowed}")
    return tuple(int(n) for n in shape)


def _as_tensors(inputs, op: str) -> list[Tensor]:
    """Wrap numbers and arrays as constant tensors; all inputs must share one device."""
    device = next((x.device for x in inputs if isinstance(x, Tensor)), None)
    like = next((x for x in inputs if isinstance(x, Tensor) and backend.is_float(x.dtype)), None)
    tensors = []
    for x in inputs:
        if not isinstance(x, Tensor):
            try:
                if backend.is_number(x):  # a number takes the float tensors' dtype, as PyTorch
                    dtype = like.dtype if like is not None else None
                    x = Tensor(backend.as_array(x, device=device, dtype=dtype))
                else:
                    x = Tensor(x)  # an array keeps its device: mixing is caught just below
            except (TypeError, ValueError) as exc:  # not numbers ("a"), ragged lists
                error = TypeError if isinstance(exc, TypeError) else ValueError
                raise error(f"{op}: {exc}") from None
        tensors.append(x)
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        shapes = ", ".join(f"{t.device} {t.shape}" for t in tensors)
        raise RuntimeError(f"{op}: inputs are on different devices ({shapes}); "
                           "move them with .to(device) first")
    return tensors


class Size(tuple):
    """A tensor's shape: a tuple of ints, as ``torch.Size`` (``x.shape``, ``x.size()``)."""

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n

    def __repr__(self) -> str:
        return f"minattn.Size({list(self)})"

    def __str__(self) -> str:  # error messages say "shape (2, 3)", as a tuple reads
        return tuple.__repr__(self)

    def __getitem__(self, index):
        item = super().__getitem__(index)
        return Size(item) if isinstance(index, slice) else item


class Tensor:
    """An n-dimensional array that can record how it was computed and differentiate it."""

    __array_priority__ = 1000  # ndarray + Tensor calls Tensor.__radd__, not NumPy's add
    __hash__ = object.__hash__  # == is elementwise, so hash by identity as PyTorch does

    def __init__(self, *data, requires_grad: bool = False):
        """``Tensor(array)`` wraps a NumPy or CuPy array as it is (its dtype, its memory);
        as in PyTorch, ``Tensor([1, 2])`` is a float tensor of that data and ``Tensor(2, 3)``
        a float tensor of that shape (zeros: PyTorch leaves it uninitialized)."""
        if len(data) == 1 and not (isinstance(data[0], int) and not isinstance(data[0], bool)):
            data = data[0]  # Tensor(3) is a shape, as in PyTorch; Tensor([3]) is data
        if isinstance(data, Tensor):
            data = data.data
        if not _is_backend_array(data):
            data = _pytorch_data(data)
        backend.check_numeric(data)  # no tensors of strings or objects
        self.data = data
        self.grad: Tensor | None = None
        self._ctx: Function | None = None  # the Function that produced this tensor
        self._retain_grad = False
        # How many times its memory was written in place: a one-element list that every view
        # of the same memory shares (x, x.T, x[0]), as PyTorch's version counter.
        self._versions = [0]
        self._base: Tensor | None = None  # the tensor this one is a view of
        self.requires_grad = requires_grad

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not backend.is_float(self.dtype):
            raise TypeError(f"only floating-point tensors can require gradients; this one "
                            f"is {self.dtype} with shape {self.shape}")
        self._requires_grad = bool(value)

    # -- what it is -----------------------------------------------------------------------
    shape = property(lambda self: Size(self.data.shape))
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self._ctx is None)

    def size(self, dim=None):
        """The shape, as ``torch.Tensor.size``: ``x.size()`` is a Size (a tuple), ``x.size(-1)``
        one length. (NumPy's ``.size``, the element count, is ``x.numel()``.)"""
        if dim is None:
            return self.shape
        if self.ndim == 0:  # as PyTorch: "dimension specified as 0 but tensor has no dimensions"
            raise IndexError(f"size({dim!r}) of a 0-d tensor: it has no dimensions")
        from .ops.reduce import normalize_dim
        return self.shape[normalize_dim(dim, self.ndim, "size")]

    def numel(self) -> int:
        """The number of elements (NumPy's ``.size``)."""
        return int(self.data.size)

    def dim(self) -> int:
        """The number of axes, as ``torch.Tensor.dim`` (also ``.ndim``)."""
        return self.data.ndim

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __repr__(self) -> str:
        array = backend.to_numpy(self.data)
        body = backend.np.array2string(array, separator=", ", prefix="tensor(")
        # PyTorch's reading: the dtype is said unless it is a default one
        extra = "" if array.dtype.name in ("float32", "int64", "bool") \
            else f", dtype={array.dtype.name}"
        extra += f", device='{self.device}'" if self.device != "cpu" else ""
        if self._ctx is not None:
            extra += f", grad_fn={type(self._ctx).__name__}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.item())

    def __format__(self, spec: str) -> str:
        """f"{t:.4f}" formats a one-element tensor as its number (as PyTorch)."""
        if self.numel() == 1 and spec:
            return format(self.item(), spec)
        if spec:
            raise TypeError(f"unsupported format string {spec!r} for a tensor of shape "
                            f"{self.shape}: only one-element tensors format as numbers")
        return str(self)

    def __index__(self) -> int:
        """A one-element integer tensor is an index: ``range(t)``, ``xs[t]``, ``[0] * t``."""
        if self.numel() != 1 or self.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors of a single element can be converted to an "
                            f"index, got {describe(self)}")
        return int(self.item())

    def __int__(self) -> int:
        return int(self._one_number("int"))

    def __float__(self) -> float:
        return float(self._one_number("float"))

    def _one_number(self, what: str):
        if self.numel() != 1:
            raise ValueError(f"{what}() of a tensor of shape {self.shape}: only one-element "
                             "tensors can be converted to Python scalars")
        return self.item()

    def __getattr__(self, name: str):
        """Reached only when a name is not found: PyTorch's methods minattn lacks say so."""
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raise AttributeError(f"minattn has no torch.Tensor.{name}; see the PyTorch page of "
                             "the docs")

    @property
    def grad_fn(self):
        """The Function that made this tensor (None for a leaf), as PyTorch's ``grad_fn``."""
        return self._ctx

    def numpy(self):
        """A host NumPy copy of the data (never a view that could change under you)."""
        return backend.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        """np.asarray(t) works for CPU tensors; a GPU tensor must say .numpy() explicitly."""
        if self.device != "cpu":
            raise TypeError(f"cannot convert a {self.device} tensor to NumPy implicitly; "
                            "use .numpy() for a host copy")
        return self.data if dtype is None else self.data.astype(dtype)

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.shape}")
        return self.data.reshape(()).item()

    def detach(self) -> Tensor:
        """The same data (one memory, one version counter), cut from the graph."""
        out = Tensor(self.data)
        out._versions = self._versions
        out._base = self if self._base is None else self._base
        return out

    # -- in-place: the machinery; the ops (add_, t[i] = v, copy_, ...) are in ops/inplace.py --
    def _inplace(self, name: str, op, *args, **kwargs) -> Tensor:
        """self = op(self, *args) in place, with PyTorch's rules.

        Recording gradients, the old value becomes an input of op (a copy of it: op's
        backward may read it, and this memory is about to be overwritten) and this tensor
        becomes op's output, so the chain rule runs through the in-place op. Without a graph,
        the result is only written over the old values. Either way the version counter goes
        up, so a backward that saved this memory fails instead of using the new values.
        """
        tracking = is_grad_enabled() and (self.requires_grad or any(
            isinstance(a, Tensor) and a.requires_grad for a in args))
        if not tracking:
            with no_grad():
                result = op(self, *args, **kwargs)
            self._write(name, result.data)
            return self
        if self.requires_grad and self._ctx is None:
            raise RuntimeError(f"{name}: a leaf tensor that requires grad ({describe(self)}) "
                               "cannot be modified in place while gradients are recorded; do "
                               "it inside `with ma.no_grad():` (as an optimizer step does), or "
                               "on a copy (x.clone())")
        if self._base is not None:
            raise RuntimeError(f"{name}: this {describe(self)} is a view of another tensor "
                               "(a slice, reshape or transpose of it); minattn does not record "
                               "in-place ops on views (PyTorch does): use an out-of-place op "
                               "(y = y + 1) or modify a copy (y = y.clone())")
        old = Tensor(self.data.copy(), requires_grad=self.requires_grad)  # the value before
        old._ctx = self._ctx  # ... and its place in the graph
        result = op(old, *args, **kwargs)
        self._write(name, result.data)
        self._ctx, self.requires_grad = result._ctx, result.requires_grad
        return self

    def _write(self, name: str, values) -> None:
        """Write an array over this tensor's memory (broadcast, cast) and count the version."""
        xp = backend.get_array_module(self.data)
        if tuple(values.shape) != self.shape:
            try:
                values = xp.broadcast_to(values, self.shape)
            except ValueError:
                raise RuntimeError(f"{name}: the result has shape {tuple(values.shape)}, which "
                                   f"does not fit this tensor's shape {self.shape}: an in-place "
                                   "op cannot change the shape") from None
        casting = "unsafe" if name in ("setitem", "copy_") else "same_kind"  # as PyTorch's
        if not xp.can_cast(values.dtype, self.dtype, casting):
            raise RuntimeError(f"{name}: result type {values.dtype} can't be cast to this "
                               f"tensor's dtype {self.dtype} (in-place ops keep the dtype)")
        if not self.data.flags.writeable:
            raise RuntimeError(f"{name}: this {describe(self)} is a read-only view (expand and "
                               "broadcast views repeat one element); clone() it first")
        self.data[...] = values
        self._versions[0] += 1

    @property
    def _version(self) -> int:
        """How many in-place writes this tensor's memory has had (PyTorch's ``_version``)."""
        return self._versions[0]

    def retain_grad(self) -> None:
        """Keep .grad on this non-leaf tensor after backward (leaves always keep it)."""
        self._retain_grad = True
        if self._ctx is not None:
            self._ctx.retained = self

    # -- the chain rule -------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) . grad into every leaf's ``.grad``.

        ``grad`` is the upstream gradient dL/d(self); it may be left out only for a
        one-element tensor (then it is 1). Buffers saved for backward are freed as they
        are used unless ``retain_graph=True``.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: no input "
                               "of its graph has requires_grad=True")
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.numel() != 1:
                raise RuntimeError(f"grad can be left out only for a one-element tensor; "
                                   f"this one has shape {self.shape}: pass backward(grad)")
            grad = xp.ones_like(self.data)
        else:
            grad = _as_tensors([self, grad], "backward")[1].data
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward: grad has shape {tuple(grad.shape)} but the "
                                 f"tensor has shape {self.shape}")
            if grad.dtype.kind == "c":  # casting would drop the imaginary part silently
                raise TypeError(f"backward: grad must be real for a real tensor, got "
                                f"{describe(grad)}; the tensor is {describe(self)}")
            grad = grad.astype(self.dtype, copy=False)

        if self._ctx is None:  # a leaf: d(self)/d(self) . grad is grad
            with _accumulating:
                self.grad = Tensor(grad.copy() if self.grad is None else self.grad.data + grad)
            return
        # The graph's nodes are the Functions (a tensor modified in place is the output of a
        # new Function, and the ops that read its old value still point at the old one).
        grads = {id(self._ctx): grad}  # dL/d(output of fn) for every Function fn reached so far
        leaves = {}  # id(leaf) -> [leaf, dL/d(leaf)]
        for fn in _topological_order(self._ctx):
            dout = grads.pop(id(fn), None)
            if dout is None:  # every path to fn returned None: no gradient reaches it
                continue
            retained = getattr(fn, "retained", None)  # its output asked for retain_grad()
            if retained is not None:
                with _accumulating:
                    retained.grad = Tensor(dout.copy() if retained.grad is None
                                           else retained.grad.data + dout)
            if getattr(fn, "inputs", None) is None:
                raise RuntimeError("trying to backward through the graph a second time: its "
                                   "saved buffers were freed; use backward(retain_graph=True)")
            fn.check_saved_versions()
            dins = fn.backward(dout)
            dins = dins if isinstance(dins, tuple) else (dins,)
            if len(dins) != len(fn.inputs):
                raise RuntimeError(f"{type(fn).__name__}.backward returned {len(dins)} "
                                   f"gradient(s) for {len(fn.inputs)} input(s)")
            for x, node, wanted, dx in zip(fn.inputs, fn.input_nodes, fn.needs_input_grad, dins):
                if dx is None or not wanted:
                    continue
                dx = backend.get_array_module(dx).asarray(dx)  # a NumPy scalar -> array
                if tuple(dx.shape) != x.shape:
                    raise RuntimeError(f"{type(fn).__name__}.backward returned a gradient of "
                                       f"shape {tuple(dx.shape)} for an input of shape {x.shape}")
                dx = dx.astype(x.dtype, copy=False)
                if node is None:  # a leaf
                    if id(x) in leaves:  # fan-out: the gradients of every path add up
                        dx = kernels.array_module(dx).add(leaves[id(x)][1], dx)
                    leaves[id(x)] = [x, dx]
                    continue
                if id(node) in grads:  # fan-out: the gradients of every path add up
                    dx = kernels.array_module(dx).add(grads[id(node)], dx)  # grads[x] + dx
                grads[id(node)] = dx
            if not retain_graph:
                fn.__dict__.clear()  # free the saved arrays; marks the node as used
                fn.inputs, fn.input_nodes = None, ()
        for x, dx in leaves.values():  # .grad += dL/dx, one thread at a time
            with _accumulating:
                x.grad = Tensor(dx.copy() if x.grad is None else x.grad.data + dx)


def _topological_order(root: Function) -> list[Function]:
    """Every Function that root depends on, each before all of its inputs' Functions.

    Iterative DFS in post-order (a Function is appended once all the Functions that made its
    inputs are), reversed: walking the list visits each node after every node that consumes it.
    """
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        fn, inputs_done = stack.pop()
        if inputs_done:
            order.append(fn)
            continue
        if id(fn) in visited:
            continue
        visited.add(id(fn))
        stack.append((fn, True))
        for node in getattr(fn, "input_nodes", ()):
            if node is not None and id(node) not in visited:
                stack.append((node, False))
    return order[::-1]


def _pytorch_data(data):
    """What ``torch.Tensor(...)`` makes of its arguments: ints (or a Size) are a shape, a
    list or number is data, as a float tensor; nothing is an empty float tensor."""
    float_xp = backend.xp_for(backend.default_device())
    if isinstance(data, tuple) and not data:
        return float_xp.zeros((0,), dtype=backend.DEFAULT_DTYPE)  # Tensor()
    if isinstance(data, Size) or (isinstance(data, tuple) and all(
            isinstance(n, int) and not isinstance(n, bool) for n in data)):
        return float_xp.zeros(check_shape(tuple(data), "Tensor"), dtype=backend.DEFAULT_DTYPE)
    if backend.is_number(data):
        return backend.as_array(data)
    return backend.as_array(data, dtype=backend.DEFAULT_DTYPE)


def _is_backend_array(x) -> bool:
    return type(x).__name__ == "ndarray" and (
        type(x).__module__ == "numpy" or backend.is_cupy_array(x))


# -- creating tensors -------------------------------------------------------------------------


def tensor(data, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Make a tensor from a list, number, NumPy/CuPy array or Tensor (always a copy).

    >>> x = tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    """
    if isinstance(data, Tensor):
        data = data.data
    array = backend.as_array(data, device=device, dtype=dtype)
    if array is data:
        array = array.copy()
    return Tensor(array, requires_grad=requires_grad)


def _filled(fill: str, shape, requires_grad, device, dtype) -> Tensor:
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    shape = check_shape(shape, fill)
    xp = backend.xp_for(device or backend.default_device())
    dtype = backend.resolve_dtype(dtype) or backend.DEFAULT_DTYPE
    if fill == "randn" and not backend.is_float(dtype):
        raise TypeError(f"randn: dtype must be floating point, got {dtype} (normal samples "
                        "are not integers; PyTorch: not implemented)")
    if fill == "randn":
        array = backend.generator(backend.check_device(device)).standard_normal(shape)
        array = array.astype(dtype)
    else:
        array = getattr(xp, fill)(shape, dtype=dtype)
    return Tensor(array, requires_grad=requires_grad)


def randn(*shape, requires_grad=False, device=None, dtype=None) -> Tensor:
    """Standard normal samples from minattn's generator (seed it with ``ma.manual_seed``)."""
    return _filled("randn", shape, requires_grad, device, dtype)


def zeros(*shape, requires_grad=False, device=None, dtype=None) -> Tensor:
    return _filled("zeros", shape, requires_grad, device, dtype)


def ones(*shape, requires_grad=False, device=None, dtype=None) -> Tensor:
    return _filled("ones", shape, requires_grad, device, dtype)


# Operators and methods (+, @, .sum(), .softmax(), ...) are the ops of minattn.ops, one
# Function each; importing that package attaches them to Tensor (see ops/__init__.py).
from . import ops  # noqa: E402, F401
