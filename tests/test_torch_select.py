"""Selection, math and reductions against PyTorch (values and gradients, random upstream
gradients), the ``values, idx = x.max(1)`` trap, gradchecks of SELECT_CASES and mutants of
every new backward."""

import numpy as np
import pytest

import minattn as ma
from minattn.ops.elementwise import Clamp, Cos, Extremum, Log1p, Sin
from minattn.ops.matmul import Einsum
from minattn.ops.reduce import LogSumExp, Var
from minattn.ops.select import Gather, MaskedFill, Triangle
from minattn.tools.gradcheck import SELECT_CASES, all_cases, make_inputs

torch = pytest.importorskip("torch")

A = np.random.default_rng(0).standard_normal((3, 5))
B = np.random.default_rng(1).standard_normal((3, 5))
B[0, :2] = A[0, :2]  # ties for maximum/minimum
MASK = A > 0.3
IDX = np.array([[0, 0, 4], [1, 2, 1], [3, 3, 3]])


def run(f, *arrays, seed=2):
    """f on minattn and on PyTorch tensors (float64, requiring grad): values and gradients."""
    xs = [ma.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, tout = f(ma, *xs), f(torch, *ts)
    out, tout = (out[0], tout[0]) if isinstance(out, tuple) else (out, tout)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = np.random.default_rng(seed).standard_normal(tuple(tout.shape))
    out.backward(ma.tensor(g))
    tout.backward(torch.tensor(g))
    for x, t in zip(xs, ts):
        want = np.zeros_like(t.detach().numpy()) if t.grad is None else t.grad.numpy()
        got = np.zeros_like(want) if x.grad is None else x.grad.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


OPS = {
    "masked_fill": (lambda lib, a: a.masked_fill(lib.tensor(MASK), -1e9), [A]),
    "masked_fill -inf then softmax": (
        lambda lib, a: a.masked_fill(lib.tensor(~MASK), float("-inf")).softmax(-1), [A]),
    "gather": (lambda lib, a: lib.gather(a, 1, lib.tensor(IDX)), [A]),
    "index_select": (lambda lib, a: lib.index_select(a, 1, lib.tensor([4, 0, 4])), [A]),
    "tril": (lambda lib, a: lib.tril(a, diagonal=1), [A]),
    "triu": (lambda lib, a: a.triu(-1), [A]),
    "topk": (lambda lib, a: lib.topk(a, 3, dim=1).values, [A]),
    "topk smallest": (lambda lib, a: a.topk(2, dim=0, largest=False)[0], [A]),
    "sort": (lambda lib, a: a.sort(dim=-1, descending=True).values, [A]),
    "max(dim)": (lambda lib, a: a.max(1).values, [A]),
    "min(dim, keepdim)": (lambda lib, a: lib.min(a, 0, keepdim=True)[0], [A]),
    "max() all": (lambda lib, a: a.max(), [A]),
    "max(a, b)": (lambda lib, a, b: lib.max(a, b), [A, B]),
    "amax": (lambda lib, a: lib.amax(a, dim=(0, 1)), [A]),
    "var": (lambda lib, a: a.var(), [A]),
    "var(dim, unbiased=False)": (lambda lib, a: a.var(1, unbiased=False), [A]),
    "std(keepdim)": (lambda lib, a: lib.std(a, dim=0, keepdim=True), [A]),
    "logsumexp": (lambda lib, a: lib.logsumexp(a * 30, dim=1), [A]),
    "sin cos": (lambda lib, a: a.sin() * lib.cos(a), [A]),
    "sigmoid": (lambda lib, a: lib.sigmoid(a * 20), [A]),
    "clamp": (lambda lib, a: a.clamp(min=-0.5, max=0.5), [A]),
    "clamp at the bounds": (lambda lib, a: lib.round(a).clamp(min=0.0, max=1.0)
                            + a.clamp(max=0.0), [A]),
    "maximum ties": (lambda lib, a, b: lib.maximum(a, b), [A, B]),
    "minimum ties": (lambda lib, a, b: a.minimum(b), [A, B]),
    "log1p": (lambda lib, a: (a * a).log1p(), [A]),
    "rsqrt square": (lambda lib, a: (a.square() + 1).rsqrt(), [A]),
    "bmm": (lambda lib, a, b: lib.bmm(a.reshape(1, 3, 5), b.reshape(1, 5, 3)), [A, B]),
    "einsum q k^T": (lambda lib, a, b: lib.einsum("qd,kd->qk", a, b), [A, B]),
    "einsum implicit": (lambda lib, a, b: lib.einsum("ij,kj", a, b), [A, B]),
}


@pytest.mark.parametrize("name", list(OPS))
def test_values_and_gradients_match_pytorch(name):
    f, arrays = OPS[name]
    run(f, *arrays)


def test_max_over_a_dim_unpacks_values_and_indices():
    x, t = ma.tensor(A), torch.tensor(A)
    values, idx = x.max(1)  # was: the maxima of the two rows of a 2-row table
    tvalues, tidx = t.max(1)
    np.testing.assert_array_equal(values.numpy(), tvalues.numpy())
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    assert idx.dtype == np.int64 and x.max(dim=1).indices.shape == (3,)
    assert x.max(axis=1).shape == (3,)  # NumPy's spelling: one tensor, as numpy.max


def test_arg_reductions_and_topk_indices_match_pytorch():
    x, t = ma.tensor(A), torch.tensor(A)
    for f in (lambda l, v: l.argmax(v), lambda l, v: v.argmax(-1), lambda l, v: v.argmin(0),
              lambda l, v: v.argmax(dim=1, keepdim=True), lambda l, v: v.topk(2).indices,
              lambda l, v: v.sort(dim=0).indices, lambda l, v: l.argsort(v, dim=1)):
        np.testing.assert_array_equal(f(ma, x).numpy(), f(torch, t).numpy())


def test_sort_is_stable_and_descending_keeps_tie_order():
    v = [3.0, 1.0, 3.0, 2.0, 1.0]
    got = ma.sort(ma.tensor(v), descending=True)
    want = torch.sort(torch.tensor(v), descending=True, stable=True)
    np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())


def test_bad_input_is_a_clear_error():
    x = ma.tensor(A)
    with pytest.raises(TypeError, match="mask must be boolean"):
        x.masked_fill(ma.tensor(A), 0.0)
    with pytest.raises(RuntimeError, match="k \\(9\\) is out of range"):
        x.topk(9)
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        ma.tril(ma.zeros(3))
    with pytest.raises(RuntimeError, match="3-D"):
        ma.bmm(ma.zeros(2, 3), ma.zeros(3, 2))
    with pytest.raises(ValueError, match="repeated inside one operand"):
        ma.einsum("ii->i", ma.zeros(3, 3))
    with pytest.raises(IndexError, match="out of range"):
        x.gather(1, [[7]])


@pytest.mark.parametrize("name, fn, shapes", SELECT_CASES, ids=[c[0] for c in SELECT_CASES])
def test_select_cases_pass_gradcheck(name, fn, shapes):
    assert ma.gradcheck(fn, make_inputs(shapes, seed=3))
    assert (name, fn, shapes) in all_cases()


CASE = {name: (fn, shapes) for name, fn, shapes in SELECT_CASES}
MUTANTS = [
    (MaskedFill, "masked_fill", "keeps the masked gradient", lambda self, dout: (dout, None)),
    (Gather, "gather (repeated index)", "assigned, not added",
     lambda self, dout: _gather_assign(self, dout)),
    (Triangle, "tril (diagonal=-1)", "other triangle", lambda self, dout: dout * ~self.keep),
    (Var, "var (unbiased)", "forgot the factor 2",
     lambda self, dout: np.expand_dims(dout, self.axes) * self.centered / self.divisor),
    (LogSumExp, "logsumexp", "exp(x) unnormalized",
     lambda self, dout: np.expand_dims(dout, self.axes) * np.exp(self.x)),
    (Sin, "sin", "sin instead of cos", lambda self, dout: dout * np.sin(self.x)),
    (Cos, "cos", "sign", lambda self, dout: dout * np.sin(self.x)),
    (Log1p, "log1p", "1/x", lambda self, dout: dout / self.x),
    (Clamp, "clamp", "passes everything", lambda self, dout: dout),
    (Extremum, "maximum (broadcast)", "to the loser",
     lambda self, dout: (dout * ~self.a_wins, None)),
    (Einsum, "einsum (q k^T per head)", "other operand's gradient doubled",
     lambda self, dout: (np.einsum("bhqk,bhkd->bhqd", dout, self.arrays[1]),
                         2 * np.einsum("bhqk,bhqd->bhkd", dout, self.arrays[0]))),
]


def _gather_assign(self, dout):
    dx = np.zeros(self.in_shape)
    np.put_along_axis(dx, self.index, dout, axis=self.dim)  # a repeated index keeps one
    return dx


@pytest.mark.parametrize("cls, case, name, wrong", MUTANTS, ids=[m[2] for m in MUTANTS])
def test_wrong_backwards_are_caught(cls, case, name, wrong, monkeypatch):
    monkeypatch.setattr(cls, "backward", wrong)
    fn, shapes = CASE[case]
    with pytest.raises(ma.GradcheckError):
        ma.gradcheck(fn, make_inputs(shapes, seed=3))


def test_the_remaining_pytorch_names_match_pytorch():
    x, t = ma.tensor(A), torch.tensor(A)
    for f in (lambda l, v: l.nonzero(v > 0), lambda l, v: l.sign(v), lambda l, v: l.floor(v),
              lambda l, v: l.ceil(v), lambda l, v: l.trunc(v * 3), lambda l, v: l.amin(v, 1),
              lambda l, v: l.logical_not(v > 0), lambda l, v: l.logical_xor(v > 0, v < 0.5),
              lambda l, v: l.greater(v, 0.1), lambda l, v: l.empty_like(v).shape,
              lambda l, v: l.as_tensor(np.array([1, 2])), lambda l, v: l.clip(v, -0.1, 0.1)):
        got, want = f(ma, x), f(torch, t)
        if isinstance(want, tuple):  # a shape
            assert tuple(got) == tuple(want)
            continue
        assert str(got.dtype) == str(want.dtype).removeprefix("torch.")
        np.testing.assert_array_equal(got.numpy(), want.numpy())
