"""The oracles the kernel tests compare against, and the checks they share (not a test module).

Two oracles for attention: a dense float64 NumPy attention written here (the whole (L, S)
matrix of probabilities; its gradients are checked against central differences in
test_flash.py), and the blocked NumPy references in minattn/attention/flash.py. One for the
row softmax: ``softmax_oracle``, the textbook formulas in float64. Every kernel must match
them to 1e-5 in float32 and 1e-12 in float64 (TOL).
"""

import numpy as np
import pytest

from minattn import backend

TOL = {np.float32: 1e-5, np.float64: 1e-12}

CUDA_OK, CUDA_WHY = backend.cuda_status()
gpu = [pytest.mark.gpu, pytest.mark.skipif(not CUDA_OK, reason=f"no CUDA device: {CUDA_WHY}")]


def on_gpu(test):
    """Mark a test as needing CuPy and a CUDA GPU (skipped, saying why, without them)."""
    for mark in gpu:
        test = mark(test)
    return test


# -- attention ----------------------------------------------------------------------------------


def dense_scores(q, k, scale, bias=None, is_causal=False):
    """scale q k^T + bias (N, L, S) in float64, -inf above the diagonal if causal."""
    q, k = (np.asarray(x, np.float64) for x in (q, k))
    L, S = q.shape[1], k.shape[1]
    scores = scale * q @ k.swapaxes(-1, -2)  # (N, L, S)
    if bias is not None:
        scores = scores + np.asarray(bias, np.float64)
    if is_causal:
        scores = np.where(np.tril(np.ones((L, S), bool)), scores, -np.inf)
    return scores


def dense_attention(q, k, v, scale, bias=None, is_causal=False):
    """(out, lse, probs) in float64 with the (N, L, S) probabilities materialized."""
    v = np.asarray(v, np.float64)
    scores = dense_scores(q, k, scale, bias, is_causal)  # (N, L, S)
    m = scores.max(axis=-1, keepdims=True)  # (N, L, 1)
    m = np.where(np.isfinite(m), m, 0.0)  # a fully masked row: exp(-inf - 0) = 0
    e = np.exp(scores - m)  # (N, L, S)
    total = e.sum(axis=-1, keepdims=True)  # (N, L, 1)
    seen = total > 0
    probs = e / np.where(seen, total, 1.0)  # (N, L, S)
    lse = np.where(seen, m + np.log(np.where(seen, total, 1.0)), -np.inf)[..., 0]  # (N, L)
    return probs @ v, lse, probs


def dense_stats(q, k, scale, bias=None, is_causal=False):
    """(m, log_l) in float64, the row statistics flash_forward returns: each row's max score
    and log sum_j exp(s_ij - m_i); -inf and -inf for a row where every key is masked."""
    scores = dense_scores(q, k, scale, bias, is_causal)  # (N, L, S)
    m = scores.max(axis=-1, initial=-np.inf)  # (N, L)
    total = np.exp(scores - np.where(np.isfinite(m), m, 0.0)[..., None]).sum(axis=-1)
    with np.errstate(divide="ignore"):  # log 0 = -inf for a fully masked row
        return m, np.log(total)


def assert_stats_close(stats, want, tol):
    """flash_forward's (m, log_l) against dense_stats: -inf exactly where every key is
    masked, and close elsewhere."""
    for got, exp, name in zip(stats, want, ("m", "log_l")):
        assert got.shape == exp.shape, name
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(exp), err_msg=name)
        np.testing.assert_allclose(got, exp, rtol=tol, atol=tol, err_msg=name)


def dense_grads(q, k, v, dout, scale, bias=None, is_causal=False):
    """(dq, dk, dv) of dense_attention: the textbook backward over the whole matrix."""
    # out = P v  =>  dv = P^T dout, dP = dout v^T; P = softmax(S)  =>  dS = P (dP - rowsum(dP P));
    # S = scale q k^T  =>  dq = scale dS k, dk = scale dS^T q.
    q, k, v, dout = (np.asarray(x, np.float64) for x in (q, k, v, dout))
    _, _, probs = dense_attention(q, k, v, scale, bias, is_causal)  # (N, L, S)
    dv = probs.swapaxes(-1, -2) @ dout  # (N, S, Ev)
    dprobs = dout @ v.swapaxes(-1, -2)  # (N, L, S)
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))  # (N, L, S)
    return scale * dscores @ k, scale * dscores.swapaxes(-1, -2) @ q, dv


def make_case(rng, N, L, S, E, Ev, dtype, mask=None):
    """q (N, L, E), k (N, S, E), v (N, S, Ev), dout (N, L, Ev) and a bias (or None)."""
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
    elif mask in ("-1e9", "finfo.min"):  # a large finite fill, and two rows of nothing else
        fill = -1e9 if mask == "-1e9" else np.finfo(dtype).min
        bias = np.where(rng.random((N, L, S)) < 0.3, fill, 0.0).astype(dtype)
        rows = [min(2, L - 1), L - 1]
        bias[0, rows] = fill  # every score of these rows is fill + q.k: a uniform softmax
        q[0, rows] = 0  # ... exactly, q.k = 0, so that float64 rounds them as float32 does
    return q, k, v, dout, bias


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
    pytest.param(2, 45, 70, 8, 5, "-1e9", False, 16, 32, id="-1e9 fill, rows of it"),
    pytest.param(2, 45, 70, 8, 5, "finfo.min", False, 16, 32, id="finfo.min fill"),
]


def check_flash_kernels(module, to_device, to_host, dtype, N, L, S, E, Ev, mask, is_causal,
                        block_q=64, block_k=64, seed=0, scale=None):
    """module.flash_forward/backward on arrays from to_device against both oracles."""
    from minattn.attention import flash  # the blocked NumPy reference

    rng = np.random.default_rng(seed)
    q, k, v, dout, bias = make_case(rng, N, L, S, E, Ev, dtype, mask)
    scale = 1 / np.sqrt(E) if scale is None else scale
    dev = [None if x is None else to_device(x) for x in (q, k, v, dout, bias)]
    out, stats = module.flash_forward(dev[0], dev[1], dev[2], scale, dev[4], is_causal,
                                      block_q, block_k)
    grads = module.flash_backward(dev[0], dev[1], dev[2], out, stats, dev[3], scale, dev[4],
                                  is_causal, block_q, block_k)
    out, grads = to_host(out), [to_host(g) for g in grads]
    stats = tuple(to_host(x) for x in stats)
    want_out, want_lse, _ = dense_attention(q, k, v, scale, bias, is_causal)
    want = dense_grads(q, k, v, dout, scale, bias, is_causal)
    tol = TOL[dtype]
    # the gradients of q and k carry the scale: at scale 1e6 their rounding does too
    grad_tol = tol * max(1.0, abs(scale))
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert all(x.dtype == np.result_type(dtype, np.float32) for x in stats)  # working dtype
    np.testing.assert_allclose(out, want_out, rtol=tol, atol=tol)
    assert_stats_close(stats, dense_stats(q, k, scale, bias, is_causal), tol)
    with np.errstate(invalid="ignore"):  # -inf + -inf is -inf: no NaN arises
        lse = stats[0] + stats[1]
    np.testing.assert_allclose(lse, want_lse, rtol=tol, atol=tol)  # -inf where fully masked
    for got, exp, name in zip(grads, want, ("dq", "dk", "dv")):
        assert np.isfinite(got).all(), name
        atol = tol if name == "dv" else grad_tol
        np.testing.assert_allclose(got, exp, rtol=tol, atol=atol, err_msg=name)
    ref_out, ref_stats = flash.flash_forward(q, k, v, scale, bias, is_causal)
    np.testing.assert_allclose(out, ref_out, rtol=tol, atol=tol)
    for got, exp in zip(stats, ref_stats):
        np.testing.assert_allclose(got, exp, rtol=tol, atol=tol)
    ref = flash.flash_backward(q, k, v, ref_out, ref_stats, dout, scale, bias, is_causal)
    for got, exp, name in zip(grads, ref, ("dq", "dk", "dv")):
        atol = tol if name == "dv" else grad_tol
        np.testing.assert_allclose(got, exp, rtol=tol, atol=atol, err_msg=name)


# -- the row softmax ----------------------------------------------------------------------------


def softmax_oracle(x, dy, empty_rows="nan"):
    """(y, dx) in float64 by the textbook formulas, row by row over the last axis:
    y = exp(x - max x) / sum(exp(x - max x)), dx = y * (dy - sum(dy * y))."""
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)  # (..., 1)
    if empty_rows == "zero":
        m = np.where(m == -np.inf, 0.0, m)
    with np.errstate(invalid="ignore"):
        e = np.exp(x - m)  # (..., C)
        total = e.sum(axis=-1, keepdims=True)  # (..., 1)
        y = e / (np.where(total > 0, total, 1.0) if empty_rows == "zero" else total)
        dx = y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    return y, dx


def check_softmax_kernels(module, to_device, to_host, dtype):
    """module.softmax_forward/backward (empty rows give zeros) on arrays from to_device
    against softmax_oracle, rows without a finite max, and in place."""
    rng = np.random.default_rng(5)
    x = (3 * rng.standard_normal((6, 300))).astype(dtype)
    x[2] = -np.inf  # a fully masked row: zeros
    x[4, ::3] = -np.inf
    dy = rng.standard_normal(x.shape).astype(dtype)
    want, want_dx = softmax_oracle(x, dy, empty_rows="zero")
    tol = TOL[dtype]
    y = to_host(module.softmax_forward(to_device(x), empty_rows="zero"))
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    dx = to_host(module.softmax_backward(to_device(y), to_device(dy)))
    np.testing.assert_allclose(dx, want_dx, rtol=tol, atol=tol)
    # rows without a finite max: all -inf gives 0 or, as PyTorch, NaN; a NaN or a +inf
    # anywhere in a row makes all of it NaN (what softmax_rows promises on every device)
    bad = x.copy()
    bad[1, 7], bad[3, 11] = np.nan, np.inf
    fine = [0, 4, 5]
    for empty_rows in ("zero", "nan"):
        y_bad = to_host(module.softmax_forward(to_device(bad), empty_rows=empty_rows))
        assert np.isnan(y_bad[1]).all() and np.isnan(y_bad[3]).all()
        assert (y_bad[2] == 0).all() if empty_rows == "zero" else np.isnan(y_bad[2]).all()
        np.testing.assert_allclose(y_bad[fine], want[fine], rtol=tol, atol=tol)
    # in place: out=x forward, out=dy backward
    x_dev, dy_dev = to_device(x.copy()), to_device(dy.copy())
    assert module.softmax_forward(x_dev, out=x_dev, empty_rows="zero") is x_dev
    np.testing.assert_allclose(to_host(x_dev), want, rtol=tol, atol=tol)
    assert module.softmax_backward(x_dev, dy_dev, out=dy_dev) is dy_dev
    np.testing.assert_allclose(to_host(dy_dev), want_dx, rtol=tol, atol=tol)
