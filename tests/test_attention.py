"""Scaled dot-product attention: the composed, fused and flash implementations agree with
each other and with PyTorch, pass gradient checks, survive fully masked rows, and the flash
path never builds an (L, S) array."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minattn as ma
import minattn.functional as F
from minattn.attention import flash
from minattn.attention.fused import FusedAttention
from minattn.kernels import choice
from minattn.tools.gradcheck import ATTENTION_CASES, make_inputs

IMPLS = ("composed", "fused", "flash")


@pytest.fixture(autouse=True)
def small_flash_blocks(monkeypatch):
    """Tiles of 4 queries by 3 keys, so that short sequences already span several tiles,
    end in partial tiles, or fit in less than one."""
    monkeypatch.setattr(flash, "BLOCK_Q", 4)
    monkeypatch.setattr(flash, "BLOCK_K", 3)


# Each case: q, k, v shapes, the mask (kind, shape) or None, is_causal, scale.
CASES = {
    "2-D, no batch": ((5, 4), (7, 4), (7, 3), None, False, None),
    "batch, L != S, Ev != E": ((2, 9, 4), (2, 11, 4), (2, 11, 6), None, False, None),
    "heads, batch axes broadcast": ((2, 3, 6, 5), (1, 3, 13, 5), (2, 1, 13, 2), None, False, 1.0),
    "query without the outer batch": ((3, 6, 5), (2, 3, 8, 5), (2, 3, 8, 2), None, False, 0.3),
    "below one tile": ((2, 1, 3), (2, 2, 3), (2, 2, 2), None, False, None),
    "bool mask (L, S)": ((2, 9, 4), (2, 11, 4), (2, 11, 3), ("bool", (9, 11)), False, None),
    "bool mask, fully masked rows": ((2, 2, 6, 4), (2, 2, 10, 4), (2, 2, 10, 5),
                                     ("bool-dead", (2, 1, 6, 10)), False, None),
    "float mask": ((2, 3, 8, 4), (2, 3, 7, 4), (2, 3, 7, 4), ("float", (3, 8, 7)), False, 1.0),
    "float mask with -inf rows": ((2, 7, 3), (2, 6, 3), (2, 6, 2), ("float-dead", (2, 7, 6)),
                                  False, 2.5),
    "mask broadcast over rows": ((2, 5, 4), (2, 9, 4), (2, 9, 4), ("bool", (2, 1, 9)), False,
                                 None),
    "causal, L == S": ((2, 12, 4), (2, 12, 4), (2, 12, 3), None, True, None),
    "causal, L < S": ((2, 5, 4), (2, 11, 4), (2, 11, 3), None, True, 0.5),
    "causal, L > S": ((3, 10, 2), (3, 4, 2), (3, 4, 3), None, True, None),
}


def make_mask(kind, shape, rng):
    if kind == "bool":
        return rng.random(shape) < 0.7
    if kind == "bool-dead":  # some rows see no key at all
        mask = rng.random(shape) < 0.6
        mask[..., ::3, :] = False
        return mask
    bias = rng.standard_normal(shape)
    if kind == "float-dead":
        bias[rng.random(shape) < 0.3] = -np.inf
        bias[..., 1::4, :] = -np.inf
    return bias


def make_case(name, rng):
    q_shape, k_shape, v_shape, mask_spec, is_causal, scale = CASES[name]
    q, k, v = (rng.standard_normal(s) for s in (q_shape, k_shape, v_shape))
    mask = None if mask_spec is None else make_mask(*mask_spec, rng)
    return q, k, v, dict(attn_mask=mask, is_causal=is_causal, scale=scale)


def run(impl, q, k, v, dout, device="cpu", dtype="float64", **kwargs):
    """out, dq, dk, dv of one implementation as NumPy arrays."""
    qt, kt, vt = (ma.tensor(x, dtype=dtype, requires_grad=True, device=device)
                  for x in (q, k, v))
    mask = kwargs.pop("attn_mask", None)
    if mask is not None:
        mask = ma.tensor(mask, device=device)
    out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, impl=impl, **kwargs)
    out.backward(ma.tensor(dout, dtype=dtype, device=device))
    return out.numpy(), qt.grad.numpy(), kt.grad.numpy(), vt.grad.numpy()


def out_shape(q, k, v):
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    return (*batch, q.shape[-2], v.shape[-1])


def dead_rows(mask, is_causal, q, k, v):
    """True for the query rows that no key takes part in, broadcast to (..., L, 1)."""
    shape = out_shape(q, k, v)[:-1] + (1,)
    if mask is None:
        return np.zeros(shape, dtype=bool)
    dead = ~mask.any(-1) if mask.dtype == bool else np.isneginf(mask).all(-1)
    return np.broadcast_to(dead[..., None], shape)


# -- the three implementations agree ------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_implementations_agree(name, device, rng):
    q, k, v, kwargs = make_case(name, rng)
    dout = rng.standard_normal(out_shape(q, k, v))
    results = {impl: run(impl, q, k, v, dout, device, **dict(kwargs)) for impl in IMPLS}
    for impl in ("fused", "flash"):
        for label, ours, ref in zip(("out", "dq", "dk", "dv"), results[impl],
                                    results["composed"]):
            assert ours.shape == ref.shape, (impl, label)
            np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10,
                                       err_msg=f"{impl} vs composed: {label}")
    for arrays in results.values():
        assert all(np.isfinite(a).all() for a in arrays)


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name, rng, torch):
    """Forward and all three gradients to 1e-7; fully masked rows against zeros.

    Older PyTorch releases give NaN for a row that sees no key, so the oracle does not rely
    on that row: the same call with those rows unmasked and their upstream gradient zeroed,
    which removes their contribution to every gradient - what minattn's zeros mean.
    """
    q, k, v, kwargs = make_case(name, rng)
    dout = rng.standard_normal(out_shape(q, k, v))
    mask, is_causal = kwargs["attn_mask"], kwargs["is_causal"]
    dead = dead_rows(mask, is_causal, q, k, v)
    mask_t = None
    if mask is not None:
        live_mask = mask.copy()
        if mask.dtype == bool:
            live_mask[~mask.any(-1)] = True
        else:
            live_mask[np.isneginf(mask).all(-1)] = 0.0
        mask_t = torch.tensor(live_mask)
    qt, kt, vt = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    out_t = torch.nn.functional.scaled_dot_product_attention(
        qt, kt, vt, attn_mask=mask_t, is_causal=is_causal, scale=kwargs["scale"])
    out_t.backward(torch.tensor(np.where(dead, 0.0, dout)))
    expected_out = np.where(dead, 0.0, out_t.detach().numpy())
    for impl in IMPLS:
        out, dq, dk, dv = run(impl, q, k, v, dout, **dict(kwargs))
        np.testing.assert_allclose(out, expected_out, rtol=1e-7, atol=1e-7, err_msg=impl)
        for label, ours, theirs in [("dq", dq, qt.grad), ("dk", dk, kt.grad),
                                    ("dv", dv, vt.grad)]:
            np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-7, atol=1e-7,
                                       err_msg=f"{impl}: {label}")


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck(impl, name, rng):
    q, k, v, kwargs = make_case(name, rng)
    inputs = [ma.tensor(x, dtype="float64", requires_grad=True) for x in (q, k, v)]
    assert ma.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, impl=impl, **kwargs), inputs)


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=[c[0] for c in ATTENTION_CASES])
def test_registered_gradcheck_cases_pass(case):
    """What `minattn gradcheck` runs for softmax, cross-entropy and attention."""
    _, fn, shapes = case
    report = ma.gradcheck_report(fn, make_inputs(shapes))
    assert report.passed, str(report)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype, tol", [("float32", 2e-5), ("float16", 2e-2)])
def test_low_precision_agrees_with_float64(impl, dtype, tol, rng):
    q, k, v, kwargs = make_case("bool mask, fully masked rows", rng)
    dout = rng.standard_normal(out_shape(q, k, v))
    ref = run("composed", q, k, v, dout, **dict(kwargs))
    low = run(impl, q, k, v, dout, dtype=dtype, **dict(kwargs))
    for ours, expected in zip(low, ref):
        assert ours.dtype == np.dtype(dtype)
        np.testing.assert_allclose(ours.astype(np.float64), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("impl", IMPLS)
def test_huge_scores_stay_finite(impl, rng):
    """Unscaled attention on large inputs: scores of ~1e4 must not overflow the softmax."""
    q, k, v = rng.standard_normal((2, 6, 8)) * 40, rng.standard_normal((2, 5, 8)) * 40, \
        rng.standard_normal((2, 5, 3))
    dout = rng.standard_normal((2, 6, 3))
    exact = run("composed", q, k, v, dout, dtype="float64", scale=1.0)
    for dtype in ("float32", "float64"):
        result = run(impl, q, k, v, dout, dtype=dtype, scale=1.0)
        assert all(np.isfinite(a).all() for a in result)
        np.testing.assert_allclose(result[0], exact[0], atol=1e-3)  # one-hot rows: out = v_j


@pytest.mark.parametrize("impl", IMPLS)
def test_float16_with_large_activations_stays_finite(impl, rng):
    """Raw q.k reaches ~4e5, past float16's 65504: scaling q first keeps every score finite."""
    q, k, v = (rng.standard_normal((1, 4, 64)) * 80, rng.standard_normal((1, 6, 64)) * 80,
               rng.standard_normal((1, 6, 8)))
    dout = rng.standard_normal((1, 4, 8))
    exact = run("composed", q, k, v, dout, dtype="float64")
    out16 = run(impl, q, k, v, dout, dtype="float16")[0]
    assert np.isfinite(out16).all()
    np.testing.assert_allclose(out16.astype(np.float64), exact[0], atol=0.05)


def test_arrays_work_as_inputs(rng):
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 5, 3)), \
        rng.standard_normal((2, 5, 2))
    expected = F.scaled_dot_product_attention(ma.tensor(q), ma.tensor(k), ma.tensor(v))
    for impl in IMPLS:
        out = F.scaled_dot_product_attention(q.astype(np.float32), k.astype(np.float32),
                                             v.astype(np.float32), impl=impl)
        assert isinstance(out, ma.Tensor)
        np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_saved_for_backward(rng):
    """fused keeps the probabilities (one (L, S) array, no scores); flash keeps no (L, S)
    array at all, only the output and the row log-sum-exp next to the inputs."""
    q, k, v = (ma.tensor(rng.standard_normal(s), requires_grad=True)
               for s in ((2, 6, 4), (2, 7, 4), (2, 7, 3)))
    out = F.scaled_dot_product_attention(q, k, v, impl="fused")
    saved = [a for a in vars(out._ctx).values() if hasattr(a, "shape") and a.shape[-2:] == (6, 7)]
    assert len(saved) == 1 and saved[0] is out._ctx.probs
    out = F.scaled_dot_product_attention(q, k, v, impl="flash")
    saved = out._ctx.saved
    assert not any(a is not None and a.shape[-2:] == (6, 7) for a in saved)
    assert saved[-1].shape == (2, 6)  # lse


# -- fully masked rows ---------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_fully_masked_rows_give_zeros_never_nan(impl, device, rng):
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False  # query 1 sees nothing
    out, dq, dk, dv = run(impl, q, k, v, rng.standard_normal((3, 2)), device, attn_mask=mask)
    assert (out[1] == 0).all() and (dq[1] == 0).all()
    everything_masked = np.zeros((3, 5), dtype=bool)
    out, dq, dk, dv = run(impl, q, k, v, rng.standard_normal((3, 2)), device,
                          attn_mask=everything_masked)
    for a in (out, dq, dk, dv):
        assert (a == 0).all()


# -- mutation tests: wrong backward passes must be caught ----------------------------------------


def backward_with(self, dout, forget_p=False, no_row_sum=False, wrong_transpose=False,
                  no_scale=False, flip_sign=False):
    """The fused backward, with one deliberate mistake switched on."""
    q, k, v, probs = self.q, self.k, self.v, self.probs
    dv = (probs if wrong_transpose else probs.swapaxes(-1, -2)) @ dout  # (..., S, Ev)
    dprobs = dout @ v.swapaxes(-1, -2)  # (..., L, S)
    row = 0 if no_row_sum else (dprobs * probs).sum(axis=-1, keepdims=True)
    dscores = (1 if forget_p else probs) * (dprobs - row)
    if flip_sign:
        dscores = -dscores
    scale = 1.0 if no_scale else self.scale
    return dscores @ k * scale, dscores.swapaxes(-1, -2) @ q * scale, dv


def mutant(**mistake):
    return type("Mutant", (FusedAttention,),
                {"backward": lambda self, dout: backward_with(self, dout, **mistake)})


MISTAKES = ["forget_p", "no_row_sum", "wrong_transpose", "no_scale", "flip_sign"]


@pytest.mark.parametrize("mistake", MISTAKES)
def test_gradcheck_catches_wrong_fused_backward(mistake, rng):
    q, k, v = (ma.tensor(rng.standard_normal(s), dtype="float64", requires_grad=True)
               for s in ((2, 4, 3), (2, 4, 3), (2, 4, 2)))  # L == S: a wrong transpose fits

    def attend(op):
        return lambda q, k, v: op.apply(q, k, v, scale=0.6, bias=None, is_causal=False,
                                        keep=None)

    assert ma.gradcheck(attend(mutant()), (q, k, v))  # the control: no mistake
    assert not ma.gradcheck(attend(mutant(**{mistake: True})), (q, k, v),
                            raise_exception=False)
    with pytest.raises(ma.GradcheckError):
        ma.gradcheck(attend(mutant(**{mistake: True})), (q, k, v))


@pytest.mark.parametrize("mistake", ["D = 0", "no scale"])
def test_gradcheck_catches_wrong_flash_kernel(mistake, monkeypatch, rng):
    def wrong_backward(q, k, v, out, lse, dout, scale, *args):
        if mistake == "D = 0":  # out = 0 makes D = rowsum(dO * O) vanish
            return flash.flash_backward(q, k, v, out * 0, lse, dout, scale, *args)
        dq, dk, dv = flash.flash_backward(q, k, v, out, lse, dout, scale, *args)
        return dq / scale, dk, dv

    # the "compiled" flash kernels for these arrays: the reference forward, a wrong backward
    monkeypatch.setattr(choice, "flash_pair", lambda mode, q: (flash.flash_forward,
                                                               wrong_backward))
    inputs = [ma.tensor(rng.standard_normal(s), dtype="float64", requires_grad=True)
              for s in ((2, 5, 3), (2, 7, 3), (2, 7, 2))]
    with pytest.raises(ma.GradcheckError):
        ma.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, impl="flash"),
                     inputs)


# -- dropout -------------------------------------------------------------------------------------


def dropout_run(impl, seed, q, k, v, dout, p=0.4, **kwargs):
    ma.manual_seed(seed)
    return run(impl, q, k, v, dout, dropout_p=p, **kwargs)


def test_dropout_is_reproducible_and_the_same_for_fused_and_composed(device, rng):
    q, k, v, kwargs = make_case("bool mask, fully masked rows", rng)
    dout = rng.standard_normal(out_shape(q, k, v))
    first = dropout_run("fused", 7, q, k, v, dout, device=device, **kwargs)
    again = dropout_run("fused", 7, q, k, v, dout, device=device, **kwargs)
    composed = dropout_run("composed", 7, q, k, v, dout, device=device, **kwargs)
    other_seed = dropout_run("fused", 8, q, k, v, dout, device=device, **kwargs)
    no_dropout = run("fused", q, k, v, dout, device=device, **kwargs)
    for a, b, c in zip(first, again, composed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)
    assert not np.allclose(first[0], other_seed[0])
    assert not np.allclose(first[0], no_dropout[0])
    ma.manual_seed(7)  # impl=None with dropout is "fused": the same numbers
    q, k, v, mask = (ma.tensor(x, device=device) for x in (q, k, v, kwargs["attn_mask"]))
    default = F.scaled_dot_product_attention(q, k, v, dropout_p=0.4, attn_mask=mask)
    np.testing.assert_allclose(default.numpy(), first[0], rtol=1e-10)


def test_dropout_preserves_the_expectation(rng):
    """With v = 1 every output is sum_j P_ij keep_ij / (1 - p), whose expectation is 1."""
    q, k = rng.standard_normal((200, 16, 8)), rng.standard_normal((200, 16, 8))
    v = np.ones((200, 16, 1))
    for p in (0.1, 0.5):
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        assert abs(out.numpy().mean() - 1) < 0.03
        assert out.numpy().std() > 0.05  # dropout did act


@pytest.mark.parametrize("impl", ["fused", "composed"])
def test_gradcheck_with_dropout(impl, rng):
    q, k, v, kwargs = make_case("batch, L != S, Ev != E", rng)
    inputs = [ma.tensor(x, dtype="float64", requires_grad=True) for x in (q, k, v)]

    def attend(q, k, v):
        ma.manual_seed(11)  # the same dropout mask on every call
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, impl=impl, **kwargs)

    assert ma.gradcheck(attend, inputs)


def test_flash_with_dropout_points_to_fused():
    q = ma.randn(2, 4, 3)
    with pytest.raises(ValueError, match="use impl='fused'"):
        F.scaled_dot_product_attention(q, q, q, dropout_p=0.1, impl="flash")


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes, kwargs, error, message", [
    (((2, 4, 3), (2, 5, 6), (2, 5, 3)), {}, ValueError, r"same last dimension E.*\(2, 5, 6\)"),
    (((2, 4, 3), (2, 5, 3), (2, 6, 3)), {}, ValueError, r"same length S.*\(2, 6, 3\)"),
    (((2, 4, 3), (3, 5, 3), (3, 5, 3)), {}, ValueError, r"batch dimensions.*do not broadcast"),
    (((2, 4, 3), (2, 5, 3), (2, 5, 3)), {"attn_mask": np.ones((4, 4), bool)}, ValueError,
     r"attn_mask of shape \(4, 4\) does not broadcast.*\(2, 4, 5\)"),
    (((4, 3), (5, 3), (5, 3)), {"attn_mask": np.ones((2, 4, 5), bool)}, ValueError,
     r"attn_mask of shape \(2, 4, 5\)"),
    (((2, 4, 3), (2, 5, 3), (2, 5, 3)), {"attn_mask": np.ones((4, 5), np.int64)}, TypeError,
     "boolean.*or float"),
    (((2, 4, 3), (2, 5, 3), (2, 5, 3)), {"dropout_p": 1.0}, ValueError, r"\[0, 1\)"),
    (((2, 4, 3), (2, 5, 3), (2, 5, 3)), {"dropout_p": -0.1}, ValueError, r"\[0, 1\)"),
    (((2, 4, 3), (2, 5, 3), (2, 5, 3)), {"impl": "cuda"}, ValueError, "unknown impl 'cuda'"),
    (((2, 4, 3), (2, 5, 3), (2, 5, 3)), {"scale": "big"}, TypeError, "scale"),
    (((2, 4, 3), (2, 5, 3), (2, 5, 3)), {"attn_mask": np.ones((4, 5), bool), "is_causal": True},
     ValueError, "cannot be combined with is_causal"),
    (((3,), (5, 3), (5, 3)), {}, ValueError, "at least 2 dimensions"),
])
def test_bad_input_is_a_clear_error(shapes, kwargs, error, message, rng):
    q, k, v = (rng.standard_normal(s) for s in shapes)
    with pytest.raises(error, match=message):
        F.scaled_dot_product_attention(q, k, v, **kwargs)


def test_integer_and_mixed_dtypes_are_rejected():
    q = np.ones((2, 3), dtype=np.int64)
    with pytest.raises(TypeError, match=r"query must be a floating-point.*int64"):
        F.scaled_dot_product_attention(q, q.astype(float), q.astype(float))
    f32, f64 = np.ones((2, 3), np.float32), np.ones((2, 3), np.float64)
    with pytest.raises(TypeError, match="one dtype.*float32.*float64"):
        F.scaled_dot_product_attention(f32, f64, f64)


def test_a_mask_that_requires_grad_is_rejected():
    q = ma.randn(2, 3)
    with pytest.raises(ValueError, match="no gradient"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=ma.randn(2, 2, requires_grad=True))


# -- the flash kernels on their own --------------------------------------------------------------


def dense_reference(q, k, v, scale, bias, is_causal):
    """out, lse, probs in plain NumPy float64 (3-D arrays, bias broadcastable to (N, L, S))."""
    s = scale * q @ k.swapaxes(-1, -2)
    if bias is not None:
        s = s + bias
    if is_causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(s - m)
    l = e.sum(-1, keepdims=True)
    probs = e / np.where(l > 0, l, 1)
    with np.errstate(divide="ignore"):
        lse = (m + np.log(l))[..., 0]
    return probs @ v, lse, probs


@settings(max_examples=40, deadline=None)
@given(L=st.integers(1, 13), S=st.integers(1, 13), block_q=st.integers(1, 6),
       block_k=st.integers(1, 6), is_causal=st.booleans(),
       bias_shape=st.sampled_from([None, (1, 1, 1), (3, 1, 1), (1, "L", 1), (1, 1, "S"),
                                   (3, "L", "S"), ("L", "S")]))
def test_flash_kernels_match_the_dense_reference(L, S, block_q, block_k, is_causal, bias_shape):
    rng = np.random.default_rng(L * 100 + S)
    q, k, v = rng.standard_normal((3, L, 4)), rng.standard_normal((3, S, 4)), \
        rng.standard_normal((3, S, 2))
    bias = None
    if bias_shape is not None:
        shape = tuple({"L": L, "S": S}.get(n, n) for n in bias_shape)
        bias = np.where(rng.random(shape) < 0.3, -np.inf, rng.standard_normal(shape))
    out_ref, lse_ref, probs = dense_reference(q, k, v, 0.7, bias, is_causal)
    out, (m, log_l) = flash.flash_forward(q, k, v, 0.7, bias, is_causal, block_q, block_k)
    np.testing.assert_allclose(out, out_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m + log_l, lse_ref, rtol=1e-12, atol=1e-12)  # -inf where dead
    dout = rng.standard_normal(out.shape)
    dq, dk, dv = flash.flash_backward(q, k, v, out, (m, log_l), dout, 0.7, bias, is_causal,
                                      block_q, block_k)
    dprobs = dout @ v.swapaxes(-1, -2)
    dscores = probs * (dprobs - (dprobs * probs).sum(-1, keepdims=True))
    np.testing.assert_allclose(dv, probs.swapaxes(-1, -2) @ dout, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(dq, 0.7 * dscores @ k, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(dk, 0.7 * dscores.swapaxes(-1, -2) @ q, rtol=1e-11, atol=1e-12)


def test_flash_float16_keeps_dtype_and_sums_in_float32(rng):
    q, k, v = (rng.standard_normal((1, 20, 8)).astype(np.float16) for _ in range(3))
    out, (m, log_l) = flash.flash_forward(q, k, v, 8**-0.5, None, True, 8, 8)
    assert out.dtype == np.float16 and m.dtype == log_l.dtype == np.float32
    out_ref, lse_ref, _ = dense_reference(*(x.astype(np.float64) for x in (q, k, v)), 8**-0.5,
                                          None, True)
    np.testing.assert_allclose(out, out_ref, atol=2e-3)
    np.testing.assert_allclose(m + log_l, lse_ref, atol=1e-5)


# -- memory: flash is linear in the sequence length ----------------------------------------------


def _flash_peak_bytes(monkeypatch, L: int, seed: int):
    """(q, k, v, out, peak): flash forward+backward at B = H = 1, L = S, E = 64, float32,
    with the library's own tile sizes, and the tracemalloc peak of the two."""
    monkeypatch.setattr(flash, "BLOCK_Q", 64)
    monkeypatch.setattr(flash, "BLOCK_K", 128)
    rng = np.random.default_rng(seed)
    q, k, v = (ma.tensor(rng.standard_normal((1, 1, L, 64)).astype(np.float32),
                         requires_grad=True) for _ in range(3))
    dout = rng.standard_normal((1, 1, L, 64)).astype(np.float32)
    tracemalloc.start()
    try:
        out = F.scaled_dot_product_attention(q, k, v, impl="flash")
        out.backward(dout)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return q, k, v, out, peak


@pytest.mark.slow
def test_flash_never_allocates_an_L_by_S_array(monkeypatch):
    """L = S = 8192, E = 64, float32: one (L, S) array would take 256 MiB. Forward and
    backward together must peak far below that (NumPy reports its allocations to
    tracemalloc)."""
    L = 8192
    q, k, v, out, peak = _flash_peak_bytes(monkeypatch, L, seed=0)
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    # spot-check a few rows against a dense computation of just those rows
    rows = [0, 1, 4000, L - 1]
    qr, kk, vv = (x.numpy()[0, 0].astype(np.float64) for x in (q, k, v))
    qr = qr[rows]
    s = qr @ kk.T / 8  # (4, S)
    p = np.exp(s - s.max(-1, keepdims=True))
    expected = (p / p.sum(-1, keepdims=True)) @ vv
    np.testing.assert_allclose(out.numpy()[0, 0, rows], expected, rtol=1e-4, atol=1e-4)
    assert q.grad.shape == q.shape and np.isfinite(k.grad.numpy()).all()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("L, S", [(0, 5), (4, 0), (0, 0)])
def test_empty_sequences_give_empty_or_zero_results(impl, L, S):
    """As PyTorch: no queries, no output rows; no keys, zero outputs (nothing to attend to)."""
    q = ma.randn(2, L, 8, dtype="float64", requires_grad=True)
    k = ma.randn(2, S, 8, dtype="float64", requires_grad=True)
    v = ma.randn(2, S, 3, dtype="float64", requires_grad=True)
    out = F.scaled_dot_product_attention(q, k, v, impl=impl)
    assert out.shape == (2, L, 3) and not out.numpy().any()
    out.backward(np.ones(out.shape))
    assert q.grad.shape == q.shape and not q.grad.numpy().any()
    assert k.grad.shape == k.shape and v.grad.shape == v.shape


@pytest.mark.slow
def test_flash_reference_never_allocates_an_L_by_S_array(monkeypatch):
    """The NumPy reference path alone (tracemalloc sees every NumPy allocation, not
    numba's): L = S = 2048, where one (L, S) float32 array would take 16 MiB."""
    with ma.kernels.use("reference"):
        q, _, _, _, peak = _flash_peak_bytes(monkeypatch, 2048, seed=1)
    assert peak < 6 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert np.isfinite(q.grad.numpy()).all() and q.grad.numpy().any()
