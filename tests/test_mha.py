"""MultiHeadAttention: the same numbers as torch.nn.MultiheadAttention (batch_first) with
the same weights, per-head weights on request only, masks, gradients."""

import numpy as np
import pytest

import minattn as ma
import minattn.attention as A
import minattn.functional as F
from minattn.attention import flash

IMPLS = ("composed", "fused", "flash")


@pytest.fixture(autouse=True)
def small_flash_blocks(monkeypatch):
    monkeypatch.setattr(flash, "BLOCK_Q", 4)
    monkeypatch.setattr(flash, "BLOCK_K", 4)


def make_mha(E=8, H=2, bias=True, impl=None, scale=None):
    return ma.nn.MultiHeadAttention(E, H, bias=bias, scale=scale, impl=impl, dtype="float64")


def torch_twin(mha, torch):
    """torch.nn.MultiheadAttention holding the same weights (q, k, v stacked in in_proj)."""
    has_bias = mha.q_proj.bias is not None
    twin = torch.nn.MultiheadAttention(mha.embed_dim, mha.num_heads, bias=has_bias,
                                       batch_first=True, dtype=torch.float64)
    projections = (mha.q_proj, mha.k_proj, mha.v_proj)
    with torch.no_grad():
        twin.in_proj_weight.copy_(torch.tensor(np.concatenate([p.weight.numpy()
                                                               for p in projections])))
        twin.out_proj.weight.copy_(torch.tensor(mha.out_proj.weight.numpy()))
        if has_bias:
            twin.in_proj_bias.copy_(torch.tensor(np.concatenate([p.bias.numpy()
                                                                 for p in projections])))
            twin.out_proj.bias.copy_(torch.tensor(mha.out_proj.bias.numpy()))
    return twin


CASES = {
    "self-attention": dict(L=5, S=5, mask=None, causal=False, bias=True),
    "cross-attention, L != S": dict(L=3, S=7, mask=None, causal=False, bias=True),
    "no bias": dict(L=6, S=6, mask=None, causal=False, bias=False),
    "causal": dict(L=6, S=6, mask=None, causal=True, bias=True),
    "bool mask (L, S)": dict(L=5, S=6, mask="bool2", causal=False, bias=True),
    "bool mask (B, L, S)": dict(L=5, S=6, mask="bool3", causal=False, bias=True),
    "float mask (L, S)": dict(L=4, S=9, mask="float2", causal=False, bias=True),
}


def case_inputs(case, rng, B=3, E=8):
    x_q = rng.standard_normal((B, case["L"], E))
    x_kv = x_q if case["L"] == case["S"] else rng.standard_normal((B, case["S"], E))
    mask = None
    if case["mask"] is not None:
        shape = (case["L"], case["S"]) if case["mask"].endswith("2") else (B, case["L"],
                                                                             case["S"])
        if case["mask"].startswith("bool"):
            mask = rng.random(shape) < 0.7
            mask[..., 0] = True  # every query sees key 0: PyTorch gives NaN otherwise
        else:
            mask = rng.standard_normal(shape)
    return x_q, x_kv, mask


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_multihead_attention(name, impl, rng, torch):
    case, H = CASES[name], 2
    mha = make_mha(H=H, bias=case["bias"], impl=impl)
    twin = torch_twin(mha, torch)
    x_q, x_kv, mask = case_inputs(case, rng)
    dout = rng.standard_normal(x_q.shape)

    q_in = ma.tensor(x_q, dtype="float64", requires_grad=True)
    kv_in = ma.tensor(x_kv, dtype="float64", requires_grad=True)
    out, weights = mha(q_in, kv_in, kv_in, attn_mask=mask, is_causal=case["causal"],
                       need_weights=True)
    out.backward(ma.tensor(dout, dtype="float64"))

    # PyTorch's MultiheadAttention: True in a boolean mask means "masked out", a 3-D mask
    # is (B * H, L, S), and is_causal is only a hint next to an explicit causal mask.
    t_mask = None
    if case["causal"]:
        t_mask = ~torch.tril(torch.ones(case["L"], case["S"], dtype=torch.bool))
    elif mask is not None:
        t_mask = np.repeat(mask, H, axis=0) if mask.ndim == 3 else mask
        t_mask = torch.tensor(~t_mask if mask.dtype == bool else t_mask)
    tq = torch.tensor(x_q, requires_grad=True)
    tkv = torch.tensor(x_kv, requires_grad=True)
    t_out, t_weights = twin(tq, tkv, tkv, attn_mask=t_mask, need_weights=True,
                            average_attn_weights=False)
    t_out.backward(torch.tensor(dout))

    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert weights.shape == (3, H, case["L"], case["S"])
    np.testing.assert_allclose(weights.numpy(), t_weights.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(q_in.grad.numpy(), tq.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(kv_in.grad.numpy(), tkv.grad.numpy(), rtol=1e-9, atol=1e-12)
    ours = np.concatenate([p.weight.grad.numpy() for p in (mha.q_proj, mha.k_proj,
                                                            mha.v_proj)])
    np.testing.assert_allclose(ours, twin.in_proj_weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mha.out_proj.weight.grad.numpy(),
                               twin.out_proj.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    if case["bias"]:
        ours = np.concatenate([p.bias.grad.numpy() for p in (mha.q_proj, mha.k_proj,
                                                              mha.v_proj)])
        np.testing.assert_allclose(ours, twin.in_proj_bias.grad.numpy(), rtol=1e-9,
                                   atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck_through_the_module(impl, rng):
    mha = make_mha(E=4, H=2, impl=impl)
    x = ma.tensor(rng.standard_normal((2, 3, 4)), dtype="float64", requires_grad=True)
    memory = ma.tensor(rng.standard_normal((2, 5, 4)), dtype="float64", requires_grad=True)
    assert ma.gradcheck(lambda x, m: mha(x, m, m, is_causal=False)[0], (x, memory))
    assert ma.gradcheck(lambda x: mha(x, is_causal=True)[0], (x,))


def test_implementations_agree_and_devices(device, rng):
    x = rng.standard_normal((2, 7, 8))
    mask = rng.random((2, 7, 7)) < 0.6
    mask[0, 3] = False  # a query that sees nothing: zeros, not NaN
    results = []
    for impl in IMPLS:
        mha = make_mha(impl=impl).to(device)
        ma.manual_seed(0)
        mha.load_state_dict(make_mha().state_dict())  # the same weights each time
        inp = ma.tensor(x, dtype="float64", requires_grad=True, device=device)
        out, w = mha(inp, attn_mask=ma.tensor(mask, device=device), need_weights=True)
        out.backward(ma.tensor(np.ones_like(x) * 0.5 + x, device=device))
        results.append((out.numpy(), w.numpy(), inp.grad.numpy()))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    out, w, grad = results[0]
    assert np.isfinite(out).all() and np.isfinite(grad).all()
    assert (w[0, :, 3] == 0).all()


def test_weights_only_when_asked(monkeypatch, rng):
    """need_weights=False gives None, and the fused and flash paths then never compute the
    (B, H, L, S) probabilities; with need_weights=True they are computed on the side."""
    x = ma.tensor(rng.standard_normal((2, 6, 8)), dtype="float64")
    reference = make_mha(impl="composed")
    _, expected = reference(x, need_weights=True)
    for impl in ("fused", "flash"):
        mha = make_mha(impl=impl)
        mha.load_state_dict(reference.state_dict())
        _, weights = mha(x, need_weights=True)
        np.testing.assert_allclose(weights.numpy(), expected.numpy(), rtol=1e-12)
        np.testing.assert_allclose(weights.numpy().sum(-1), 1.0, rtol=1e-12)

    def refuse(*args, **kwargs):
        raise AssertionError("attention weights were materialized without need_weights")

    monkeypatch.setattr(A, "attention_probs", refuse)
    for impl in ("fused", "flash"):
        mha = make_mha(impl=impl)
        out, weights = mha(x)
        assert weights is None and out.shape == (2, 6, 8)


def test_unbatched_input_and_mask_shapes(rng):
    mha = make_mha()
    x = rng.standard_normal((5, 8))
    out, w = mha(ma.tensor(x, dtype="float64"), need_weights=True)
    batched, wb = mha(ma.tensor(x[None], dtype="float64"), need_weights=True)
    assert out.shape == (5, 8) and w.shape == (2, 5, 5)
    np.testing.assert_allclose(out.numpy(), batched.numpy()[0], rtol=1e-12)
    # a (B, L, S) mask is the same for every head: it equals the (B, 1, L, S) one
    xb = ma.tensor(rng.standard_normal((3, 5, 8)), dtype="float64")
    mask = rng.random((3, 5, 5)) < 0.7
    a, _ = mha(xb, attn_mask=mask)
    b, _ = mha(xb, attn_mask=mask[:, None])
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


@pytest.mark.parametrize("scale", [None, 1.0, 0.2])
def test_scale_reaches_the_attention(scale, rng):
    mha = make_mha(E=8, H=4, scale=scale)
    x = ma.tensor(rng.standard_normal((2, 3, 8)), dtype="float64")
    out, _ = mha(x)

    def heads(t):  # (B, L, E) -> (B, H, L, D)
        return t.reshape(2, 3, 4, 2).swapaxes(1, 2)

    attended = F.scaled_dot_product_attention(heads(mha.q_proj(x)), heads(mha.k_proj(x)),
                                              heads(mha.v_proj(x)), scale=scale)
    expected = mha.out_proj(attended.swapaxes(1, 2).reshape(2, 3, 8))
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-12)


def test_parameters_and_errors():
    mha = ma.nn.MultiHeadAttention(8, 2)
    names = [n for n, _ in mha.named_parameters()]
    assert names == [f"{m}.{p}" for m in ("q_proj", "k_proj", "v_proj", "out_proj")
                     for p in ("weight", "bias")]
    assert len(list(ma.nn.MultiHeadAttention(8, 2, bias=False).parameters())) == 4
    assert mha.head_dim == 4 and mha.q_proj.weight.dtype == np.float32
    with pytest.raises(ValueError, match="divisible"):
        ma.nn.MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r"last axis must be 8.*\(2, 3, 6\)"):
        mha(ma.randn(2, 3, 6))
    with pytest.raises(ValueError, match=r"batch-first"):
        mha(ma.randn(1, 2, 3, 8))
    with pytest.raises(ValueError, match=r"key and value"):
        mha(ma.randn(2, 3, 8), ma.randn(2, 4, 8), ma.randn(2, 5, 8))


@pytest.mark.parametrize("impl", IMPLS)
def test_record_keeps_q_k_v_and_the_heads_gradient(rng, impl):
    """record=True: after backward, recorded heads.grad is dO, here worked out by hand from
    out = merge(heads) W^T + b: d merge = g W, then split back into heads."""
    mha = make_mha(E=8, H=2, impl=impl)
    x = ma.tensor(rng.standard_normal((2, 5, 8)), dtype="float64", requires_grad=True)
    g = rng.standard_normal((2, 5, 8))
    mha.record = True
    out, _ = mha(x, is_causal=True)
    (out * ma.tensor(g)).sum().backward()
    rec = mha.recorded
    assert rec["is_causal"] and rec["scale"] == pytest.approx(0.5)  # 1/sqrt(D), D = 4
    assert rec["q"].shape == rec["k"].shape == rec["v"].shape == (2, 2, 5, 4)
    dmerged = g @ mha.out_proj.weight.numpy()  # (B, L, E)
    want = dmerged.reshape(2, 5, 2, 4).swapaxes(1, 2)  # (B, H, L, D)
    np.testing.assert_allclose(rec["heads"].grad.numpy(), want, rtol=1e-12, atol=1e-12)
    mha.record, mha.recorded = False, None
    mha(x)
    assert mha.recorded is None  # off: nothing kept
