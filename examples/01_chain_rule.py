# %% [markdown]
# # 1. The chain rule on two numbers
#
# Backpropagation is the chain rule applied one operation at a time, from the output back
# to the inputs. This lesson does it by hand for a single neuron, checks the result with
# finite differences, and then lets minattn's autograd do the same thing.
#
# The neuron takes an input $x$, a weight $w$ and a bias $b$, and we score its output
# against a target $t$:
#
# $$z = w x + b, \qquad a = \tanh(z), \qquad L = (a - t)^2.$$
#
# We want $\partial L/\partial w$, $\partial L/\partial b$ and $\partial L/\partial x$:
# how much the loss changes when each input is nudged.

# %%
import math
import os

import minattn as ma
from minattn.teaching import check

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")  # small sizes (unused here)


# %% [markdown]
# ## The forward pass, one line per operation
#
# Keep every intermediate value. The backward pass needs them.

# %%
x, w, b, t = 0.5, -1.5, 2.0, 0.25

z = w * x + b  # 1.25
a = math.tanh(z)
L = (a - t) ** 2
print(f"z = {z:.6f}   a = tanh(z) = {a:.6f}   L = (a - t)^2 = {L:.6f}")

# %% [markdown]
# ## The backward pass, by hand
#
# Each operation contributes its **local derivative**, the derivative of its output with
# respect to its input with everything else held fixed:
#
# | operation | local derivative |
# |---|---|
# | $L = (a - t)^2$ | $\partial L / \partial a = 2 (a - t)$ |
# | $a = \tanh z$ | $\partial a / \partial z = 1 - \tanh^2 z = 1 - a^2$ |
# | $z = w x + b$ | $\partial z / \partial w = x$ |
# | $z = w x + b$ | $\partial z / \partial b = 1$ |
# | $z = w x + b$ | $\partial z / \partial x = w$ |
#
# The chain rule multiplies them along the path from $L$ back to each input. We start at
# the output with $\partial L/\partial L = 1$, and each step multiplies the gradient
# arriving from above by one local derivative:

# %%
dL = 1.0                   # dL/dL: where every backward pass starts
da = dL * 2 * (a - t)      # dL/da
dz = da * (1 - a**2)       # dL/dz = dL/da * da/dz  (uses a, saved from the forward pass)
dw = dz * x                # dL/dw = dL/dz * dz/dw
db = dz * 1.0              # dL/db
dx = dz * w                # dL/dx
print(f"by hand:  dL/dw = {dw:+.10f}   dL/db = {db:+.10f}   dL/dx = {dx:+.10f}")

# %% [markdown]
# `dz` is computed once and used three times. Reverse mode (backpropagation) is cheap
# for exactly this reason: each shared piece of the chain is computed once, on the way
# back, and reused by every input beneath it.
#
# ## A check that needs no calculus: finite differences
#
# For a small $h$ the central difference
# $\frac{L(w + h) - L(w - h)}{2h}$ approximates $\partial L/\partial w$ with an error
# of order $h^2$. It needs no derivation, so it checks the derivation independently.

# %%
def loss(x, w, b):
    return (math.tanh(w * x + b) - t) ** 2


h = 1e-6
numeric = {
    "w": (loss(x, w + h, b) - loss(x, w - h, b)) / (2 * h),
    "b": (loss(x, w, b + h) - loss(x, w, b - h)) / (2 * h),
    "x": (loss(x + h, w, b) - loss(x - h, w, b)) / (2 * h),
}
for name, by_hand in [("w", dw), ("b", db), ("x", dx)]:
    check(f"dL/d{name} by hand vs finite differences", abs(by_hand - numeric[name]), 1e-8)

# %% [markdown]
# ## The same thing with minattn
#
# Make the inputs tensors that **require grad**, write the same forward pass, and call
# `backward()`. While the forward pass runs, minattn records which operation made each
# value. `backward()` then walks that record from $L$ back to the inputs and applies one
# local derivative per step, exactly as we did above. We use float64 so the comparison is
# exact to about 15 digits.

# %%
xt = ma.tensor(x, dtype="float64", requires_grad=True)
wt = ma.tensor(w, dtype="float64", requires_grad=True)
bt = ma.tensor(b, dtype="float64", requires_grad=True)

Lt = ((wt * xt + bt).tanh() - t) ** 2
print(Lt)  # grad_fn names the last operation: Lt remembers how it was made
Lt.backward()  # L is a single number, so the starting gradient 1 is implied

for name, tensor, by_hand in [("w", wt, dw), ("b", bt, db), ("x", xt, dx)]:
    print(f"autograd: dL/d{name} = {tensor.grad.item():+.10f}")
    check(f"dL/d{name} autograd vs by hand", abs(tensor.grad.item() - by_hand), 1e-14)

# %% [markdown]
# Autograd does not approximate anything. It applies the same local derivatives in the
# same order, so it agrees with the hand computation to the last bit or two of float64.
# Finite differences agree only to 10 or 11 digits, because they are an approximation
# (truncation error of order $h^2$, round-off error of order $10^{-16}/h$).
#
# ## Practice
#
# 1. If you nudge $w$ by $h = 10^{-3}$, by about how much does $L$ change?
# 2. What does `backward(g)` with a starting gradient $g = 2$ do to every gradient?
# 3. Make $z$ large, say $w = 10$. What happens to $\partial L/\partial w$, and why?
#
# The cells below answer each question with code.

# %%
# 1. To first order, L changes by h * dL/dw: the gradient is a sensitivity.
step = 1e-3
change = loss(x, w + step, b) - loss(x, w, b)
print(f"L(w + h) - L(w) = {change:+.6e}   h * dL/dw = {step * dw:+.6e}")
check("first-order prediction of the change in L", abs(change - step * dw) / abs(change), 1e-2)

# %%
# 2. backward is linear in the starting gradient: g = 2 doubles every gradient.
wt.grad = xt.grad = bt.grad = None  # gradients accumulate, so clear them first
Lt = ((wt * xt + bt).tanh() - t) ** 2
Lt.backward(ma.tensor(2.0, dtype="float64"))
check("backward(2) gives twice the gradient", abs(wt.grad.item() - 2 * dw), 1e-14)

# %%
# 3. tanh saturates: for large z, 1 - tanh(z)^2 is almost 0, and so is every gradient that
#    passes through it. Lesson 8 finds the same effect in softmax, at the heart of attention.
w_big = ma.tensor(10.0, dtype="float64", requires_grad=True)
L_big = ((w_big * x + b).tanh() - t) ** 2  # z = 7: tanh(z) = 0.9999983
L_big.backward()
print(f"w = 10: dL/dw = {w_big.grad.item():.3e}   (w = -1.5 gave {dw:.3e})")
check("|dL/dw| through a saturated tanh (0 would be none)", abs(w_big.grad.item()), 1e-5)
