"""gradcheck must be able to fail: wrong backwards are caught, failures are named,
and the classic trap (checking through ``out.sum()``) is shown to be one."""

import sys

import numpy as np
import pytest

import minattn as ma
from minattn.nn import functional_nn as fnn
from minattn.ops.arithmetic import Add, Div, Mul, Pow, unbroadcast
from minattn.ops.elementwise import Exp, Log, Tanh
from minattn.ops.matmul import MatMul
from minattn.ops.reduce import Max, Mean, Sum
from minattn.ops.shape import GetItem, Reshape, Transpose


def inputs(*shapes, positive=False, seed=0):
    rng = np.random.default_rng(seed)
    make = (lambda s: rng.uniform(0.5, 2.0, s)) if positive else rng.standard_normal
    return [ma.tensor(make(s), dtype="float64", requires_grad=True) for s in shapes]


def _xp_zeros_like(dout):
    return dout * 0


# (op, Function, method, case, input shapes, positive inputs, {mutant name: wrong method})
MUTANTS = [
    ("add", Add, "backward", lambda a, b: a + b, [(3, 4), (4,)], False, {
        "sign flip": lambda self, dout: (dout, unbroadcast(-dout, self.b_shape)),
        "zeros": lambda self, dout: (dout, unbroadcast(dout * 0, self.b_shape)),
    }),
    ("mul", Mul, "backward", lambda a, b: a * b, [(3, 4), (3, 4)], False, {
        "swapped factors": lambda self, dout: (dout * self.a, dout * self.b),
        "dropped factor": lambda self, dout: (dout, dout * self.a),
        "sign flip": lambda self, dout: (-dout * self.b, dout * self.a),
    }),
    ("div", Div, "backward", lambda a, b: a / b, [(3, 4), (3, 4)], True, {
        "db sign flip": lambda self, dout: (dout / self.b, dout * self.a / self.b**2),
        "db dropped a": lambda self, dout: (dout / self.b, -dout / self.b**2),
        "da times b": lambda self, dout: (dout * self.b, -dout * self.a / self.b**2),
    }),
    ("pow", Pow, "backward", lambda a, b: a**b, [(3, 4), (3, 4)], True, {
        "exponent not lowered": lambda self, dout: (dout * self.b * self.a**self.b, None),
        "dropped factor b": lambda self, dout: (dout * self.a ** (self.b - 1), None),
    }),
    ("exp", Exp, "backward", lambda a: a.exp(), [(3, 4)], False, {
        "dropped factor": lambda self, dout: dout,
        "sign flip": lambda self, dout: -dout * self.out,
        "zeros": lambda self, dout: dout * 0,
    }),
    ("log", Log, "backward", lambda a: a.log(), [(3, 4)], True, {
        "times x": lambda self, dout: dout * self.x,
        "sign flip": lambda self, dout: -dout / self.x,
        "squared": lambda self, dout: dout / self.x**2,
    }),
    ("tanh", Tanh, "backward", lambda a: a.tanh(), [(3, 4)], False, {
        "plus instead of minus": lambda self, dout: dout * (1 + self.out**2),
        "not squared": lambda self, dout: dout * (1 - self.out),
    }),
    ("sum", Sum, "backward", lambda a: a.sum(axis=1), [(3, 4)], False, {
        "zeros": lambda self, dout: np.zeros(self.shape),
        "doubled": lambda self, dout: 2 * np.broadcast_to(dout[:, None], self.shape),
        "wrong axis": lambda self, dout: np.broadcast_to(dout[:, None], self.shape)[::-1],
    }),
    ("mean", Mean, "backward", lambda a: a.mean(axis=0), [(3, 4)], False, {
        "forgot 1/n": lambda self, dout: np.broadcast_to(dout[None, :], self.shape),
        "sign flip": lambda self, dout: -np.broadcast_to(dout[None, :], self.shape) / 3,
    }),
    ("max", Max, "backward", lambda a: a.max(axis=1), [(3, 4)], False, {
        "to every element": lambda self, dout: np.broadcast_to(dout[:, None], self.x.shape),
        "to the min": lambda self, dout: (self.x == self.x.min(1, keepdims=True))
        * dout[:, None],
    }),
    ("matmul", MatMul, "backward", lambda a, b: a @ b, [(3, 3), (3, 3)], False, {
        "missing transpose": lambda self, dout: (dout @ self.b, self.a.T @ dout),
        "swapped order": lambda self, dout: (self.b.T @ dout, dout @ self.a.T),
        "sign flip": lambda self, dout: (-(dout @ self.b.T), self.a.T @ dout),
    }),
    ("reshape", Reshape, "backward", lambda a: a.reshape(4, 3), [(3, 4)], False, {
        "wrong order": lambda self, dout: dout.reshape(self.in_shape, order="F"),
        "transposed": lambda self, dout: dout.T.reshape(self.in_shape),
    }),
    ("transpose", Transpose, "backward", lambda a: a.transpose(1, 2, 0), [(3, 3, 3)], False, {
        "same permutation, not its inverse": lambda self, dout: dout.transpose(self.axes),
        "reversed": lambda self, dout: dout.T,
    }),
    ("getitem", GetItem, "backward", lambda a: a[[0, 2, 0]], [(3, 4)], False, {
        "assigned, not added": lambda self, dout: _assign(self, dout),
        "zeros": lambda self, dout: np.zeros(self.in_shape),
    }),
]


def _assign(self, dout):
    dx = np.zeros(self.in_shape)
    dx[self.index] = dout  # a repeated index keeps only the last write
    return dx


CASES = [(op, cls, meth, fn, shapes, pos, name, wrong)
         for op, cls, meth, fn, shapes, pos, mutants in MUTANTS
         for name, wrong in mutants.items()]


@pytest.mark.parametrize("op, cls, method, fn, shapes, positive", [m[:6] for m in MUTANTS],
                         ids=[m[0] for m in MUTANTS])
def test_correct_backward_passes(op, cls, method, fn, shapes, positive):
    for mode in ("full", "directional"):
        assert ma.gradcheck(fn, inputs(*shapes, positive=positive), mode=mode)


@pytest.mark.parametrize("op, cls, method, fn, shapes, positive, mutant, wrong", CASES,
                         ids=[f"{c[0]}-{c[6]}" for c in CASES])
def test_wrong_backward_is_caught(monkeypatch, op, cls, method, fn, shapes, positive, mutant,
                                  wrong):
    monkeypatch.setattr(cls, method, wrong)
    for mode in ("full", "directional"):
        assert not ma.gradcheck(fn, inputs(*shapes, positive=positive), mode=mode,
                                raise_exception=False), f"{op}: '{mutant}' passed in {mode} mode"


# -- the out.sum() trap -----------------------------------------------------------------------


class SoftmaxWithZeroBackward(ma.Function):
    """A softmax whose backward is plainly wrong: it returns zeros."""

    def forward(self, x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, dout):
        return dout * 0


def test_checking_through_sum_passes_a_wrong_softmax_backward():
    # Softmax rows sum to 1, so d(sum softmax(x))/dx = 0: the zero backward is "right".
    (x,) = inputs((3, 5))
    assert ma.gradcheck(lambda t: SoftmaxWithZeroBackward.apply(t).sum(), (x,))
    # gradcheck's own random upstream gradient catches it.
    assert not ma.gradcheck(SoftmaxWithZeroBackward.apply, (x,), raise_exception=False)
    assert not ma.gradcheck(SoftmaxWithZeroBackward.apply, (x,), mode="directional",
                            raise_exception=False)


# -- failures are named, reports are tables ----------------------------------------------------


class ScaledWrongAtOneElement(ma.Function):
    def forward(self, x):
        return 2 * x

    def backward(self, dout):
        dx = 2 * dout
        dx[1, 2] += 0.5  # one wrong element
        return dx


def test_failure_names_input_element_and_values():
    a, x = inputs((2, 2), (2, 3))
    with pytest.raises(ma.GradcheckError) as info:
        ma.gradcheck(lambda a, x: (a * 1.0, ScaledWrongAtOneElement.apply(x)), (a, x))
    message = str(info.value)
    assert "input 1 (shape (2, 3), full) at input element (1, 2)" in message
    assert "analytical 0.5 vs numerical 0" in message  # d(output 0)/dx is zero
    assert "output 0 element (0, 0)" in message


def test_directional_mode_locates_the_element_too():
    (x,) = inputs((2, 3))
    report = ma.gradcheck_report(ScaledWrongAtOneElement.apply, (x,), mode="directional")
    (check,) = report.checks
    assert not report.passed and check.where == ((1, 2),)
    assert check.analytical - check.numerical == pytest.approx(0.5, abs=1e-6)


def test_report_prints_a_table_per_input():
    a, b = inputs((3, 4), (4, 2))
    report = ma.gradcheck_report(lambda a, b: (a @ b).tanh(), (a, b))
    assert report.passed and len(report.checks) == 2
    text = str(report)
    assert "max abs err" in text and "max rel err" in text and "passed" in text
    assert all(c.mode == "full" and c.max_abs_error < 1e-8 for c in report.checks)


def test_large_inputs_use_random_directions():
    a, b = inputs((64, 64), (64, 64))
    report = ma.gradcheck_report(lambda a, b: a @ b, (a, b))
    assert report.passed and {c.mode for c in report.checks} == {"directional"}


def test_low_precision_inputs_are_checked_in_float64_with_a_warning():
    x = ma.randn(3, 4, requires_grad=True)  # float32
    with pytest.warns(UserWarning, match="float32; checking in float64"):
        assert ma.gradcheck(lambda t: t.tanh(), (x,))


def test_nothing_to_check_is_an_error():
    with pytest.raises(ValueError, match="no input has requires_grad"):
        ma.gradcheck(lambda t: t * 2, (ma.randn(3),))


def test_tolerances_decide():
    (x,) = inputs((2, 3))
    # the one wrong element is off by 0.5: a loose enough atol lets it through
    assert ma.gradcheck(ScaledWrongAtOneElement.apply, (x,), atol=1.0)
    assert not ma.gradcheck(ScaledWrongAtOneElement.apply, (x,), raise_exception=False)


# -- modules: their parameters are checked too ----------------------------------------------------


class AffineFunction(ma.Function):
    """out = x @ w^T + b; ``weight_factor`` scales dw (1.0: the right backward)."""

    weight_factor = 1.0

    def forward(self, x, w, b):
        self.x, self.w = x, w
        return x @ w.T + b  # (n, out)

    def backward(self, dout):
        # out = x w^T + b  =>  dx = dout w, dw = dout^T x, db = sum of dout over the rows
        return dout @ self.w, self.weight_factor * (dout.T @ self.x), dout.sum(axis=0)


class Affine(ma.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = ma.nn.Parameter(ma.randn(3, 4, dtype="float64"))
        self.bias = ma.nn.Parameter(ma.randn(3, dtype="float64"))

    def forward(self, x):
        return AffineFunction.apply(x, self.weight, self.bias)


def f64(*shape):
    return ma.randn(*shape, dtype="float64", requires_grad=True)


@pytest.mark.parametrize("make, shapes", [
    (lambda: ma.nn.Linear(4, 3), [(2, 5, 4)]),
    (lambda: ma.nn.LayerNorm(6), [(2, 3, 6)]),
    (lambda: ma.nn.MultiHeadAttention(4, num_heads=2), [(2, 3, 4)]),
    (lambda: ma.nn.MultiheadAttention(4, num_heads=2, batch_first=True),
     [(2, 3, 4), (2, 5, 4), (2, 5, 4)]),
    (Affine, [(5, 4)]),
], ids=["Linear", "LayerNorm", "MultiHeadAttention", "MultiheadAttention", "Affine"])
def test_module_gradcheck_passes_for_right_backwards(make, shapes):
    ma.manual_seed(0)
    module = make()
    for p in module.parameters():  # away from LayerNorm's ones and zeros, so all of it counts
        p.data[...] = ma.randn(*p.shape).data
    assert ma.module_gradcheck(module, *(f64(*s) for s in shapes))


def test_module_gradcheck_checks_every_parameter_in_float64(monkeypatch):
    checked = []
    module = sys.modules["minattn.gradcheck"]
    real = module.gradcheck

    def spy(fn, inputs, **kwargs):
        checked.extend((tuple(x.shape), x.dtype) for x in inputs)
        return real(fn, inputs, **kwargs)

    monkeypatch.setattr(module, "gradcheck", spy)
    layer = ma.nn.Linear(4, 3)  # float32 parameters: checked in float64 copies
    assert ma.module_gradcheck(layer, f64(2, 4))
    assert checked == [((2, 4), np.float64), ((3, 4), np.float64), ((3,), np.float64)]
    assert layer.weight.dtype == np.float32


def test_wrong_parameter_backward_is_caught(monkeypatch):
    module = Affine()
    monkeypatch.setattr(AffineFunction, "weight_factor", 1.01)  # dw 1% too large
    assert not ma.module_gradcheck(module, f64(5, 4), raise_exception=False)
    assert ma.module_gradcheck(module, f64(5, 4), names=["bias"])  # the rest is right
    with pytest.raises(ma.GradcheckError, match=r"input 1 \(shape \(3, 4\)"):  # x, then weight
        ma.module_gradcheck(module, f64(5, 4))


def test_wrong_layer_norm_weight_backward_is_caught(monkeypatch):
    ln = ma.nn.LayerNorm(6, dtype="float64")
    right = fnn.LayerNormFunction.backward

    def off_by_one_percent(self, dout):
        dx, dweight, dbias = right(self, dout)
        return dx, None if dweight is None else 1.01 * dweight, dbias

    monkeypatch.setattr(fnn.LayerNormFunction, "backward", off_by_one_percent)
    x = f64(2, 3, 6)
    assert ma.module_gradcheck(ln, x, names=["bias"])
    assert not ma.module_gradcheck(ln, x, names=["weight"], raise_exception=False)


def test_module_gradcheck_restores_the_parameters_even_on_error(monkeypatch):
    module = Affine()
    before = {n: (p, p.numpy().copy()) for n, p in module.named_parameters()}
    monkeypatch.setattr(AffineFunction, "weight_factor", 1.01)
    with pytest.raises(ma.GradcheckError):
        ma.module_gradcheck(module, f64(5, 4))
    for name, p in module.named_parameters():
        assert p is before[name][0] and getattr(module, name) is p
        assert isinstance(p, ma.nn.Parameter) and p.grad is None
        np.testing.assert_array_equal(p.numpy(), before[name][1])


def test_module_gradcheck_swaps_a_tied_parameter_everywhere():
    model = ma.nn.Sequential(ma.nn.Linear(4, 4, dtype="float64"),
                             ma.nn.Linear(4, 4, dtype="float64"))
    model[1].weight = model[0].weight  # tied: listed once, read in two places
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    assert ma.module_gradcheck(model, f64(2, 4))
    assert model[1].weight is model[0].weight


def test_module_gradcheck_names_a_missing_parameter():
    with pytest.raises(KeyError, match="no parameter 'weights'; its parameters are weight, bias"):
        ma.module_gradcheck(ma.nn.Linear(2, 2), f64(1, 2), names=["weights"])
