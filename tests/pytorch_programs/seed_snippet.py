"""The self-attention lesson's first example, as a student types it into PyTorch.

Unscaled attention, then the same scores divided by sqrt(d), then one backward pass with a
fixed upstream gradient. The only change from the lesson: ``torch.randn(4, 8)`` becomes
``torch.tensor(<seeded NumPy array>)``, so that PyTorch and minattn see the same inputs.

Run it as ``python seed_snippet.py OUT.npz`` (PyTorch) or
``python -m minattn run seed_snippet.py OUT.npz`` (minattn): same numbers, same keys.
Written for minattn's tests (no third-party code).
"""

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(2024)
Q = torch.tensor(rng.standard_normal((4, 8)).astype(np.float32), requires_grad=True)
K = torch.tensor(rng.standard_normal((4, 8)).astype(np.float32), requires_grad=True)
V = torch.from_numpy(rng.standard_normal((4, 8)).astype(np.float32)).requires_grad_()
dout = torch.from_numpy(rng.standard_normal((4, 8)).astype(np.float32))

# the lesson, step by step
scores = Q @ K.T
weights = F.softmax(scores, dim=-1)
output = weights @ V
print("unscaled scores: variance", scores.var().item())
print("rows of weights sum to", weights.sum(dim=-1))

scaled_scores = (Q @ K.T) / math.sqrt(Q.size(-1))
scaled_weights = F.softmax(scaled_scores, dim=-1)
scaled_output = scaled_weights @ V
print("scaled scores: variance", scaled_scores.var().item())

# backward from the scaled output, with a fixed upstream gradient
scaled_output.backward(dout)

results = {
    "scores": scores, "weights": weights, "output": output,
    "scaled_scores": scaled_scores, "scaled_weights": scaled_weights,
    "scaled_output": scaled_output,
    "scores_var": scores.var(), "scaled_scores_std": scaled_scores.std(),
    "weights_max": weights.max(dim=-1).values, "weights_argmax": weights.argmax(dim=-1),
    "Q_grad": Q.grad, "K_grad": K.grad, "V_grad": V.grad,
}
np.savez(sys.argv[1], **{name: t.detach().numpy() for name, t in results.items()})
