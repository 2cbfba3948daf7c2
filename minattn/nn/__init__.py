"""Neural-network modules (PyTorch's names): Module, Parameter, Linear, Embedding, LayerNorm,
Dropout, GELU, ReLU, MultiHeadAttention, TransformerBlock, Transformer; ``nn.utils`` holds
``clip_grad_norm_``."""

from . import functional_nn, utils
from .attention import MultiHeadAttention
from .layers import GELU, Dropout, Embedding, LayerNorm, ReLU
from .module import Linear, Module, ModuleList, Parameter, Sequential
from .transformer import MLP, Transformer, TransformerBlock

__all__ = ["GELU", "MLP", "Dropout", "Embedding", "LayerNorm", "Linear", "Module", "ModuleList",
           "MultiHeadAttention", "Parameter", "ReLU", "Sequential", "Transformer",
           "TransformerBlock", "functional_nn", "utils"]
