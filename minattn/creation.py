"""Making tensors the way PyTorch spells it: arange, full, eye, the *_like family, random
draws, and the dtype names (ma.long, ma.float, ...)."""

from __future__ import annotations

__all__: list[str] = []
