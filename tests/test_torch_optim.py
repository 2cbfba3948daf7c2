"""torch.optim's surface: SGD, Adam and AdamW with PyTorch's signatures, parameter groups as
nanoGPT's configure_optimizers builds them, editable param_groups, and numbers equal to
PyTorch's over several steps (float64)."""

import inspect

import numpy as np
import pytest

import minattn as ma
from minattn import nn, optim


def make_params(rng, torch):
    shapes = [(3, 4), (4,), (2, 3)]
    data = [rng.standard_normal(s) for s in shapes]
    ours = [nn.Parameter(ma.tensor(d, dtype="float64")) for d in data]
    theirs = [torch.nn.Parameter(torch.tensor(d)) for d in data]
    return ours, theirs


def run_both(torch, rng, make_ours, make_theirs, steps=5, edit=None):
    ours, theirs = make_params(rng, torch)
    opt, topt = make_ours(ours), make_theirs(theirs)
    for step in range(steps):
        grads = [rng.standard_normal(p.shape) for p in ours]
        for p, tp, g in zip(ours, theirs, grads):
            p.grad, tp.grad = ma.tensor(g, dtype="float64"), torch.tensor(g)
        opt.step(), topt.step()
        if edit is not None:
            edit(opt, step), edit(topt, step)
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    return opt, topt


def groups(params, decay):
    """nanoGPT's optim_groups: decay on the >= 2-D parameters, none on the others."""
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


@pytest.mark.parametrize("name, kwargs", [
    ("AdamW", {"lr": 0.01, "betas": (0.9, 0.95)}),
    ("AdamW", {"lr": 0.01, "amsgrad": True, "fused": True}),
    ("Adam", {"lr": 0.02, "weight_decay": 0.1, "foreach": False}),
    ("Adam", {"lr": 0.02, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("Adam", {"lr": 0.02, "maximize": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.5, "dampening": 0.2, "maximize": True}),
])
def test_param_groups_match_torch_over_several_steps(torch, rng, name, kwargs):
    def lr_schedule(opt, step):  # nanoGPT's loop: for g in optimizer.param_groups: g["lr"] = lr
        for g in opt.param_groups:
            g["lr"] = kwargs["lr"] * (0.5 + 0.1 * step)

    opt, topt = run_both(torch, rng, lambda ps: getattr(optim, name)(groups(ps, 0.1), **kwargs),
                         lambda ps: getattr(torch.optim, name)(groups(ps, 0.1), **kwargs),
                         edit=lr_schedule)
    ours_groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    torch_groups = [{k: v for k, v in g.items() if k != "params"} for g in topt.param_groups]
    assert ours_groups == torch_groups  # the same settings, keys and defaults
    saved = opt.state_dict()
    assert saved["param_groups"][0]["params"] == [0, 1] and \
        saved["param_groups"][1]["params"] == [2]
    assert sorted(saved["state"]) == sorted(topt.state_dict()["state"])


def test_signatures_take_pytorchs_keywords(torch):
    """nanoGPT: fused_available = 'fused' in inspect.signature(torch.optim.AdamW).parameters."""
    for name in ("SGD", "Adam", "AdamW"):
        ours = inspect.signature(getattr(optim, name)).parameters
        theirs = inspect.signature(getattr(torch.optim, name)).parameters
        assert list(ours) == list(theirs), name
        for key, p in theirs.items():
            if key != "params" and isinstance(p.default, (bool, int, float, tuple, type(None))):
                assert ours[key].default == p.default, (name, key)


def test_zero_grad_and_refusals():
    p = nn.Parameter(ma.ones(2))
    opt = optim.AdamW([p])
    p.grad = ma.ones(2)
    opt.zero_grad(set_to_none=False)
    assert p.grad.numpy().tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert p.grad is None
    with pytest.raises(NotImplementedError, match="capturable"):
        optim.AdamW([p], capturable=True)
    with pytest.raises(NotImplementedError, match="differentiable"):
        optim.SGD([p], differentiable=True)
    optim.AdamW([{"params": [p]}, {"params": [], "weight_decay": 0.0}])  # an empty group is fine
