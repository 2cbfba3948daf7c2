"""Making tensors the way PyTorch spells it: arange, full, eye, the *_like family, random
draws, and the dtype names (ma.long, ma.float, ...).

None of these is differentiable (they make leaves); the float casts (``x.float()``) are,
through ``astype``.
"""

from __future__ import annotations

import builtins
import numbers

import numpy as np

from . import backend
from .core import Tensor, _as_tensors, check_shape, describe, ones, randn, tensor, zeros
from .ops.shape import astype

# -- dtype names: NumPy dtypes under PyTorch's names ----------------------------------------------

float32, float64, float16 = np.dtype("float32"), np.dtype("float64"), np.dtype("float16")
int64, int32, int16, int8, uint8 = (np.dtype(n) for n in ("int64", "int32", "int16", "int8",
                                                          "uint8"))
bool = np.dtype("bool")  # noqa: A001 - torch.bool
float, double, half = float32, float64, float16  # noqa: A001 - torch.float is float32
long, int = int64, int32  # noqa: A001 - torch.int is int32


device = backend.Device  # torch.device("cpu"), torch.device("cuda", 0)


def get_default_dtype():
    """The dtype of new float tensors: float32, as PyTorch's."""
    return backend.DEFAULT_DTYPE


def _size(size, op: str) -> tuple:
    """PyTorch's size arguments: ints, or one tuple/list/Size."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return check_shape(tuple(size), op)


def _make(array, requires_grad: bool) -> Tensor:
    return Tensor(array, requires_grad=requires_grad)


def _xp(device):
    return backend.xp_for(backend.check_device(device) if device is not None
                          else backend.default_device())


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """[start, end) in steps, as ``torch.arange``: int64 when start, end and step are all
    integers, else the default float dtype."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    values = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    integral = all(isinstance(v, numbers.Integral) for v in values)
    dtype = backend.resolve_dtype(dtype) or (int64 if integral else backend.DEFAULT_DTYPE)
    xp = _xp(device)
    if integral or not backend.is_float(dtype):
        array = xp.arange(*values).astype(dtype)
    else:  # PyTorch counts the steps in double precision: ceil((end - start) / step)
        n = max(0, builtins.int(np.ceil((values[1] - values[0]) / values[2])))
        array = (values[0] + values[2] * xp.arange(n, dtype=xp.float64)).astype(dtype)
    return _make(array, requires_grad)


def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``steps`` evenly spaced values from start to end, both included."""
    dtype = backend.resolve_dtype(dtype) or backend.DEFAULT_DTYPE
    if steps < 0:
        raise RuntimeError(f"linspace: number of steps must be non-negative, got {steps}")
    return _make(_xp(device).linspace(start, end, steps).astype(dtype), requires_grad)


def eye(n: int, m=None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """The (n, m) identity matrix."""
    dtype = backend.resolve_dtype(dtype) or backend.DEFAULT_DTYPE
    return _make(_xp(device).eye(n, n if m is None else m, dtype=dtype), requires_grad)


def _fill_dtype(value):
    """PyTorch's dtype for torch.full: bool, int64 or the default float."""
    if isinstance(value, (np.bool_, builtins.bool)):
        return bool
    return int64 if isinstance(value, numbers.Integral) else backend.DEFAULT_DTYPE


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of ``size`` filled with ``fill_value`` (dtype from the value, as PyTorch)."""
    size = _size((size,), "full")
    dtype = backend.resolve_dtype(dtype) or _fill_dtype(fill_value)
    return _make(_xp(device).full(size, fill_value, dtype=dtype), requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of ``size`` (zeros: PyTorch leaves it uninitialized, minattn does not)."""
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1) from minattn's generator (``ma.manual_seed``)."""
    size, dtype = _size(size, "rand"), backend.resolve_dtype(dtype) or backend.DEFAULT_DTYPE
    if not backend.is_float(dtype):
        raise TypeError(f"rand: dtype must be floating point, got {dtype}")
    gen = backend.generator(backend.check_device(device or backend.default_device()))
    return _make(gen.random(size).astype(dtype), requires_grad)


def randint(low, high=None, size=None, *, dtype=None, device=None, requires_grad=False):
    """Integers uniform in [low, high) (``randint(high, size)`` starts at 0); int64."""
    if size is None:  # randint(high, size)
        low, high, size = 0, low, high
    if high is None or size is None:
        raise TypeError("randint: needs high and size, e.g. randint(0, 10, (3,))")
    size = _size((size,), "randint")
    if high <= low:
        raise RuntimeError(f"randint: low ({low}) must be less than high ({high})")
    gen = backend.generator(backend.check_device(device or backend.default_device()))
    dtype = backend.resolve_dtype(dtype) or int64
    return _make(gen.integers(low, high, size=size).astype(dtype), requires_grad)


def normal(mean, std, size=None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Normal samples: ``normal(0.0, 1.0, (2, 3))``, or elementwise from tensors of means and
    standard deviations (``normal(mean_tensor, std_tensor)``)."""
    means = [m for m in (mean, std) if isinstance(m, Tensor)]
    if size is None:
        if not means:
            raise TypeError("normal: give a size, or mean/std tensors")
        shape = np.broadcast_shapes(*(m.shape for m in means))
    else:
        shape = _size((size,), "normal")
    like = means[0] if means else None
    dtype = backend.resolve_dtype(dtype) or (like.dtype if like is not None
                                             else backend.DEFAULT_DTYPE)
    device = device or (like.device if like is not None else backend.default_device())
    z = randn(*shape, dtype=dtype, device=device).data
    m = mean.data if isinstance(mean, Tensor) else mean
    s = std.data if isinstance(std, Tensor) else std
    return _make((m + s * z).astype(dtype), requires_grad)


def multinomial(input, num_samples: int, replacement: bool = False, *, generator=None):
    """Draw category indices from the rows of ``input`` (weights, not necessarily
    normalized), as ``torch.multinomial``: (num_samples,) or (rows, num_samples) int64."""
    (input,) = _as_tensors([input], "multinomial")
    if input.ndim not in (1, 2):
        raise RuntimeError(f"multinomial: input must be 1-D or 2-D, got {describe(input)}")
    probs = backend.to_numpy(input.data).astype(np.float64).reshape(-1, input.shape[-1])
    if (probs < 0).any() or not np.isfinite(probs).all():
        raise RuntimeError("multinomial: probability tensor contains either inf, nan or an "
                           "element < 0")
    totals = probs.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        raise RuntimeError("multinomial: invalid multinomial distribution (sum of "
                           "probabilities <= 0)")
    n_categories = probs.shape[1]
    if not replacement and num_samples > n_categories:
        raise RuntimeError(f"multinomial: cannot sample {num_samples} > {n_categories} "
                           "categories without replacement")
    rng = backend.generator("cpu")
    rows = []
    for p in probs / totals:
        if replacement:
            rows.append(rng.choice(n_categories, size=num_samples, p=p))
        else:
            nonzero = builtins.int((p > 0).sum())
            if num_samples > nonzero:
                raise RuntimeError(f"multinomial: cannot draw {num_samples} samples without "
                                   f"replacement from {nonzero} nonzero probabilities")
            rows.append(rng.choice(n_categories, size=num_samples, replace=False, p=p))
    out = np.stack(rows).astype(np.int64)
    out = out if input.ndim == 2 else out[0]
    return Tensor(backend.to_device(out, input.device))


def from_numpy(array) -> Tensor:
    """A tensor sharing the NumPy array's memory (writes show in both), as PyTorch's."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a NumPy array, got {type(array).__name__}")
    return Tensor(array)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """A tensor of ``data``, sharing memory with an array when dtype and device allow."""
    if isinstance(data, Tensor):
        return data if dtype is None and device is None else data.to(device, dtype)
    if backend.is_numpy_array(data) or backend.is_cupy_array(data):
        array = backend.as_array(data, device=device, dtype=dtype)
        return Tensor(array)
    return tensor(data, dtype=dtype, device=device)


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def is_floating_point(x) -> bool:
    return backend.is_float(x.dtype)


def numel(x) -> int:
    return x.numel()


def _like(name: str, fill):
    def make(x, *, dtype=None, device=None, requires_grad=False) -> Tensor:
        dtype = backend.resolve_dtype(dtype) or x.dtype
        return fill(x.shape, dtype=dtype, device=device or x.device, requires_grad=requires_grad)

    make.__name__ = name
    make.__doc__ = f"``{name}(x)``: as {name.removesuffix('_like')}, with x's shape, dtype, device."
    return make


zeros_like = _like("zeros_like", lambda s, **kw: zeros(*s, **kw))
ones_like = _like("ones_like", lambda s, **kw: ones(*s, **kw))
empty_like = _like("empty_like", lambda s, **kw: zeros(*s, **kw))
randn_like = _like("randn_like", lambda s, **kw: randn(*s, **kw))
rand_like = _like("rand_like", lambda s, **kw: rand(*s, **kw))


def full_like(x, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(x.shape, fill_value, dtype=dtype or x.dtype, device=device or x.device,
                requires_grad=requires_grad)


def _typed(dtype, name: str):
    def make(*data) -> Tensor:
        if data and all(isinstance(n, numbers.Integral) for n in data):
            return zeros(*data, dtype=dtype)  # LongTensor(2, 3): a shape
        return tensor(data[0] if data else [], dtype=dtype)

    make.__name__ = name
    make.__doc__ = f"torch.{name}: a {dtype} tensor from data (or of a shape)."
    return make


LongTensor, FloatTensor = _typed(int64, "LongTensor"), _typed(float32, "FloatTensor")
DoubleTensor, BoolTensor = _typed(float64, "DoubleTensor"), _typed(bool, "BoolTensor")
IntTensor = _typed(int32, "IntTensor")


# -- Tensor methods: casts, devices, new_* ---------------------------------------------------------

_TYPE_NAMES = {float32: "torch.FloatTensor", float64: "torch.DoubleTensor",
               float16: "torch.HalfTensor", int64: "torch.LongTensor",
               int32: "torch.IntTensor", int16: "torch.ShortTensor", int8: "torch.CharTensor",
               uint8: "torch.ByteTensor", bool: "torch.BoolTensor"}


def _type(x: Tensor, dtype=None):
    """``x.type()``: PyTorch's type name; ``x.type(dtype)``: a cast (names accepted)."""
    if dtype is None:
        name = _TYPE_NAMES.get(x.dtype, f"torch.{x.dtype}")
        return name if x.device == "cpu" else name.replace("torch.", "torch.cuda.")
    if isinstance(dtype, str) and dtype.endswith("Tensor"):
        by_name = {v.split(".")[-1]: k for k, v in _TYPE_NAMES.items()}
        if dtype.split(".")[-1] not in by_name:
            raise ValueError(f"type: unknown tensor type {dtype!r}")
        dtype = by_name[dtype.split(".")[-1]]
    return astype(x, dtype)


def _new(fill):
    def method(x: Tensor, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
        return fill(_size(size, "new"), dtype=backend.resolve_dtype(dtype) or x.dtype,
                    device=device or x.device, requires_grad=requires_grad)

    return method


def _normal_(x: Tensor, mean=0.0, std=1.0, *, generator=None) -> Tensor:
    """Fill x in place with normal samples (as torch.Tensor.normal_)."""
    draw = backend.generator(x.device).standard_normal(x.shape)
    return x.copy_(backend.to_device((mean + std * draw).astype(x.dtype), x.device))


def _uniform_(x: Tensor, a=0.0, b=1.0, *, generator=None) -> Tensor:
    """Fill x in place with uniform samples in [a, b)."""
    draw = backend.generator(x.device).random(x.shape)
    return x.copy_(backend.to_device((a + (b - a) * draw).astype(x.dtype), x.device))


def _attach_to_tensor() -> None:
    methods = {
        "float": lambda x: astype(x, float32), "double": lambda x: astype(x, float64),
        "half": lambda x: astype(x, float16), "long": lambda x: astype(x, int64),
        "int": lambda x: astype(x, int32), "bool": lambda x: astype(x, bool),
        "type": _type, "type_as": lambda x, other: astype(x, other.dtype),
        "cpu": lambda x: x.to("cpu"), "cuda": lambda x, device=None: x.to(device or "cuda"),
        "new_zeros": _new(lambda s, **kw: zeros(*s, **kw)),
        "new_ones": _new(lambda s, **kw: ones(*s, **kw)),
        "new_empty": _new(lambda s, **kw: zeros(*s, **kw)),
        "new_full": lambda x, size, fill_value, dtype=None, device=None, requires_grad=False:
            full(size, fill_value, dtype=dtype or x.dtype, device=device or x.device,
                 requires_grad=requires_grad),
        "new_tensor": lambda x, data, dtype=None, device=None, requires_grad=False: tensor(
            data, dtype=dtype or x.dtype, device=device or x.device,
            requires_grad=requires_grad),
        "normal_": _normal_, "uniform_": _uniform_,
        "element_size": lambda x: x.dtype.itemsize,
        "tolist": lambda x: backend.to_numpy(x.data).tolist(),
        "is_floating_point": is_floating_point,
    }
    for name, method in methods.items():
        setattr(Tensor, name, method)
    Tensor.is_cuda = property(lambda x: x.device != "cpu")


_attach_to_tensor()

__all__ = ["device", "BoolTensor", "DoubleTensor", "FloatTensor", "IntTensor", "LongTensor",
           "arange",
           "as_tensor", "bool", "double", "empty", "empty_like", "eye", "float", "float16",
           "float32", "float64", "from_numpy", "full", "full_like", "get_default_dtype", "half",
           "int", "int8", "int16", "int32", "int64", "is_floating_point", "is_tensor", "linspace",
           "long", "multinomial", "normal", "numel", "ones_like", "rand", "rand_like", "randint",
           "randn_like", "uint8", "zeros_like"]
