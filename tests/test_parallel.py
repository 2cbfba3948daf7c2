"""minattn/parallel.py: large elementwise ops and reductions split across threads give what
NumPy gives on one thread, and the ops that use them keep their gradients."""

import numpy as np
import pytest

import minattn as ma
from minattn import parallel

BIG = parallel.MIN_PARALLEL


@pytest.fixture(params=["2", "3"])
def threads(request, monkeypatch):
    monkeypatch.setenv("MINATTN_NUM_THREADS", request.param)
    return int(request.param)


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
    got = parallel.run(op, *arrays)
    np.testing.assert_array_equal(got, op(*arrays))
    assert got.dtype == op(*arrays).dtype


def test_run_falls_back_where_it_must(threads, rng):
    big = rng.standard_normal((2, 600, 1000))
    ints = np.arange(big.size).reshape(big.shape)
    assert parallel.run(np.add, ints, ints).dtype == ints.dtype  # not float: NumPy's own
    mixed = parallel.run(np.multiply, big.astype(np.float32), big)  # mixed: NumPy promotes
    assert mixed.dtype == np.float64
    small = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(parallel.run(np.exp, small), np.exp(small))


@pytest.mark.parametrize("method", ["sum", "max"])
@pytest.mark.parametrize("axis", [(3,), (0,), (1, 3), (0, 1, 2)])
@pytest.mark.parametrize("keepdims", [True, False])
def test_reduce_is_numpy_reduction(threads, rng, method, axis, keepdims):
    x = rng.standard_normal((2, 3, 400, 500))
    got = parallel.reduce(method, x, axis, keepdims)
    want = getattr(x, method)(axis=axis, keepdims=keepdims)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 400, 500), (BIG + 3, 2), (3, 5), (7,), (4, 0), (0, 6)])
def test_dot_last_is_the_row_sum_of_the_product(threads, rng, shape):
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    got = parallel.dot_last(a, b)
    want = (a * b).sum(axis=-1, keepdims=True)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # float32 keeps its dtype; mixed dtypes and integers take NumPy's own promotion
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    assert parallel.dot_last(a32, b32).dtype == np.float32
    np.testing.assert_allclose(parallel.dot_last(a32, b32), want, rtol=1e-4, atol=1e-3)
    assert parallel.dot_last(a32, b).dtype == np.float64
    ints = np.arange(a.size).reshape(shape) % 5
    np.testing.assert_array_equal(parallel.dot_last(ints, ints),
                                  (ints * ints).sum(axis=-1, keepdims=True))


def test_one_thread_turns_it_off(monkeypatch, rng):
    monkeypatch.setenv("MINATTN_NUM_THREADS", "1")
    x = rng.standard_normal((2, 600, 1000))
    np.testing.assert_array_equal(parallel.run(np.exp, x), np.exp(x))
    monkeypatch.setenv("MINATTN_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="MINATTN_NUM_THREADS"):
        parallel.run(np.exp, x)


def test_an_error_in_a_thread_reaches_the_caller(threads):
    def boom(item):
        raise ZeroDivisionError(f"item {item}")

    with pytest.raises(ZeroDivisionError, match="item"):
        parallel.each(boom, range(5), threads)


def test_ops_on_large_arrays_keep_their_gradients(threads, rng):
    """exp, +, -, *, / and sums on arrays past MIN_PARALLEL, checked in random directions."""
    a = ma.tensor(rng.standard_normal((4, 512, 520)), requires_grad=True)  # 1064960 entries
    b = ma.tensor(rng.random((4, 512, 1)) + 0.5, requires_grad=True)

    def fn(a, b):
        e = (a - b).exp() * a
        return e / (e.sum(axis=-1, keepdims=True) + b) + a  # a fans out: gradients add

    assert a.data.size >= BIG
    assert ma.gradcheck(fn, (a, b), mode="directional")


def test_large_arrays_really_are_split(threads, rng, monkeypatch):
    """The cases above take the threaded path (so their equality checks it), small ones not."""
    calls = []
    real = parallel.each
    monkeypatch.setattr(parallel, "each",
                        lambda fn, items, n: calls.append(n) or real(fn, items, n))
    x = rng.standard_normal((2, 3, 400, 500))
    parallel.run(np.exp, x)
    parallel.reduce("sum", x, (3,), True)
    parallel.dot_last(x, x)
    assert calls == [threads, threads, threads]
    parallel.run(np.exp, x[:1, :1])
    parallel.dot_last(x[:1, :1], x[:1, :1])
    assert len(calls) == 3


def test_negative_axes_and_nested_calls(threads, rng):
    x = rng.standard_normal((2, 3, 400, 500))
    np.testing.assert_allclose(parallel.reduce("sum", x, (-1,), True),
                               x.sum(axis=-1, keepdims=True), rtol=1e-13)
    # a pool thread that asks the pool for more work runs it itself (no deadlock)
    results = []
    parallel.each(lambda i: results.append(parallel.run(np.exp, x).sum()), range(threads),
                  threads)
    assert len(results) == threads


def test_the_callers_numpy_error_handling_holds_in_the_threads(threads, rng):
    x = rng.standard_normal((2, 600, 1000))
    zero = np.zeros_like(x)
    with np.errstate(divide="raise"):
        with pytest.raises(FloatingPointError):
            parallel.run(np.divide, x, zero)
    with np.errstate(divide="ignore"):  # and silence, where the caller asked for it
        assert np.isinf(parallel.run(np.divide, x, zero)).all()
