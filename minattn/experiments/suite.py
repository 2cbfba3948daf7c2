"""The six experiments of ``minattn scaling`` and their sizes, quick and full.

Each experiment is one or more library functions ("parts") called with keyword
parameters; their rows are concatenated. The quick sizes run in seconds (tests,
``make demo``); the full ones in a few minutes on two cores.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

from .common import D_VALUES
from .dead import dead_gradients
from .gradients import gradient_flow
from .overflow import flash_agreement, naive_softmax_nans
from .spread import score_spread
from .stepsize import gradcheck_pass_rate, step_size_curve
from .training import lr_sensitivity


@dataclass
class Part:
    """One experiment function with its quick and full parameters."""

    fn: object
    quick: dict
    full: dict
    loops: tuple = ("d_values", "seeds")  # the parameters whose product counts the work

    def params(self, quick: bool) -> dict:
        return dict(self.quick if quick else self.full)

    def units(self, quick: bool) -> int:
        """How many times the function will call its progress callback."""
        params = {name: p.default for name, p in inspect.signature(self.fn).parameters.items()}
        params.update(self.params(quick))
        counts = []
        for name in self.loops:
            value = params[name]
            counts.append(sum(len(v) for v in value.values()) // len(value)
                          if isinstance(value, dict) else len(value))
        return math.prod(counts)


@dataclass
class Experiment:
    number: int
    slug: str
    title: str
    parts: list = field(default_factory=list)

    def units(self, quick: bool) -> int:
        return sum(part.units(quick) for part in self.parts)

    def run(self, quick: bool, device: str = "cpu", progress=None) -> list[dict]:
        rows = []
        for part in self.parts:
            rows += part.fn(**part.params(quick), device=device, progress=progress)
        return rows


EXPERIMENTS = [
    Experiment(1, "spread", "Score spread and attention entropy", [
        Part(score_spread, quick=dict(seeds=(0,), n_queries=128),
             full=dict(seeds=(0, 1, 2, 3, 4), n_queries=256))]),
    Experiment(2, "gradients", "Jacobian and gradient flow", [
        Part(gradient_flow, quick=dict(seeds=(0,), n_queries=128),
             full=dict(seeds=(0, 1, 2), n_queries=256))]),
    Experiment(3, "stepsize", "Gradient checks: step size, precision and scaling", [
        Part(step_size_curve, quick=dict(d_values=(64,), scalings=("sqrt", "none"), seeds=(0,)),
             full=dict(d_values=(16, 64), seeds=(0, 1, 2))),
        Part(gradcheck_pass_rate, quick=dict(scalings=("sqrt", "none"), seeds=tuple(range(4))),
             full=dict(seeds=tuple(range(20))))]),
    Experiment(4, "dead", "Dead gradients look like wrong gradients", [
        Part(dead_gradients, quick=dict(d_values=(64, 512, 2048), seeds=(0,), n_queries=4),
             full=dict(d_values=D_VALUES, seeds=(0, 1), n_queries=8))]),
    Experiment(5, "overflow", "Why the max is subtracted", [
        Part(naive_softmax_nans, quick=dict(seeds=(0,), n_queries=128),
             full=dict(seeds=(0, 1, 2, 3, 4))),
        Part(flash_agreement, quick=dict(seeds=(0,), n_queries=32),
             full=dict(seeds=(0, 1, 2)))]),
    Experiment(6, "training", "Training sensitivity to the learning rate", [
        Part(lr_sensitivity, quick=dict(d_values=(64,), seeds=(0, 1), steps=150),
             full=dict(d_values=(64, 512), seeds=(0, 1, 2, 3, 4), steps=200),
             loops=("d_values", "seeds", "scalings", "optimizers", "learning_rates"))]),
]
BY_NUMBER = {e.number: e for e in EXPERIMENTS}
