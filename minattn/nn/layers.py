"""Layers without attention: Embedding, LayerNorm, Dropout, GELU, ReLU (PyTorch's names,
parameters and initialisation). Their ops live in ``functional_nn``."""

from __future__ import annotations

from .. import backend
from ..core import Tensor
from ..ops import relu
from . import functional_nn as fnn
from .module import Module, Parameter, check_size, normal


class Embedding(Module):
    """A lookup table: index (...) -> weight[index] (..., embedding_dim); weight ~ N(0, 1).

    >>> emb = Embedding(10, 4)
    >>> emb(ma.tensor([[1, 2, 3]])).shape
    (1, 3, 4)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        num_embeddings = check_size(num_embeddings, "num_embeddings", "Embedding")
        embedding_dim = check_size(embedding_dim, "embedding_dim", "Embedding")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(normal((num_embeddings, embedding_dim), 1.0, device, dtype))

    def forward(self, index) -> Tensor:
        return fnn.embedding(index, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


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
               f"elementwise_affine={self.weight is not None}"


class Dropout(Module):
    """Zero elements with probability p while training (scaling the rest by 1/(1-p));
    the identity in eval mode. Draws from ``backend.generator(device)``."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        fnn.check_probability(p, "Dropout")
        self.p = p

    def forward(self, x) -> Tensor:
        return fnn.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


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

    def forward(self, x) -> Tensor:
        return relu(x)
