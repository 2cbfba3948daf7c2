"""The one place that knows about NumPy and CuPy.

Op code never imports numpy or cupy: it asks this module for the array module of
its inputs (``get_array_module(x)``, the ``xp`` idiom) and works the same on both.
CuPy is imported lazily, so a machine without it never pays for the import.
"""

from __future__ import annotations

import math
import numbers
import os
import reprlib

import numpy as np

DEVICES = ("cpu", "cuda")
float16, float32, float64 = np.float16, np.float32, np.float64
DEFAULT_DTYPE = np.dtype(np.float32)

_cupy = None  # the cupy module once imported, False when it cannot be
_cupy_error = ""
_default_device: str | None = None


# -- CuPy detection ---------------------------------------------------------------------------


def _import_cupy():
    """Return the cupy module, or None (remembering why) when it cannot be used."""
    global _cupy, _cupy_error
    if _cupy is None:
        try:
            import cupy

            _cupy = cupy
        except Exception as exc:  # ImportError, or a CUDA library missing at import
            _cupy, _cupy_error = False, f"{type(exc).__name__}: {exc}"
    return _cupy or None


def cuda_status() -> tuple[bool, str]:
    """(usable, reason): whether device 'cuda' works here, and if not, what is missing."""
    cp = _import_cupy()
    if cp is None:
        return False, f"CuPy is not installed or failed to import ({_cupy_error}); " \
                      "install it with `pip install minattn[cuda12]` or `[cuda13]`"
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy is installed but no CUDA GPU is usable ({exc})"
    if count == 0:
        return False, "CuPy is installed but no CUDA GPU was found"
    return True, f"CuPy {cp.__version__}, {count} GPU(s)"


def cuda_available() -> bool:
    return cuda_status()[0]


def gpu_memory_available() -> int:
    """Bytes that new CuPy arrays can take on the current GPU: the device's free memory plus
    the blocks CuPy's memory pool holds unused (which it hands out again first)."""
    cp = _import_cupy()
    free, _total = cp.cuda.runtime.memGetInfo()
    return int(free) + int(cp.get_default_memory_pool().free_bytes())


# -- array modules and devices ----------------------------------------------------------------


def is_cupy_array(x) -> bool:
    # Checked by type name first so that NumPy-only machines never import cupy.
    return type(x) is not np.ndarray and type(x).__module__.startswith("cupy") \
        and _import_cupy() is not None


def is_numpy_array(x) -> bool:
    return isinstance(x, np.ndarray)


def get_array_module(*arrays):
    """The array module (numpy or cupy) that the given arrays live in."""
    for a in arrays:
        if is_cupy_array(a):
            return _cupy
    return np


class Device(str):
    """A device, as ``torch.device``: ``Device("cpu")``, ``Device("cuda:0")``,
    ``Device("cuda", 0)``, with ``.type`` and ``.index``. A ``str`` subclass, so that it
    compares equal to its name (``t.device == "cpu"``) and goes wherever a name does."""

    def __new__(cls, type, index=None):  # noqa: A002 - torch.device's argument name
        if isinstance(type, Device) and index is None:
            return type
        name, _, number = str(type).partition(":")
        if name not in DEVICES:
            raise RuntimeError(f"unknown device {str(type)!r}: expected one of {DEVICES}")
        index = int(number) if number else index
        self = super().__new__(cls, name)  # compares as "cpu" or "cuda", as minattn names it
        self.type, self.index = name, index
        return self

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"


_DEVICE_OF = {}  # one Device per name: Tensor.device is read by every op


def device_of(array) -> Device:
    name = "cuda" if is_cupy_array(array) else "cpu"
    device = _DEVICE_OF.get(name)
    if device is None:
        device = _DEVICE_OF[name] = Device(name)
    return device


def check_device(device) -> str:
    """Normalise a device name ('cpu', 'cuda', 'cuda:0') and check that it can be used."""
    name = str(device).split(":")[0] if device is not None else default_device()
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    if name == "cuda":
        ok, why = cuda_status()
        if not ok:
            raise RuntimeError(f"device 'cuda' is not available: {why}")
    return name


def split_to_args(device, dtype):
    """(device, dtype) from the arguments of ``.to(...)``: ``t.to("cuda")``,
    ``t.to(ma.float64)`` and ``t.to("float64")`` all work, as in PyTorch."""
    if device is not None and not (isinstance(device, str)
                                   and device.split(":")[0] in DEVICES):
        try:
            return None, resolve_dtype(device)  # a dtype in the device's place
        except TypeError:
            if not isinstance(device, str):
                raise
    return device, dtype


def xp_for(device: str):
    return _import_cupy() if check_device(device) == "cuda" else np


def default_device() -> str:
    """The device used when none is named: set_default_device(), else $MINATTN_DEVICE, else cpu."""
    return _default_device or os.environ.get("MINATTN_DEVICE", "cpu")


def set_default_device(device: str) -> None:
    global _default_device
    _default_device = check_device(device)


def to_device(array, device: str):
    """Copy an array to a device (no copy when it is already there)."""
    device = check_device(device)
    if device == device_of(array):
        return array
    if device == "cuda":
        return _cupy.asarray(array)
    return _cupy.asnumpy(array)


def to_numpy(array) -> np.ndarray:
    """A host NumPy copy of any backend array."""
    return _cupy.asnumpy(array) if is_cupy_array(array) else np.array(array)


# -- dtypes -------------------------------------------------------------------------------------


NUMERIC_KINDS = "biufc"  # bool, int, unsigned, float, complex: what a tensor can hold


def resolve_dtype(dtype) -> np.dtype | None:
    """np.float64, 'float64', ma.float64 and torch-like names all become a NumPy dtype."""
    if dtype is None:
        return None
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}") from None
    if resolved.kind not in NUMERIC_KINDS:
        raise TypeError(f"dtype {dtype!r} ({resolved}) cannot be a tensor's dtype: expected a "
                        "float, integer, complex or bool dtype, e.g. 'float32'")
    return resolved


def is_number(x) -> bool:
    """A Python number or a NumPy scalar: weakly typed, it takes a tensor's dtype."""
    return isinstance(x, (numbers.Number, np.generic))


def work_dtype(dtype) -> np.dtype:
    """The dtype the kernels compute in: float64 for float64, float32 otherwise (float16
    tiles are summed in float32, as PyTorch does)."""
    return np.dtype(np.float64 if np.dtype(dtype) == np.float64 else np.float32)


def is_float(dtype) -> bool:
    kind = getattr(dtype, "kind", None)  # a dtype object, the usual case: no conversion
    return kind == "f" if kind is not None else np.issubdtype(np.dtype(dtype), np.floating)


def as_array(value, device: str | None = None, dtype=None):
    """Turn data (list, scalar, NumPy or CuPy array) into a backend array.

    Python floats become the default float32, as in PyTorch; arrays and NumPy scalars
    keep their dtype.
    """
    dtype = resolve_dtype(dtype)
    if is_cupy_array(value) or isinstance(value, np.ndarray):
        check_numeric(value)
        array = value if device is None else to_device(value, device)
        return array if dtype is None or array.dtype == dtype else array.astype(dtype)
    try:
        array = np.asarray(value)
    except ValueError as exc:  # NumPy's "inhomogeneous shape": say where the rows differ
        raise ValueError(f"cannot make a tensor from ragged data: {ragged_where(value) or exc}; "
                         "every row of a nested list must have the same length") from None
    check_numeric(array, value)
    if dtype is None and array.dtype == np.float64 and not isinstance(value, np.generic):
        dtype = DEFAULT_DTYPE  # Python floats: default dtype, like torch.tensor([1.0])
    if dtype is not None:
        array = array.astype(dtype)
    return to_device(array, device or default_device())


_ARRAY = object()  # check_numeric's "the data is the array itself"


def check_numeric(array, value=_ARRAY) -> None:
    """A TypeError, naming the data (value, from which array was made) and its dtype, unless
    array holds numbers or booleans."""
    if array.dtype.kind not in NUMERIC_KINDS:
        value = array if value is _ARRAY else value
        raise TypeError(f"cannot make a tensor from {type(value).__name__} "
                        f"{reprlib.repr(value)} (NumPy dtype {array.dtype}): tensors hold "
                        "numbers or booleans (float, int, complex or bool)")


def ragged_where(value, shape=None, dim: int = 0, index: tuple = ()) -> str | None:
    """Where nested lists stop being rectangular, against the shape of their first elements:
    'expected a sequence of length 2 at index (1,), got length 1'. None if they are not."""
    if shape is None:  # the shape that the first element of every level implies
        shape, v = [], value
        while isinstance(v, (list, tuple, np.ndarray)):
            shape.append(len(v))
            if not len(v):
                break
            v = v[0]
    is_sequence = isinstance(value, (list, tuple, np.ndarray))
    if dim == len(shape):
        return f"expected a number at index {index}, got a sequence" if is_sequence else None
    if not is_sequence or len(value) != shape[dim]:
        got = f"length {len(value)}" if is_sequence else f"the number {value!r}"
        return f"expected a sequence of length {shape[dim]} at index {index}, got {got}"
    for i, item in enumerate(value):
        found = ragged_where(item, shape, dim + 1, (*index, i))
        if found:
            return found
    return None


# -- random numbers ---------------------------------------------------------------------------

_seed: int | None = None
_generators: dict[str, object] = {}


def manual_seed(seed: int) -> None:
    """Seed minattn's own generators (one per device), as torch.manual_seed does."""
    global _seed
    _seed = int(seed)
    _generators.clear()


def generator(device: str):
    """The random generator of a device: numpy.random.Generator or cupy's equivalent."""
    if device not in _generators:
        xp = xp_for(device)
        _generators[device] = xp.random.default_rng(_seed)
    return _generators[device]


# -- the few array operations NumPy and CuPy spell differently --------------------------------


def scatter_add(target, index, values) -> None:
    """target[index] += values, with repeated indices adding up (np.add.at)."""
    xp = get_array_module(target)
    if hasattr(xp.add, "at"):  # NumPy, and CuPy >= 13
        xp.add.at(target, index, values)
    else:
        import cupyx

        cupyx.scatter_add(target, index, values)


def erf(x):
    """The error function, elementwise. NumPy has none: SciPy's when installed (the
    ``fast`` extra), else math.erf element by element (exact, slow); CuPy's on the GPU."""
    if is_cupy_array(x):
        from cupyx.scipy.special import erf as cupy_erf

        return cupy_erf(x)
    try:
        from scipy.special import erf as scipy_erf
    except ImportError:
        scipy_erf = np.vectorize(math.erf, otypes=[x.dtype])
    return scipy_erf(x).astype(x.dtype, copy=False)
