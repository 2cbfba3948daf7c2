"""The layers' own ops: embedding lookup, layer norm, dropout, GELU, sigmoid, SiLU,
log-sigmoid and constant padding.

One Function per op, forward and backward side by side, each backward opening with its
derivation; the lowercase function next to each class is what the modules call. Layer
norm also has a composed twin (``layer_norm_composed``), built from primitive ops that
autograd differentiates, and the tests hold the two equal.
"""

from __future__ import annotations

import math
import numbers

from .. import backend
from ..core import Function, Tensor, _as_tensors, check_float
from ..ops.elementwise import (  # noqa: F401 - nn.functional's sigmoid family
    LogSigmoidFunction,
    SigmoidFunction,
    SiLUFunction,
    _sigmoid,
    sigmoid,
)

# -- embedding ----------------------------------------------------------------------------------


class EmbeddingFunction(Function):
    """out[..., :] = weight[index[...], :]: one row of the table per index."""

    def forward(self, weight):
        self.num_embeddings, self.dtype = weight.shape[0], weight.dtype
        return weight[self.index]  # (..., D)

    # --8<-- [start:embedding_backward]
    def backward(self, dout):
        # out[i] = weight[index[i]]  =>  dweight[r] = sum of dout[i] over every i with index[i] = r
        # A row picked twice gets both gradients: scatter-*add*, never assignment.
        # (On CuPy the adds are atomic, in no fixed order: equal up to float rounding.)
        xp = backend.get_array_module(dout)
        dweight = xp.zeros((self.num_embeddings, dout.shape[-1]), dtype=self.dtype)  # (N, D)
        backend.scatter_add(dweight, self.index.reshape(-1), dout.reshape(-1, dout.shape[-1]))
        if self.padding_idx is not None:  # the padding row is a constant: it learns nothing
            dweight[self.padding_idx] = 0
        return dweight
    # --8<-- [end:embedding_backward]


def embedding(index, weight: Tensor, padding_idx=None, max_norm=None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of ``weight`` (N, D) picked by the integer ``index`` (...) -> (..., D).

    >>> table = ma.randn(10, 4, requires_grad=True)
    >>> embedding(ma.tensor([[1, 2, 1]]), table).shape
    (1, 3, 4)
    """
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be a 2-D table (num_embeddings, "
                         f"embedding_dim), got shape {tuple(weight.shape)}")
    index = index.data if isinstance(index, Tensor) else index
    if not (backend.is_cupy_array(index) or hasattr(index, "dtype")):
        index = backend.as_array(index, device=weight.device)
    if index.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got {index.dtype} with shape "
                        f"{tuple(index.shape)}")
    if backend.device_of(index) != weight.device:
        raise RuntimeError(f"embedding: indices are on {backend.device_of(index)} but the "
                           f"weight {weight.shape} is on {weight.device}")
    n = weight.shape[0]
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: max_norm, scale_grad_by_freq and sparse are not "
                                  "supported by minattn")
    padding_idx = check_padding_idx(padding_idx, n, "embedding")
    if index.size and bool((index.min() < 0) | (index.max() >= n)):  # one sync; NumPy and
        # CuPy would wrap a negative index silently, CuPy even an overflowing one
        raise IndexError(f"embedding: indices must lie in [0, {n}) for a table of shape "
                         f"{weight.shape}; got values from {int(index.min())} to "
                         f"{int(index.max())}")
    return EmbeddingFunction.apply(weight, index=index, padding_idx=padding_idx)


def check_padding_idx(padding_idx, n: int, op: str):
    """padding_idx as a row in [0, n) (a negative one counts from the end), or None."""
    if padding_idx is None:
        return None
    if not -n <= padding_idx < n:
        raise ValueError(f"{op}: padding_idx {padding_idx} must be within the {n} rows of the "
                         "table")
    return int(padding_idx) % n


# -- layer norm ---------------------------------------------------------------------------------


class LayerNormFunction(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, over the last ``ndim_norm`` axes."""

    # --8<-- [start:layernorm_forward]
    def forward(self, x, weight, bias):
        xp = backend.get_array_module(x)
        self.axes = tuple(range(x.ndim - self.ndim_norm, x.ndim))  # the normalized axes
        mean = x.mean(axis=self.axes, keepdims=True)  # (..., 1)
        xc = x - mean  # (..., N)
        var = (xc * xc).mean(axis=self.axes, keepdims=True)  # biased, as PyTorch: (..., 1)
        self.rstd = 1 / xp.sqrt(var + self.eps)  # (..., 1)
        self.xhat = xc * self.rstd  # (..., N); saved with rstd: all that backward needs
        self.weight = weight
        return self.xhat * weight + bias  # (..., N)
    # --8<-- [end:layernorm_forward]

    # --8<-- [start:layernorm_backward]
    def backward(self, dout):
        # y = xhat * w + b, xhat_i = (x_i - mean) * rstd, rstd = (var + eps)^(-1/2), N elements:
        # dvar/dx_j = 2 (x_j - mean) / N, so dxhat_i/dx_j = rstd (delta_ij - 1/N - xhat_i xhat_j/N);
        # with g = dout * w (dloss/dxhat), dx_j = sum_i g_i dxhat_i/dx_j, which is
        # dx = rstd * (g - mean(g) - xhat * mean(g * xhat));
        # dw = sum over the batch axes of dout * xhat, db = sum over them of dout.
        xhat, rstd = self.xhat, self.rstd
        batch_axes = tuple(range(dout.ndim - self.ndim_norm))
        dx = dweight = dbias = None
        if self.needs_input_grad[0]:
            g = dout * self.weight  # (..., N)
            dx = rstd * (g - g.mean(axis=self.axes, keepdims=True)
                         - xhat * (g * xhat).mean(axis=self.axes, keepdims=True))  # (..., N)
        if self.needs_input_grad[1]:
            dweight = (dout * xhat).sum(axis=batch_axes)  # (N,)
        if self.needs_input_grad[2]:
            dbias = dout.sum(axis=batch_axes)  # (N,)
        return dx, dweight, dbias
    # --8<-- [end:layernorm_backward]


def _normalized_shape(normalized_shape, op: str = "layer_norm") -> tuple:
    """normalized_shape as a non-empty tuple of ints >= 0: 8 -> (8,), [2, 8] -> (2, 8)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) \
        else normalized_shape
    if not isinstance(shape, (tuple, list)) or any(
            isinstance(n, bool) or not isinstance(n, numbers.Integral) for n in shape):
        raise TypeError(f"{op}: normalized_shape must be an int or a tuple of ints, got "
                        f"{type(normalized_shape).__name__} {normalized_shape!r}")
    if not shape or min(shape) < 0:  # () would normalize nothing: PyTorch refuses it too
        raise ValueError(f"{op}: normalized_shape must be a non-empty tuple of sizes >= 0 (the "
                         f"trailing axes to normalize), got {normalized_shape!r}")
    return tuple(int(n) for n in shape)


def _check_layer_norm(x, normalized_shape, weight, bias) -> tuple:
    check_float(x, "layer_norm")  # as PyTorch: no layer norm of integers
    shape = _normalized_shape(normalized_shape)
    if x.shape[x.ndim - len(shape):] != shape or x.ndim < len(shape):
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end with the "
                         f"normalized shape {shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"layer_norm: {name} has shape {tuple(t.shape)}, expected {shape}")
    return shape


def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` axes, then scale and shift.

    >>> x = ma.randn(2, 5, 8)
    >>> layer_norm(x, 8).mean(axis=-1).numpy().round(6).max()
    0.0
    """
    (x,) = _as_tensors([x], "layer_norm")
    shape = _check_layer_norm(x, normalized_shape, weight, bias)
    xp = backend.get_array_module(x.data)
    weight = weight if weight is not None else xp.ones(shape, dtype=x.dtype)
    bias = bias if bias is not None else xp.zeros(shape, dtype=x.dtype)
    return LayerNormFunction.apply(x, weight, bias, ndim_norm=len(shape), eps=eps)


def layer_norm_composed(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """The same layer norm from primitive ops (mean, sub, mul, sqrt, div); autograd derives
    its backward. The twin that the tests hold ``LayerNormFunction`` equal to."""
    (x,) = _as_tensors([x], "layer_norm")
    shape = _check_layer_norm(x, normalized_shape, weight, bias)
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mean = x.mean(axis=axes, keepdims=True)  # (..., 1)
    xc = x - mean  # (..., N)
    var = (xc * xc).mean(axis=axes, keepdims=True)  # (..., 1)
    out = xc / (var + eps).sqrt()  # (..., N)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


# -- dropout ------------------------------------------------------------------------------------


class DropoutFunction(Function):
    """y = x * mask / (1 - p), mask_i ~ Bernoulli(1 - p) from the device's generator."""

    def forward(self, x):
        gen = backend.generator(backend.device_of(x))
        self.keep = gen.random(x.shape) >= self.p  # (...,) True with probability 1 - p
        self.factor = 1.0 / (1.0 - self.p) if self.p < 1 else 0.0
        return x * self.keep * x.dtype.type(self.factor)

    def backward(self, dout):
        # y = x * keep / (1 - p)  =>  dx = dout * keep / (1 - p): the same mask, reused
        return dout * self.keep * dout.dtype.type(self.factor)


def dropout(x, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity when
    ``training`` is False or p is 0), as ``torch.nn.functional.dropout``.

    >>> dropout(ma.ones(2, 3), p=0.5, training=False).numpy().tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    p = check_probability(p, "dropout")
    (x,) = _as_tensors([x], "dropout")
    if not training or p == 0.0:
        return x
    check_float(x, "dropout")  # x * mask / (1 - p) is not an integer (PyTorch: an error too)
    return DropoutFunction.apply(x, p=p)


def check_probability(p, op: str, name: str = "p") -> float:
    """A dropout probability as a float in [0, 1] (1 drops everything, as in PyTorch)."""
    if not isinstance(p, numbers.Real):
        raise TypeError(f"{op}: {name} must be a number in [0, 1], got {type(p).__name__} "
                        f"{p!r}")
    if not 0.0 <= p <= 1.0:  # False for NaN too
        raise ValueError(f"{op}: {name} must be a probability in [0, 1], got {p}")
    return float(p)


# -- GELU -----------------------------------------------------------------------------------------

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715


class GELUFunction(Function):
    """y = x * Phi(x), Phi the standard normal CDF: exact with erf, or its tanh approximation."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.x = x
        if self.approximate == "tanh":
            self.t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x**3))  # (...,)
            return 0.5 * x * (1 + self.t)
        self.cdf = 0.5 * (1 + backend.erf(x / _SQRT_2))  # (...,) Phi(x)
        return x * self.cdf

    # --8<-- [start:gelu_backward]
    def backward(self, dout):
        xp = backend.get_array_module(dout)
        x = self.x
        if self.approximate == "tanh":
            # y = x/2 (1 + t), t = tanh(u), u = c1 (x + c2 x^3)
            # => dy/dx = (1 + t)/2 + x/2 (1 - t^2) c1 (1 + 3 c2 x^2)
            t = self.t
            du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x * x)
            return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
        # y = x Phi(x)  =>  dy/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi)
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
        return dout * (self.cdf + x * pdf)
    # --8<-- [end:gelu_backward]


def gelu(x, approximate: str = "none") -> Tensor:
    """GELU(x) = x Phi(x), exact (erf) by default as in PyTorch; ``approximate="tanh"`` uses
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    >>> gelu(ma.tensor([0.0, 1.0])).numpy().round(4).tolist()
    [0.0, 0.8413]
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    (x,) = _as_tensors([x], "gelu")
    check_float(x, "gelu")
    return GELUFunction.apply(x, approximate=approximate)


# -- sigmoid, SiLU, log-sigmoid -------------------------------------------------------------------


# (the Functions live with the other elementwise ops, in ops/elementwise.py)


def _float_unary(fn_class, x, op: str) -> Tensor:
    (x,) = _as_tensors([x], op)
    check_float(x, op)
    return fn_class.apply(x)


def silu(x) -> Tensor:
    """x * sigmoid(x), as ``torch.nn.functional.silu``."""
    return _float_unary(SiLUFunction, x, "silu")


def logsigmoid(x) -> Tensor:
    """log(sigmoid(x)), stable for large |x|, as ``torch.nn.functional.logsigmoid``."""
    return _float_unary(LogSigmoidFunction, x, "logsigmoid")


# -- constant padding -------------------------------------------------------------------------


class PadFunction(Function):
    """out = x surrounded by ``value``: width ``pad_width[d] = (before, after)`` on axis d. A
    negative width crops instead, as in PyTorch."""

    saves_inputs = False

    def forward(self, x):
        xp = backend.get_array_module(x)
        grow = [(max(b, 0), max(a, 0)) for b, a in self.pad_width]
        out = xp.pad(x, grow, mode="constant", constant_values=self.value)
        self.crop = tuple(slice(max(-b, 0), n - max(-a, 0))  # the negative widths cut
                          for (b, a), n in zip(self.pad_width, out.shape))
        self.in_shape, self.grow = x.shape, grow
        return out[self.crop]

    def backward(self, dout):
        # out = crop(pad(x))  =>  dx = the window of dout where x landed (pads are constants;
        # cropped elements of x got no gradient)
        xp = backend.get_array_module(dout)
        full = xp.zeros(tuple(n + b + a for n, (b, a) in zip(self.in_shape, self.grow)),
                        dtype=dout.dtype)
        full[self.crop] = dout
        return full[tuple(slice(b, b + n) for n, (b, _) in zip(self.in_shape, self.grow))]


def pad(x, pad, mode: str = "constant", value=None) -> Tensor:
    """Pad the last ``len(pad) // 2`` axes, as ``torch.nn.functional.pad``: ``pad`` is
    (last_before, last_after, second_last_before, ...); negative widths crop.

    >>> pad(ma.ones(1, 2), (1, 2)).numpy().tolist()
    [[0.0, 1.0, 1.0, 0.0, 0.0]]
    """
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r} is not supported by minattn; only "
                                  "mode='constant'")
    (x,) = _as_tensors([x], "pad")
    pad = tuple(pad)
    if len(pad) % 2 or any(isinstance(w, bool) or not isinstance(w, numbers.Integral)
                           for w in pad):
        raise ValueError(f"pad: pad must be an even-length sequence of ints, got {pad!r}")
    if len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: padding length {len(pad)} is too large for a tensor of shape "
                         f"{x.shape} (at most {2 * x.ndim})")
    width = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        width[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    for n, (b, a) in zip(x.shape, width):
        if n + b + a < 0:
            raise RuntimeError(f"pad: the padding {pad!r} would give a negative size for a "
                               f"tensor of shape {x.shape}")
    value = 0 if value is None else value
    return PadFunction.apply(x, pad_width=tuple(width), value=value)
