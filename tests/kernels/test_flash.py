"""The compiled flash attention kernels (numba_flash.py on the CPU, cuda_flash.py on the GPU)
against the dense float64 oracle and the blocked NumPy references of attention/flash.py.

Every kernel must match both: to 1e-5 in float32 and 1e-12 in float64, over odd lengths that
are not multiples of the block, L != S, Ev != E, masks with fully masked rows (zeros, never
NaN), causal masks, and large scores: -1e9 and finfo.min fills and unscaled attention at
scale 1e6, where a float32 log-sum-exp would round the row sum away (the kernels keep the
row max m and log(l) apart). (The CUDA source run on the CPU: test_cuda_emulated.py.)
"""

import threading

import numpy as np
import pytest
from kernel_oracles import (
    CASES,
    TOL,
    assert_stats_close,
    check_flash_kernels,
    dense_attention,
    dense_grads,
    dense_stats,
    make_case,
    on_gpu,
)

import minattn as ma
from minattn import backend
from minattn.attention import flash
from minattn.kernels import numba_flash, numba_math

try:  # hypothesis is a dev dependency; the GPU machine may not have it
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:
    given = None

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
SHAPES = "N, L, S, E, Ev, mask, is_causal, block_q, block_k"


def test_dense_oracle_gradients_match_central_differences(rng):
    """The oracle's backward is itself checked: d<dout, out> along a random direction."""
    q, k, v, dout, bias = make_case(rng, 2, 5, 7, 3, 4, np.float64, mask="bias")
    grads = dense_grads(q, k, v, dout, 0.7, bias)
    for i, x in enumerate((q, k, v)):
        direction = rng.standard_normal(x.shape)
        args = [q, k, v]

        def f(t, i=i, direction=direction, args=args):
            moved = list(args)
            moved[i] = args[i] + t * direction
            return (dense_attention(*moved, 0.7, bias)[0] * dout).sum()

        h = 1e-6
        numerical = (f(h) - f(-h)) / (2 * h)
        np.testing.assert_allclose((grads[i] * direction).sum(), numerical, rtol=1e-6)
    assert all(np.isfinite(g).all() for g in grads)


# -- numba kernels against both oracles ---------------------------------------------------------


@DTYPES
@pytest.mark.parametrize(SHAPES, CASES)
def test_numba_flash_matches_dense_oracle(numba_kernels, rng, dtype, N, L, S, E, Ev, mask,
                                          is_causal, block_q, block_k):
    q, k, v, dout, bias = make_case(rng, N, L, S, E, Ev, dtype, mask)
    scale = 1 / np.sqrt(E)
    out, stats = numba_flash.flash_forward(q, k, v, scale, bias, is_causal, block_q, block_k)
    dq, dk, dv = numba_flash.flash_backward(q, k, v, out, stats, dout, scale, bias, is_causal,
                                            block_q, block_k)
    want_out, want_lse, _ = dense_attention(q, k, v, scale, bias, is_causal)
    want = dense_grads(q, k, v, dout, scale, bias, is_causal)
    tol = TOL[dtype]
    m, log_l = stats
    lse = m + log_l  # the log-sum-exp, from its two parts
    assert out.dtype == dtype and dq.dtype == dk.dtype == dv.dtype == dtype
    assert m.dtype == log_l.dtype == dtype
    assert out.shape == (N, L, Ev) and lse.shape == (N, L)
    np.testing.assert_allclose(out, want_out, rtol=tol, atol=tol)
    assert_stats_close(stats, dense_stats(q, k, scale, bias, is_causal), tol)
    np.testing.assert_array_equal(np.isinf(lse), np.isinf(want_lse))  # -inf exactly where masked
    finite = np.isfinite(want_lse)
    np.testing.assert_allclose(lse[finite], want_lse[finite], rtol=tol, atol=tol)
    for got, exp, name in zip((dq, dk, dv), want, ("dq", "dk", "dv")):
        assert np.isfinite(got).all(), name
        np.testing.assert_allclose(got, exp, rtol=tol, atol=tol, err_msg=name)
    if mask == "bias":  # fully masked rows: zero output and zero gradient, never NaN
        masked = ~finite
        assert masked.any()
        assert (out[masked] == 0).all() and (dq[masked] == 0).all()


@DTYPES
@pytest.mark.parametrize(SHAPES, CASES[:6])
def test_numba_flash_matches_numpy_reference(numba_kernels, rng, dtype, N, L, S, E, Ev, mask,
                                             is_causal, block_q, block_k):
    q, k, v, dout, bias = make_case(rng, N, L, S, E, Ev, dtype, mask)
    args = (0.3, bias, is_causal, block_q, block_k)
    out, stats = numba_flash.flash_forward(q, k, v, *args)
    ref_out, ref_stats = flash.flash_forward(q, k, v, *args)
    tol = TOL[dtype]
    np.testing.assert_allclose(out, ref_out, rtol=tol, atol=tol)
    for got, want in zip(stats, ref_stats):  # m and log(l)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)  # equal infinities pass
    grads = numba_flash.flash_backward(q, k, v, out, stats, dout, *args)
    ref_grads = flash.flash_backward(q, k, v, ref_out, ref_stats, dout, *args)
    for got, want in zip(grads, ref_grads):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_a_wrong_backward_is_caught(numba_kernels, rng):
    """The comparison has teeth: dS without its rowsum term differs far beyond tolerance."""
    q, k, v, dout, _ = make_case(rng, 2, 20, 24, 4, 4, np.float64)
    dq_right = dense_grads(q, k, v, dout, 0.5)[0]
    _, _, probs = dense_attention(q, k, v, 0.5)
    dq_wrong = 0.5 * (probs * (dout @ v.swapaxes(-1, -2))) @ k  # forgot "- rowsum(dP * P)"
    out, stats = numba_flash.flash_forward(q, k, v, 0.5)
    dq = numba_flash.flash_backward(q, k, v, out, stats, dout, 0.5)[0]
    np.testing.assert_allclose(dq, dq_right, atol=1e-12)
    assert np.abs(dq - dq_wrong).max() > 1e-2


@DTYPES
@pytest.mark.parametrize("mask, scale", [("-1e9", None), ("finfo.min", None), (None, 1e6),
                                         ("-1e9", 1e6)],
                         ids=["-1e9 fill", "finfo.min fill", "scale 1e6", "-1e9 and 1e6"])
@pytest.mark.parametrize("kernel", ["numba", "reference"])
def test_large_scores_keep_their_softmax(request, dtype, mask, scale, kernel):
    """Scores near -1e9 (masked_fill's usual value), finfo.min or 1e6 (unscaled attention):
    p = exp((s - m) - log l) is exact at the max, so a row that is all fill is the uniform
    average, forward and backward; a float32 log-sum-exp m + log l at |m| ~ 1e9 (a step of 64)
    would lose log l, and with it every gradient of the row."""
    if kernel == "numba":
        request.getfixturevalue("numba_kernels")  # skips where numba cannot run
    module = numba_flash if kernel == "numba" else flash
    check_flash_kernels(module, *IDENTITY, dtype, 2, 45, 70, 8, 5, mask, False, 16, 32,
                        scale=scale)


def test_flash_twin_runs_only_where_scores_are_finite(numba_kernels, rng):
    """NaN or inf in q, k, v or dout, NaN or +inf in the bias, or scores that could overflow,
    run the reference (which gives PyTorch's NaN); the fast-math kernels never see them."""
    q, k, v, dout, bias = make_case(rng, 2, 5, 7, 3, 2, np.float32, mask="bias")
    stats = (q[..., 0], q[..., 0])
    fwd, bwd = flash.flash_forward, flash.flash_backward
    assert ma.kernels.twin(fwd, q, k, v, 0.5, bias) is numba_flash.flash_forward
    assert ma.kernels.twin(bwd, q, k, v, q, stats, dout, 0.5, bias) is numba_flash.flash_backward
    for name, bad in [("q", np.nan), ("k", np.inf), ("v", np.nan), ("v", -np.inf),
                      ("bias", np.nan), ("bias", np.inf), ("dout", np.nan)]:
        args = dict(q=q, k=k, v=v, dout=dout, bias=bias)
        args[name] = args[name].copy()
        args[name][1, 2, 1] = bad
        if name != "dout":
            assert ma.kernels.twin(fwd, args["q"], args["k"], args["v"], 0.5,
                                   args["bias"]) is None, (name, bad)
        assert ma.kernels.twin(bwd, args["q"], args["k"], args["v"], q, stats, args["dout"],
                               0.5, args["bias"]) is None, (name, bad)
    assert ma.kernels.twin(fwd, q * 1e20, k * 1e20, v, 1.0) is None  # q.k overflows float32
    h = [x.astype(np.float16) for x in (q, k, v)]  # (float16 is read off its bits)
    assert ma.kernels.twin(fwd, *h, 0.5) is numba_flash.flash_forward
    h[1][0, 3, 2] = -np.inf
    assert ma.kernels.twin(fwd, *h, 0.5) is None
    assert ma.kernels.twin(fwd, q[:, :0], k, v, 1.0) is None  # nothing to tile
    with ma.kernels.use("reference"):
        assert ma.kernels.twin(fwd, q, k, v, 0.5, bias) is None


IDENTITY = (lambda x: x), (lambda x: x)  # to_device, to_host: arrays stay where they are


if given is not None:  # hypothesis is a dev dependency
    @pytest.mark.skipif(not numba_math.available(), reason=numba_math.numba_status()[1])
    @given(N=st.integers(1, 3), L=st.integers(1, 40), S=st.integers(1, 40), E=st.integers(1, 9),
           Ev=st.integers(1, 9), is_causal=st.booleans(), block_q=st.sampled_from([1, 7, 16, 64]),
           block_k=st.sampled_from([1, 5, 16, 64]))
    @settings(max_examples=25, deadline=None)
    def test_numba_flash_any_shape(N, L, S, E, Ev, is_causal, block_q, block_k):
        rng = np.random.default_rng(L * 100 + S)
        q, k, v, dout, _ = make_case(rng, N, L, S, E, Ev, np.float64)
        out, stats = numba_flash.flash_forward(q, k, v, 0.8, None, is_causal, block_q, block_k)
        grads = numba_flash.flash_backward(q, k, v, out, stats, dout, 0.8, None, is_causal,
                                           block_q, block_k)
        want_out, _, _ = dense_attention(q, k, v, 0.8, None, is_causal)
        np.testing.assert_allclose(out, want_out, atol=1e-12)
        for got, want in zip(grads, dense_grads(q, k, v, dout, 0.8, None, is_causal)):
            np.testing.assert_allclose(got, want, atol=1e-12)


def test_numba_flash_is_deterministic_and_takes_any_layout(numba_kernels, rng):
    q, k, v, dout, bias = make_case(rng, 4, 130, 70, 8, 8, np.float32, mask="bias")
    fwd, bwd = numba_flash.flash_forward, numba_flash.flash_backward
    first = bwd(q, k, v, *fwd(q, k, v, 0.3, bias), dout, 0.3, bias)
    again = bwd(q, k, v, *fwd(q, k, v, 0.3, bias), dout, 0.3, bias)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)  # bit for bit: no atomics, fixed summation order
    # non-contiguous inputs (a transposed view) and float16 (summed in float32)
    qt = np.ascontiguousarray(q.transpose(1, 0, 2)).transpose(1, 0, 2)
    np.testing.assert_array_equal(fwd(qt, k, v, 0.3, bias)[0], fwd(q, k, v, 0.3, bias)[0])
    h = [x.astype(np.float16) for x in (q, k, v)]
    out_h, (m_h, log_l_h) = fwd(*h, 0.3)
    assert out_h.dtype == np.float16 and m_h.dtype == log_l_h.dtype == np.float32
    np.testing.assert_allclose(out_h, dense_attention(*h, 0.3)[0], atol=2e-3)


def test_numba_kernels_can_be_called_from_several_threads(numba_kernels, rng):
    """Concurrent calls wait their turn (numba's workqueue layer would abort otherwise)."""
    q, k, v, dout, _ = make_case(rng, 4, 150, 140, 8, 8, np.float32)
    want = numba_flash.flash_forward(q, k, v, 0.3)[0]
    results = [None] * 4

    def work(i):
        out, stats = numba_flash.flash_forward(q, k, v, 0.3)
        numba_flash.flash_backward(q, k, v, out, stats, dout, 0.3)
        results[i] = out

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for out in results:
        np.testing.assert_array_equal(out, want)


def test_numba_flash_rejects_bad_input(numba_kernels):
    q = np.zeros((2, 4, 3), np.float32)
    fwd = numba_flash.flash_forward
    with pytest.raises(ValueError, match=r"\(2, 4, 3\).*\(2, 5, 4\)"):
        fwd(q, np.zeros((2, 5, 4), np.float32), np.zeros((2, 5, 3), np.float32), 1)
    with pytest.raises(TypeError, match="int64"):
        fwd(q.astype(np.int64), q, q, 1.0)
    with pytest.raises(ValueError, match="broadcast"):
        fwd(q, q, q, 1.0, bias=np.zeros((3, 4, 4), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("S, block", [(256, 128), (300, 128), (70, 64), (5, 8)])
def test_pack_kernel_matches_its_numpy_reference(numba_kernels, rng, dtype, S, block):
    """The key blocks the flash kernels read: transposed, scaled, zero past S."""
    x = rng.standard_normal((3, S, 7)).astype(dtype)
    n_blocks = -(-S // block)
    work = np.dtype(dtype)
    got = numba_flash._pack(numba_flash._compiled(), x, n_blocks, block, work, 0.3)
    want = numba_flash._blocks_transposed(x, n_blocks, block, work, scale=0.3)
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=0)
    assert (got[:, -1, :, S - (n_blocks - 1) * block:] == 0).all()


def test_causal_blocks_are_dealt_in_zigzag_order():
    """Cheap and dear causal query blocks alternate, so neighbouring work items balance."""
    assert numba_flash._zigzag(5).tolist() == [0, 4, 1, 3, 2]
    assert numba_flash._zigzag(4).tolist() == [0, 3, 1, 2]
    assert numba_flash._zigzag(1).tolist() == [0]


@pytest.mark.parametrize("N, nkb, threads", [(1, 8, 4), (3, 8, 4), (4, 8, 4), (2, 1, 16),
                                             (16, 16, 2)])
def test_key_groups_keep_every_thread_busy(N, nkb, threads):
    G = numba_flash._key_groups(N, nkb, threads)
    assert 1 <= G <= nkb and G <= max(1, -(-2 * threads // N))  # at most 2T / N groups
    if G < min(nkb, -(-2 * threads // N)):  # stopped early: the work divides evenly
        assert (N * G) % threads == 0


# -- CUDA kernels on a GPU (skipped without one) --------------------------------------------------


def _cupy_io():
    import cupy as cp

    return cp.asarray, cp.asnumpy


@on_gpu
@DTYPES
@pytest.mark.parametrize(SHAPES, CASES)
def test_cuda_flash_matches_oracles(dtype, N, L, S, E, Ev, mask, is_causal, block_q, block_k):
    from minattn.kernels import cuda_flash

    check_flash_kernels(cuda_flash, *_cupy_io(), dtype, N, L, S, E, Ev, mask, is_causal,
                        block_q, block_k)


@on_gpu
def test_cuda_flash_at_benchmark_size():
    """E = 64 and a few thousand keys: the shape the GPU benchmark times."""
    from minattn.kernels import cuda_flash

    check_flash_kernels(cuda_flash, *_cupy_io(), np.float32, 2, 1000, 1200, 64, 64, None, False)
    check_flash_kernels(cuda_flash, *_cupy_io(), np.float32, 2, 700, 700, 64, 64, None, True)


def test_cuda_kernels_without_a_gpu_say_what_is_missing(monkeypatch):
    from minattn.kernels import cuda_flash, cuda_rows

    monkeypatch.setattr(backend, "cuda_status", lambda: (False, "CuPy is not installed"))
    x = np.zeros((1, 2, 2))
    with pytest.raises(RuntimeError, match="CuPy kernels cannot run: CuPy is not installed"):
        cuda_flash.flash_forward(x, x, x, 1.0)
    with pytest.raises(RuntimeError, match="CuPy kernels cannot run: CuPy is not installed"):
        cuda_rows.softmax_forward(x)


@on_gpu
def test_cuda_kernels_are_what_flash_uses_on_the_gpu():
    import cupy as cp

    from minattn.kernels import choice, cuda_flash

    q = cp.zeros((1, 2, 2))
    assert choice.flash_pair("fast", q) == (cuda_flash.flash_forward, cuda_flash.flash_backward)
    assert ma.kernels.twin(flash.flash_forward, q, q, q, 1.0) is cuda_flash.flash_forward
    with ma.kernels.use("reference"):
        assert ma.kernels.twin(flash.flash_forward, q, q, q, 1.0) is None
