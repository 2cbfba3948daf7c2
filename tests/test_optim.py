"""Optimizers: update sequences against torch.optim and against the formulas written out in
NumPy, parameter groups, zero_grad, checkpoints (state_dict round trips), errors."""

import numpy as np
import pytest

import minattn as ma
from minattn import optim

SHAPES = [(3, 4), (5,)]


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return [ma.nn.Parameter(ma.tensor(rng.normal(size=s), dtype="float64")) for s in SHAPES]


def gradient(p_data, step, i):
    """A gradient that depends on the parameter (a quadratic bowl) and on the step (noise)."""
    noise = np.random.default_rng([step, i]).normal(size=p_data.shape)
    return 0.7 * p_data + noise


def run_minattn(make_opt, steps, seed=0, set_lr=None):
    params = make_params(seed)
    opt = make_opt(params)
    for t in range(steps):
        for i, p in enumerate(params):
            p.grad = ma.tensor(gradient(p.numpy(), t, i))
        opt.step()
        opt.zero_grad()
    return [p.numpy() for p in params], opt


def run_torch(torch, make_opt, steps, seed=0):
    params = [torch.tensor(p.numpy(), requires_grad=True) for p in make_params(seed)]
    opt = make_opt(params)
    for t in range(steps):
        for i, p in enumerate(params):
            p.grad = torch.tensor(gradient(p.detach().numpy(), t, i))
        opt.step()
        opt.zero_grad()
    return [p.detach().numpy() for p in params]


CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, betas=(0.85, 0.99), weight_decay=0.3)),
]


@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in
                                                      enumerate(CONFIGS)])
def test_update_sequence_matches_torch(torch, name, kwargs):
    ours, _ = run_minattn(lambda ps: getattr(optim, name)(ps, **kwargs), steps=6)
    theirs = run_torch(torch, lambda ps: getattr(torch.optim, name)(ps, **kwargs), steps=6)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_sgd_momentum_by_the_formula():
    lr, mu = 0.1, 0.9
    ours, _ = run_minattn(lambda ps: optim.SGD(ps, lr=lr, momentum=mu), steps=3)
    p = make_params()[0].numpy()
    buf = None
    for t in range(3):
        g = gradient(p, t, 0)
        buf = g if buf is None else mu * buf + g
        p = p - lr * buf
    np.testing.assert_allclose(ours[0], p, rtol=1e-13)


def test_adam_by_the_formula():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    ours, _ = run_minattn(lambda ps: optim.Adam(ps, lr=lr), steps=4)
    p = make_params()[1].numpy()
    m = v = np.zeros_like(p)
    for t in range(1, 5):
        g = gradient(p, t - 1, 1)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    np.testing.assert_allclose(ours[1], p, rtol=1e-12)


def test_adamw_decay_is_decoupled():
    # with a zero gradient Adam's step is 0, so AdamW only shrinks p by (1 - lr wd)
    p = ma.nn.Parameter(ma.tensor([1.0, -2.0], dtype="float64"))
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = ma.zeros(2, dtype="float64")
    opt.step()
    np.testing.assert_allclose(p.numpy(), [0.95, -1.9])
    q = ma.nn.Parameter(ma.tensor([1.0, -2.0], dtype="float64"))  # Adam: decay enters g
    opt = optim.Adam([q], lr=0.1, weight_decay=0.5)
    q.grad = ma.zeros(2, dtype="float64")
    opt.step()
    np.testing.assert_allclose(q.numpy(), [0.9, -1.9], rtol=1e-6)  # a full Adam step of lr


def test_parameter_groups_have_their_own_settings(torch):
    def ours_opt(ps):
        return optim.Adam([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.1}], lr=0.01)

    def torch_opt(ps):
        return torch.optim.Adam([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.1}], lr=0.01)

    ours, opt = run_minattn(ours_opt, steps=3)
    theirs = run_torch(torch, torch_opt, steps=3)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_changing_lr_between_steps_takes_effect():
    params = make_params()
    opt = optim.SGD(params, lr=0.1)
    before = params[0].numpy()
    params[0].grad = ma.ones(3, 4, dtype="float64")
    opt.param_groups[0]["lr"] = 0.5
    opt.step()
    np.testing.assert_allclose(params[0].numpy(), before - 0.5)


def test_parameters_without_gradients_are_skipped_and_zero_grad_clears():
    params = make_params()
    opt = optim.Adam(params)
    before = [p.numpy() for p in params]
    params[0].grad = ma.ones(3, 4, dtype="float64")
    opt.step()
    assert not np.array_equal(params[0].numpy(), before[0])
    np.testing.assert_array_equal(params[1].numpy(), before[1])
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=0.05, momentum=0.9)),
                                          ("Adam", dict(lr=0.01)),
                                          ("AdamW", dict(lr=0.01, weight_decay=0.1))])
def test_state_dict_resumes_exactly(name, kwargs):
    straight, _ = run_minattn(lambda ps: getattr(optim, name)(ps, **kwargs), steps=6)

    half, opt = run_minattn(lambda ps: getattr(optim, name)(ps, **kwargs), steps=3)
    state = opt.state_dict()
    saved = [np.array(a) for a in half]
    # a fresh optimizer on fresh parameters, loaded from the checkpoint, runs steps 3..5
    params = [ma.nn.Parameter(ma.tensor(a)) for a in saved]
    opt2 = getattr(optim, name)(params, lr=123.0)  # the saved lr must win
    opt2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == kwargs["lr"]
    for t in range(3, 6):
        for i, p in enumerate(params):
            p.grad = ma.tensor(gradient(p.numpy(), t, i))
        opt2.step()
    for a, p in zip(straight, params):
        np.testing.assert_array_equal(a, p.numpy())


def test_state_dict_is_a_copy_and_host_arrays_load():
    params = make_params()
    opt = optim.Adam(params)
    for p in params:
        p.grad = ma.ones(*p.shape, dtype="float64")
    opt.step()
    state = opt.state_dict()
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    state["state"][0]["exp_avg"][...] = 99.0
    assert not (opt.state[params[0]]["exp_avg"] == 99.0).any()
    opt.load_state_dict(state)
    assert (opt.state[params[0]]["exp_avg"] == 99.0).all()
    bad = opt.state_dict()
    bad["state"][1]["exp_avg"] = np.zeros(7)
    with pytest.raises(ValueError, match=r"exp_avg.*\(7,\).*\(5,\)"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="groups"):
        optim.Adam(params[:1]).load_state_dict(state)


def test_bad_arguments_are_clear_errors():
    params = make_params()
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="wrap it in a list"):
        optim.SGD(params[0], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam(params, lr=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([{"params": params}, {"params": params[:1]}], lr=0.1)
    with pytest.raises(ValueError, match="require grad"):
        optim.SGD([ma.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="unknown settings.*momentum"):
        optim.Adam([{"params": params, "momentum": 0.9}])


def test_step_records_no_graph_and_keeps_dtype():
    p = ma.nn.Parameter(ma.ones(4))  # float32
    opt = optim.Adam([p], lr=0.1)
    p.grad = ma.ones(4)
    opt.step()
    assert p.dtype == np.float32 and p.is_leaf and p.grad is not None


def test_trains_a_linear_regression():
    ma.manual_seed(0)
    rng = np.random.default_rng(0)
    x = ma.tensor(rng.normal(size=(64, 3)))
    w_true = np.array([[1.0], [-2.0], [0.5]])
    y = ma.tensor(x.numpy() @ w_true)
    layer = ma.nn.Linear(3, 1, dtype="float64")
    opt = optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    for _ in range(200):
        loss = ((layer(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(layer.weight.numpy().ravel(), w_true.ravel(), atol=1e-4)


def test_optimizer_on_gpu(device):
    p = ma.nn.Parameter(ma.ones(3, device=device))
    opt = optim.AdamW([p], lr=0.1)
    p.grad = ma.ones(3, device=device)
    opt.step()
    assert p.device == device
    state = opt.state_dict()
    opt.load_state_dict({"state": {0: {k: (ma.backend.to_numpy(v) if hasattr(v, "shape")
                                           else v) for k, v in state["state"][0].items()}},
                         "param_groups": state["param_groups"]})
    assert ma.backend.device_of(opt.state[p]["exp_avg"]) == device
