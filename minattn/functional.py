"""minattn.functional: softmax, log_softmax, cross_entropy, scaled_dot_product_attention."""

from .ops import matmul

__all__ = ["matmul"]
