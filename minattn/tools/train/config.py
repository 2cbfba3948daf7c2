"""The settings of a ``minattn train`` run, and the attention scale's names.

``TrainConfig`` holds everything that decides a run's result; ``quick`` shrinks it to a
few seconds; ``parse_scale`` and ``scale_label`` read and print the attention scale.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Everything that decides a run's result (so a checkpoint records it whole)."""

    task: str = "reverse"  # reverse | copy | chars
    seq_len: int = 16  # symbols to reverse or copy; context length / 2 for chars
    num_symbols: int = 10  # alphabet of reverse and copy (plus the delimiter)
    text: str | None = None  # chars: a UTF-8 text file (default: the shipped one)
    embed_dim: int = 64
    num_heads: int = 4
    num_layers: int = 2
    mlp_ratio: float = 4
    positions: str = "learned"
    dropout: float = 0.0
    scale: float | None = None  # None: 1/sqrt(head_dim); 1.0: unscaled
    impl: str | None = None  # attention implementation (None: the default for the device)
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decay from lr to lr * min_lr_ratio
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 25
    eval_size: int = 512
    target: float = 0.99  # held-out token accuracy that counts as solved
    checkpoint_every: int = 200
    device: str | None = None
    dtype: str = "float32"

    def label(self) -> str:
        return scale_label(self.scale)


def scale_label(scale) -> str:
    return "1/sqrt(d)" if scale is None else f"{scale:g}"


SCALE_NAMES = ("none", "default", "1/sqrt(d)", "1/d")


def parse_scale(text: str, head_dim: int) -> float | None:
    """'none' -> None (1/sqrt(d)); '1' -> 1.0; '1/d' -> 1/head_dim; any number above 0."""
    text = text.strip().lower()
    if text in ("none", "default", "1/sqrt(d)"):
        return None
    if text == "1/d":
        return 1.0 / head_dim
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"expected none (1/sqrt(d)), 1/d or a number above 0, got {text!r}")
    return value


def quick(config: TrainConfig) -> TrainConfig:
    """A few steps of a small model: seconds, for tests and smoke runs."""
    return dataclasses.replace(config, seq_len=min(config.seq_len, 6), embed_dim=32,
                               num_heads=2, num_layers=1, steps=30, batch_size=16, warmup=5,
                               eval_every=10, eval_size=64, checkpoint_every=10)
