"""The settings of a ``minattn train`` run, and the attention scale's names.

``TrainConfig`` holds everything that decides a run's result; ``quick`` shrinks it to a
few seconds; ``parse_scale``, ``scale_name`` and ``scale_label`` read and print the
attention scale: ``sqrt`` (1/sqrt(d), the default), ``unscaled`` (1), ``linear`` (1/d) or a
number.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

from ...experiments.common import SCALINGS


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
    scale: float | None = None  # c itself: None is sqrt (1/sqrt(head_dim)), 1.0 unscaled
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
        """The scale as printed: 'sqrt (1/sqrt(d))', 'unscaled (1)', 'linear (1/d)', '0.5'."""
        return scale_label(self.scale, head_dim_of(self))

    def scale_name(self) -> str:
        """The scale's word: 'sqrt', 'unscaled', 'linear', or the number."""
        return scale_name(self.scale, head_dim_of(self))

    def to_dict(self) -> dict:
        """The settings as saved (checkpoint, metrics.json): the scale by its word ("sqrt",
        "unscaled", "linear"), or the number when it has none."""
        saved = dataclasses.asdict(self)
        name = self.scale_name()
        saved["scale"] = name if name in SCALE_NAMES else self.scale
        return saved

    @classmethod
    def from_dict(cls, saved: dict) -> TrainConfig:
        """The settings of ``to_dict``, or of an earlier version, which saved the scale as
        null (1/sqrt(d)) or the number. TypeError for a setting this version lacks,
        ValueError for a scale it cannot read."""
        config = cls(**saved)
        if isinstance(config.scale, str):
            config.scale = parse_scale(config.scale, head_dim_of(config))
        return config


# The attention scale c in softmax(c q.k), by the names `minattn scaling` uses too. A
# TrainConfig holds c itself (None for 1/sqrt(d), as nn.MultiheadAttention takes it); the
# files it is saved in name it (to_dict), and runs saved before the names, with null or the
# number, still load (from_dict).
SCALE_NAMES = SCALINGS  # ("sqrt", "unscaled", "linear"), defined once for both commands
SCALE_MEANS = {"sqrt": "1/sqrt(d)", "unscaled": "1", "linear": "1/d"}
# Spellings of earlier versions: still read, with a note (deprecated_scale) on the new word.
OLD_SCALE_NAMES = {"none": "sqrt", "default": "sqrt", "1/sqrt(d)": "sqrt", "1/d": "linear"}


def deprecated_scale(text: str) -> str | None:
    """What to say about an old spelling of a scale (None for a current one)."""
    text = text.strip().lower()
    if text == "none":  # the trap: train's none was scaling's sqrt, scaling's none is unscaled
        return ("'none' is deprecated and read as sqrt (1/sqrt(d)), what it meant in "
                "minattn train; write sqrt (`minattn scaling` used none for unscaled (1): "
                "write unscaled if that is what you meant)")
    if text in OLD_SCALE_NAMES:
        new = OLD_SCALE_NAMES[text]
        return f"{text!r} is deprecated and read as {new} ({SCALE_MEANS[new]}); write {new}"
    return None


def canonical_scale(text: str) -> str:
    """A scale as typed, in today's words: 'none' -> 'sqrt', '1/d' -> 'linear', '1' -> '1'."""
    text = text.strip().lower()
    return OLD_SCALE_NAMES.get(text, text)


def parse_scale(text: str, head_dim: int) -> float | None:
    """sqrt -> None (1/sqrt(d)); unscaled -> 1.0; linear -> 1/head_dim; any number above 0.

    The spellings of earlier versions (none, default, 1/sqrt(d), 1/d) are read as before,
    with a DeprecationWarning naming the new word.
    """
    note = deprecated_scale(text)
    if note is not None:
        warnings.warn(f"scale {note}", DeprecationWarning, stacklevel=2)
    text = canonical_scale(text)
    if text == "sqrt":
        return None
    if text == "unscaled":
        return 1.0
    if text == "linear":
        return 1.0 / head_dim
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"expected sqrt (1/sqrt(d)), unscaled (1), linear (1/d) or a number "
                         f"above 0, got {text!r}")
    return value


def scale_name(scale, head_dim: int | None = None) -> str:
    """The word for a stored scale: None -> 'sqrt', 1 -> 'unscaled', 1/head_dim -> 'linear',
    else the number ('0.5'). Also names run folders and figures (scale-sqrt, ...)."""
    if scale is None:
        return "sqrt"
    if scale == 1.0:
        return "unscaled"
    if head_dim is not None and scale == 1.0 / head_dim:
        return "linear"
    return f"{scale:g}"


def scale_label(scale, head_dim: int | None = None) -> str:
    """What tables and figures print: 'sqrt (1/sqrt(d))', 'unscaled (1)', 'linear (1/d)',
    or the number ('0.5')."""
    name = scale_name(scale, head_dim)
    return f"{name} ({SCALE_MEANS[name]})" if name in SCALE_MEANS else name


def head_dim_of(config) -> int:
    """d, the size of one head, of a TrainConfig or of its dict (as saved)."""
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k)
    return get("embed_dim") // get("num_heads")


def legacy_folder_name(scale) -> str:
    """The run folder's name under --compare-scaling before the scale had words
    (scale-1_sqrtd, scale-1, scale-0p0625): still found by --resume."""
    label = "1/sqrt(d)" if scale is None else f"{scale:g}"
    return "scale-" + label.replace("/", "_").replace("(", "").replace(")", "").replace(".", "p")


def quick(config: TrainConfig) -> TrainConfig:
    """A few steps of a small model: seconds, for tests and smoke runs."""
    return dataclasses.replace(config, seq_len=min(config.seq_len, 6), embed_dim=32,
                               num_heads=2, num_layers=1, steps=30, batch_size=16, warmup=5,
                               eval_every=10, eval_size=64, checkpoint_every=10)
