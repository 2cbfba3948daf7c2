"""Fit y = sin(x) with a cubic, three ways, as PyTorch's beginner tutorials teach autograd:
by hand with autograd and ``torch.no_grad()`` updates, with ``nn`` modules and a loss
module, and with an optimizer from ``torch.optim``.

The coefficients start from a seeded NumPy generator (``torch.tensor(float)``), so PyTorch
and minattn take the same path. ``python polynomial_fit.py OUT.npz`` or
``python -m minattn run polynomial_fit.py OUT.npz``. Written for minattn's tests, after the
pattern of the "Learning PyTorch with Examples" tutorial (no code copied from it).
"""

import math
import sys

import numpy as np
import torch

rng = np.random.default_rng(31)
x = torch.linspace(-math.pi, math.pi, 200)
y = torch.sin(x)
out = {"x": x.numpy(), "y": y.numpy()}

# 1. Tensors and autograd: four scalar leaves, updated by hand under no_grad.
a, b, c, d = (torch.tensor(float(v), requires_grad=True) for v in rng.standard_normal(4))
learning_rate = 1e-5
losses = []
for t in range(60):
    y_pred = a + b * x + c * x ** 2 + d * x ** 3
    loss = (y_pred - y).pow(2).sum()
    losses.append(loss.item())
    loss.backward()
    if t == 0:
        out["first_grads"] = np.array([a.grad.item(), b.grad.item(), c.grad.item(),
                                       d.grad.item()])
    with torch.no_grad():
        a -= learning_rate * a.grad
        b -= learning_rate * b.grad
        c -= learning_rate * c.grad
        d -= learning_rate * d.grad
        a.grad = None
        b.grad = None
        c.grad = None
        d.grad = None
out["autograd_losses"] = np.array(losses)
out["autograd_coefficients"] = torch.stack([a, b, c, d]).detach().numpy()

# 2. nn: the features x, x^2, x^3 as a (200, 3) matrix, a Linear(3, 1) and MSELoss.
p = torch.tensor([1, 2, 3])
xx = x.unsqueeze(-1).pow(p)  # (200, 3)
model = torch.nn.Sequential(
    torch.nn.Linear(3, 1),
    torch.nn.Flatten(0, 1),
)
model.load_state_dict({
    "0.weight": torch.from_numpy(rng.standard_normal((1, 3)).astype(np.float32)),
    "0.bias": torch.from_numpy(rng.standard_normal(1).astype(np.float32)),
})
loss_fn = torch.nn.MSELoss(reduction="sum")
losses = []
for _ in range(60):
    y_pred = model(xx)
    loss = loss_fn(y_pred, y)
    losses.append(loss.item())
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for param in model.parameters():
            param -= 1e-5 * param.grad
out["nn_losses"] = np.array(losses)
linear_layer = model[0]
out["nn_weight"] = linear_layer.weight.detach().numpy()
out["nn_bias"] = linear_layer.bias.detach().numpy()

# 3. optim: the same model and loss, stepped by SGD with momentum, then by Adam.
for name, make in (("sgd", lambda ps: torch.optim.SGD(ps, lr=1e-6, momentum=0.9)),
                   ("adam", lambda ps: torch.optim.Adam(ps, lr=1e-2))):
    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1))
    with torch.no_grad():
        start = 0.1 * rng.standard_normal((1, 3))
        model[0].weight.copy_(torch.from_numpy(start.astype(np.float32)))
        model[0].bias.fill_(0.5)
    optimizer = make(model.parameters())
    losses = []
    for _ in range(40):
        loss = loss_fn(model(xx), y)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out[f"{name}_losses"] = np.array(losses)
    out[f"{name}_weight"] = model[0].weight.detach().numpy()
    out[f"{name}_bias"] = model[0].bias.detach().numpy()

print(f"result: y = {a.item():.4f} + {b.item():.4f} x + {c.item():.4f} x^2 + {d.item():.4f} x^3")
np.savez(sys.argv[1], **out)
