"""The toy tasks of ``minattn train``: every batch is a function of (seed, step).

``reverse`` and ``copy`` (``SequenceTask``) need attention to look back; ``chars``
(``CharTask``) is next-character prediction on the text shipped in ``minattn/data``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import TrainConfig

TEXT = Path(__file__).parents[2] / "data" / "public_domain.txt"


class SequenceTask:
    """reverse / copy: ``x | f(x)`` with x uniform over ``num_symbols`` symbols."""

    def __init__(self, config: TrainConfig):
        self.kind, self.n, self.symbols = config.task, config.seq_len, config.num_symbols
        self.delimiter = self.symbols  # the last token id
        self.vocab_size = self.symbols + 1
        self.max_len = 2 * self.n  # inputs drop the last token of x | f(x)
        self.answer_start = self.n  # input position n (the delimiter) predicts f(x)[0]
        self.vocab = [str(i) if i < 10 else chr(ord("a") + i - 10) for i in range(self.symbols)]
        self.vocab.append("|")

    def sample(self, rng, batch: int):
        """(inputs, targets), both (batch, 2n) int64: targets are inputs shifted by one."""
        x = rng.integers(0, self.symbols, size=(batch, self.n))  # (B, n)
        answer = x[:, ::-1] if self.kind == "reverse" else x
        delim = np.full((batch, 1), self.delimiter)
        seq = np.concatenate([x, delim, answer], axis=1)  # (B, 2n + 1)
        return seq[:, :-1], seq[:, 1:]

    def decode(self, ids) -> list[str]:
        return [self.vocab[int(i)] for i in ids]


class CharTask:
    """Next-character prediction on a text; the last tenth is held out."""

    def __init__(self, config: TrainConfig):
        path = Path(config.text) if config.text else TEXT
        text = path.read_text(encoding="utf-8")
        self.vocab = sorted(set(text))
        self.vocab_size = len(self.vocab)
        ids = np.array([self.vocab.index(c) for c in text], dtype=np.int64)
        split = int(0.9 * len(ids))
        self.train_ids, self.eval_ids = ids[:split], ids[split:]
        self.max_len = 2 * config.seq_len
        self.answer_start = 0
        if len(self.eval_ids) <= self.max_len + 1:
            raise ValueError(f"text {path} is too short ({len(ids)} characters) for a "
                             f"context of {self.max_len}")

    def sample(self, rng, batch: int, held_out: bool = False):
        ids = self.eval_ids if held_out else self.train_ids
        starts = rng.integers(0, len(ids) - self.max_len - 1, size=batch)
        windows = np.stack([ids[s:s + self.max_len + 1] for s in starts])  # (B, L + 1)
        return windows[:, :-1], windows[:, 1:]

    def decode(self, ids) -> list[str]:
        return [repr(self.vocab[int(i)])[1:-1] or " " for i in ids]


def make_task(config: TrainConfig):
    if config.task in ("reverse", "copy"):
        return SequenceTask(config)
    if config.task == "chars":
        return CharTask(config)
    raise ValueError(f"unknown task {config.task!r}: expected reverse, copy or chars")


def train_batch(task, config: TrainConfig, step: int):
    return task.sample(np.random.default_rng([config.seed, 0, step]), config.batch_size)


def eval_batch(task, config: TrainConfig):
    rng = np.random.default_rng([config.seed, 1])
    if isinstance(task, CharTask):
        return task.sample(rng, config.eval_size, held_out=True)
    return task.sample(rng, config.eval_size)
