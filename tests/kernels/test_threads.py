"""kernels/threads.py: large elementwise ops and reductions split across threads give what
NumPy gives on one thread, bit for bit; ``ThreadedNumPy``, the array module the ops get for
NumPy arrays, is NumPy with those ops split; and the ops that use them keep their gradients."""

import multiprocessing
import os

import numpy as np
import pytest

import minattn as ma
from minattn.kernels import threads as T
from minattn.ops.softmax import softmax_rows

BIG = T.MIN_PARALLEL


@pytest.fixture(params=["2", "3"])
def threads(request, monkeypatch):
    monkeypatch.setenv("MINATTN_NUM_THREADS", request.param)
    return int(request.param)


@pytest.fixture
def splits(monkeypatch):
    """The thread count of every threads.each call that split work, in order."""
    calls = []
    real = T.each
    monkeypatch.setattr(T, "each", lambda fn, items, n: calls.append(n) or real(fn, items, n))
    return calls


# -- run, reduce, dot_last -------------------------------------------------------------------


@pytest.mark.parametrize("shapes", [
    [(2, 3, 400, 500)],  # unary
    [(2, 3, 400, 500), (2, 3, 400, 1)],  # a row statistic, broadcast along the last axis
    [(2, 3, 400, 500), (400, 500)],  # missing leading axes
    [(1, 3, 400, 500), (2, 1, 1, 500)],  # both broadcast
    [(BIG + 7,), ()],  # 1-D, cut along its only axis; a 0-d operand
])
@pytest.mark.parametrize("op", [np.add, np.subtract, np.multiply, np.divide, np.exp,
                                np.negative])
def test_run_is_the_ufunc_bit_for_bit(threads, rng, shapes, op):
    full = np.broadcast_shapes(*shapes)
    if op.nin == 1:
        arrays = [rng.standard_normal(full)]
    else:
        arrays = [rng.standard_normal(s) + 2.0 for s in shapes]
        arrays += [rng.standard_normal(full)] * (2 - len(arrays))
    assert np.prod(np.broadcast_shapes(*(a.shape for a in arrays))) >= BIG  # really split
    got = T.run(op, *arrays)
    np.testing.assert_array_equal(got, op(*arrays))
    assert got.dtype == op(*arrays).dtype


def test_run_falls_back_where_it_must(threads, rng):
    big = rng.standard_normal((2, 600, 1000))
    ints = np.arange(big.size).reshape(big.shape)
    assert T.run(np.add, ints, ints).dtype == ints.dtype  # not float: NumPy's own
    mixed = T.run(np.multiply, big.astype(np.float32), big)  # mixed: NumPy promotes
    assert mixed.dtype == np.float64
    small = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(T.run(np.exp, small), np.exp(small))


@pytest.mark.parametrize("method", ["sum", "max"])
@pytest.mark.parametrize("axis", [(3,), (0,), (1, 3), (0, 1, 2)])
@pytest.mark.parametrize("keepdims", [True, False])
def test_reduce_is_numpy_reduction(threads, rng, method, axis, keepdims):
    x = rng.standard_normal((2, 3, 400, 500))
    got = T.reduce(method, x, axis, keepdims)
    want = getattr(x, method)(axis=axis, keepdims=keepdims)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 400, 500), (BIG + 3, 2), (3, 5), (7,), (4, 0), (0, 6)])
def test_dot_last_is_the_row_sum_of_the_product(threads, rng, shape):
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    got = T.dot_last(a, b)
    want = (a * b).sum(axis=-1, keepdims=True)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # float32 keeps its dtype; mixed dtypes and integers take NumPy's own promotion
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    assert T.dot_last(a32, b32).dtype == np.float32
    np.testing.assert_allclose(T.dot_last(a32, b32), want, rtol=1e-4, atol=1e-3)
    assert T.dot_last(a32, b).dtype == np.float64
    ints = np.arange(a.size).reshape(shape) % 5
    np.testing.assert_array_equal(T.dot_last(ints, ints),
                                  (ints * ints).sum(axis=-1, keepdims=True))


def test_one_thread_turns_it_off(monkeypatch, rng, splits):
    monkeypatch.setenv("MINATTN_NUM_THREADS", "1")
    x = rng.standard_normal((2, 600, 1000))
    np.testing.assert_array_equal(T.run(np.exp, x), np.exp(x))
    assert splits == []
    monkeypatch.setenv("MINATTN_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="MINATTN_NUM_THREADS"):
        T.run(np.exp, x)


def test_an_error_in_a_thread_reaches_the_caller(threads):
    def boom(item):
        raise ZeroDivisionError(f"item {item}")

    with pytest.raises(ZeroDivisionError, match="item"):
        T.each(boom, range(5), threads)


def test_large_arrays_really_are_split(threads, rng, splits):
    """The cases above take the threaded path (so their equality checks it), small ones not."""
    x = rng.standard_normal((2, 3, 400, 500))
    T.run(np.exp, x)
    T.reduce("sum", x, (3,), True)
    T.dot_last(x, x)
    assert splits == [threads, threads, threads]
    T.run(np.exp, x[:1, :1])
    T.dot_last(x[:1, :1], x[:1, :1])
    assert len(splits) == 3


def test_negative_axes_and_nested_calls(threads, rng):
    x = rng.standard_normal((2, 3, 400, 500))
    np.testing.assert_allclose(T.reduce("sum", x, (-1,), True),
                               x.sum(axis=-1, keepdims=True), rtol=1e-13)
    # a pool thread that asks the pool for more work runs it itself (no deadlock)
    results = []
    T.each(lambda i: results.append(T.run(np.exp, x).sum()), range(threads), threads)
    assert len(results) == threads


def test_the_callers_numpy_error_handling_holds_in_the_threads(threads, rng):
    x = rng.standard_normal((2, 600, 1000))
    zero = np.zeros_like(x)
    with np.errstate(divide="raise"):
        with pytest.raises(FloatingPointError):
            T.run(np.divide, x, zero)
    with np.errstate(divide="ignore"):  # and silence, where the caller asked for it
        assert np.isinf(T.run(np.divide, x, zero)).all()


# -- ThreadedNumPy: the array module of the ops --------------------------------------------------

XP = T.ThreadedNumPy()
SHAPE = (2, 3, 400, 500)  # 1.2 million entries: past MIN_PARALLEL


@pytest.mark.parametrize("name, make_args", [
    ("add", lambda a, b: (a, b)),
    ("add", lambda a, b: (a, b[..., :1])),  # (..., C) + (..., 1)
    ("subtract", lambda a, b: (a, b)),
    ("multiply", lambda a, b: (a, b[0])),  # missing a leading axis
    ("divide", lambda a, b: (a, b + 3.0)),
    ("negative", lambda a, b: (a,)),
    ("exp", lambda a, b: (a,)),
], ids=["add", "add-row", "subtract", "multiply", "divide", "negative", "exp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threaded_numpy_elementwise_is_numpy_bit_for_bit(threads, splits, rng, name, make_args,
                                                         dtype):
    a, b = (rng.standard_normal(SHAPE).astype(dtype) for _ in range(2))
    args = make_args(a, b)
    got, want = getattr(XP, name)(*args), getattr(np, name)(*args)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert splits == [threads]  # it did split


@pytest.mark.parametrize("name", ["sum", "max"])
@pytest.mark.parametrize("axis", [None, -1, 0, 2, (1, 3), (0, 1, 2)])
@pytest.mark.parametrize("keepdims", [True, False])
def test_threaded_numpy_reductions_are_numpy_bit_for_bit(threads, rng, name, axis, keepdims):
    x = rng.standard_normal(SHAPE)
    got = getattr(XP, name)(x, axis=axis, keepdims=keepdims)
    want = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert np.shape(got) == np.shape(want)
    np.testing.assert_array_equal(got, want)


def test_threaded_numpy_row_dot_products_are_numpy_bit_for_bit(threads, splits, rng):
    a, b = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    got = XP.einsum("...i,...i->...", a, b)  # (2, 3, 400): each row's dot product
    np.testing.assert_array_equal(got, np.einsum("...i,...i->...", a, b))
    assert splits == [threads]
    other = XP.einsum("...ij,...jk->...ik", a[:, :, :5, :7], b[:, :, :7, :3])  # NumPy's own
    np.testing.assert_array_equal(other, np.einsum("...ij,...jk->...ik", a[:, :, :5, :7],
                                                   b[:, :, :7, :3]))
    assert len(splits) == 1


def test_names_threaded_numpy_does_not_define_are_numpy_s(rng):
    for name in ("maximum", "where", "float32", "finfo", "empty_like", "log", "ndarray",
                 "broadcast_to", "random"):
        assert getattr(XP, name) is getattr(np, name), name
    x = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(XP.log(np.abs(x)), np.log(np.abs(x)))
    assert "threads" in repr(XP)
    with pytest.raises(AttributeError):
        XP.no_such_function  # noqa: B018


def test_threaded_numpy_leaves_small_and_odd_arrays_to_numpy(threads, splits, rng):
    small = rng.standard_normal((30, 40))
    np.testing.assert_array_equal(XP.exp(small), np.exp(small))
    np.testing.assert_array_equal(XP.sum(small, axis=-1), small.sum(axis=-1))
    ints = np.arange(BIG + 5)
    np.testing.assert_array_equal(XP.add(ints, ints), ints + ints)
    assert XP.add(ints, ints).dtype == ints.dtype
    assert splits == []


def test_ops_on_large_arrays_keep_their_gradients(threads, rng):
    """exp, +, -, *, / and sums on arrays past MIN_PARALLEL, checked in random directions."""
    a = ma.tensor(rng.standard_normal((4, 512, 520)), requires_grad=True)  # 1064960 entries
    b = ma.tensor(rng.random((4, 512, 1)) + 0.5, requires_grad=True)

    def fn(a, b):
        e = (a - b).exp() * a
        return e / (e.sum(axis=-1, keepdims=True) + b) + a  # a fans out: gradients add

    assert a.data.size >= BIG
    assert ma.gradcheck(fn, (a, b), mode="directional")


def test_the_ops_reach_the_threads(threads, splits, rng):
    """Tensor arithmetic on large NumPy arrays goes through ThreadedNumPy (and not under
    kernels.use("reference"))."""
    a, b = ma.tensor(rng.standard_normal(SHAPE)), ma.tensor(rng.standard_normal(SHAPE))
    want = a.numpy() * b.numpy() + a.numpy()
    np.testing.assert_array_equal((a * b + a).numpy(), want)
    assert splits == [threads, threads]
    with ma.kernels.use("reference"):
        np.testing.assert_array_equal((a * b + a).numpy(), want)
    assert len(splits) == 2


# -- the pool ------------------------------------------------------------------------------------


def _child(queue):
    x = np.random.default_rng(0).standard_normal((400, 400))
    queue.put(float(ma.kernels.run(softmax_rows, x).sum()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")  # 3.12+
def test_the_thread_pool_survives_a_fork(monkeypatch):
    """A forked child has no threads: the pool is made anew there instead of hanging."""
    monkeypatch.setenv("MINATTN_NUM_THREADS", "2")
    with ma.kernels.use("numpy"):  # the NumPy twin: blocks of rows on the pool
        ma.kernels.run(softmax_rows, np.zeros((400, 400)))  # the parent's pool exists now
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child, args=(queue,))
        child.start()
        child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == pytest.approx(400.0)
