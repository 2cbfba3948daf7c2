"""The scaling experiments: why attention divides the scores by sqrt(d).

Each experiment is a function that takes its sizes as parameters and returns a list of
result rows (dicts); the terminal tables, the figures and report.md are all computed from
those rows (``minattn scaling`` runs everything).

>>> from minattn.experiments import score_spread
>>> rows = score_spread(d_values=(64, 512), seeds=(0,))
>>> [(r["d"], r["scaling"], round(r["entropy_median"], 2)) for r in rows][:2]
[(64, 'sqrt', 4.39), (64, 'unscaled', 0.57)]

One module per experiment holds its computation, its table, its figure and its section of
report.md (``e1_spread`` to ``e6_training``); ``common``, ``tables`` and ``plots`` hold
what they share, and ``suite`` puts them together for the whole report:

1. ``score_spread``: score spread and attention entropy;
2. ``gradient_flow``: the softmax Jacobian and the gradients of q and k;
3. ``step_size_curve``, ``gradcheck_pass_rate``: gradient checks against the step h;
4. ``dead_gradients``: dead gradients that look like wrong ones;
5. ``naive_softmax_nans``, ``flash_agreement``: why the max is subtracted;
6. ``lr_sensitivity``: training sensitivity to the learning rate.
"""

from .common import D_VALUES, SCALINGS, scale_for
from .e1_spread import score_spread
from .e2_gradients import gradient_flow, jacobian_fro
from .e3_stepsize import gradcheck_pass_rate, step_size_curve
from .e4_dead import dead_gradients
from .e5_overflow import flash_agreement, naive_softmax_nans
from .e6_training import lr_sensitivity
from .plots import matplotlib_missing
from .suite import (
    BY_NUMBER,
    EXPERIMENTS,
    TABLES,
    key_numbers,
    make_figures,
    markdown_report,
    terminal_table,
)

__all__ = ["BY_NUMBER", "D_VALUES", "EXPERIMENTS", "SCALINGS", "TABLES", "dead_gradients",
           "flash_agreement", "gradcheck_pass_rate", "gradient_flow", "jacobian_fro",
           "key_numbers", "lr_sensitivity", "make_figures", "markdown_report",
           "matplotlib_missing", "naive_softmax_nans", "scale_for", "score_spread",
           "step_size_curve", "terminal_table"]
