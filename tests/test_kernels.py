"""The compiled kernels (numba on the CPU, CuPy on the GPU) against plain oracles.

Two oracles: a dense float64 NumPy attention written here (the whole (L, S) matrix of
probabilities, its gradients checked against central differences below), and the blocked
NumPy references in minattn/attention/flash.py. Every kernel must match both: to 1e-5 in
float32 and 1e-12 in float64, over odd lengths that are not multiples of the block, L != S,
Ev != E, masks with fully masked rows (zeros, never NaN) and causal masks.
"""

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading

import numpy as np
import pytest

try:  # hypothesis is a dev dependency; the GPU machine may not have it
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:
    given = None

from minattn import backend
from minattn.attention import numba_kernels as nk

numba_ok, numba_why = nk.numba_status()
needs_numba = pytest.mark.skipif(not numba_ok, reason=f"numba kernels unavailable: {numba_why}")
TOL = {np.float32: 1e-5, np.float64: 1e-12}


# -- the dense oracle ---------------------------------------------------------------------------


def dense_attention(q, k, v, scale, bias=None, is_causal=False):
    """(out, lse, probs) in float64 with the (N, L, S) probabilities materialized."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    L, S = q.shape[1], k.shape[1]
    scores = scale * q @ k.swapaxes(-1, -2)  # (N, L, S)
    if bias is not None:
        scores = scores + np.asarray(bias, np.float64)
    if is_causal:
        scores = np.where(np.tril(np.ones((L, S), bool)), scores, -np.inf)
    m = scores.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # a fully masked row: exp(-inf - 0) = 0
    e = np.exp(scores - m)  # (N, L, S)
    total = e.sum(axis=-1, keepdims=True)
    seen = total > 0
    probs = e / np.where(seen, total, 1.0)
    lse = np.where(seen, m + np.log(np.where(seen, total, 1.0)), -np.inf)[..., 0]
    return probs @ v, lse, probs


def dense_grads(q, k, v, dout, scale, bias=None, is_causal=False):
    """(dq, dk, dv) of dense_attention: the textbook backward over the whole matrix."""
    # out = P v  =>  dv = P^T dout, dP = dout v^T; P = softmax(S)  =>  dS = P (dP - rowsum(dP P));
    # S = scale q k^T  =>  dq = scale dS k, dk = scale dS^T q.
    q, k, v, dout = (np.asarray(x, np.float64) for x in (q, k, v, dout))
    _, _, probs = dense_attention(q, k, v, scale, bias, is_causal)
    dv = probs.swapaxes(-1, -2) @ dout
    dprobs = dout @ v.swapaxes(-1, -2)
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))
    return scale * dscores @ k, scale * dscores.swapaxes(-1, -2) @ q, dv


def make_case(rng, N, L, S, E, Ev, dtype, mask=None):
    q = rng.standard_normal((N, L, E)).astype(dtype)
    k = rng.standard_normal((N, S, E)).astype(dtype)
    v = rng.standard_normal((N, S, Ev)).astype(dtype)
    dout = rng.standard_normal((N, L, Ev)).astype(dtype)
    bias = None
    if mask == "bias":  # additive float mask, -inf holes, and two fully masked rows
        bias = rng.standard_normal((N, L, S))
        bias[rng.random((N, L, S)) < 0.3] = -np.inf
        bias[:, min(2, L - 1)] = -np.inf
        bias[0, L - 1] = -np.inf
        bias = bias.astype(dtype)
    elif mask == "broadcast":  # (1, L, 1) and (L, S) shapes, as make_bias hands them over
        bias = np.where(rng.random((L, S)) < 0.2, -np.inf, 0.0).astype(dtype)
    return q, k, v, dout, bias


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

CASES = [  # N, L, S, E, Ev, mask, is_causal, block_q, block_k
    pytest.param(3, 37, 53, 8, 5, None, False, 16, 32, id="odd lengths, L<S, Ev!=E"),
    pytest.param(2, 70, 29, 16, 16, None, False, 32, 16, id="L>S"),
    pytest.param(2, 45, 45, 4, 3, "bias", False, 16, 16, id="bias, masked rows"),
    pytest.param(1, 33, 21, 8, 8, "broadcast", False, 8, 8, id="(L, S) bias broadcast"),
    pytest.param(2, 50, 50, 8, 6, None, True, 16, 16, id="causal square"),
    pytest.param(2, 19, 40, 4, 4, None, True, 8, 16, id="causal L<S"),
    pytest.param(2, 40, 19, 4, 4, None, True, 16, 8, id="causal L>S"),
    pytest.param(2, 100, 90, 8, 8, None, False, 64, 64, id="default blocks"),
    pytest.param(1, 1, 1, 2, 2, None, False, 64, 64, id="one query, one key"),
]


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("N, L, S, E, Ev, mask, is_causal, block_q, block_k", CASES)
def test_numba_flash_matches_dense_oracle(rng, dtype, N, L, S, E, Ev, mask, is_causal, block_q,
                                          block_k):
    q, k, v, dout, bias = make_case(rng, N, L, S, E, Ev, dtype, mask)
    scale = 1 / np.sqrt(E)
    out, lse = nk.flash_forward(q, k, v, scale, bias, is_causal, block_q, block_k)
    dq, dk, dv = nk.flash_backward(q, k, v, out, lse, dout, scale, bias, is_causal, block_q,
                                   block_k)
    want_out, want_lse, _ = dense_attention(q, k, v, scale, bias, is_causal)
    want = dense_grads(q, k, v, dout, scale, bias, is_causal)
    tol = TOL[dtype]
    assert out.dtype == dtype and dq.dtype == dk.dtype == dv.dtype == dtype
    assert out.shape == (N, L, Ev) and lse.shape == (N, L)
    np.testing.assert_allclose(out, want_out, rtol=tol, atol=tol)
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


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("N, L, S, E, Ev, mask, is_causal, block_q, block_k", CASES[:6])
def test_numba_flash_matches_numpy_reference(rng, dtype, N, L, S, E, Ev, mask, is_causal,
                                             block_q, block_k):
    from minattn.attention import flash
    q, k, v, dout, bias = make_case(rng, N, L, S, E, Ev, dtype, mask)
    args = (0.3, bias, is_causal, block_q, block_k)
    out, lse = nk.flash_forward(q, k, v, *args)
    ref_out, ref_lse = flash.flash_forward(q, k, v, *args)
    tol = TOL[dtype]
    np.testing.assert_allclose(out, ref_out, rtol=tol, atol=tol)
    np.testing.assert_allclose(lse, ref_lse, rtol=tol, atol=tol)  # equal infinities pass
    grads = nk.flash_backward(q, k, v, out, lse, dout, *args)
    ref_grads = flash.flash_backward(q, k, v, ref_out, ref_lse, dout, *args)
    for got, want in zip(grads, ref_grads):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@needs_numba
def test_a_wrong_backward_is_caught(rng):
    """The comparison has teeth: dS without its rowsum term differs far beyond tolerance."""
    q, k, v, dout, _ = make_case(rng, 2, 20, 24, 4, 4, np.float64)
    dq_right = dense_grads(q, k, v, dout, 0.5)[0]
    _, _, probs = dense_attention(q, k, v, 0.5)
    dq_wrong = 0.5 * (probs * (dout @ v.swapaxes(-1, -2))) @ k  # forgot "- rowsum(dP * P)"
    out, lse = nk.flash_forward(q, k, v, 0.5)
    dq = nk.flash_backward(q, k, v, out, lse, dout, 0.5)[0]
    np.testing.assert_allclose(dq, dq_right, atol=1e-12)
    assert np.abs(dq - dq_wrong).max() > 1e-2


if given is not None:  # hypothesis is a dev dependency
    @needs_numba
    @given(N=st.integers(1, 3), L=st.integers(1, 40), S=st.integers(1, 40), E=st.integers(1, 9),
           Ev=st.integers(1, 9), is_causal=st.booleans(), block_q=st.sampled_from([1, 7, 16, 64]),
           block_k=st.sampled_from([1, 5, 16, 64]))
    @settings(max_examples=25, deadline=None)
    def test_numba_flash_any_shape(N, L, S, E, Ev, is_causal, block_q, block_k):
        rng = np.random.default_rng(L * 100 + S)
        q, k, v, dout, _ = make_case(rng, N, L, S, E, Ev, np.float64)
        out, lse = nk.flash_forward(q, k, v, 0.8, None, is_causal, block_q, block_k)
        grads = nk.flash_backward(q, k, v, out, lse, dout, 0.8, None, is_causal, block_q, block_k)
        want_out, _, _ = dense_attention(q, k, v, 0.8, None, is_causal)
        np.testing.assert_allclose(out, want_out, atol=1e-12)
        for got, want in zip(grads, dense_grads(q, k, v, dout, 0.8, None, is_causal)):
            np.testing.assert_allclose(got, want, atol=1e-12)


@needs_numba
def test_numba_flash_is_deterministic_and_takes_any_layout(rng):
    q, k, v, dout, bias = make_case(rng, 4, 130, 70, 8, 8, np.float32, mask="bias")
    first = nk.flash_backward(q, k, v, *nk.flash_forward(q, k, v, 0.3, bias), dout, 0.3, bias)
    again = nk.flash_backward(q, k, v, *nk.flash_forward(q, k, v, 0.3, bias), dout, 0.3, bias)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)  # bit for bit: no atomics, fixed summation order
    # non-contiguous inputs (a transposed view) and float16 (summed in float32)
    qt = np.ascontiguousarray(q.transpose(1, 0, 2)).transpose(1, 0, 2)
    out_t, _ = nk.flash_forward(qt, k, v, 0.3, bias)
    np.testing.assert_array_equal(out_t, nk.flash_forward(q, k, v, 0.3, bias)[0])
    h = [x.astype(np.float16) for x in (q, k, v)]
    out_h, lse_h = nk.flash_forward(*h, 0.3)
    assert out_h.dtype == np.float16 and lse_h.dtype == np.float32
    np.testing.assert_allclose(out_h, dense_attention(*h, 0.3)[0], atol=2e-3)


@needs_numba
def test_numba_kernels_can_be_called_from_several_threads(rng):
    """Concurrent calls wait their turn (numba's workqueue layer would abort otherwise)."""
    q, k, v, dout, _ = make_case(rng, 4, 150, 140, 8, 8, np.float32)
    want = nk.flash_forward(q, k, v, 0.3)[0]
    results = [None] * 4

    def work(i):
        out, lse = nk.flash_forward(q, k, v, 0.3)
        nk.flash_backward(q, k, v, out, lse, dout, 0.3)
        results[i] = out

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in results:
        np.testing.assert_array_equal(out, want)


@needs_numba
def test_numba_flash_rejects_bad_input():
    q = np.zeros((2, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"\(2, 4, 3\).*\(2, 5, 4\)"):
        nk.flash_forward(q, np.zeros((2, 5, 4), np.float32), np.zeros((2, 5, 3), np.float32), 1)
    with pytest.raises(TypeError, match="int64"):
        nk.flash_forward(q.astype(np.int64), q, q, 1.0)
    with pytest.raises(ValueError, match="broadcast"):
        nk.flash_forward(q, q, q, 1.0, bias=np.zeros((3, 4, 4), np.float32))


# -- the row softmax ----------------------------------------------------------------------------


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (3, 4, 129), (5,)])
def test_numba_softmax_matches_numpy(rng, dtype, shape):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    x64 = x.astype(np.float64)
    want = np.exp(x64 - x64.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    y = nk.softmax_forward(x)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, want, rtol=TOL[dtype], atol=TOL[dtype])
    dx = nk.softmax_backward(y, dy)  # y (dy - sum(dy y))
    want_dx = want * (dy - (dy * want).sum(-1, keepdims=True))
    np.testing.assert_allclose(dx, want_dx, rtol=TOL[dtype], atol=TOL[dtype])


@needs_numba
def test_numba_softmax_of_a_fully_masked_row_is_zero():
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]], np.float32)
    y = nk.softmax_forward(x)
    np.testing.assert_allclose(y[0], [1 / (1 + np.e), 0, np.e / (1 + np.e)], rtol=1e-6)
    np.testing.assert_array_equal(y[1], 0)
    np.testing.assert_array_equal(nk.softmax_backward(y, np.ones_like(y))[1], 0)


@needs_numba
@pytest.mark.parametrize("dtype, tol", [(np.float32, 2e-7), (np.float64, 4e-16)],
                         ids=["float32", "float64"])
def test_vectorized_exp2_is_accurate_over_the_whole_range(dtype, tol):
    import numba

    nk._compiled()  # registers _exp2 with numba

    @numba.njit
    def exp2_all(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = nk._exp2(x[i])
        return out

    info = np.finfo(dtype)
    x = np.linspace(info.minexp, info.maxexp - 1, 100001).astype(dtype)
    np.testing.assert_allclose(exp2_all(x), np.exp2(x.astype(np.float64)), rtol=tol)
    below = np.array([-np.inf, info.minexp - 1, -1e6], dtype)
    np.testing.assert_array_equal(exp2_all(below), 0)  # 2^-inf = 0 and no denormals


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("S, block", [(256, 128), (300, 128), (70, 64), (5, 8)])
def test_pack_kernel_matches_its_numpy_reference(rng, dtype, S, block):
    """The key blocks the flash kernels read: transposed, scaled, zero past S."""
    x = rng.standard_normal((3, S, 7)).astype(dtype)
    n_blocks = -(-S // block)
    work = np.dtype(dtype)
    got = nk._pack(nk._compiled(), x, n_blocks, block, work, 0.3)
    want = nk._blocks_transposed(x, n_blocks, block, work, scale=0.3)
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=0)
    assert (got[:, -1, :, S - (n_blocks - 1) * block:] == 0).all()


# -- plumbing: BLAS threads, missing numba, NUMBA_DISABLE_JIT -----------------------------------


def test_missing_numba_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
    ok, why = nk.numba_status()
    assert not ok and "numba" in why and "pip install minattn[fast]" in why
    with pytest.raises(RuntimeError, match="numba kernels cannot run: numba is not installed"):
        nk._compiled.__wrapped__()  # what flash_forward calls first (uncached here)


def test_flash_kernel_lookup(monkeypatch):
    from minattn.attention import flash
    cpu = np.zeros((1, 2, 2))
    if numba_ok:
        assert flash.flash_kernels(cpu) == (nk.flash_forward, nk.flash_backward)
        assert flash.has_fast_kernels(cpu)
    monkeypatch.setenv("MINATTN_FLASH_KERNELS", "reference")  # forced: the NumPy references
    assert flash.flash_kernels(cpu) == (flash.flash_forward, flash.flash_backward)
    monkeypatch.delenv("MINATTN_FLASH_KERNELS")
    monkeypatch.setattr(nk, "available", lambda: False)  # no numba: the references
    assert flash.flash_kernels(cpu) == (flash.flash_forward, flash.flash_backward)
    assert not flash.has_fast_kernels(cpu)


@needs_numba
@pytest.mark.slow
def test_kernels_run_as_python_with_numba_disable_jit():
    """NUMBA_DISABLE_JIT=1 runs the same kernel code as plain Python (how one debugs it)."""
    script = textwrap.dedent("""
        import numpy as np
        import numba
        from minattn.attention import numba_kernels as nk
        from tests.test_kernels import dense_attention, dense_grads, make_case
        assert numba.config.DISABLE_JIT
        rng = np.random.default_rng(0)
        for causal, mask in ((False, "bias"), (True, None)):
            q, k, v, dout, bias = make_case(rng, 2, 5, 7, 3, 2, np.float64, mask)
            out, lse = nk.flash_forward(q, k, v, 0.6, bias, causal, 2, 3)
            grads = nk.flash_backward(q, k, v, out, lse, dout, 0.6, bias, causal, 2, 3)
            err = np.abs(out - dense_attention(q, k, v, 0.6, bias, causal)[0]).max()
            for g, w in zip(grads, dense_grads(q, k, v, dout, 0.6, bias, causal)):
                err = max(err, np.abs(g - w).max())
            assert err < 1e-12, err
        y = nk.softmax_forward(np.array([[1.0, 2.0], [-np.inf, -np.inf]], np.float32))
        assert abs(y[0, 1] - 1 / (1 + np.exp(-1))) < 1e-6 and (y[1] == 0).all()
        print("ok", err)
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=root)
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=root,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


# -- CuPy kernels on a GPU (skipped without one) -------------------------------------------------

cuda_ok, cuda_why = backend.cuda_status()
gpu = [pytest.mark.gpu, pytest.mark.skipif(not cuda_ok, reason=f"no CUDA device: {cuda_why}")]


def check_flash_kernels(ck, to_device, to_host, dtype, N, L, S, E, Ev, mask, is_causal,
                        block_q=64, block_k=64, seed=0):
    """ck.flash_forward/backward on arrays from to_device against both oracles."""
    rng = np.random.default_rng(seed)
    q, k, v, dout, bias = make_case(rng, N, L, S, E, Ev, dtype, mask)
    scale = 1 / np.sqrt(E)
    dev = [None if x is None else to_device(x) for x in (q, k, v, dout, bias)]
    out, lse = ck.flash_forward(dev[0], dev[1], dev[2], scale, dev[4], is_causal, block_q,
                                block_k)
    grads = ck.flash_backward(dev[0], dev[1], dev[2], out, lse, dev[3], scale, dev[4],
                              is_causal, block_q, block_k)
    out, lse, grads = to_host(out), to_host(lse), [to_host(g) for g in grads]
    want_out, want_lse, _ = dense_attention(q, k, v, scale, bias, is_causal)
    want = dense_grads(q, k, v, dout, scale, bias, is_causal)
    tol = TOL[dtype]
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    np.testing.assert_allclose(out, want_out, rtol=tol, atol=tol)
    np.testing.assert_allclose(lse, want_lse, rtol=tol, atol=tol)  # -inf where fully masked
    for got, exp, name in zip(grads, want, ("dq", "dk", "dv")):
        assert np.isfinite(got).all(), name
        np.testing.assert_allclose(got, exp, rtol=tol, atol=tol, err_msg=name)
    from minattn.attention import flash  # the blocked NumPy reference
    ref_out, ref_lse = flash.flash_forward(q, k, v, scale, bias, is_causal)
    np.testing.assert_allclose(out, ref_out, rtol=tol, atol=tol)
    np.testing.assert_allclose(lse, ref_lse, rtol=tol, atol=tol)
    ref = flash.flash_backward(q, k, v, ref_out, ref_lse, dout, scale, bias, is_causal)
    for got, exp in zip(grads, ref):
        np.testing.assert_allclose(got, exp, rtol=tol, atol=tol)


def check_softmax_kernels(ck, to_device, to_host, dtype):
    rng = np.random.default_rng(5)
    x = (3 * rng.standard_normal((6, 300))).astype(dtype)
    x[2] = -np.inf  # a fully masked row: zeros
    x[4, ::3] = -np.inf
    dy = rng.standard_normal(x.shape).astype(dtype)
    x64 = x.astype(np.float64)
    m = x64.max(-1, keepdims=True)
    e = np.exp(x64 - np.where(np.isfinite(m), m, 0))
    total = e.sum(-1, keepdims=True)
    want = e / np.where(total > 0, total, 1)
    y = to_host(ck.softmax_forward(to_device(x)))
    np.testing.assert_allclose(y, want, rtol=TOL[dtype], atol=TOL[dtype])
    dx = to_host(ck.softmax_backward(to_device(y), to_device(dy)))
    want_dx = want * (dy - (dy * want).sum(-1, keepdims=True))
    np.testing.assert_allclose(dx, want_dx, rtol=TOL[dtype], atol=TOL[dtype])
    # rows without a finite max: all -inf gives 0 or, as PyTorch, NaN; a NaN or a +inf
    # anywhere in a row makes all of it NaN (what ops/rowwise.py promises on every device)
    bad = x.copy()
    bad[1, 7], bad[3, 11] = np.nan, np.inf
    fine = [0, 4, 5]
    for empty_rows in ("zero", "nan"):
        y_bad = to_host(ck.softmax_forward(to_device(bad), empty_rows=empty_rows))
        assert np.isnan(y_bad[1]).all() and np.isnan(y_bad[3]).all()
        assert (y_bad[2] == 0).all() if empty_rows == "zero" else np.isnan(y_bad[2]).all()
        np.testing.assert_allclose(y_bad[fine], want[fine], rtol=TOL[dtype], atol=TOL[dtype])
    # in place: out=x forward, out=dy backward
    x_dev, dy_dev = to_device(x.copy()), to_device(dy.copy())
    assert ck.softmax_forward(x_dev, out=x_dev) is x_dev
    np.testing.assert_allclose(to_host(x_dev), want, rtol=TOL[dtype], atol=TOL[dtype])
    assert ck.softmax_backward(x_dev, dy_dev, out=dy_dev) is dy_dev
    np.testing.assert_allclose(to_host(dy_dev), want_dx, rtol=TOL[dtype], atol=TOL[dtype])


def _cupy_io():
    import cupy as cp

    return cp.asarray, cp.asnumpy


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("N, L, S, E, Ev, mask, is_causal, block_q, block_k", CASES)
def test_cupy_flash_matches_oracles(dtype, N, L, S, E, Ev, mask, is_causal, block_q, block_k):
    from minattn.attention import cupy_kernels as ck

    check_flash_kernels(ck, *_cupy_io(), dtype, N, L, S, E, Ev, mask, is_causal, block_q,
                        block_k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_cupy_softmax_matches_numpy(dtype):
    from minattn.attention import cupy_kernels as ck

    check_softmax_kernels(ck, *_cupy_io(), dtype)


def test_cupy_flash_at_benchmark_size():
    """E = 64 and a few thousand keys: the shape the GPU benchmark times."""
    from minattn.attention import cupy_kernels as ck

    check_flash_kernels(ck, *_cupy_io(), np.float32, 2, 1000, 1200, 64, 64, None, False)
    check_flash_kernels(ck, *_cupy_io(), np.float32, 2, 700, 700, 64, 64, None, True)


@pytest.mark.parametrize("empty_rows", ["zero", "nan"])
def test_rowwise_runs_the_cuda_kernels_on_cupy_arrays(monkeypatch, rng, empty_rows):
    """The Softmax op and fused attention on the GPU: rowwise's "cuda" way (the kernels, in
    place) against its whole-array reference, on one CuPy array."""
    import cupy as cp

    from minattn.attention import cupy_kernels as ck
    from minattn.ops import rowwise

    x_host = rng.standard_normal((2, 300, 257)).astype(np.float32)
    x_host[0, 7] = -np.inf
    x_host[1, 3, 5] = np.nan
    x, dy = cp.asarray(x_host), cp.asarray(rng.standard_normal(x_host.shape), np.float32)
    calls = []
    real = ck.softmax_forward
    monkeypatch.setattr(ck, "softmax_forward", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    y = x.copy()
    assert rowwise.softmax_last(y, out=y, empty_rows=empty_rows) is y and calls
    dx = rowwise.softmax_last_backward(y, dy)
    monkeypatch.setenv("MINATTN_ROW_KERNELS", "reference")
    want = rowwise.softmax_last(x, empty_rows=empty_rows)
    want_dx = rowwise.softmax_last_backward(want, dy)
    np.testing.assert_allclose(cp.asnumpy(y), cp.asnumpy(want), atol=1e-6)
    np.testing.assert_allclose(cp.asnumpy(dx), cp.asnumpy(want_dx), atol=1e-5)


for _test in (test_cupy_flash_matches_oracles, test_cupy_softmax_matches_numpy,
              test_cupy_flash_at_benchmark_size, test_rowwise_runs_the_cuda_kernels_on_cupy_arrays):
    for _mark in gpu:
        _mark(_test)


def test_cupy_kernels_are_what_flash_uses_on_the_gpu():
    import cupy as cp

    from minattn.attention import cupy_kernels as ck
    from minattn.attention import flash

    assert flash.flash_kernels(cp.zeros((1, 2, 2))) == (ck.flash_forward, ck.flash_backward)


for _mark in gpu:
    _mark(test_cupy_kernels_are_what_flash_uses_on_the_gpu)


def test_cupy_kernels_without_a_gpu_say_what_is_missing(monkeypatch):
    from minattn.attention import cupy_kernels as ck

    monkeypatch.setattr(backend, "cuda_status", lambda: (False, "CuPy is not installed"))
    with pytest.raises(RuntimeError, match="CuPy kernels cannot run: CuPy is not installed"):
        ck.flash_forward(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), 1.0)


# -- the same CUDA source, run on the CPU ----------------------------------------------------------
#
# Without a GPU the CUDA kernels can still be checked: g++ compiles their source with a shim
# in which a thread block is a set of std::threads, __syncthreads() a std::barrier and
# __shared__ a static array (blocks run one after another). A fake `cupy` (NumPy, with a
# RawModule that builds and calls that library) then runs cupy_kernels.py unchanged.

EMU_SHIM = r"""
#include <algorithm>
#include <barrier>
#include <cstring>
#include <math.h>
#include <thread>
#include <vector>
struct Dim { unsigned x = 0, y = 0, z = 0; };
static Dim blockIdx;
thread_local Dim threadIdx;
static std::barrier<>* block_barrier;
using std::max;
using std::min;
#define __global__
#define __device__
#define __launch_bounds__(n)
#define __restrict__
#define __shared__ static
#define __syncthreads() block_barrier->arrive_and_wait()
static float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
"""
KERNEL = re.compile(r'extern "C" __global__ void __launch_bounds__\(\w+\) (\w+)\((.*?)\)\s*\{',
                    re.S)


class EmulatedRawModule:
    """cupy.RawModule's interface over the CUDA source compiled for the CPU by g++."""

    def __init__(self, code, options=()):
        self.threads = int(re.search(r"#define THREADS (\d+)", code).group(1))
        real = ctypes.c_float if "typedef float T;" in code else ctypes.c_double
        launchers, self.argtypes = [], {}
        for name, params in KERNEL.findall(code):
            decls = [" ".join(p.replace("__restrict__", "").split()) for p in params.split(",")]
            names = ", ".join(d.split()[-1].lstrip("*") for d in decls)
            self.argtypes[name] = [
                ctypes.c_void_p if "*" in d else
                {"int": ctypes.c_int, "long long": ctypes.c_longlong, "T": real}[
                    d.rsplit(" ", 1)[0].replace("const", "").strip()] for d in decls]
            launchers.append(
                f'extern "C" void launch_{name}(int gx, int gy, int threads, '
                f'{", ".join(decls)}) {{\n'
                "  for (int by = 0; by < gy; ++by) for (int bx = 0; bx < gx; ++bx) {\n"
                "    blockIdx.x = bx; blockIdx.y = by;\n"
                "    std::barrier<> bar(threads); block_barrier = &bar;\n"
                "    std::vector<std::thread> pool;\n"
                "    for (int t = 0; t < threads; ++t)\n"
                f"      pool.emplace_back([&, t] {{ threadIdx.x = t; {name}({names}); }});\n"
                "    for (auto& th : pool) th.join();\n  }\n}\n")
        source = EMU_SHIM + code + "\n" + "".join(launchers)
        folder = os.path.join(tempfile.gettempdir(), "minattn-cuda-on-cpu")
        os.makedirs(folder, exist_ok=True)
        lib = os.path.join(folder, hashlib.sha1(source.encode()).hexdigest()[:16] + ".so")
        if not os.path.exists(lib):
            with open(lib[:-3] + ".cpp", "w") as f:
                f.write(source)
            subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w",
                            lib[:-3] + ".cpp", "-o", lib + ".tmp"], check=True)
            os.replace(lib + ".tmp", lib)
        self.lib = ctypes.CDLL(lib)

    def get_function(self, name):
        launcher = getattr(self.lib, "launch_" + name)
        launcher.argtypes = [ctypes.c_int] * 3 + self.argtypes[name]

        def launch(grid, block, args, shared_mem=0):
            assert tuple(block) == (self.threads,) and len(args) == len(self.argtypes[name])
            for a in args:  # what CuPy needs too: arrays, and scalars with a dtype
                assert isinstance(a, (np.ndarray, np.generic)), (name, type(a))
            values = [a.ctypes.data if isinstance(a, np.ndarray) else a.item() for a in args]
            gx, gy = (tuple(grid) + (1,))[:2]
            launcher(gx, gy, block[0], *values)

        return launch


class EmulatedCupy:
    """NumPy, dressed as CuPy, with RawModule running the CUDA source on the CPU."""

    RawModule = EmulatedRawModule
    ndarray = np.ndarray

    def __getattr__(self, name):
        return getattr(np, name)


def _have_cxx20() -> bool:
    if shutil.which("g++") is None:
        return False
    probe = subprocess.run(["g++", "-std=c++20", "-x", "c++", "-fsyntax-only", "-"],
                           input="#include <barrier>\nint main() {}\n", text=True,
                           capture_output=True)
    return probe.returncode == 0


@pytest.fixture
def emulated_cupy_kernels(monkeypatch):
    if not _have_cxx20():
        pytest.skip("needs g++ with C++20 <barrier> to run the CUDA source on the CPU")
    from minattn.attention import cupy_kernels as ck

    monkeypatch.setattr(ck, "_cupy", EmulatedCupy)
    ck._module.cache_clear()
    yield ck
    ck._module.cache_clear()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_cuda_source_on_the_cpu_matches_oracles(emulated_cupy_kernels, dtype):
    same = (lambda x: x), (lambda x: x)
    for N, L, S, E, Ev, mask, is_causal in [(2, 37, 70, 8, 5, None, False),
                                            (2, 70, 29, 8, 5, None, True),
                                            (2, 45, 45, 8, 5, "bias", False),
                                            (1, 33, 21, 8, 5, "broadcast", False),
                                            (1, 130, 140, 8, 5, None, True)]:
        check_flash_kernels(emulated_cupy_kernels, *same, dtype, N, L, S, E, Ev, mask,
                            is_causal)
    check_softmax_kernels(emulated_cupy_kernels, *same, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-13), (np.float16, 2e-3)],
                         ids=["float64", "float16"])
@pytest.mark.parametrize("empty_rows", ["zero", "nan"])
def test_rowwise_hands_cupy_arrays_to_the_cuda_kernels(emulated_cupy_kernels, monkeypatch,
                                                       rng, empty_rows, dtype, atol):
    """The Softmax op and fused attention reach the CUDA row kernels through rowwise (here on
    the CPU: the kernels emulated, and rowwise told that these arrays live on the GPU).
    float16 is computed in float32 and written back into the caller's float16 array."""
    from minattn.ops import rowwise

    x = rng.standard_normal((3, 40, 70)).astype(dtype)
    x[0, 5] = -np.inf  # an empty row
    x[1, 2, 9] = np.nan
    dy = rng.standard_normal(x.shape).astype(dtype)
    with np.errstate(invalid="ignore"):
        want = rowwise.softmax_last(x, empty_rows=empty_rows)  # (whole-array reference)
        want_dx = rowwise.softmax_last_backward(want, dy)
    monkeypatch.setattr(rowwise, "_kind", lambda x: "cuda")
    y = x.copy()
    assert rowwise.softmax_last(y, out=y, empty_rows=empty_rows) is y  # in place, as fused
    assert y.dtype == dtype
    np.testing.assert_allclose(y, want, atol=atol)
    dx = rowwise.softmax_last_backward(y, dy.copy())
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, want_dx, atol=atol)


def test_rowwise_picks_the_cuda_kernels_for_cupy_arrays(monkeypatch):
    from minattn.ops import rowwise

    monkeypatch.setattr(backend, "is_cupy_array", lambda x: True)
    monkeypatch.setattr(backend, "is_numpy_array", lambda x: False)
    x = np.zeros((4, 5))
    assert rowwise._kind(x) == "cuda"
    monkeypatch.setenv("MINATTN_ROW_KERNELS", "reference")
    assert rowwise._kind(x) == "reference"
    monkeypatch.setenv("MINATTN_ROW_KERNELS", "numba")  # a CPU kernel: not for GPU arrays
    assert rowwise._kind(x) == "cuda"


def test_cuda_grid_takes_more_heads_than_grid_y_allows():
    """Heads ride along grid x (up to 2^31 - 1 blocks), not grid y (65535): B * H = 70000
    heads of 100 rows launch as one axis of 140000 blocks; the kernels split blockIdx.x back
    into (head, block), which the emulated runs above check with several heads."""
    from minattn.attention import cupy_kernels as ck

    assert ck._grid(100, 70000) == (2 * 70000,)
