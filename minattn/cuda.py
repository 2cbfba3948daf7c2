"""``minattn.cuda``, as ``torch.cuda``: whether a GPU can be used."""

from __future__ import annotations

from .backend import cuda_available as is_available

__all__ = ["is_available"]
