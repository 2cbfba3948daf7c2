"""Every primitive op: forward against NumPy, backward against finite differences
(float64, random upstream gradients) and against PyTorch, over many shapes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import minattn as ma
from minattn.tools.gradcheck import CASES, make_inputs

SETTINGS = settings(max_examples=12, deadline=None)


def t64(array, requires_grad=True):
    return ma.Tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


# -- the table of cases that `minattn gradcheck` runs -----------------------------------------


@pytest.mark.parametrize("name, fn, shapes", CASES, ids=[c[0] for c in CASES])
def test_every_listed_op_passes_gradcheck(name, fn, shapes):
    assert ma.gradcheck(fn, make_inputs(shapes, seed=3))


# -- forward values against NumPy ---------------------------------------------------------------

UNARY = [
    ("exp", lambda t: t.exp(), np.exp),
    ("log", lambda t: t.log(), np.log),
    ("sqrt", lambda t: t.sqrt(), np.sqrt),
    ("tanh", lambda t: t.tanh(), np.tanh),
    ("neg", lambda t: -t, np.negative),
    ("abs", lambda t: t.abs(), np.abs),
    ("relu", lambda t: t.relu(), lambda a: np.maximum(a, 0)),
    ("pow", lambda t: t**2.5, lambda a: a**2.5),
]
BINARY = [
    ("add", lambda a, b: a + b, np.add),
    ("sub", lambda a, b: a - b, np.subtract),
    ("mul", lambda a, b: a * b, np.multiply),
    ("div", lambda a, b: a / b, np.divide),
    ("pow", lambda a, b: a**b, np.power),
]


@pytest.mark.parametrize("name, op, ref", UNARY, ids=[u[0] for u in UNARY])
@given(shape=array_shapes(min_dims=0, max_dims=3, max_side=4))
@SETTINGS
def test_unary_forward_and_backward(name, op, ref, shape):
    rng = np.random.default_rng(len(shape))
    data = rng.uniform(0.5, 2.0, shape)  # positive: log, sqrt and pow are defined
    data = data * np.where(rng.random(shape) < 0.5, -1, 1) if name in ("exp", "tanh", "neg",
                                                                       "abs", "relu") else data
    x = t64(data)
    np.testing.assert_allclose(op(x).numpy(), ref(data), rtol=1e-12)
    assert ma.gradcheck(op, (x,))


@pytest.mark.parametrize("name, op, ref", BINARY, ids=[b[0] for b in BINARY])
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
@SETTINGS
def test_binary_broadcasting_forward_and_backward(name, op, ref, shapes):
    rng = np.random.default_rng(7)
    a_shape, b_shape = shapes.input_shapes
    a, b = rng.uniform(0.5, 2.0, a_shape), rng.uniform(0.5, 2.0, b_shape)
    ta, tb = t64(a), t64(b)
    out = op(ta, tb)
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(out.numpy(), ref(a, b), rtol=1e-12)
    assert ma.gradcheck(op, (ta, tb))


@pytest.mark.parametrize("name, op, ref", BINARY[2:4], ids=["mul", "div"])
@pytest.mark.parametrize("shapes", [((3, 4, 5), (3, 4, 1)), ((3, 4, 1), (3, 4, 5)),
                                    ((2, 6), (2, 1))])
def test_a_row_factor_gets_each_rows_dot_product(name, op, ref, shapes):
    """A factor broadcast along the last axis only (softmax's row sum) takes the row dot
    product without the full product: the case hypothesis may not draw above."""
    rng = np.random.default_rng(3)
    ta, tb = (t64(rng.uniform(0.5, 2.0, s)) for s in shapes)
    np.testing.assert_allclose(op(ta, tb).numpy(), ref(ta.numpy(), tb.numpy()), rtol=1e-12)
    assert ma.gradcheck(op, (ta, tb))


@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=4), data=st.data())
@SETTINGS
def test_reductions_over_any_axes(shape, data):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                               st.lists(st.integers(0, len(shape) - 1), min_size=1,
                                        max_size=len(shape), unique=True).map(tuple)))
    keepdims = data.draw(st.booleans())
    x_np = np.random.default_rng(1).standard_normal(shape)
    x = t64(x_np)
    for method in ("sum", "mean", "max"):
        out = getattr(x, method)(axis=axis, keepdims=keepdims)
        np.testing.assert_allclose(out.numpy(), getattr(x_np, method)(axis=axis,
                                                                      keepdims=keepdims))
        assert ma.gradcheck(lambda t, m=method: getattr(t, m)(axis=axis, keepdims=keepdims),
                            (x,))


MATMUL_SHAPES = [((4,), (4,)), ((4,), (4, 3)), ((2, 4), (4,)), ((3, 4), (4, 2)),
                 ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
                 ((1, 4), (4, 1)), ((4,), (2, 3, 4, 2))]


@pytest.mark.parametrize("a_shape, b_shape", MATMUL_SHAPES)
def test_matmul_numpy_rules(a_shape, b_shape):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    out = t64(a) @ t64(b)
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-12)
    assert ma.gradcheck(lambda x, y: x @ y, (t64(a), t64(b)))


def test_non_contiguous_inputs():
    rng = np.random.default_rng(3)
    a = t64(rng.standard_normal((5, 4)).T)  # a transposed view, Fortran order
    b = t64(rng.standard_normal((5, 3))[:, ::-1])  # negative strides
    assert not a.data.flags.c_contiguous and not b.data.flags.c_contiguous
    assert ma.gradcheck(lambda x, y: (x @ y).tanh() * y.sum(axis=0), (a, b))


def test_shape_ops_and_indexing():
    rng = np.random.default_rng(4)
    x_np = rng.standard_normal((2, 3, 4))
    x = t64(x_np)
    np.testing.assert_array_equal(x.reshape(6, 4).numpy(), x_np.reshape(6, 4))
    np.testing.assert_array_equal(x.reshape((4, -1)).numpy(), x_np.reshape(4, -1))
    np.testing.assert_array_equal(x.transpose(1, 2, 0).numpy(), x_np.transpose(1, 2, 0))
    np.testing.assert_array_equal(x.T.numpy(), x_np.T)
    np.testing.assert_array_equal(x.swapaxes(0, -1).numpy(), x_np.swapaxes(0, -1))
    index = (slice(None), [2, 0, 2], 1)
    np.testing.assert_array_equal(x[index].numpy(), x_np[index])
    np.testing.assert_array_equal(x[x_np > 0].numpy(), x_np[x_np > 0])  # boolean mask
    for fn in (lambda t: t.T, lambda t: t[..., 1:3], lambda t: t[:, [2, 0, 2], 1],
               lambda t: t[ma.tensor(x_np > 0)], lambda t: t.reshape(4, 6)[::2]):
        assert ma.gradcheck(fn, (x,))


def test_repeated_index_adds_its_gradient():
    x = t64(np.zeros((3, 2)))
    x[[0, 2, 0]].backward(np.ones((3, 2)))
    np.testing.assert_array_equal(x.grad.numpy(), [[2, 2], [0, 0], [1, 1]])


def test_max_ties_share_the_gradient():
    x = t64([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    x.max(axis=1).backward(np.array([1.0, 1.0]))
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [1, 0, 0]])


def test_where_and_comparisons():
    rng = np.random.default_rng(5)
    a, b = t64(rng.standard_normal((3, 4))), t64(rng.standard_normal(4))
    cond = a > 0
    assert cond.dtype == np.bool_ and not cond.requires_grad
    np.testing.assert_allclose(ma.where(cond, a, b).numpy(),
                               np.where(a.numpy() > 0, a.numpy(), b.numpy()))
    assert ma.gradcheck(lambda x, y: ma.where(cond, x, y), (a, b))
    assert ((a == a).numpy()).all() and not ((a != a).numpy()).any()
    assert ((a <= a).numpy()).all() and not ((a < a).numpy()).any()


# -- against PyTorch ----------------------------------------------------------------------------


def test_a_composite_expression_matches_pytorch(torch):
    rng = np.random.default_rng(6)
    a_np, b_np = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))
    c_np = rng.uniform(0.5, 2.0, (3, 1))
    dout = rng.standard_normal((2, 3))

    mine = [t64(x) for x in (a_np, b_np, c_np)]
    theirs = [torch.tensor(x, requires_grad=True) for x in (a_np, b_np, c_np)]

    def m_f(a, b, c):
        h = (a @ b).tanh() * c - (a.sum(axis=-1, keepdims=True) / c) ** 2
        return (h.exp() + h.max(axis=-1, keepdims=True) ** 2).sqrt().log().mean(axis=-1)

    def t_f(a, b, c):
        h = (a @ b).tanh() * c - (a.sum(-1, keepdim=True) / c) ** 2
        return (h.exp() + h.amax(-1, keepdim=True) ** 2).sqrt().log().mean(-1)

    out_m, out_t = m_f(*mine), t_f(*theirs)
    np.testing.assert_allclose(out_m.numpy(), out_t.detach().numpy(), rtol=1e-12)
    out_m.backward(dout)
    out_t.backward(torch.tensor(dout))
    for m, t in zip(mine, theirs):
        np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("a_shape, b_shape", MATMUL_SHAPES)
def test_matmul_gradients_match_pytorch(torch, a_shape, b_shape):
    rng = np.random.default_rng(8)
    a_np, b_np = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    out_shape = (a_np @ b_np).shape
    dout = rng.standard_normal(out_shape)
    a, b = t64(a_np), t64(b_np)
    (a @ b).backward(dout)
    ta, tb = torch.tensor(a_np, requires_grad=True), torch.tensor(b_np, requires_grad=True)
    torch.matmul(ta, tb).backward(torch.tensor(dout))
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-10, atol=1e-12)


# -- float16 / float32 / float64 all run ---------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_every_float_dtype_runs_forward_and_backward(dtype):
    tol = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-12}[dtype]
    rng = np.random.default_rng(10)
    x_np, w_np, dout = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), \
        rng.standard_normal(2)

    def f(x, w):
        return ((x @ w).tanh() * 2).exp().mean(axis=0)

    grads = {}
    for dt in (dtype, "float64"):
        x, w = (ma.tensor(a, dtype=dt, requires_grad=True) for a in (x_np, w_np))
        y = f(x, w)
        assert y.dtype == np.dtype(dt)
        y.backward(dout)
        assert x.grad.dtype == np.dtype(dt)
        grads[dt] = y.numpy(), x.grad.numpy(), w.grad.numpy()
    for low, exact in zip(grads[dtype], grads["float64"]):  # the same numbers, less precise
        np.testing.assert_allclose(low.astype(np.float64), exact, rtol=tol, atol=tol)


# -- bad input -----------------------------------------------------------------------------------


def test_bad_input_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\)"):
        ma.randn(2, 3) @ ma.randn(4, 5)
    with pytest.raises(ValueError, match=r"matmul \(batch axes\).*\(2,\) and \(3,\)"):
        ma.randn(2, 3, 4) @ ma.randn(3, 4, 5)
    with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(4,\) do not broadcast"):
        ma.randn(2, 3) + ma.randn(4)
    with pytest.raises(ValueError, match=r"reshape: cannot view shape \(2, 3\)"):
        ma.randn(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match="not a permutation"):  # two dims swap (PyTorch)
        ma.randn(2, 3, 4).transpose(0, 0, 1)
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        ma.randn(2, 3).sum(axis=3)
    with pytest.raises(TypeError, match="condition must be boolean"):
        ma.where(ma.randn(3), ma.randn(3), ma.randn(3))


def test_no_silent_nan_at_the_edges():
    x = t64([-np.inf, -1.0, 0.0, 2.0])
    y = x.relu()
    np.testing.assert_array_equal(y.numpy(), [0.0, 0.0, 0.0, 2.0])  # not NaN at -inf
    y.backward(np.ones(4))
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0, 1.0])
    z = t64([0.0, 3.0])
    (z**0).backward(np.ones(2))  # d(z^0)/dz = 0, also at z = 0
    np.testing.assert_array_equal(z.grad.numpy(), [0.0, 0.0])
