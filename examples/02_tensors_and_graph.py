# %% [markdown]
# # 2. Tensors and the graph
#
# Lesson 1 used single numbers. Real models use tensors, and two new rules come with
# them. **Broadcasting** reuses one value in many places, so its gradient is a sum.
# **Fan-out** uses one tensor in several operations, so its gradients add up. This lesson
# looks at the graph minattn records, walks it, and checks both rules against NumPy.

# %%
import os

import numpy as np

import minattn as ma
from minattn.teaching import check, expect, max_err

FAST = os.environ.get("MINATTN_FAST", "") not in ("", "0")  # small sizes (unused here)


ma.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## A tensor is an array with a memory
#
# `ma.tensor` wraps a NumPy array (a CuPy array on the GPU) in `.data`. A tensor that
# **requires grad** is one we want gradients for. Every result computed from such a tensor
# remembers the operation that made it, shown as `grad_fn` in its printout.

# %%
x = ma.tensor([[1.0, 2.0, 3.0, 4.0],
               [5.0, 6.0, 7.0, 8.0],
               [9.0, 10.0, 11.0, 12.0]], dtype="float64", requires_grad=True)
print(x.shape, x.dtype, x.device, type(x.data))
y = (x * 0.1).tanh()
print(y)

# %% [markdown]
# ## The graph is a chain of references
#
# Each result keeps the `Function` that made it (in `t._ctx`, an internal attribute we
# read here only to see the graph), and the function keeps its inputs. Following those
# references from the output back to the inputs **is** the graph. `backward()` walks
# exactly this path.

# %%
def show_graph(t, name="out", depth=0):
    """Print the graph that produced t, output first (reads minattn's internal links)."""
    fn = t._ctx
    made_by = type(fn).__name__ if fn is not None else ("leaf" if t.requires_grad else "constant")
    print(f"{'    ' * depth}{name}: shape {t.shape}, made by {made_by}")
    if fn is not None:
        for i, parent in enumerate(fn.inputs):
            show_graph(parent, f"input {i}", depth + 1)


w = ma.randn(4, 2, dtype="float64", requires_grad=True)
b = ma.randn(2, dtype="float64", requires_grad=True)
out = (x @ w + b).tanh()  # (3, 2)
show_graph(out)

# %% [markdown]
# `minattn.viz.to_dot` writes the same graph in Graphviz's DOT language: ellipses for the
# operations, boxes for the tensors. Save it to a file and run
# `dot -Tpng graph.dot -o graph.png` to get a picture.

# %%
from minattn import viz

dot = viz.to_dot(out)
print(dot)
expect("the DOT graph names every operation",
       all(f'label="{op}"' in dot for op in ("Tanh", "Add", "MatMul")))

# %% [markdown]
# ## Broadcasting: one value used many times, one gradient summed
#
# In `x @ w + b`, the bias `b` has shape `(2,)`, but it is added to every row of a
# `(3, 2)` matrix. Each element of `b` is used three times, once per row. The chain rule
# sums over every use, so `b.grad` is the upstream gradient **summed over the rows**, and
# it has the shape of `b`. A bias of shape `(3, 1)`, added to every column, gets the
# upstream gradient summed over the columns.

# %%
a = ma.randn(3, 2, dtype="float64", requires_grad=True)
row_bias = ma.randn(2, dtype="float64", requires_grad=True)     # (2,)   -> stretched to (3, 2)
col_bias = ma.randn(3, 1, dtype="float64", requires_grad=True)  # (3, 1) -> stretched to (3, 2)
s = a + row_bias + col_bias  # (3, 2)
dout = rng.standard_normal((3, 2))  # a random upstream gradient dL/ds
s.backward(dout)

print("row_bias.grad", row_bias.grad.shape, " col_bias.grad", col_bias.grad.shape)
check("a.grad == dout", max_err(a.grad, dout), 1e-15)
check("row_bias.grad == dout summed over rows", max_err(row_bias.grad, dout.sum(axis=0)), 1e-15)
check("col_bias.grad == dout summed over columns",
      max_err(col_bias.grad, dout.sum(axis=1, keepdims=True)), 1e-15)

# %% [markdown]
# ## Fan-out: one tensor used by several operations
#
# Self-attention computes queries, keys and values from the **same** input:
# $q = x W_q$ and $k = x W_k$. The input $x$ fans out into two branches, and its gradient
# is the sum of what each branch sends back:
#
# $$\frac{\partial L}{\partial x} = \frac{\partial L}{\partial q} W_q^\top
#   + \frac{\partial L}{\partial k} W_k^\top.$$
#
# The engine gets this right by **adding** every gradient that reaches a tensor, and by
# visiting the tensors in topological order, so every branch has reported before $x$
# passes its gradient on.

# %%
x = ma.randn(5, 4, dtype="float64", requires_grad=True)
w_q = ma.randn(4, 3, dtype="float64", requires_grad=True)
w_k = ma.randn(4, 3, dtype="float64", requires_grad=True)
q, k = x @ w_q, x @ w_k  # (5, 3) each: x is used twice
q.retain_grad()  # keep the gradients of these two intermediate tensors, to check below
k.retain_grad()
scores = q @ k.T  # (5, 5)
scores.backward(rng.standard_normal((5, 5)))

expected = q.grad.numpy() @ w_q.numpy().T + k.grad.numpy() @ w_k.numpy().T  # both branches
check("x.grad == dq W_q^T + dk W_k^T", max_err(x.grad, expected), 1e-12)

# %% [markdown]
# The order matters most when the shared tensor is itself computed from something.
# Softmax built from primitive ops is an example: $e = \exp(x)$ feeds both the numerator
# and the sum in $p = e / \sum e$. The gradient of $e$ is complete only after *both* the
# division and the sum have sent theirs, and only then may $e$ pass its gradient on to
# $x$. The result must match softmax's backward from lesson 3,
# $dx = p \odot (dp - \langle dp, p \rangle)$.

# %%
logits = ma.randn(3, 4, dtype="float64", requires_grad=True)
e = logits.exp()  # (3, 4): used twice, by the sum and by the division
p = e / e.sum(axis=-1, keepdims=True)  # (3, 4)
dp = rng.standard_normal((3, 4))
p.backward(dp)
p_np = p.numpy()
expected = p_np * (dp - (dp * p_np).sum(axis=-1, keepdims=True))
check("softmax from exp, sum and divide: dx == p (dp - <dp, p>)", max_err(logits.grad, expected),
      1e-14)

# %% [markdown]
# ## Gradients accumulate across backward calls
#
# A leaf's `.grad` is **added to**, never overwritten, as in PyTorch. Two backward passes
# without clearing `.grad` in between give the sum of both gradients. Training loops
# therefore call `zero_grad()` before each step. Lesson 10 shows what happens when one
# forgets.

# %%
v = ma.tensor([1.0, -2.0, 3.0], dtype="float64", requires_grad=True)
(v * v).sum().backward()  # d/dv sum(v^2) = 2v
first = v.grad.numpy().copy()
(v * v).sum().backward()  # a second graph, a second backward: adds another 2v
check("after two backward calls, v.grad == 2 * (2v)", max_err(v.grad, 2 * first), 0.0)

# %% [markdown]
# ## The whole graph, checked numerically
#
# `ma.gradcheck_report` compares every input's gradient from backward with central
# differences. It uses a **random** upstream gradient, which matters: lesson 3 shows a
# wrong backward that a `.sum()` check lets through. The report is a table with the worst
# absolute and relative error for each input.

# %%
report = ma.gradcheck_report(lambda x, w_q, w_k: (x @ w_q) @ (x @ w_k).T, (x, w_q, w_k))
print(report)
check("gradcheck of the fan-out graph (worst absolute error)",
      max(c.max_abs_error for c in report.checks), 1e-7)

# %% [markdown]
# ## Practice
#
# 1. A bias of shape `(1, 2)` (not `(2,)`) is added to a `(3, 2)` matrix. What shape is
#    its gradient, and what does it hold?
# 2. `x * x * x` uses `x` three times. What gradient does the engine build up for it?
# 3. What happens when you call `backward()` twice on the **same** graph?
#
# The cells below answer each question with code.

# %%
# 1. The gradient always has the shape of the tensor: (1, 2), dout summed over the rows.
c = ma.randn(1, 2, dtype="float64", requires_grad=True)
(ma.randn(3, 2, dtype="float64") + c).backward(dout)
print("c.grad shape:", c.grad.shape)
check("(1, 2) bias: grad == dout summed over rows, kept 2-D",
      max_err(c.grad, dout.sum(axis=0, keepdims=True)), 1e-15)

# %%
# 2. Three uses, three contributions. (x*x)*x sends x^2 dout to its right input x and
#    x dout to x*x, which sends x * (x dout) to each of its two inputs. The engine adds
#    the three: 3 x^2 dout, the derivative of x^3.
x3 = ma.tensor([0.5, -1.0, 2.0], dtype="float64", requires_grad=True)
u = rng.standard_normal(3)
(x3 * x3 * x3).backward(u)
check("x*x*x: grad == 3 x^2 * dout", max_err(x3.grad, 3 * x3.numpy() ** 2 * u), 1e-15)

# %%
# 3. backward frees the arrays each op saved for it (they can be large), so a second
#    backward through the same graph is refused; pass retain_graph=True to keep them.
z = (x3 * x3).sum()
z.backward()
try:
    z.backward()
    raise AssertionError("a second backward through a freed graph should fail")
except RuntimeError as error:
    print("RuntimeError:", error)
