"""Gradient checking: hand-written backward passes against central differences.

For f with inputs x_1..x_m and a random upstream gradient u (normal, so no
symmetry can hide a wrong backward; never ``out.sum()``, whose gradient through a
softmax is zero for *any* backward), define the scalar phi(x) = <u, f(x)>.

- **full** mode (small inputs): the whole Jacobian J_i = d f / d x_i, numerically
  column by column, (f(x + eps e_j) - f(x - eps e_j)) / (2 eps), and analytically
  row by row, one backward pass per output element;
- **directional** mode (large inputs): one random direction v per input, comparing
  (phi(x + eps v) - phi(x - eps v)) / (2 eps) with <dphi/dx_i, v> = u^T J_i v
  (Chainer's check_backward, torch's fast_mode); on failure the offending element is
  located with the numerical vector-Jacobian product u^T J_i.

An analytical value a passes against the numerical n when |a - n| <= atol + rtol |n|,
as ``torch.autograd.gradcheck``. Central differences lose digits to round-off
(error ~ u_mach / eps) and truncation (~ eps^2), so checks run in float64.

``module_gradcheck`` checks a module the same way, its parameters taken as extra inputs.
"""

from __future__ import annotations

import contextlib
import math
import reprlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import backend
from .core import Tensor, describe, no_grad

if TYPE_CHECKING:  # for the annotation only: gradcheck needs no more than named_parameters()
    from .nn import Module


class GradcheckError(RuntimeError):
    """An analytical gradient disagrees with its numerical estimate."""


@dataclass
class InputCheck:
    """How one input's gradient compared: the worst element and its two values."""

    index: int
    shape: tuple
    mode: str  # "full" or "directional"
    max_abs_error: float
    max_rel_error: float
    where: tuple | None  # (input element,) or (input element, "output N element (...)")
    analytical: float
    numerical: float
    passed: bool

    def describe(self) -> str:
        at = "" if self.where is None else " at input element " + str(self.where[0]) + (
            f" / {self.where[1]}" if len(self.where) > 1 else "")
        return (f"input {self.index} (shape {self.shape}, {self.mode}){at}: analytical "
                f"{self.analytical:.10g} vs numerical {self.numerical:.10g} (abs error "
                f"{self.max_abs_error:.3g}, rel error {self.max_rel_error:.3g})")


@dataclass
class GradcheckReport:
    """Per-input results of a gradient check; ``str(report)`` is a table."""

    checks: list
    eps: float
    atol: float
    rtol: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def __str__(self) -> str:
        head = f"{'input':>5}  {'shape':<16} {'mode':<11} {'max abs err':>11} " \
               f"{'max rel err':>11}  {'where':<14} {'ok':<4}"
        lines = [head, "-" * len(head)]
        for c in self.checks:
            where = "-" if c.where is None else str(c.where[0]).replace(" ", "")
            lines.append(f"{c.index:>5}  {str(c.shape):<16} {c.mode:<11} {c.max_abs_error:>11.2e} "
                         f"{c.max_rel_error:>11.2e}  {where:<14} {'yes' if c.passed else 'NO':<4}")
        lines.append(f"eps={self.eps:g} atol={self.atol:g} rtol={self.rtol:g}: "
                     + ("passed" if self.passed else "FAILED"))
        return "\n".join(lines)


def gradcheck(fn, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              mode="auto", seed=0) -> bool:
    """Check the gradients of ``fn`` at ``inputs`` against central differences.

    >>> x = ma.randn(3, 4, dtype="float64", requires_grad=True)
    >>> ma.gradcheck(lambda t: t.softmax(axis=-1), (x,))
    True

    Raises ``GradcheckError`` naming the input, the element and both values when a
    gradient is off (or returns False with ``raise_exception=False``).
    """
    report = gradcheck_report(fn, inputs, eps=eps, atol=atol, rtol=rtol, mode=mode, seed=seed)
    if not report.passed and raise_exception:
        bad = [c.describe() for c in report.checks if not c.passed]
        raise GradcheckError("gradient check failed for " + "; ".join(bad) + "\n" + str(report))
    return report.passed


def module_gradcheck(module: Module, *inputs: Tensor, names: Sequence[str] | None = None,
                     **kwargs: Any) -> bool:
    """Check the gradients of ``module(*inputs)`` with respect to its inputs and parameters.

    Every parameter (or those in ``names``, dotted as in ``named_parameters()``) is
    checked as an extra input of ``gradcheck``, in a float64 copy; the module reads the
    copies only while the check runs, and its own parameters are back in place afterwards,
    even when the check raises. Inputs that require grad are checked too, so pass them in
    float64. ``None`` entries of a tuple output (attention weights that were not asked for)
    are left out. Put a module with dropout in ``eval()`` mode first.

    Args:
        module: the ``nn.Module`` to check.
        *inputs: its positional inputs (tensors that require grad are checked as well).
        names: dotted names of the parameters to check; ``None`` checks all of them.
        **kwargs: passed on to ``gradcheck`` (``eps``, ``atol``, ``rtol``, ``raise_exception``,
            ``mode``, ``seed``).

    Returns:
        True when every gradient matches (False on a mismatch with ``raise_exception=False``).

    Raises:
        GradcheckError: a gradient is off (``raise_exception=True``, the default); inputs
            are numbered as given, then the parameters in ``names`` order.
        KeyError: a name in ``names`` is not one of the module's parameters.

    >>> layer = ma.nn.Linear(4, 3)
    >>> x = ma.randn(2, 4, dtype="float64", requires_grad=True)
    >>> ma.module_gradcheck(layer, x)
    True
    >>> ma.module_gradcheck(layer, x, names=["weight"])
    True
    """
    params = dict(module.named_parameters())
    names = list(params) if names is None else list(names)
    missing = [n for n in names if n not in params]
    if missing:
        raise KeyError(f"module_gradcheck: {type(module).__name__} has no parameter "
                       f"{', '.join(map(repr, missing))}; its parameters are "
                       f"{', '.join(params) or 'none'}")
    n_in = len(inputs)

    def fn(*tensors):
        with swapped_params(module, {n: params[n] for n in names}, tensors[n_in:]):
            out = module(*tensors[:n_in])
        return tuple(o for o in out if o is not None) if isinstance(out, tuple) else out

    copies = [Tensor(params[n].data.astype(np.float64), requires_grad=True) for n in names]
    return gradcheck(fn, list(inputs) + copies, **kwargs)


@contextlib.contextmanager
def swapped_params(module, params: dict, tensors):
    """Make ``module`` read ``tensors`` in place of ``params`` (name -> Parameter) while
    inside: torch.func.functional_call, in a few lines. Every place that holds a
    parameter (a tied one sits in two modules) is swapped, and restored on the way out."""
    places = []  # (owner module, attribute name, the parameter), for every place it sits
    for p, t in zip(params.values(), tensors):
        for owner in module.modules():
            places += [(owner, attr, p, t) for attr, q in owner._parameters.items() if q is p]
    try:
        for owner, attr, _, t in places:
            owner._parameters[attr] = t  # ParameterList and ParameterDict read this
            object.__setattr__(owner, attr, t)  # and attribute access reads this
        yield
    finally:
        for owner, attr, p, _ in places:
            owner._parameters[attr] = p
            object.__setattr__(owner, attr, p)


def gradcheck_report(fn, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, mode="auto", seed=0,
                     full_limit=2**16) -> GradcheckReport:
    """Compare every input that requires grad; full Jacobian when n_in * n_out <= full_limit."""
    if mode not in ("auto", "full", "directional"):
        raise ValueError(f"mode must be 'auto', 'full' or 'directional', got {mode!r}")
    if not callable(fn):
        raise TypeError(f"gradcheck: fn must be a function of the inputs, got "
                        f"{type(fn).__name__} {fn!r}")
    if not (isinstance(eps, (int, float)) and 0 < eps < math.inf):
        raise ValueError(f"gradcheck: eps must be a positive step size, got {eps!r}")
    inputs = _as_float64_inputs(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        got = ", ".join(_describe(x) for x in inputs) or "no inputs at all"
        raise ValueError(f"gradcheck: no input has requires_grad=True (got {got}); pass at "
                         "least one float64 tensor made with requires_grad=True")
    rng = np.random.default_rng(seed)
    with no_grad():
        outs = _outputs(fn, inputs)
    device = inputs[checked[0]].device
    upstream = [backend.to_device(rng.standard_normal(o.shape), device) for o in outs]
    n_out = sum(o.numel() for o in outs)

    checks = []
    for i in checked:
        use_full = mode == "full" or (mode == "auto" and inputs[i].numel() * n_out <= full_limit)
        check = _check_full if use_full else _check_directional
        checks.append(check(fn, inputs, i, upstream, eps, atol, rtol, rng))
    return GradcheckReport(checks, eps, atol, rtol)


# -- the two modes ------------------------------------------------------------------------------


def _check_full(fn, inputs, i, upstream, eps, atol, rtol, rng) -> InputCheck:
    x = inputs[i]
    outs = _outputs(fn, inputs)
    n_out = sum(o.numel() for o in outs)
    numerical = np.zeros((n_out, x.numel()))  # (n_out, n_in): empty when either one is
    for j, e in enumerate(_unit_vectors(x)):
        numerical[:, j] = _perturbed_outputs(fn, inputs, i, e, eps)
    analytical = np.zeros((n_out, x.numel()))
    for k in range(n_out):  # one backward per output element: row k of J
        analytical[k] = _vjp(inputs, i, outs, _split_onehot(k, outs))
    bad, worst = _compare(analytical, numerical, atol, rtol)
    where = None
    if analytical.size:  # an empty input or output has no element to point at
        out_el, in_el = np.unravel_index(worst, analytical.shape)
        where = (_unravel(in_el, x.shape), _locate_output(int(out_el), outs))
    return _result(i, x, "full", analytical, numerical, worst, where, bad)


def _check_directional(fn, inputs, i, upstream, eps, atol, rtol, rng) -> InputCheck:
    x = inputs[i]
    v = rng.standard_normal(x.shape)
    grad = _vjp(inputs, i, _outputs(fn, inputs), upstream)  # u^T J_i, flattened
    analytical = np.array([grad @ v.ravel()])
    numerical = np.array([_directional(fn, inputs, i, v, upstream, eps)])
    bad, _ = _compare(analytical, numerical, atol, rtol)
    where = None
    if bad and x.numel() <= 20000:  # locate the element: the numerical u^T J_i, one by one
        numerical = np.array([_directional(fn, inputs, i, e.reshape(x.shape), upstream, eps)
                              for e in _unit_vectors(x)])
        analytical = grad
        _, worst = _compare(analytical, numerical, atol, rtol)
        where = (_unravel(worst, x.shape),)
        return _result(i, x, "directional", analytical, numerical, worst, where, True)
    return _result(i, x, "directional", analytical, numerical, 0, where, bad)


# -- helpers ------------------------------------------------------------------------------------


def _as_float64_inputs(inputs) -> list:
    """Leaf float64 copies of the inputs that require grad (warning when cast up)."""
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    prepared = []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad:
            if x.dtype != np.float64:
                warnings.warn(f"gradcheck: input {i} is {x.dtype}; checking in float64 copies "
                              "(finite differences in low precision are mostly round-off)",
                              stacklevel=3)
            x = Tensor(x.data.astype(np.float64), requires_grad=True)
        prepared.append(x)
    return prepared


def _outputs(fn, inputs) -> list:
    """fn's float outputs (integer or boolean ones have no gradient to check)."""
    out = fn(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    for k, o in enumerate(outs):
        if not isinstance(o, Tensor):
            which = f"output {k} of {len(outs)}" if isinstance(out, (tuple, list)) else "it"
            raise TypeError(f"gradcheck: fn must return a Tensor or a tuple of Tensors; {which} "
                            f"is {type(o).__name__} {reprlib.repr(o)}")
    floats = [o for o in outs if backend.is_float(o.dtype)]
    if not floats:
        got = ", ".join(_describe(o) for o in outs) or "an empty tuple"
        raise TypeError(f"gradcheck: fn returned no floating-point tensor, only {got}: there "
                        "is no gradient to check")
    return floats


def _describe(x) -> str:
    """'float64 tensor of shape (3,) on cpu', or the type of what is not a tensor."""
    if not isinstance(x, Tensor):
        return type(x).__name__
    return describe(x) + (" that requires grad" if x.requires_grad else "")


def _with_input(inputs, i, data) -> list:
    changed = list(inputs)
    changed[i] = Tensor(data, requires_grad=True)
    return changed


def _perturbed_outputs(fn, inputs, i, direction, eps) -> np.ndarray:
    """(f(x_i + eps d) - f(x_i - eps d)) / (2 eps), all outputs flattened into one vector."""
    x = inputs[i].data
    d = backend.to_device(direction, inputs[i].device)
    with no_grad():
        plus = _outputs(fn, _with_input(inputs, i, x + eps * d))
        minus = _outputs(fn, _with_input(inputs, i, x - eps * d))
    return np.concatenate([((p.numpy() - m.numpy()) / (2 * eps)).ravel()
                           for p, m in zip(plus, minus)])


def _directional(fn, inputs, i, direction, upstream, eps) -> float:
    """d/dt <u, f(x_i + t d)> at t = 0, by central differences."""
    u = np.concatenate([backend.to_numpy(g).ravel() for g in upstream])
    return float(u @ _perturbed_outputs(fn, inputs, i, direction, eps))


def _vjp(inputs, i, outs, upstream) -> np.ndarray:
    """u^T J_i through the analytical backward passes, flattened."""
    x = inputs[i]
    for x_other in inputs:
        if isinstance(x_other, Tensor):
            x_other.grad = None
    for o, g in zip(outs, upstream):
        if o.requires_grad:
            o.backward(g, retain_graph=True)
    grad = np.zeros(x.numel()) if x.grad is None else x.grad.numpy().ravel()
    x.grad = None
    return grad


def _unit_vectors(x: Tensor):
    for j in range(x.numel()):
        e = np.zeros(x.numel())
        e[j] = 1.0
        yield e.reshape(x.shape)


def _split_onehot(k: int, outs) -> list:
    """The k-th unit vector of all outputs concatenated, split back into their shapes."""
    onehots, offset = [], 0
    for o in outs:
        e = np.zeros(o.numel())
        if offset <= k < offset + o.numel():
            e[k - offset] = 1.0
        onehots.append(backend.to_device(e.reshape(o.shape), o.device))
        offset += o.numel()
    return onehots


def _locate_output(k: int, outs) -> str:
    """Name the k-th element of all outputs concatenated: 'output 1 element (0, 2)'."""
    for number, o in enumerate(outs):
        if k < o.numel():
            return f"output {number} element {_unravel(k, o.shape)}"
        k -= o.numel()
    raise IndexError(k)


def _compare(analytical, numerical, atol, rtol) -> tuple[bool, int]:
    """(any element off, flat index of the worst): off means |a - n| > atol + rtol |n|."""
    excess = np.abs(analytical - numerical) - (atol + rtol * np.abs(numerical))
    excess = np.where(np.isnan(excess), np.inf, excess)  # NaN never passes
    worst = int(np.argmax(excess)) if excess.size else 0
    return bool(excess.size and excess.flat[worst] > 0), worst


def _result(i, x, mode, analytical, numerical, worst, where, bad) -> InputCheck:
    diff = np.abs(analytical - numerical)
    scale = np.maximum(np.abs(analytical), np.abs(numerical))
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    diff, rel = np.nan_to_num(diff, nan=math.inf), np.nan_to_num(rel, nan=math.inf)
    a, n = (float(v.flat[worst]) if v.size else 0.0 for v in (analytical, numerical))
    return InputCheck(i, x.shape, mode, float(diff.max(initial=0.0)),
                      float(rel.max(initial=0.0)), where, a, n, not bad)


def _unravel(flat: int, shape: tuple) -> tuple:
    return tuple(int(j) for j in np.unravel_index(flat, shape)) if shape else ()
