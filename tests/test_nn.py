"""Modules: the Module machinery, Linear, Embedding, LayerNorm, Dropout, GELU, ReLU, the
transformer block and the language model. Gradients in float64 against central
differences with random upstream gradients; values and gradients against PyTorch."""

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minattn as ma
from minattn import module_gradcheck, nn
from minattn.nn import functional_nn as fnn


def f64(*shape, requires_grad=True):
    return ma.randn(*shape, dtype="float64", requires_grad=requires_grad)


def to_torch(torch, t, requires_grad=False):
    x = torch.tensor(t.numpy() if isinstance(t, ma.Tensor) else np.asarray(t))
    return x.requires_grad_(requires_grad)


# -- Module machinery -----------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 4)
        self.act = nn.ReLU()
        self.second = nn.Linear(4, 2, bias=False)
        self.register_buffer("running", ma.zeros(2))
        self.register_buffer("scratch", ma.ones(2), persistent=False)

    def forward(self, x):
        return self.second(self.act(self.first(x))) + self.running


def test_named_parameters_follow_pytorch_names_and_order():
    model = Tiny()
    assert [n for n, _ in model.named_parameters()] == ["first.weight", "first.bias",
                                                        "second.weight"]
    assert [n for n, _ in model.named_buffers()] == ["running", "scratch"]
    assert list(model.state_dict()) == ["running", "first.weight", "first.bias",
                                        "second.weight"]  # PyTorch's order: own buffers
    # before the children's entries; a non-persistent buffer is not saved
    assert [n for n, _ in model.named_children()] == ["first", "act", "second"]


def test_shared_parameter_is_listed_once():
    model = Tiny()
    model.third = model.first
    assert len(list(model.parameters())) == 3


def test_a_plain_tensor_cannot_replace_a_parameter():
    lin = nn.Linear(4, 3)
    with pytest.raises(TypeError, match="cannot assign Tensor to parameter 'weight'"):
        lin.weight = ma.randn(3, 4)
    assert [name for name, _ in lin.named_parameters()] == ["weight", "bias"]


def test_to_takes_dtype_names():
    lin = nn.Linear(4, 3).to("float64")
    assert lin.weight.dtype == np.float64 and ma.randn(2).to("float64").dtype == np.float64


def test_reassigning_an_attribute_updates_the_registries():
    model = Tiny()
    model.second = None
    assert [n for n, _ in model.named_parameters()] == ["first.weight", "first.bias"]
    model.running = ma.ones(2)  # assigning a tensor to a buffer's name updates the buffer
    assert model.state_dict()["running"].numpy().tolist() == [1.0, 1.0]
    del model.running
    assert "running" not in dict(model.named_buffers())


def test_train_and_eval_reach_every_submodule():
    model = Tiny()
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(TypeError, match="bool"):
        model.train("no")


def test_to_casts_in_place_and_keeps_identity():
    model = Tiny()
    weight = model.first.weight
    model.to(ma.float64)
    assert model.first.weight is weight and weight.dtype == np.float64
    assert model.running.dtype == np.float64
    model.to("cpu", "float32")
    assert weight.dtype == np.float32 and weight.device == "cpu"
    with pytest.raises(TypeError, match="floating-point"):
        model.to(np.int32)


def test_state_dict_round_trip_and_errors():
    a, b = Tiny(), Tiny()
    state = a.state_dict()
    state = {k: ma.tensor(v) for k, v in state.items()}  # entries share the arrays (PyTorch)
    b.load_state_dict(a.state_dict())
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy(), err_msg=name)
    b.load_state_dict({k: v.numpy() for k, v in a.state_dict().items()})  # arrays work too
    with pytest.raises(RuntimeError, match='Missing key.*"second.weight"'):
        b.load_state_dict({k: v for k, v in state.items() if k != "second.weight"})
    with pytest.raises(RuntimeError, match=r"size mismatch for first.bias.*\(5,\).*\(4,\)"):
        b.load_state_dict({**state, "first.bias": np.zeros(5)})
    b.load_state_dict({"first.bias": np.zeros(4)}, strict=False)
    assert b.first.bias.numpy().tolist() == [0.0] * 4


def test_zero_grad_and_requires_grad_():
    model = Tiny()
    model(ma.randn(5, 3)).backward(ma.randn(5, 2))
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())


def test_module_list_and_sequential():
    seq = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    x = ma.randn(4, 3)
    ref = seq[2](seq[1](seq[0](x)))
    np.testing.assert_array_equal(seq(x).numpy(), ref.numpy())
    assert len(seq) == 3 and len(seq[:2]) == 2
    assert "Linear(in_features=3, out_features=5" in repr(seq)


def test_module_needs_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(ma.zeros(2))

    with pytest.raises(AttributeError, match="super"):
        Broken()


# -- Linear ------------------------------------------------------------------------------------


def test_linear_gradcheck():
    layer = nn.Linear(4, 3, dtype="float64")
    assert module_gradcheck(layer, f64(2, 5, 4))


def test_linear_matches_torch(torch):
    layer = nn.Linear(6, 3, dtype="float64")
    ref = torch.nn.Linear(6, 3).double()
    with torch.no_grad():
        ref.weight.copy_(to_torch(torch, layer.weight))
        ref.bias.copy_(to_torch(torch, layer.bias))
    x, dout = f64(2, 4, 6), ma.randn(2, 4, 3, dtype="float64")
    out = layer(x)
    out.backward(dout)
    xt = to_torch(torch, x, requires_grad=True)
    ref(xt).backward(to_torch(torch, dout))
    np.testing.assert_allclose(out.numpy(), ref(xt).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.weight.grad.numpy(), ref.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.bias.grad.numpy(), ref.bias.grad.numpy(), rtol=1e-12)


def test_linear_wrong_input_names_shapes():
    with pytest.raises(ValueError, match=r"Linear\(4, 3\).*\(2, 5\)"):
        nn.Linear(4, 3)(ma.randn(2, 5))


# -- Embedding ---------------------------------------------------------------------------------


IDX = [[0, 3, 3, 1], [3, 0, 2, 3]]  # rows 0 and 3 repeat: their gradients must add up


def test_embedding_looks_up_rows():
    emb = nn.Embedding(5, 3)
    out = emb(ma.tensor(IDX))
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out.numpy(), emb.weight.numpy()[np.array(IDX)])
    assert [n for n, _ in emb.named_parameters()] == ["weight"]


def test_embedding_gradcheck_with_repeated_indices():
    emb = nn.Embedding(5, 3, dtype="float64")
    assert module_gradcheck(emb, ma.tensor(IDX))
    assert ma.gradcheck(lambda w: fnn.embedding(np.array(IDX), w), [f64(5, 3)])


def test_embedding_backward_that_assigns_instead_of_adding_is_caught(monkeypatch):
    def assigning_backward(self, dout):  # the classic bug: dweight[index] = dout
        xp = ma.backend.get_array_module(dout)
        dweight = xp.zeros((self.num_embeddings, dout.shape[-1]), dtype=self.dtype)
        dweight[self.index.reshape(-1)] = dout.reshape(-1, dout.shape[-1])
        return dweight

    monkeypatch.setattr(fnn.EmbeddingFunction, "backward", assigning_backward)
    assert not ma.gradcheck(lambda w: fnn.embedding(np.array(IDX), w), [f64(5, 3)],
                            raise_exception=False)


def test_embedding_matches_torch(torch):
    emb = nn.Embedding(5, 3, dtype="float64")
    ref = torch.nn.Embedding(5, 3).double()
    with torch.no_grad():
        ref.weight.copy_(to_torch(torch, emb.weight))
    dout = ma.randn(2, 4, 3, dtype="float64")
    out = emb(ma.tensor(IDX))
    out.backward(dout)
    out_t = ref(torch.tensor(IDX))
    out_t.backward(to_torch(torch, dout))
    np.testing.assert_array_equal(out.numpy(), out_t.detach().numpy())
    np.testing.assert_allclose(emb.weight.grad.numpy(), ref.weight.grad.numpy(), rtol=1e-12)


def test_embedding_bad_indices_are_clear_errors():
    emb = nn.Embedding(5, 3)
    with pytest.raises(TypeError, match="integers.*float"):
        emb(ma.tensor([[0.0, 1.0]]))
    with pytest.raises(IndexError, match=r"\[0, 5\).*from 0 to 5"):
        emb(ma.tensor([0, 5]))
    with pytest.raises(IndexError, match="from -1"):
        emb(ma.tensor([-1, 2]))


# -- LayerNorm -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, normalized", [((3, 5), 5), ((2, 3, 4), (3, 4)), ((6,), 6)])
def test_layer_norm_gradcheck(shape, normalized):
    nshape = (normalized,) if isinstance(normalized, int) else normalized
    x, w, b = f64(*shape), f64(*nshape), f64(*nshape)
    assert ma.gradcheck(lambda x, w, b: fnn.layer_norm(x, normalized, w, b), [x, w, b])
    assert ma.gradcheck(lambda x: fnn.layer_norm(x, normalized), [x])  # no affine


def test_layer_norm_module_gradcheck():
    ln = nn.LayerNorm(6, dtype="float64")
    ln.weight.data[...] = np.linspace(0.5, 2.0, 6)  # not all ones: the weight must matter in dx
    assert module_gradcheck(ln, f64(2, 3, 6))


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 8)])
def test_layer_norm_equals_its_composed_twin(shape):
    x, w, b = f64(*shape), f64(shape[-1]), f64(shape[-1])
    dout = ma.randn(*shape, dtype="float64")
    grads = []
    for impl in (fnn.layer_norm, fnn.layer_norm_composed):
        for t in (x, w, b):
            t.grad = None
        out = impl(x, shape[-1], w, b)
        out.backward(dout)
        grads.append([out.numpy()] + [t.grad.numpy() for t in (x, w, b)])
    for fused, composed in zip(*grads):
        np.testing.assert_allclose(fused, composed, rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5),
       n_norm=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_layer_norm_twin_agrees_on_any_shape(shape, n_norm, seed):
    n_norm = min(n_norm, len(shape))
    normalized = shape[len(shape) - n_norm:]
    rng = np.random.default_rng(seed)
    x0, w0, b0 = rng.normal(size=shape), rng.normal(size=normalized), rng.normal(size=normalized)
    dout = rng.normal(size=shape)
    results = []
    for impl in (fnn.layer_norm, fnn.layer_norm_composed):
        x, w, b = (ma.tensor(a, requires_grad=True) for a in (x0, w0, b0))
        out = impl(x, normalized, w, b)
        out.backward(dout)
        results.append([out.numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()])
    for fused, composed in zip(*results):
        np.testing.assert_allclose(fused, composed, rtol=1e-9, atol=1e-10)


def test_layer_norm_backward_without_the_projection_term_is_caught(monkeypatch):
    def wrong_backward(self, dout):  # forgets that the variance depends on x
        g = dout * self.weight
        dx = self.rstd * (g - g.mean(axis=self.axes, keepdims=True))
        return dx, None, None

    monkeypatch.setattr(fnn.LayerNormFunction, "backward", wrong_backward)
    assert not ma.gradcheck(lambda x: fnn.layer_norm(x, 5), [f64(3, 5)], raise_exception=False)


def test_layer_norm_matches_torch(torch):
    ln = nn.LayerNorm((3, 4), eps=1e-5, dtype="float64")
    ln.weight.data[...] = np.random.default_rng(0).normal(size=(3, 4))
    ln.bias.data[...] = np.random.default_rng(1).normal(size=(3, 4))
    ref = torch.nn.LayerNorm((3, 4), eps=1e-5).double()
    with torch.no_grad():
        ref.weight.copy_(to_torch(torch, ln.weight))
        ref.bias.copy_(to_torch(torch, ln.bias))
    x, dout = f64(2, 5, 3, 4) * 3 + 1, ma.randn(2, 5, 3, 4, dtype="float64")
    x = ma.tensor(x.data, requires_grad=True)
    out = ln(x)
    out.backward(dout)
    xt = to_torch(torch, x, requires_grad=True)
    out_t = ref(xt)
    out_t.backward(to_torch(torch, dout))
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ln.weight.grad.numpy(), ref.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(ln.bias.grad.numpy(), ref.bias.grad.numpy(), rtol=1e-10)


def test_layer_norm_normalizes_and_checks_shapes():
    out = nn.LayerNorm(8)(ma.randn(4, 8) * 10 + 3).numpy()
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(-1), 1, atol=1e-3)
    with pytest.raises(ValueError, match=r"\(4, 7\).*\(8,\)"):
        nn.LayerNorm(8)(ma.randn(4, 7))


# -- Dropout ---------------------------------------------------------------------------------


def test_dropout_is_identity_in_eval_and_scales_in_training():
    drop = nn.Dropout(0.25)
    x = ma.ones(200, 100)
    out = drop(x).numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.75)
    drop.eval()
    assert drop(x) is x or np.array_equal(drop(x).numpy(), x.numpy())
    assert not nn.Dropout(1.0)(x).numpy().any()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nn.Dropout(1.5)


def test_dropout_is_reproducible_and_its_gradient_uses_the_same_mask():
    def fn(x):  # reseeding makes the mask the same on every call, so gradcheck can run
        ma.manual_seed(7)
        return fnn.dropout(x, 0.4)

    assert ma.gradcheck(fn, [f64(5, 6)])
    x = ma.ones(5, 6, requires_grad=True)
    out = fn(x)
    out.backward(ma.ones(5, 6))
    np.testing.assert_array_equal(x.grad.numpy(), out.numpy())  # same mask, same factor


# -- GELU and ReLU -------------------------------------------------------------------------------


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_gradcheck(approximate):
    x = ma.tensor(np.linspace(-5, 5, 24).reshape(4, 6), requires_grad=True)
    assert ma.gradcheck(lambda x: fnn.gelu(x, approximate), [x])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(torch, approximate):
    x, dout = f64(3, 7) * 2, ma.randn(3, 7, dtype="float64")
    x = ma.tensor(x.data, requires_grad=True)
    out = nn.GELU(approximate)(x)
    out.backward(dout)
    xt = to_torch(torch, x, requires_grad=True)
    out_t = torch.nn.GELU(approximate=approximate)(xt)
    out_t.backward(to_torch(torch, dout))
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_gelu_values_without_torch():
    out = nn.GELU()(ma.tensor([-1.0, 0.0, 1.0, 2.0], dtype="float64")).numpy()
    expected = [v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in (-1.0, 0.0, 1.0, 2.0)]
    np.testing.assert_allclose(out, expected, rtol=1e-14)
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")


def test_gelu_erf_fallback_without_scipy(monkeypatch):
    import sys

    x = ma.tensor([-1.5, 0.3, 2.0], dtype="float64")
    with_scipy = nn.GELU()(x).numpy()
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # import now fails
    np.testing.assert_allclose(nn.GELU()(x).numpy(), with_scipy, rtol=1e-15)


def test_relu_module():
    out = nn.ReLU()(ma.tensor([-1.0, 0.5])).numpy()
    assert out.tolist() == [0.0, 0.5]


def test_nn_gradcheck_cases_pass():
    from minattn.tools.gradcheck import LAYER_CASES, make_inputs

    for name, fn, shapes in LAYER_CASES:
        assert ma.gradcheck(fn, make_inputs(shapes)), name


# -- clip_grad_norm_ -------------------------------------------------------------------------------


def test_clip_grad_norm_matches_torch(torch):
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=s) for s in [(3, 4), (5,), (2, 2)]]
    params = [ma.tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    params_t = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, pt, g in zip(params, params_t, grads):
        p.grad, pt.grad = ma.tensor(g), torch.tensor(g)
    total = nn.utils.clip_grad_norm_(params, max_norm=1.5)
    total_t = torch.nn.utils.clip_grad_norm_(params_t, max_norm=1.5)
    assert total == pytest.approx(total_t.item(), rel=1e-12)
    for p, pt in zip(params, params_t):
        np.testing.assert_allclose(p.grad.numpy(), pt.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_leaves_small_gradients_alone():
    p = ma.tensor([3.0, 4.0], dtype="float64", requires_grad=True)
    p.grad = ma.tensor([0.3, 0.4], dtype="float64")
    assert nn.utils.clip_grad_norm_([p], 1.0) == pytest.approx(0.5)
    assert p.grad.numpy().tolist() == [0.3, 0.4]
    p.grad = ma.tensor([3.0, 4.0], dtype="float64")
    nn.utils.clip_grad_norm_([p], 1.0)
    np.testing.assert_allclose(np.linalg.norm(p.grad.numpy()), 1.0, rtol=1e-6)
    assert nn.utils.clip_grad_norm_([], 1.0) == 0.0


# -- TransformerBlock ------------------------------------------------------------------------------


def torch_block(torch, block, x, is_causal):
    """The same pre-norm block in plain torch.nn.functional, reading our weights."""
    tF = torch.nn.functional
    p = {name: to_torch(torch, t, requires_grad=True) for name, t in block.named_parameters()}
    B, L, E = x.shape
    H = block.num_heads
    D = E // H

    def heads(t):
        return t.reshape(B, L, H, D).transpose(1, 2)  # (B, H, L, D)

    h = tF.layer_norm(x, (E,), p["ln1.weight"], p["ln1.bias"], 1e-5)
    q, k, v = (heads(tF.linear(h, p[f"attn.{n}_proj.weight"], p[f"attn.{n}_proj.bias"]))
               for n in "qkv")
    att = tF.scaled_dot_product_attention(q, k, v, is_causal=is_causal,
                                          scale=block.attn.scale)  # (B, H, L, D)
    att = tF.linear(att.transpose(1, 2).reshape(B, L, E), p["attn.out_proj.weight"],
                    p["attn.out_proj.bias"])
    x = x + att
    h = tF.layer_norm(x, (E,), p["ln2.weight"], p["ln2.bias"], 1e-5)
    h = tF.linear(tF.gelu(tF.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"])),
                  p["mlp.fc2.weight"], p["mlp.fc2.bias"])
    return x + h, p


def test_transformer_block_parameter_names():
    block = nn.TransformerBlock(8, num_heads=2)
    names = [n for n, _ in block.named_parameters()]
    assert names[:2] == ["ln1.weight", "ln1.bias"]
    assert "attn.q_proj.weight" in names and "mlp.fc2.bias" in names
    assert names[-2:] == ["mlp.fc2.weight", "mlp.fc2.bias"]


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("impl", ["composed", "fused", "flash"])
def test_transformer_block_gradcheck(is_causal, impl):
    block = nn.TransformerBlock(4, num_heads=2, mlp_ratio=2, is_causal=is_causal, impl=impl,
                                dtype="float64")
    for p in block.parameters():  # layer norms away from 1 and 0, so their weights matter
        p.data[...] = ma.randn(*p.shape, dtype="float64").data * 0.7
    assert module_gradcheck(block, f64(2, 3, 4))


@pytest.mark.parametrize("is_causal, scale", [(False, None), (True, None), (True, 1.0)])
def test_transformer_block_matches_torch(torch, is_causal, scale):
    block = nn.TransformerBlock(8, num_heads=2, scale=scale, dtype="float64")
    x, dout = f64(3, 5, 8), ma.randn(3, 5, 8, dtype="float64")
    out = block(x, is_causal=is_causal)
    out.backward(dout)
    xt = to_torch(torch, x, requires_grad=True)
    out_t, params_t = torch_block(torch, block, xt, is_causal)
    out_t.backward(to_torch(torch, dout))
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    for name, p in block.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), params_t[name].grad.numpy(), rtol=1e-9,
                                   atol=1e-11, err_msg=name)


def test_transformer_block_weights_and_dropout():
    block = nn.TransformerBlock(8, num_heads=2, dropout=0.5, is_causal=True)
    x = ma.randn(2, 4, 8)
    out, weights = block(x, need_weights=True)
    assert out.shape == (2, 4, 8) and weights.shape == (2, 2, 4, 4)
    assert not np.triu(weights.numpy()[0, 0], k=1).any()  # causal: no look-ahead
    block.eval()
    np.testing.assert_array_equal(block(x).numpy(), block(x).numpy())  # no dropout in eval
    block.train()
    assert not np.array_equal(block(x).numpy(), block(x).numpy())
    with pytest.raises(ValueError, match=r"\(B, L, 8\).*\(4, 8\)"):
        block(ma.randn(4, 8))


# -- Transformer -----------------------------------------------------------------------------------


def tiny_lm(**kwargs):
    options = dict(vocab_size=5, max_len=6, embed_dim=4, num_heads=2, num_layers=1, mlp_ratio=2)
    return nn.Transformer(**{**options, **kwargs})


def test_transformer_shapes_and_names():
    model = nn.Transformer(vocab_size=12, max_len=10, embed_dim=16, num_heads=4, num_layers=2)
    logits = model(ma.tensor([[1, 2, 3], [4, 5, 6]]))
    assert logits.shape == (2, 3, 12)
    names = [n for n, _ in model.named_parameters()]
    assert names[:2] == ["tok_emb.weight", "pos_emb.weight"]
    assert "blocks.1.attn.k_proj.weight" in names and names[-1] == "head.bias"
    logits, maps = model(ma.tensor([[1, 2, 3]]), need_weights=True)
    assert len(maps) == 2 and maps[0].shape == (1, 4, 3, 3)
    with pytest.raises(ValueError, match="longer than max_len=10"):
        model(ma.tensor(np.zeros((1, 11), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        model(ma.tensor([1, 2]))


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_transformer_is_causal(positions):
    model = tiny_lm(positions=positions, num_layers=2)
    a = np.array([[1, 2, 3, 4, 0, 1]])
    b = a.copy()
    b[0, 3] = 2  # change token 3: logits before it must not move, the others must
    la, lb = model(ma.tensor(a)).numpy(), model(ma.tensor(b)).numpy()
    np.testing.assert_array_equal(la[:, :3], lb[:, :3])
    assert not np.allclose(la[:, 3:], lb[:, 3:])


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_transformer_gradcheck(positions):
    model = tiny_lm(positions=positions, dtype="float64")
    idx = ma.tensor([[1, 4, 4, 0], [2, 2, 3, 1]])
    assert module_gradcheck(model, idx)


def test_sinusoidal_positions_follow_the_formula():
    model = tiny_lm(positions="sinusoidal", embed_dim=6, max_len=5)
    pe = model.pos_enc.numpy()
    pos, i = 3, 2  # pe[pos, 2i] = sin(pos / 10000^(2i/E)), pe[pos, 2i+1] = cos(...)
    angle = pos / 10000 ** (2 * i / 6)
    np.testing.assert_allclose(pe[pos, 2 * i], math.sin(angle), rtol=1e-6)
    np.testing.assert_allclose(pe[pos, 2 * i + 1], math.cos(angle), rtol=1e-6)
    assert "pos_enc" not in model.state_dict()  # fixed: rebuilt, never saved
    assert dict(model.named_buffers())["pos_enc"] is model.pos_enc
    model.to(ma.float64)
    assert model.pos_enc.dtype == np.float64
    assert nn.transformer.sinusoidal_positions(4, 5).shape == (4, 5)  # odd E works too


def test_transformer_state_dict_round_trip():
    a, b = tiny_lm(), tiny_lm()
    idx = ma.tensor([[1, 2, 3]])
    assert not np.array_equal(a(idx).numpy(), b(idx).numpy())
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(idx).numpy(), b(idx).numpy())


def test_transformer_bad_arguments():
    with pytest.raises(ValueError, match="positions"):
        tiny_lm(positions="rotary")
    with pytest.raises(ValueError, match="divisible"):
        tiny_lm(embed_dim=5)


def test_transformer_on_device(device):
    model = tiny_lm(device=device)
    assert {p.device for p in model.parameters()} == {device}
    idx = ma.tensor([[1, 2, 3]], device=device)
    logits = model(idx)
    logits.backward(ma.randn(*logits.shape, device=device))
    assert all(p.grad.device == device for p in model.parameters())


def test_layers_on_device_match_the_cpu(device):
    """Embedding (scatter-add), LayerNorm, GELU (erf on the device): values and gradients."""
    rng = np.random.default_rng(3)
    x0, w0, b0 = rng.normal(size=(3, 4, 6)), rng.normal(size=6), rng.normal(size=6)
    table0, dout0 = rng.normal(size=(5, 6)), rng.normal(size=(3, 4, 6))
    idx0 = np.array([[0, 3, 3, 1], [3, 0, 2, 3], [4, 4, 4, 4]])
    results = {}
    for dev in ("cpu", device):
        x, w, b, table = (ma.tensor(a, requires_grad=True, device=dev)
                          for a in (x0, w0, b0, table0))
        outs = [fnn.layer_norm(x, 6, w, b), fnn.gelu(x), fnn.gelu(x, "tanh"),
                fnn.embedding(ma.tensor(idx0, device=dev), table)]
        for out in outs:
            out.backward(ma.tensor(dout0, device=dev))
        results[dev] = [o.numpy() for o in outs] + [t.grad.numpy() for t in (x, w, b, table)]
    for a, b in zip(results["cpu"], results[device]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_dropout_on_device(device):
    x = ma.ones(100, 50, device=device, requires_grad=True)
    out = fnn.dropout(x, 0.3)
    out.backward(ma.ones(100, 50, device=device))
    kept = out.numpy() != 0
    assert abs(kept.mean() - 0.7) < 0.03
    np.testing.assert_array_equal(x.grad.numpy(), out.numpy())
