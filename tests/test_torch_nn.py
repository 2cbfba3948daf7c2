"""PyTorch's torch.nn, torch.nn.functional and torch.nn.init surface: each function and module
against PyTorch (values and gradients, float64), the new backwards by gradcheck with a
mutant each that gradcheck catches, and the Module API that nanoGPT's model.py relies on."""

import math

import minattn.nn.functional as F
import numpy as np
import pytest

import minattn as ma
from minattn import nn
from minattn.nn import functional_nn as fnn
from minattn.tools.gradcheck import NN_CASES, make_inputs


def t64(rng, *shape, requires_grad=True):
    return ma.tensor(rng.standard_normal(shape), dtype="float64", requires_grad=requires_grad)


def both(torch, x):
    """The same float64 leaf in torch (a fresh copy that requires grad)."""
    return torch.tensor(x.numpy(), requires_grad=x.requires_grad)


def close(a, b, rtol=1e-10, atol=1e-12):
    a = a.numpy() if isinstance(a, ma.Tensor) else np.asarray(a)
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def check_against_torch(torch, ours, theirs, inputs, grad_of=None):
    """Forward values and the gradients of every input, for one random upstream gradient."""
    tin = [both(torch, x) for x in inputs]
    out, tout = ours(*inputs), theirs(*tin)
    close(out, tout)
    dout = np.random.default_rng(7).standard_normal(tout.shape)
    out.backward(ma.tensor(dout, dtype="float64"))
    tout.backward(torch.tensor(dout))
    for x, tx in zip(inputs, tin):
        if x.requires_grad:
            close(x.grad, tx.grad)


# -- nn.functional against PyTorch -----------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", [
    ("relu", {}), ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {}),
    ("sigmoid", {}), ("tanh", {}), ("logsigmoid", {}), ("softmax", {"dim": 0}),
    ("log_softmax", {"dim": 1}), ("softmax", {"dim": -1, "dtype": "float64"}),
])
def test_activations_match_torch(torch, rng, name, kwargs):
    x = ma.tensor(rng.standard_normal((3, 4)) * 4, dtype="float64", requires_grad=True)
    tkw = {k: (torch.float64 if k == "dtype" else v) for k, v in kwargs.items()}
    check_against_torch(torch, lambda a: getattr(F, name)(a, **kwargs),
                        lambda a: getattr(torch.nn.functional, name)(a, **tkw), [x])


def test_sigmoid_and_logsigmoid_are_finite_far_out(torch):
    x = ma.tensor([-800.0, -30.0, 0.0, 30.0, 800.0], dtype="float64", requires_grad=True)
    tx = torch.tensor(x.numpy())
    close(F.sigmoid(x), torch.sigmoid(tx), atol=0)
    close(F.logsigmoid(x), torch.nn.functional.logsigmoid(tx), atol=0)
    F.logsigmoid(x).backward(ma.ones(5, dtype="float64"))
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize("pad", [(1, 2), (0, 1, 2, 0), (-1, 2, 1, -1), (1, 1, 0, 0, 1, 0)])
def test_pad_matches_torch(torch, rng, pad):
    x = t64(rng, 2, 3, 4)
    check_against_torch(torch, lambda a: F.pad(a, pad, value=0.5),
                        lambda a: torch.nn.functional.pad(a, pad, value=0.5), [x])


def test_pad_errors():
    with pytest.raises(NotImplementedError, match="reflect"):
        F.pad(ma.ones(2, 3), (1, 1), mode="reflect")
    with pytest.raises(ValueError, match="even-length"):
        F.pad(ma.ones(2, 3), (1,))
    with pytest.raises(ValueError, match="too large"):
        F.pad(ma.ones(3), (1, 1, 1, 1))


def test_linear_one_hot_and_dropout(torch, rng):
    x, w, b = t64(rng, 2, 3, 4), t64(rng, 5, 4), t64(rng, 5)
    check_against_torch(torch, F.linear, torch.nn.functional.linear, [x, w, b])
    close(F.linear(x, w), torch.nn.functional.linear(both(torch, x), both(torch, w)))
    idx = [[0, 3], [2, 2]]
    for n in (-1, 6):
        close(F.one_hot(ma.tensor(idx), n), torch.nn.functional.one_hot(torch.tensor(idx), n),
              atol=0)
    assert F.one_hot(ma.tensor(idx)).dtype == np.int64
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        F.one_hot(ma.tensor([0, 5]), 3)
    y = ma.ones(4, 5)
    assert F.dropout(y, 0.5, training=False) is y
    z = ma.ones(200)
    same = F.dropout(z, 0.5, inplace=True)
    assert same is z and set(np.unique(z.numpy())) <= {0.0, 2.0}


def test_layer_norm_takes_a_size_and_no_bias(torch, rng):
    x, w = t64(rng, 2, 3, 4), t64(rng, 4)
    check_against_torch(torch, lambda a, g: F.layer_norm(a, g.shape, g, None, 1e-5),
                        lambda a, g: torch.nn.functional.layer_norm(a, g.shape, g, None, 1e-5),
                        [x, w])


def test_embedding_padding_idx(torch, rng):
    w = t64(rng, 5, 3)
    idx = [[0, 2, 2], [4, 0, 1]]
    check_against_torch(torch, lambda t: F.embedding(ma.tensor(idx), t, padding_idx=2),
                        lambda t: torch.nn.functional.embedding(torch.tensor(idx), t,
                                                                padding_idx=2), [w])
    emb = nn.Embedding(5, 3, padding_idx=-1)
    assert emb.padding_idx == 4 and not emb.weight.numpy()[4].any()
    assert repr(emb) == "Embedding(5, 3, padding_idx=4)"


def test_sdpa_enable_gqa_matches_torch(torch, rng):
    q, k, v = t64(rng, 2, 4, 3, 5), t64(rng, 2, 2, 6, 5), t64(rng, 2, 2, 6, 3)
    check_against_torch(
        torch, lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True,
                                                              enable_gqa=True),
        lambda a, b, c: torch.nn.functional.scaled_dot_product_attention(
            a, b, c, is_causal=True, enable_gqa=True), [q, k, v])
    with pytest.raises(RuntimeError, match="multiple"):
        F.scaled_dot_product_attention(t64(rng, 3, 2, 4), k[0], v[0], enable_gqa=True)


# -- losses against PyTorch -----------------------------------------------------------------


CE_CASES = [  # (input shape, target shape, kwargs)
    ((5, 4), (5,), {}),
    ((4,), (), {}),
    ((3, 4, 2, 2), (3, 2, 2), {}),
    ((5, 4), (5,), {"reduction": "sum"}),
    ((5, 4), (5,), {"reduction": "none"}),
    ((6, 4), (6,), {"ignore_index": -1}),
    ((6, 4), (6,), {"ignore_index": 2, "weight": True}),
    ((6, 4), (6,), {"weight": True, "label_smoothing": 0.2}),
    ((6, 4), (6,), {"ignore_index": -1, "label_smoothing": 0.1}),
    ((3, 4, 2), (3, 2), {"ignore_index": -1, "weight": True, "label_smoothing": 0.3}),
    ((6, 4), (6,), {"ignore_index": -1, "weight": True, "label_smoothing": 0.1,
                    "reduction": "sum"}),
    ((6, 4), (6,), {"ignore_index": -1, "label_smoothing": 0.1, "reduction": "none"}),
]


@pytest.mark.parametrize("in_shape, t_shape, kwargs", CE_CASES)
def test_cross_entropy_and_nll_match_torch(torch, rng, in_shape, t_shape, kwargs):
    x = ma.tensor(rng.standard_normal(in_shape) * 2, dtype="float64", requires_grad=True)
    C = in_shape[0] if len(in_shape) == 1 else in_shape[1]
    target = rng.integers(0, C, size=t_shape)
    if "ignore_index" in kwargs and target.ndim:
        target.reshape(-1)[::3] = kwargs["ignore_index"]  # some targets count for nothing
    kw = dict(kwargs)
    tkw = dict(kwargs)
    if kw.pop("weight", None):
        weight = rng.uniform(0.5, 2.0, C)
        kw["weight"], tkw["weight"] = weight, torch.tensor(weight)
    check_against_torch(torch, lambda a: F.cross_entropy(a, ma.tensor(target), **kw),
                        lambda a: torch.nn.functional.cross_entropy(
                            a, torch.tensor(target), **tkw), [x])
    if not kw.get("label_smoothing"):  # nll_loss on log-probabilities gives the same
        logp = F.log_softmax(x.detach(), dim=0 if x.ndim == 1 else 1)
        tlogp = torch.nn.functional.log_softmax(both(torch, x), dim=0 if x.ndim == 1 else 1)
        close(F.nll_loss(logp, target, **kw),
              torch.nn.functional.nll_loss(tlogp, torch.tensor(target), **tkw))


@pytest.mark.parametrize("kwargs", [{}, {"label_smoothing": 0.2, "weight": True},
                                    {"reduction": "sum"}])
def test_cross_entropy_probability_targets_match_torch(torch, rng, kwargs):
    x, t = t64(rng, 3, 4, 2), t64(rng, 3, 4, 2)
    p = F.softmax(t, dim=1).detach()
    p.requires_grad = True
    kw, tkw = dict(kwargs), dict(kwargs)
    if kw.pop("weight", None):
        w = rng.uniform(0.5, 2.0, 4)
        kw["weight"], tkw["weight"] = w, torch.tensor(w)
    check_against_torch(torch, lambda a, b: F.cross_entropy(a, b, **kw),
                        lambda a, b: torch.nn.functional.cross_entropy(a, b, **tkw), [x, p])


def test_cross_entropy_nanogpt_call(torch, rng):
    """nanoGPT: F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)."""
    logits = t64(rng, 2, 3, 5)
    targets = np.array([[1, 4, -1], [0, -1, 2]])
    check_against_torch(torch, lambda a: F.cross_entropy(a.reshape(-1, 5),
                                                         ma.tensor(targets).reshape(-1),
                                                         ignore_index=-1),
                        lambda a: torch.nn.functional.cross_entropy(
                            a.view(-1, 5), torch.tensor(targets).view(-1), ignore_index=-1),
                        [logits])


def test_cross_entropy_errors():
    with pytest.raises(IndexError, match="Target 7 is out of bounds"):
        F.cross_entropy(ma.randn(2, 4), [1, 7])
    with pytest.raises(RuntimeError, match="weight tensor should be defined"):
        F.cross_entropy(ma.randn(2, 4), [1, 2], weight=np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.cross_entropy(ma.randn(2, 4), [1, 2], reduction="avg")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_bce_with_logits_match_torch(torch, rng, reduction):
    x, y = t64(rng, 3, 4), t64(rng, 3, 4)
    check_against_torch(torch, lambda a, b: F.mse_loss(a, b, reduction=reduction),
                        lambda a, b: torch.nn.functional.mse_loss(a, b, reduction=reduction),
                        [x, y])
    w = ma.tensor(rng.uniform(0.1, 1, (3, 4)), dtype="float64")
    x.grad = y.grad = None
    check_against_torch(torch, lambda a, b: F.mse_loss(a, b, reduction=reduction, weight=w),
                        lambda a, b: torch.nn.functional.mse_loss(
                            a, b, reduction=reduction, weight=both(torch, w)), [x, y])
    logits = ma.tensor(rng.standard_normal((3, 4)) * 20, dtype="float64", requires_grad=True)
    target = ma.tensor(rng.uniform(0, 1, (3, 4)), dtype="float64", requires_grad=True)
    pw = ma.tensor(rng.uniform(0.5, 3, (4,)), dtype="float64")
    for kw in ({}, {"weight": w, "pos_weight": pw}):
        tkw = {k: both(torch, v) for k, v in kw.items()}
        logits.grad = target.grad = None
        check_against_torch(torch, lambda a, b, kw=kw: F.binary_cross_entropy_with_logits(
            a, b, reduction=reduction, **kw), lambda a, b, tkw=tkw: torch.nn.functional.
            binary_cross_entropy_with_logits(a, b, reduction=reduction, **tkw), [logits, target])


# -- the new backwards: gradcheck (the NN_CASES table) and mutants -----------------------------


@pytest.mark.parametrize("name, fn, shapes", NN_CASES, ids=[c[0] for c in NN_CASES])
def test_nn_cases_gradcheck(name, fn, shapes):
    assert ma.gradcheck(fn, make_inputs(shapes))


MUTANTS = [  # (Function, case in NN_CASES, wrong backward)
    (fnn.SigmoidFunction, "sigmoid", lambda self, dout: dout * self.out),
    (fnn.SiLUFunction, "silu", lambda self, dout: dout * self.s),
    (fnn.LogSigmoidFunction, "logsigmoid", lambda self, dout: dout * fnn._sigmoid(self.x)),
    (fnn.PadFunction, "pad (grow)",  # the top-left corner instead of x's window
     lambda self, dout: dout[tuple(slice(0, n) for n in self.in_shape)]),
]


@pytest.mark.parametrize("cls, case, wrong", MUTANTS, ids=[m[1] for m in MUTANTS])
def test_wrong_backward_is_caught(monkeypatch, cls, case, wrong):
    name, fn, shapes = next(c for c in NN_CASES if c[0] == case)
    assert ma.gradcheck(fn, make_inputs(shapes))
    monkeypatch.setattr(cls, "backward", wrong)
    assert not ma.gradcheck(fn, make_inputs(shapes), raise_exception=False)


def test_embedding_padding_row_gets_no_gradient():
    """PyTorch's padding_idx: the row is read but gets no gradient (on purpose not the true
    derivative, so gradcheck cannot hold it; the rows are checked directly)."""
    w = ma.randn(4, 2, requires_grad=True)
    F.embedding(ma.tensor([1, 1, 3]), w, padding_idx=1).sum().backward()
    assert w.grad.numpy().tolist() == [[0, 0], [0, 0], [0, 0], [1, 1]]


# -- modules against PyTorch ---------------------------------------------------------------------


def to_torch_module(torch, ours, theirs):
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    return theirs.double()


@pytest.mark.parametrize("make", [
    lambda m: m.Identity(), lambda m: m.SiLU(), lambda m: m.Sigmoid(), lambda m: m.Tanh(),
    lambda m: m.Softmax(dim=0), lambda m: m.GELU(approximate="tanh"), lambda m: m.ReLU(),
    lambda m: m.Linear(4, 3, bias=False), lambda m: m.LayerNorm(4, bias=False),
    lambda m: m.LayerNorm(4, elementwise_affine=False), lambda m: m.Dropout(0.3),
    lambda m: m.Sequential(m.Linear(4, 2), m.Tanh()),
])
def test_modules_match_torch_values_and_repr(torch, rng, make):
    ours, theirs = make(nn).double(), make(torch.nn)
    to_torch_module(torch, ours, theirs)
    assert repr(ours) == repr(theirs)
    ours.eval(), theirs.eval()
    x = t64(rng, 3, 4)
    check_against_torch(torch, ours, theirs, [x])
    for (n, p), (tn, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert n == tn
        close(p.grad, tp.grad)


# -- a nanoGPT-shaped model: the Module API it uses ------------------------------------------


def make_gpt(m, F_, init, vocab=7, block=6, n_embd=8, n_head=2, n_layer=2, bias=False):
    """nanoGPT's model.py in miniature, written against the module ``m`` (torch.nn or
    minattn.nn), its functional ``F_`` and ``init``: the same lines for both."""

    class LayerNorm(m.Module):
        def __init__(self, ndim, bias):
            super().__init__()
            self.weight = m.Parameter(ones(ndim))
            self.bias = m.Parameter(zeros(ndim)) if bias else None

        def forward(self, x):
            return F_.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)

    class Attention(m.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = m.Linear(n_embd, 3 * n_embd, bias=bias)
            self.c_proj = m.Linear(n_embd, n_embd, bias=bias)
            self.resid_dropout = m.Dropout(0.0)

        def forward(self, x):
            B, T, C = x.size()
            qkv = self.c_attn(x)
            q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, n_head, C // n_head)
                       .swapaxes(1, 2) for i in range(3))
            y = F_.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0,
                                                is_causal=True)
            return self.resid_dropout(self.c_proj(y.swapaxes(1, 2).reshape(B, T, C)))

    class Block(m.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn = LayerNorm(n_embd, bias), Attention()
            self.ln_2 = LayerNorm(n_embd, bias)
            self.mlp = m.Sequential(m.Linear(n_embd, 4 * n_embd, bias=bias), m.GELU(),
                                    m.Linear(4 * n_embd, n_embd, bias=bias), m.Dropout(0.0))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(m.Module):
        def __init__(self):
            super().__init__()
            self.transformer = m.ModuleDict(dict(
                wte=m.Embedding(vocab, n_embd), wpe=m.Embedding(block, n_embd),
                drop=m.Dropout(0.0), h=m.ModuleList([Block() for _ in range(n_layer)]),
                ln_f=LayerNorm(n_embd, bias)))
            self.lm_head = m.Linear(n_embd, vocab, bias=False)
            self.transformer.wte.weight = self.lm_head.weight  # weight tying
            self.apply(self._init_weights)
            for pn, p in self.named_parameters():
                if pn.endswith("c_proj.weight"):
                    init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

        def _init_weights(self, module):
            if isinstance(module, m.Linear):
                init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    init.zeros_(module.bias)
            elif isinstance(module, m.Embedding):
                init.normal_(module.weight, mean=0.0, std=0.02)

        def forward(self, idx, pos, targets):
            x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
            for blk in self.transformer.h:
                x = blk(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            return logits, F_.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                            targets.reshape(-1), ignore_index=-1)

    import torch as _torch
    ones = ma.ones if m is nn else _torch.ones
    zeros = ma.zeros if m is nn else _torch.zeros
    return GPT()


def test_nanogpt_model_runs_and_matches_torch(torch, rng):
    ours = make_gpt(nn, F, nn.init).double()
    theirs = make_gpt(torch.nn, torch.nn.functional, torch.nn.init)
    names = [n for n, _ in ours.named_parameters()]
    assert names == [n for n, _ in theirs.named_parameters()]  # the tied weight listed once
    assert "lm_head.weight" not in names and "transformer.wte.weight" in names
    assert list(ours.state_dict()) == list(theirs.state_dict())  # ... but saved twice
    assert ours.lm_head.weight is ours.transformer.wte.weight
    assert repr(ours) == repr(theirs)
    assert sum(p.numel() for p in ours.parameters()) == \
        sum(p.numel() for p in theirs.parameters())
    std = ours.transformer.h[0].attn.c_proj.weight.numpy().std()
    assert 0.3 * 0.02 / 2 < std < 3 * 0.02 / 2  # init.normal_ reached it (std 0.02 / sqrt(4))

    # nanoGPT's from_pretrained: write into the state_dict's entries, under no_grad
    sd = ours.state_dict()
    with ma.no_grad():
        for k, v in theirs.state_dict().items():
            sd[k].copy_(v.double().numpy())
    theirs.double()

    idx, targets = rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))
    targets[0, 1] = -1
    logits, loss = ours(ma.tensor(idx), ma.tensor(np.arange(5)), ma.tensor(targets))
    tlogits, tloss = theirs(torch.tensor(idx), torch.arange(5), torch.tensor(targets))
    close(logits, tlogits, rtol=1e-9, atol=1e-12)
    close(loss, tloss, rtol=1e-10)
    loss.backward(), tloss.backward()
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        close(p.grad, tparams[name].grad, rtol=1e-7, atol=1e-12)

    other = make_gpt(nn, F, nn.init).double()
    other.load_state_dict(ours.state_dict())
    for (n, p), (_, q) in zip(ours.named_parameters(), other.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)


# -- Module API ------------------------------------------------------------------------------


def test_state_dict_shares_arrays_and_load_errors_are_pytorchs(torch):
    lin = nn.Linear(3, 2)
    sd = lin.state_dict()
    with ma.no_grad():
        sd["weight"].copy_(np.zeros((2, 3)))
    assert not lin.weight.numpy().any()  # the entry is the parameter's array
    assert not sd["weight"].requires_grad and lin.state_dict(keep_vars=True)["weight"] is \
        lin.weight
    weight = lin.weight
    lin.load_state_dict({"weight": np.ones((2, 3)), "bias": np.ones(2)})
    assert lin.weight is weight and weight.numpy().all()  # written in place
    msgs = []
    for m, state in ((nn.Linear(3, 2), {"weight": np.ones((2, 3)), "extra": np.ones(1)}),
                     (torch.nn.Linear(3, 2), {"weight": torch.ones(2, 3),
                                              "extra": torch.ones(1)})):
        with pytest.raises(RuntimeError) as err:
            m.load_state_dict(state)
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1]
    result = nn.Linear(3, 2).load_state_dict({"weight": np.ones((2, 3))}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == []
    assert repr(nn.Linear(3, 2).load_state_dict(lin.state_dict())) == \
        "<All keys matched successfully>"


def test_parameters_buffers_and_none_slots():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = self.a  # the same module twice
            self.register_buffer("mask", ma.ones(2))
            self.register_buffer("tmp", ma.zeros(2), persistent=False)
            self.register_parameter("scale", None)

    m = M()
    assert [n for n, _ in m.named_modules()] == ["", "a"]
    assert [n for n, _ in m.named_children()] == ["a"]
    assert [n for n, _ in m.named_parameters()] == ["a.weight", "a.bias"]
    assert len(list(m.named_parameters(remove_duplicate=False))) == 4
    assert [n for n, _ in m.named_buffers()] == ["mask", "tmp"]
    assert list(m.state_dict()) == ["mask", "a.weight", "a.bias", "b.weight", "b.bias"]
    assert m.scale is None and "scale" in m._parameters
    with pytest.raises(TypeError, match="cannot assign"):
        m.scale = ma.ones(2)  # a None parameter slot still wants a Parameter
    m.scale = nn.Parameter(ma.ones(2))
    assert [n for n, _ in m.named_parameters()][0] == "scale"
    m.a.bias = None
    assert [n for n, _ in m.named_parameters()] == ["scale", "a.weight"]
    assert m.get_parameter("a.weight") is m.a.weight and m.get_submodule("b") is m.a
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    m.double()
    assert m.a.weight.dtype == np.float64 and m.mask.dtype == np.float64
    m.float()
    assert m.a.weight.dtype == np.float32


def test_containers(torch):
    d = nn.ModuleDict({"x": nn.Linear(2, 2)})
    d["y"] = nn.Tanh()
    assert list(d) == ["x", "y"] and "y" in d and len(d) == 2 and d.x is d["x"]
    assert [n for n, _ in d.named_parameters()] == ["x.weight", "x.bias"]
    pl = nn.ParameterList([ma.ones(2), nn.Parameter(ma.zeros(3))])
    assert isinstance(pl[0], nn.Parameter) and len(pl) == 2
    assert [n for n, _ in pl.named_parameters()] == ["0", "1"]
    pd = nn.ParameterDict({"w": ma.ones(2)})
    assert [n for n, _ in pd.named_parameters()] == ["w"] and isinstance(pd["w"], nn.Parameter)
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)] + [nn.Tanh()])
    tl = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)] + [torch.nn.Tanh()])
    assert repr(ml) == repr(tl)
    assert isinstance(ml[-1], nn.Tanh) and len(ml[1:]) == 3
    seen = []
    ml.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Linear", "Linear", "Linear", "Tanh", "ModuleList"]


def test_zero_grad_and_train_eval():
    lin = nn.Linear(2, 1)
    lin(ma.ones(1, 2)).sum().backward()
    lin.zero_grad(set_to_none=False)
    assert lin.weight.grad.numpy().tolist() == [[0.0, 0.0]]
    lin.zero_grad()
    assert lin.weight.grad is None
    seq = nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 2))
    assert all(not m.training for m in seq.eval().modules())


# -- nn.init --------------------------------------------------------------------------------


def test_init_formulas_and_in_place(torch):
    w = nn.Parameter(ma.zeros(200, 300))
    for fn, kwargs, bound_or_std, kind in [
        (nn.init.xavier_uniform_, {}, math.sqrt(6 / 500), "uniform"),
        (nn.init.xavier_normal_, {"gain": 2.0}, 2 * math.sqrt(2 / 500), "normal"),
        (nn.init.kaiming_uniform_, {"a": math.sqrt(5)}, 1 / math.sqrt(300), "uniform"),
        (nn.init.kaiming_normal_, {"mode": "fan_out", "nonlinearity": "relu"},
         math.sqrt(2 / 200), "normal"),
        (nn.init.uniform_, {"a": -0.5, "b": 0.5}, 0.5, "uniform"),
        (nn.init.normal_, {"mean": 0.0, "std": 0.02}, 0.02, "normal"),
    ]:
        assert fn(w, **kwargs) is w and w.requires_grad and w.is_leaf
        x = w.numpy()
        if kind == "uniform":
            assert abs(x).max() <= bound_or_std and abs(x).max() > 0.98 * bound_or_std
        else:
            assert abs(x.std() / bound_or_std - 1) < 0.02
    nn.init.trunc_normal_(w, std=1.0, a=-0.5, b=1.0)
    assert w.numpy().min() >= -0.5 and w.numpy().max() <= 1.0
    assert nn.init.constant_(w, 0.25).numpy().max() == 0.25
    assert not nn.init.zeros_(w).numpy().any() and nn.init.ones_(w).numpy().all()
    for name in ("linear", "sigmoid", "tanh", "relu", "selu"):
        assert nn.init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert nn.init.calculate_gain("leaky_relu", 0.2) == \
        pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.2))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(ma.zeros(3))


# -- nn.MultiheadAttention against PyTorch's --------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "causal"])
def test_multihead_attention_matches_torch(torch, rng, batch_first, masks):
    E, H, N, L, S = 6, 2, 2, 3, 4
    ours = nn.MultiheadAttention(E, H, batch_first=batch_first).double()
    theirs = to_torch_module(torch, ours, torch.nn.MultiheadAttention(E, H,
                                                                      batch_first=batch_first))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    shape = (lambda n: (N, n, E)) if batch_first else (lambda n: (n, N, E))
    q, k, v = t64(rng, *shape(L)), t64(rng, *shape(S)), t64(rng, *shape(S))
    kw = {}
    if masks == "bool":
        kw["attn_mask"] = rng.random((L, S)) < 0.3
        kw["attn_mask"][:, 0] = False  # no row masked out entirely
        kw["key_padding_mask"] = np.array([[False, False, True, False], [False, True, True,
                                                                          False]])
    elif masks == "float":
        kw["attn_mask"] = rng.standard_normal((N * H, L, S))
        kw["key_padding_mask"] = rng.standard_normal((N, S))
    elif masks == "causal":
        kw["attn_mask"] = np.triu(np.ones((L, S), dtype=bool), 1)
        kw["is_causal"] = True
    tkw = {k_: (torch.tensor(a) if isinstance(a, np.ndarray) else a) for k_, a in kw.items()}
    for average in (True, False):
        out, w = ours(q, k, v, average_attn_weights=average, **kw)
        tout, tw = theirs(*(both(torch, x) for x in (q, k, v)), average_attn_weights=average,
                          **tkw)
        close(out, tout), close(w, tw)
    tin = [both(torch, x) for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    out, _ = ours(q, k, v, need_weights=False, **kw)
    tout, tw = theirs(*tin, need_weights=False, **tkw)
    assert tw is None
    dout = rng.standard_normal(tout.shape)
    out.backward(ma.tensor(dout, dtype="float64")), tout.backward(torch.tensor(dout))
    for x, tx in zip((q, k, v), tin):
        close(x.grad, tx.grad, rtol=1e-9)
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        close(p.grad, tparams[name].grad, rtol=1e-9)


def test_multihead_attention_kdim_vdim_unbatched_and_errors(torch, rng):
    ours = nn.MultiheadAttention(4, 2, kdim=3, vdim=5, bias=False).double()
    theirs = to_torch_module(torch, ours, torch.nn.MultiheadAttention(4, 2, kdim=3, vdim=5,
                                                                      bias=False))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    q, k, v = t64(rng, 3, 4), t64(rng, 2, 3), t64(rng, 2, 5)
    check_against_torch(torch, lambda a, b, c: ours(a, b, c, key_padding_mask=np.array(
        [False, True]))[0], lambda a, b, c: theirs(a, b, c, key_padding_mask=torch.tensor(
            [False, True]))[0], [q, k, v])
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        nn.MultiheadAttention(4, 2, add_bias_kv=True)
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        ours(q, k, v, is_causal=True)
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(5, 2)
