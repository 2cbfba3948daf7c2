"""The scaling experiments: why attention divides the scores by sqrt(d).

Each experiment is a function that takes its sizes as parameters and returns a list of
result rows (dicts); the terminal tables, the figures and report.md are all computed from
those rows (``minattn scaling`` runs everything).

>>> from minattn.experiments import score_spread
>>> rows = score_spread(d_values=(64, 512), seeds=(0,))
>>> [(r["d"], r["scaling"], round(r["entropy_median"], 2)) for r in rows][:2]
[(64, 'sqrt', 4.38), (64, 'none', 0.69)]

1. ``score_spread``: score spread and attention entropy;
2. ``gradient_flow``: the softmax Jacobian and the gradients of q and k;
3. ``step_size_curve``, ``gradcheck_pass_rate``: gradient checks against the step h;
4. ``dead_gradients``: dead gradients that look like wrong ones;
5. ``naive_softmax_nans``, ``flash_agreement``: why the max is subtracted;
6. ``lr_sensitivity``: training sensitivity to the learning rate.
"""

from .common import D_VALUES, SCALINGS, scale_for
from .dead import dead_gradients
from .gradients import gradient_flow, jacobian_fro
from .overflow import flash_agreement, naive_softmax_nans
from .spread import score_spread
from .stepsize import gradcheck_pass_rate, step_size_curve
from .suite import EXPERIMENTS
from .training import lr_sensitivity

__all__ = ["D_VALUES", "EXPERIMENTS", "SCALINGS", "dead_gradients", "flash_agreement",
           "gradcheck_pass_rate", "gradient_flow", "jacobian_fro", "lr_sensitivity",
           "naive_softmax_nans", "scale_for", "score_spread", "step_size_curve"]
