"""Layers without attention: Embedding, LayerNorm, Dropout and the activations GELU, ReLU,
SiLU, Sigmoid, Tanh, Softmax (PyTorch's names, parameters, initialisation and reprs).
Their ops live in ``functional_nn``."""

from __future__ import annotations

from .. import backend
from ..core import Tensor
from ..ops import tanh
from ..ops.softmax import softmax
from . import functional_nn as fnn
from .module import Module, Parameter, check_size, normal


class Embedding(Module):
    """A lookup table: index (...) -> weight[index] (..., embedding_dim); weight ~ N(0, 1).

    >>> emb = Embedding(10, 4)
    >>> emb(ma.tensor([[1, 2, 3]])).shape
    (1, 3, 4)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None,
                 max_norm=None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight=None, _freeze: bool = False, device=None,
                 dtype=None):
        super().__init__()
        num_embeddings = check_size(num_embeddings, "num_embeddings", "Embedding")
        embedding_dim = check_size(embedding_dim, "embedding_dim", "Embedding")
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise NotImplementedError("Embedding: max_norm, scale_grad_by_freq and sparse are "
                                      "not supported by minattn")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = fnn.check_padding_idx(padding_idx, num_embeddings, "Embedding")
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        if _weight is None:
            data = normal((num_embeddings, embedding_dim), 1.0, device, dtype)
            if self.padding_idx is not None:
                data[self.padding_idx] = 0  # the padding row starts (and stays) at zero
        else:
            data = _weight.data if isinstance(_weight, Tensor) else _weight
        self.weight = Parameter(data, requires_grad=not _freeze)

    def forward(self, index) -> Tensor:
        return fnn.embedding(index, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class LayerNorm(Module):
    """Normalize over the trailing ``normalized_shape`` axes; weight = 1, bias = 0 at start.

    >>> ln = LayerNorm(8)
    >>> ln(ma.randn(2, 5, 8)).shape
    (2, 5, 8)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = fnn._normalized_shape(normalized_shape, "LayerNorm")
        self.eps = eps
        xp = backend.xp_for(backend.check_device(device))
        dtype = backend.resolve_dtype(dtype) or backend.DEFAULT_DTYPE
        self.weight = Parameter(xp.ones(self.normalized_shape, dtype=dtype)) \
            if elementwise_affine else None
        self.bias = Parameter(xp.zeros(self.normalized_shape, dtype=dtype)) \
            if elementwise_affine and bias else None

    def forward(self, x) -> Tensor:
        return fnn.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, " \
               f"elementwise_affine={self.weight is not None}, bias={self.bias is not None}"


class Dropout(Module):
    """Zero elements with probability p while training (scaling the rest by 1/(1-p));
    the identity in eval mode. Draws from ``backend.generator(device)``."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        fnn.check_probability(p, "Dropout")
        self.p, self.inplace = p, inplace

    def forward(self, x) -> Tensor:
        from ..functional import dropout

        return dropout(x, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class GELU(Module):
    """x * Phi(x): exact (erf) by default, as PyTorch; ``approximate="tanh"`` for the tanh form."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x) -> Tensor:
        return fnn.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class ReLU(Module):
    """max(x, 0)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x) -> Tensor:
        from ..functional import relu as f_relu

        return f_relu(x, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class SiLU(Module):
    """x * sigmoid(x)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x) -> Tensor:
        from ..functional import silu

        return silu(x, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Sigmoid(Module):
    """1 / (1 + e^-x)."""

    def forward(self, x) -> Tensor:
        return fnn.sigmoid(x)


class Tanh(Module):
    """tanh(x)."""

    def forward(self, x) -> Tensor:
        return tanh(x)


class Softmax(Module):
    """softmax along ``dim``."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x) -> Tensor:
        return softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """log softmax along ``dim``."""

    def forward(self, x) -> Tensor:
        from ..ops.softmax import log_softmax

        return log_softmax(x, self.dim)


class Flatten(Module):
    """x.flatten(start_dim, end_dim); PyTorch's default keeps the batch axis (start_dim=1)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x) -> Tensor:
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """x.unflatten(dim, sizes)."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x) -> Tensor:
        return x.unflatten(self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class _Loss(Module):
    """A loss of ``nn.functional`` as a module: its keyword settings kept, as PyTorch's."""

    function = None

    def __init__(self, **settings):
        super().__init__()
        self.settings = settings
        self.reduction = settings.get("reduction", "mean")

    def forward(self, input, target) -> Tensor:
        from . import losses
        return getattr(losses, self.function)(input, target, **self.settings)


class MSELoss(_Loss):
    """Mean squared error, as torch.nn.MSELoss(reduction="mean")."""

    function = "mse_loss"

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(reduction=reduction)


class CrossEntropyLoss(_Loss):
    """torch.nn.CrossEntropyLoss(weight, ignore_index, reduction, label_smoothing)."""

    function = "cross_entropy"

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing)


class NLLLoss(_Loss):
    """torch.nn.NLLLoss(weight, ignore_index, reduction)."""

    function = "nll_loss"

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction)


class BCEWithLogitsLoss(_Loss):
    """torch.nn.BCEWithLogitsLoss(weight, reduction, pos_weight)."""

    function = "binary_cross_entropy_with_logits"

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean",
                 pos_weight=None):
        super().__init__(weight=weight, reduction=reduction, pos_weight=pos_weight)
