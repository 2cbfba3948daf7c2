"""The row softmax's fast twins (numba_rows.py, the NumPy blocks of rows.py, cuda_rows.py)
against its plain references ``softmax_rows`` and ``softmax_rows_backward`` (ops/softmax.py)
and a float64 oracle, and ``rows.kind``, which picks the twin for an array.

Every test that takes the ``kernels`` fixture runs under each setting of ``ma.kernels.use``
on arrays large enough that the twins are really taken (the ``taken`` fixture records which).
"""

import re

import numpy as np
import pytest
from kernel_oracles import TOL, check_softmax_kernels, on_gpu, softmax_oracle

import minattn as ma
import minattn.functional as F
from minattn import backend
from minattn.kernels import numba_math, numba_rows, rows
from minattn.ops.softmax import softmax_rows, softmax_rows_backward

# the twin each setting takes for a large float32 or float64 NumPy array
TAKEN = {"fast": "numba" if numba_math.available() else "numpy", "numpy": "numpy",
         "reference": "reference"}
ROW_TOL = {np.float32: 2e-6, np.float64: 1e-13}


@pytest.fixture
def taken(monkeypatch):
    """The twins that ran ("numba" or "numpy", once per forward or backward call), in order."""
    calls = []

    def spy(module, name, label):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **kw: calls.append(label) or real(*a, **kw))

    spy(numba_rows, "softmax_forward", "numba")
    spy(numba_rows, "softmax_backward", "numba")
    spy(rows, "softmax_blocks", "numpy")
    spy(rows, "softmax_blocks_backward", "numpy")
    return calls


def softmax(x, **options):
    return ma.kernels.run(softmax_rows, x, **options)


def softmax_backward(y, dy, **options):
    return ma.kernels.run(softmax_rows_backward, y, dy, **options)


# -- every twin against the oracle ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 257, 311), (70000,), (2, 1, 40000), (97, 1500)])
def test_each_twin_matches_the_oracle(kernels, taken, rng, dtype, shape):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    assert x.size >= rows.MIN_FAST  # large enough for a twin
    assert rows.kind(x, mode=kernels) == TAKEN[kernels]
    y_ref, dx_ref = softmax_oracle(x, dy)
    y = softmax(x)
    dx = softmax_backward(y, dy)
    assert taken == ([] if kernels == "reference" else [TAKEN[kernels]] * 2)  # asked = taken
    assert y.dtype == dx.dtype == dtype and y.shape == dx.shape == shape
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=ROW_TOL[dtype])
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=10 * ROW_TOL[dtype])


@pytest.mark.parametrize("empty_rows", ["nan", "zero"])
def test_rows_without_a_finite_max(kernels, rng, empty_rows):
    """all -inf: NaN (PyTorch) or 0 (attention); a NaN or a +inf anywhere: NaN."""
    x = rng.standard_normal((300, 257))  # 77100 entries: the twins apply
    x[3] = -np.inf
    x[5, 17] = np.nan
    x[7, 250] = np.inf
    x[9, ::2] = -np.inf  # masked entries in an ordinary row: exactly 0
    y = softmax(x, empty_rows=empty_rows)
    if empty_rows == "nan":
        assert np.isnan(y[3]).all()
    else:
        np.testing.assert_array_equal(y[3], 0.0)
    assert np.isnan(y[5]).all() and np.isnan(y[7]).all()
    np.testing.assert_array_equal(y[9, ::2], 0.0)
    others = np.setdiff1d(np.arange(300), [3, 5, 7])
    y_ref = softmax_oracle(x[others], np.zeros_like(x[others]))[0]
    np.testing.assert_allclose(y[others], y_ref, atol=1e-13)
    dx = softmax_backward(y, rng.standard_normal(y.shape))
    assert np.isfinite(dx[others]).all()
    if empty_rows == "zero":
        np.testing.assert_array_equal(dx[3], 0.0)


def test_a_row_of_all_minus_inf_is_nan_by_default(kernels, rng):
    """softmax_rows(x) without empty_rows is NaN for an empty row, as in PyTorch: so is every
    twin's answer, and so is the Softmax op's on a large array."""
    x = rng.standard_normal((300, 257))
    x[3] = -np.inf
    assert np.isnan(softmax_rows(x)[3]).all()  # the reference itself
    assert np.isnan(softmax(x)[3]).all()
    assert np.isnan(F.softmax(ma.tensor(x), axis=-1).numpy()[3]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finfo_min_masks_and_large_scores(kernels, rng, dtype, torch):
    """Hugging Face's finfo(dtype).min masks and scores near 1e4 give PyTorch's softmax on
    every twin, whatever the array's size: a row of finfo.min alone is uniform, not NaN."""
    low = np.finfo(dtype).min
    x = (3 * rng.standard_normal((300, 257))).astype(dtype)  # large: the twins apply
    x[5] = low  # every key masked: uniform, as in PyTorch
    x[7, :100] = low  # some keys masked
    x[9] = (1e3 * x[9] + 2e4).astype(dtype)  # large |x|
    want = torch.softmax(torch.from_numpy(x), dim=-1).numpy()
    for shape in [(300, 257), (2, 257)]:
        got = softmax(x[:shape[0]].copy() if shape[0] == 300 else x[5:7].copy())
        ref = want if shape[0] == 300 else want[5:7]
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2 * ROW_TOL[dtype])
    np.testing.assert_array_equal(softmax(x)[5], np.float64(1 / 257).astype(dtype))


def test_in_place_and_into_out(kernels, rng):
    x = rng.standard_normal((130, 1031)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y_ref, dx_ref = softmax_oracle(x, dy)
    work = x.copy()
    assert softmax(work, out=work) is work
    np.testing.assert_allclose(work, y_ref, atol=2e-6)
    dwork = dy.copy()
    assert softmax_backward(work, dwork, out=dwork) is dwork
    np.testing.assert_allclose(dwork, dx_ref, atol=2e-5)
    into = np.empty_like(x, dtype=np.float64)  # out of another dtype: written, not aliased
    assert softmax(x, out=into) is into
    np.testing.assert_allclose(into, y_ref, atol=2e-6)


def test_the_numpy_twin_agrees_with_the_reference(rng, monkeypatch):
    """The NumPy blocks run the reference's formulas on slices: the forward gives the very
    same numbers; the backward's row sums are einsum's rather than sum's (a last-bit
    difference)."""
    x = rng.standard_normal((513, 700))
    dy = rng.standard_normal(x.shape)
    with ma.kernels.use("reference"):
        y = softmax(x)
        dx = softmax_backward(y, dy)
    monkeypatch.setenv("MINATTN_NUM_THREADS", "3")
    with ma.kernels.use("numpy"):
        np.testing.assert_array_equal(softmax(x), y)
        np.testing.assert_allclose(softmax_backward(y, dy), dx, rtol=0, atol=1e-15)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_op_gradcheck_on_every_twin(kernels, axis):
    """The Softmax op's own backward, through each twin, against central differences."""
    x = ma.randn(260, 256, dtype="float64", requires_grad=True)  # 66560 >= MIN_FAST
    assert ma.gradcheck(lambda t: F.softmax(t, axis=axis), (x,), mode="directional")


def test_a_wrong_fast_backward_is_caught(monkeypatch):
    """Mutation: a twin's backward that forgets the rowsum term fails the gradient check."""

    def wrong(y, dy, out):
        np.multiply(dy, y, out=out)  # y * dy: the - rowsum(dy * y) term is gone
        return out

    monkeypatch.setattr(rows, "_softmax_block_backward", wrong)
    x = ma.randn(260, 256, dtype="float64", requires_grad=True)
    with ma.kernels.use("numpy"):
        assert not ma.gradcheck(F.softmax, (x,), mode="directional", raise_exception=False)
    with ma.kernels.use("reference"):  # the control: the reference is not touched
        assert ma.gradcheck(F.softmax, (x,), mode="directional")


@pytest.mark.parametrize("shape", [(3, 3), (300, 300)], ids=["small", "large"])
def test_bad_arguments_are_a_clear_error(kernels, shape):
    with pytest.raises(ValueError, match="empty_rows"):
        softmax(np.zeros(shape), empty_rows="skip")
    wrong = (shape[0], shape[1] + 1)
    with pytest.raises(ValueError, match=re.escape(str(shape)) + ".*" + re.escape(str(wrong))):
        softmax_backward(np.zeros(shape), np.zeros(wrong))


def test_empty_rows_and_scalars(kernels):
    assert softmax(np.zeros((4, 0))).shape == (4, 0)
    s = ma.tensor(2.5, dtype="float64", requires_grad=True)
    y = F.softmax(s, axis=0)  # one entry: 1, as in PyTorch
    y.backward(ma.tensor(3.0, dtype="float64"))
    assert y.item() == 1.0 and s.grad.item() == 0.0
    assert F.log_softmax(ma.tensor(2.5), axis=-1).item() == 0.0
    assert ma.tensor(2.5).sum(axis=0).item() == 2.5


# -- which twin: rows.kind ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "numpy", "reference"])
def test_kind_takes_a_twin_only_where_one_pays(mode):
    big = np.zeros((300, 300))
    assert rows.kind(big, mode=mode) == TAKEN[mode]
    assert rows.kind(np.zeros((3, 3)), mode=mode) == "reference"  # below MIN_FAST
    assert rows.kind(np.zeros(rows.MIN_FAST - 1), mode=mode) == "reference"
    assert rows.kind(big.T, mode=mode) == "reference"  # not C-ordered
    assert rows.kind(big, np.zeros((300, 300)).T, mode=mode) == "reference"  # nor is out
    assert rows.kind(big.astype(np.int64), mode=mode) == "reference"  # not float
    assert rows.kind(np.zeros((300, 0)), mode=mode) == "reference"  # no entries
    assert rows.kind(np.float64(1.0), mode=mode) == "reference"  # 0-d
    f16 = rows.kind(big.astype(np.float16), mode=mode)  # numba has no float16 kernels
    assert f16 == ("reference" if mode == "reference" else "numpy")


def test_cupy_arrays_get_the_cuda_twin(monkeypatch):
    monkeypatch.setattr(backend, "is_cupy_array", lambda x: True)
    monkeypatch.setattr(backend, "is_numpy_array", lambda x: False)
    x = np.zeros((4, 5))  # small: on the GPU the CUDA kernels pay at any size
    assert rows.kind(x) == rows.kind(x, mode="fast") == "cuda"
    assert rows.kind(x, mode="reference") == "reference"
    assert rows.kind(x, mode="numpy") == "cuda"  # "numpy" sets the CPU twins only
    with ma.kernels.use("reference"):
        assert ma.kernels.twin(softmax_rows, x) is None


# -- the numba kernels, called directly -----------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (3, 4, 129), (5,)])
def test_numba_softmax_matches_the_oracle(numba_kernels, rng, dtype, shape):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    want, want_dx = softmax_oracle(x, dy)
    y = numba_rows.softmax_forward(x)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, want, rtol=TOL[dtype], atol=TOL[dtype])
    dx = numba_rows.softmax_backward(y, dy)  # y (dy - sum(dy y))
    np.testing.assert_allclose(dx, want_dx, rtol=TOL[dtype], atol=TOL[dtype])


def test_numba_softmax_of_a_fully_masked_row_is_zero(numba_kernels):
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]], np.float32)
    y = numba_rows.softmax_forward(x, empty_rows="zero")
    assert np.isnan(numba_rows.softmax_forward(x)[1]).all()  # the default is softmax_rows's
    np.testing.assert_allclose(y[0], [1 / (1 + np.e), 0, np.e / (1 + np.e)], rtol=1e-6)
    np.testing.assert_array_equal(y[1], 0)
    np.testing.assert_array_equal(numba_rows.softmax_backward(y, np.ones_like(y))[1], 0)


def test_numba_softmax_on_numpy_arrays_passes_the_shared_checks(numba_kernels):
    """The checks the CUDA kernels pass on a GPU (and, emulated, on the CPU)."""
    check_softmax_kernels(numba_rows, lambda x: x, lambda x: x, np.float32)
    check_softmax_kernels(numba_rows, lambda x: x, lambda x: x, np.float64)


# -- the CUDA kernels on a GPU (skipped without one) ----------------------------------------------


@on_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_cuda_softmax_matches_the_oracle(dtype):
    import cupy as cp

    from minattn.kernels import cuda_rows

    check_softmax_kernels(cuda_rows, cp.asarray, cp.asnumpy, dtype)


@on_gpu
@pytest.mark.parametrize("empty_rows", ["zero", "nan"])
def test_the_cuda_twin_runs_on_cupy_arrays(monkeypatch, rng, empty_rows):
    """The Softmax op and fused attention on the GPU: the CUDA twin, in place, against the
    reference on the same CuPy array."""
    import cupy as cp

    from minattn.kernels import cuda_rows

    x_host = rng.standard_normal((2, 300, 257)).astype(np.float32)
    x_host[0, 7] = -np.inf
    x_host[1, 3, 5] = np.nan
    x, dy = cp.asarray(x_host), cp.asarray(rng.standard_normal(x_host.shape), np.float32)
    calls = []
    real = cuda_rows.softmax_forward
    monkeypatch.setattr(cuda_rows, "softmax_forward",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    y = x.copy()
    assert softmax(y, out=y, empty_rows=empty_rows) is y and calls
    dx = softmax_backward(y, dy)
    with ma.kernels.use("reference"):
        want = softmax(x, empty_rows=empty_rows)
        want_dx = softmax_backward(want, dy)
    np.testing.assert_allclose(cp.asnumpy(y), cp.asnumpy(want), atol=1e-6)
    np.testing.assert_allclose(cp.asnumpy(dx), cp.asnumpy(want_dx), atol=1e-5)
