"""Neural-network modules, as ``torch.nn``: Module, Parameter, the containers (Sequential,
ModuleList, ModuleDict, ParameterList, ParameterDict), Linear, Embedding, LayerNorm,
Dropout, the activations, MultiheadAttention (PyTorch's) and minattn's own
MultiHeadAttention, TransformerBlock, Transformer; ``nn.init`` (weight initialisation),
``nn.functional`` (= ``minattn.functional``) and ``nn.utils`` (``clip_grad_norm_``)."""

from . import functional_nn, init, utils
from .attention import MultiHeadAttention, MultiheadAttention
from .layers import (
                     GELU,
                     BCEWithLogitsLoss,
                     CrossEntropyLoss,
                     Dropout,
                     Embedding,
                     Flatten,
                     LayerNorm,
                     LogSoftmax,
                     MSELoss,
                     NLLLoss,
                     ReLU,
                     Sigmoid,
                     SiLU,
                     Softmax,
                     Tanh,
                     Unflatten,
)
from .module import (
                     Identity,
                     Linear,
                     Module,
                     ModuleDict,
                     ModuleList,
                     Parameter,
                     ParameterDict,
                     ParameterList,
                     Sequential,
)
from .transformer import MLP, Transformer, TransformerBlock

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "Flatten", "MSELoss", "NLLLoss",
           "Unflatten", "GELU", "MLP", "Dropout", "Embedding", "Identity", "LayerNorm", "Linear",
           "LogSoftmax", "Module", "ModuleDict", "ModuleList", "MultiHeadAttention",
           "MultiheadAttention", "Parameter", "ParameterDict", "ParameterList", "ReLU",
           "Sequential", "SiLU", "Sigmoid", "Softmax", "Tanh", "Transformer",
           "TransformerBlock", "functional_nn", "init", "utils"]
