"""The row softmax of ops/rowwise.py: its three ways (numba kernel, NumPy blocks of rows on
threads, whole-array reference) against a float64 oracle and against each other, on arrays
large enough that the fast ways are really taken."""

import multiprocessing
import os

import numpy as np
import pytest

import minattn as ma
import minattn.functional as F
from minattn.attention import numba_kernels as nk
from minattn.ops import rowwise

KINDS = ["reference", "numpy",
         pytest.param("numba", marks=pytest.mark.skipif(
             not nk.available(), reason=f"numba kernels unavailable: {nk.numba_status()[1]}"))]
TOL = {np.float32: 2e-6, np.float64: 1e-13}


@pytest.fixture(params=KINDS)
def kind(request, monkeypatch):
    monkeypatch.setenv("MINATTN_ROW_KERNELS", request.param)
    return request.param


def oracle(x, dy, empty_rows="nan"):
    """(y, dx) in float64 by the textbook formulas, row by row over the last axis."""
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    if empty_rows == "zero":
        m = np.where(m == -np.inf, 0.0, m)
    with np.errstate(invalid="ignore"):
        e = np.exp(x - m)
        total = e.sum(axis=-1, keepdims=True)
        y = e / (np.where(total > 0, total, 1.0) if empty_rows == "zero" else total)
        dx = y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    return y, dx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 257, 311), (70000,), (2, 1, 40000), (97, 1500)])
def test_each_way_matches_the_oracle(kind, rng, dtype, shape):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    assert x.size >= rowwise.MIN_FAST or kind == "reference"
    assert rowwise._kind(x) == kind  # the way asked for is the way taken
    y_ref, dx_ref = oracle(x, dy)
    y = rowwise.softmax_last(x)
    dx = rowwise.softmax_last_backward(y, dy)
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=TOL[dtype])
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=10 * TOL[dtype])


@pytest.mark.parametrize("empty_rows", ["nan", "zero"])
def test_rows_without_a_finite_max(kind, rng, empty_rows):
    """all -inf: NaN (PyTorch) or 0 (attention); a NaN or a +inf anywhere: NaN."""
    x = rng.standard_normal((300, 257))  # 77100 entries: the fast ways apply
    x[3] = -np.inf
    x[5, 17] = np.nan
    x[7, 250] = np.inf
    x[9, ::2] = -np.inf  # masked entries in an ordinary row: exactly 0
    y = rowwise.softmax_last(x, empty_rows=empty_rows)
    if empty_rows == "nan":
        assert np.isnan(y[3]).all()
    else:
        np.testing.assert_array_equal(y[3], 0.0)
    assert np.isnan(y[5]).all() and np.isnan(y[7]).all()
    np.testing.assert_array_equal(y[9, ::2], 0.0)
    others = np.setdiff1d(np.arange(300), [3, 5, 7])
    y_ref = oracle(x[others], np.zeros_like(x[others]))[0]
    np.testing.assert_allclose(y[others], y_ref, atol=1e-13)
    dx = rowwise.softmax_last_backward(y, rng.standard_normal(y.shape))
    assert np.isfinite(dx[others]).all()
    if empty_rows == "zero":
        np.testing.assert_array_equal(dx[3], 0.0)


def test_in_place_and_into_out(kind, rng):
    x = rng.standard_normal((130, 1031)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y_ref, dx_ref = oracle(x, dy)
    work = x.copy()
    assert rowwise.softmax_last(work, out=work) is work
    np.testing.assert_allclose(work, y_ref, atol=2e-6)
    dwork = dy.copy()
    assert rowwise.softmax_last_backward(work, dwork, out=dwork) is dwork
    np.testing.assert_allclose(dwork, dx_ref, atol=2e-5)


def test_the_fast_ways_agree_with_the_reference_bit_for_bit_where_they_can(rng, monkeypatch):
    """The NumPy blocks run the reference's own code on slices: the very same numbers."""
    x = rng.standard_normal((513, 700))
    dy = rng.standard_normal(x.shape)
    monkeypatch.setenv("MINATTN_ROW_KERNELS", "reference")
    y, dx = rowwise.softmax_last(x), None
    dx = rowwise.softmax_last_backward(y, dy)
    monkeypatch.setenv("MINATTN_ROW_KERNELS", "numpy")
    monkeypatch.setenv("MINATTN_NUM_THREADS", "3")
    np.testing.assert_array_equal(rowwise.softmax_last(x), y)
    np.testing.assert_array_equal(rowwise.softmax_last_backward(y, dy), dx)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_op_gradcheck_on_the_fast_ways(kind, axis):
    """The Softmax op's own backward, through each way, against central differences."""
    x = ma.randn(260, 256, dtype="float64", requires_grad=True)  # 66560 >= MIN_FAST
    assert ma.gradcheck(lambda t: F.softmax(t, axis=axis), (x,), mode="directional")


def test_a_wrong_fast_backward_is_caught(monkeypatch):
    """Mutation: a backward that forgets the rowsum term fails the gradient check."""
    monkeypatch.setenv("MINATTN_ROW_KERNELS", "numpy")

    def wrong(y, dy, out):
        np.multiply(dy, y, out=out)  # y * dy: the - rowsum(dy * y) term is gone
        return out

    monkeypatch.setattr(rowwise, "_softmax_rows_backward", wrong)
    x = ma.randn(260, 256, dtype="float64", requires_grad=True)
    assert not ma.gradcheck(F.softmax, (x,), mode="directional", raise_exception=False)


def test_a_bad_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MINATTN_ROW_KERNELS", "fast")
    with pytest.raises(ValueError, match="MINATTN_ROW_KERNELS"):
        rowwise.softmax_last(np.zeros((300, 300)))
    with pytest.raises(ValueError, match="empty_rows"):
        rowwise.softmax_last(np.zeros((3, 3)), empty_rows="skip")
    with pytest.raises(ValueError, match=r"\(3, 3\).*\(3, 4\)"):
        rowwise.softmax_last_backward(np.zeros((3, 3)), np.zeros((3, 4)))


def test_empty_rows_and_scalars():
    assert rowwise.softmax_last(np.zeros((4, 0))).shape == (4, 0)
    s = ma.tensor(2.5, dtype="float64", requires_grad=True)
    y = F.softmax(s, axis=0)  # one entry: 1, as in PyTorch
    y.backward(ma.tensor(3.0, dtype="float64"))
    assert y.item() == 1.0 and s.grad.item() == 0.0
    assert F.log_softmax(ma.tensor(2.5), axis=-1).item() == 0.0
    assert ma.tensor(2.5).sum(axis=0).item() == 2.5


def _child(queue):
    x = np.random.default_rng(0).standard_normal((400, 400))
    queue.put(float(rowwise.softmax_last(x).sum()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")  # 3.12+
def test_the_thread_pool_survives_a_fork(monkeypatch):
    """A forked child has no threads: the pool is made anew there instead of hanging."""
    monkeypatch.setenv("MINATTN_ROW_KERNELS", "numpy")
    monkeypatch.setenv("MINATTN_NUM_THREADS", "2")
    rowwise.softmax_last(np.zeros((400, 400)))  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == pytest.approx(400.0)
