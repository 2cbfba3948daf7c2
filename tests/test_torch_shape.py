"""PyTorch's views and shape ops run unchanged on minattn: the same values, the same gradients,
the same memory sharing (a view is a view), the same kind of error; and every backward written
for them is checked by gradcheck, which catches a wrong one."""

import numpy as np
import pytest

import minattn as ma
from minattn.ops.shape import (
    Cat,
    Contiguous,
    Expand,
    Flip,
    Narrow,
    Repeat,
    RepeatInterleave,
    Stack,
    Transpose,
)

# (name, fn(lib, *tensors), input shapes): lib is minattn or torch, the code is the same for both
CASES = [
    ("transpose 2-D", lambda lib, a: a.transpose(0, 1), [(3, 4)]),
    ("transpose negative dims", lambda lib, a: a.transpose(-1, -3), [(2, 3, 4)]),
    ("torch.transpose", lambda lib, a: lib.transpose(a, 1, 2), [(2, 3, 4)]),
    ("swapaxes", lambda lib, a: a.swapaxes(0, 1), [(2, 3)]),
    ("swapdims", lambda lib, a: lib.swapdims(a, 0, 2), [(2, 3, 4)]),
    (".T", lambda lib, a: a.T, [(3, 4)]),
    ("permute ints", lambda lib, a: a.permute(2, 0, 1), [(2, 3, 4)]),
    ("permute tuple", lambda lib, a: lib.permute(a, (1, -1, 0)), [(2, 3, 4)]),
    ("t 2-D", lambda lib, a: a.t(), [(3, 4)]),
    ("t 1-D", lambda lib, a: lib.t(a), [(4,)]),
    ("mT", lambda lib, a: a.mT, [(2, 3, 4)]),
    ("view", lambda lib, a: a.view(2, -1, 2), [(3, 4)]),
    ("view tuple", lambda lib, a: a.view((12,)), [(3, 4)]),
    ("view_as", lambda lib, a, b: a.view_as(b) * b, [(2, 6), (3, 4)]),
    ("reshape_as", lambda lib, a, b: a.t().reshape_as(b) + b, [(4, 3), (2, 6)]),
    ("contiguous", lambda lib, a: a.mT.contiguous(), [(2, 3, 4)]),
    ("unsqueeze", lambda lib, a: a.unsqueeze(1), [(3, 4)]),
    ("unsqueeze last", lambda lib, a: lib.unsqueeze(a, -1), [(3, 4)]),
    ("squeeze all", lambda lib, a: a.squeeze(), [(1, 3, 1, 4)]),
    ("squeeze dim", lambda lib, a: a.squeeze(-2), [(1, 3, 1, 4)]),
    ("squeeze not 1", lambda lib, a: lib.squeeze(a, 1), [(1, 3, 1, 4)]),
    ("squeeze tuple", lambda lib, a: a.squeeze((0, 1, 2)), [(1, 3, 1, 4)]),
    ("flatten", lambda lib, a: a.flatten(), [(2, 3, 4)]),
    ("flatten range", lambda lib, a: lib.flatten(a, 1, -1), [(2, 3, 4)]),
    ("unflatten", lambda lib, a: a.unflatten(-1, (2, -1)), [(3, 4)]),
    ("expand", lambda lib, a: a.expand(2, -1, 4), [(3, 1)]),
    ("expand_as", lambda lib, a, b: a.expand_as(b) * b, [(4,), (2, 3, 4)]),
    ("repeat", lambda lib, a: a.repeat(2, 1, 3), [(2, 3)]),
    ("repeat zero", lambda lib, a: a.repeat(0, 2), [(2, 3)]),
    ("repeat_interleave int", lambda lib, a: a.repeat_interleave(2, dim=0), [(2, 3)]),
    ("repeat_interleave flat", lambda lib, a: lib.repeat_interleave(a, 3), [(2, 2)]),
    ("repeat_interleave counts", lambda lib, a: a.repeat_interleave(
        lib.tensor([2, 0, 1]), dim=1), [(2, 3)]),
    ("repeat_interleave one count", lambda lib, a: a.repeat_interleave(
        lib.tensor([3]), dim=-1), [(2, 2)]),
    ("narrow", lambda lib, a: a.narrow(1, 1, 2), [(3, 4)]),
    ("narrow negative start", lambda lib, a: lib.narrow(a, 0, -2, 2), [(3, 4)]),
    ("split size", lambda lib, a: a.split(2), [(5, 3)]),
    ("split sections", lambda lib, a: lib.split(a, [1, 0, 3], dim=1), [(2, 4)]),
    ("chunk", lambda lib, a: a.chunk(3, dim=1), [(2, 5)]),
    ("chunk fewer", lambda lib, a: lib.chunk(a, 4), [(6, 2)]),
    ("unbind", lambda lib, a: a.unbind(1), [(2, 3)]),
    ("unbind torch", lambda lib, a: lib.unbind(a), [(2, 3)]),
    ("flip", lambda lib, a: a.flip(0), [(3, 4)]),
    ("flip dims", lambda lib, a: lib.flip(a, (0, -1)), [(2, 3, 4)]),
    ("cat", lambda lib, a, b: lib.cat([a, b, a]), [(2, 3), (1, 3)]),
    ("cat dim", lambda lib, a, b: lib.cat((a, b), dim=-1), [(2, 3), (2, 1)]),
    ("concat", lambda lib, a, b: lib.concat([a, b], 1), [(2, 3), (2, 2)]),
    ("concatenate", lambda lib, a, b: lib.concatenate([a, b]), [(2,), (3,)]),
    ("stack", lambda lib, a, b: lib.stack([a, b]), [(2, 3), (2, 3)]),
    ("stack last", lambda lib, a, b: lib.stack((a, b, a), dim=-1), [(2, 3), (2, 3)]),
]


def _outputs(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _weighted_sum(outs, grads):
    """sum_k <out_k, g_k>: its gradient is the backward of every output with upstream g_k."""
    total = 0
    for out, g in zip(outs, grads):
        total = total + (out * g).sum()
    return total


@pytest.mark.parametrize("name, fn, shapes", CASES, ids=[c[0] for c in CASES])
def test_values_and_gradients_match_pytorch(name, fn, shapes, torch, rng):
    arrays = [rng.standard_normal(s) for s in shapes]
    xs = [ma.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    outs, touts = _outputs(fn(ma, *xs)), _outputs(fn(torch, *ts))
    assert len(outs) == len(touts)
    for out, tout in zip(outs, touts):
        assert out.shape == tuple(tout.shape)
        np.testing.assert_array_equal(out.numpy(), tout.detach().numpy())
    grads = [rng.standard_normal(tuple(t.shape)) for t in touts]  # random upstream gradients
    _weighted_sum(outs, grads).backward()
    _weighted_sum(touts, [torch.tensor(g) for g in grads]).backward()
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_scores_with_transpose_of_a_square_key_match_pytorch(torch, rng):
    # the bug this file started from: k.transpose(-2, -1) on 2-D was NumPy's permutation
    # (-2, -1), the identity, so q @ k.transpose(-2, -1) silently computed q @ k
    q_np, k_np = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    q, k = ma.tensor(q_np, dtype="float64"), ma.tensor(k_np, dtype="float64")
    want = torch.tensor(q_np) @ torch.tensor(k_np).transpose(-2, -1)
    np.testing.assert_allclose((q @ k.transpose(-2, -1)).numpy(), want.numpy(), rtol=1e-12)
    np.testing.assert_allclose((q @ k.transpose(0, 1)).numpy(), q_np @ k_np.T, rtol=1e-12)
    np.testing.assert_allclose((q @ k.mT).numpy(), want.numpy(), rtol=1e-12)


def test_transpose_keeps_numpy_spellings_that_do_not_clash():
    x_np = np.arange(24.0).reshape(2, 3, 4)
    x = ma.tensor(x_np)
    np.testing.assert_array_equal(x.transpose().numpy(), x_np.transpose())
    np.testing.assert_array_equal(x.transpose(2, 0, 1).numpy(), x_np.transpose(2, 0, 1))
    np.testing.assert_array_equal(x.transpose((1, 2, 0)).numpy(), x_np.transpose(1, 2, 0))
    np.testing.assert_array_equal(x.T.numpy(), x_np.T)


@pytest.mark.parametrize("n, chunks", [(5, 3), (6, 4), (7, 7), (3, 5), (0, 3), (10, 3)])
def test_chunk_sizes_are_pytorchs(n, chunks, torch):
    want = [tuple(c.shape) for c in torch.zeros(n, 2).chunk(chunks)]
    assert [c.shape for c in ma.zeros(n, 2).chunk(chunks)] == want


@pytest.mark.parametrize("n, size", [(5, 2), (6, 3), (2, 5), (0, 2), (0, 0)])
def test_split_sizes_are_pytorchs(n, size, torch):
    want = [tuple(c.shape) for c in torch.zeros(n).split(size)]
    assert [c.shape for c in ma.zeros(n).split(size)] == want


@pytest.mark.parametrize("dtypes", [("float32", "float64"), ("int64", "float32"),
                                    ("int32", "int64"), ("bool", "int32"), ("float16", "int64"),
                                    ("uint8", "int8"), ("float64", "float64")])
@pytest.mark.parametrize("op", ["cat", "stack"])
def test_cat_and_stack_promote_dtypes_as_pytorch(op, dtypes, torch):
    xs = [ma.ones(2, 3, dtype=d) for d in dtypes]
    ts = [torch.ones(2, 3, dtype=getattr(torch, d)) for d in dtypes]
    out, want = getattr(ma, op)(xs), getattr(torch, op)(ts)
    assert str(out.dtype) == str(want.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(out.numpy(), want.numpy())


def test_cat_gradient_comes_back_in_each_inputs_dtype():
    a = ma.ones(2, dtype="float32", requires_grad=True)
    b = ma.ones(3, dtype="float64", requires_grad=True)
    out = ma.cat([a, b])
    assert out.dtype == np.float64
    out.backward(ma.tensor([1.0, 2, 3, 4, 5], dtype="float64"))
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_array_equal(a.grad.numpy(), [1, 2])
    np.testing.assert_array_equal(b.grad.numpy(), [3, 4, 5])


def test_cat_skips_an_empty_1d_tensor_as_pytorch(torch):
    out = ma.cat([ma.ones(2, 3), ma.zeros(0)])
    assert out.shape == tuple(torch.cat([torch.ones(2, 3), torch.zeros(0)]).shape) == (2, 3)


def test_axis_is_numpys_alias_for_dim():
    x = ma.tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(ma.cat([x, x], axis=1).numpy(), ma.cat([x, x], dim=1).numpy())
    assert ma.stack([x, x], axis=2).shape == (2, 3, 2)
    assert [p.shape for p in x.split(2, axis=1)] == [(2, 2), (2, 1)]
    assert x.unsqueeze(axis=0).shape == (1, 2, 3) and len(x.unbind(axis=1)) == 3
    np.testing.assert_array_equal(x.flip(1).numpy(), np.flip(x.numpy(), axis=1))
    with pytest.raises(TypeError, match="dim=1 and axis=0"):
        ma.cat([x, x], dim=1, axis=0)


def test_repeat_interleave_of_counts_alone_gives_indices(torch):
    counts = [2, 0, 3]
    want = torch.repeat_interleave(torch.tensor(counts))
    np.testing.assert_array_equal(ma.repeat_interleave(ma.tensor(counts)).numpy(), want.numpy())


# -- views share memory; copies do not -----------------------------------------------------------

VIEWS = [
    ("transpose", lambda x: x.transpose(0, 1)),
    ("permute", lambda x: x.permute(1, 0)),
    ("t", lambda x: x.t()),
    ("mT", lambda x: x.mT),
    (".T", lambda x: x.T),
    ("swapaxes", lambda x: x.swapaxes(0, 1)),
    ("view", lambda x: x.view(-1)),
    ("reshape", lambda x: x.reshape(4, 3)),
    ("view_as", lambda x: x.view_as(ma.zeros(2, 6))),
    ("unsqueeze", lambda x: x.unsqueeze(0)),
    ("squeeze", lambda x: x.unsqueeze(1).squeeze(1)),
    ("flatten", lambda x: x.unsqueeze(0).flatten(0, 1)),
    ("unflatten", lambda x: x.unflatten(1, (2, 2))),
    ("narrow", lambda x: x.narrow(1, 1, 2)),
    ("split", lambda x: x.split(2, dim=1)[1]),
    ("chunk", lambda x: x.chunk(2)[1]),
    ("unbind", lambda x: x.unbind(1)[2]),
    ("contiguous", lambda x: x.contiguous()),
]


@pytest.mark.parametrize("name, fn", VIEWS, ids=[v[0] for v in VIEWS])
def test_views_share_memory_and_writes_reach_the_base(name, fn, torch):
    base = np.arange(12.0).reshape(3, 4)
    x = ma.tensor(base)
    out = fn(x)
    assert np.shares_memory(out.data, x.data)
    out.data[...] = -1.0  # an in-place write into the view...
    tx = torch.tensor(base)
    fn_torch = dict(VIEWS)[name]
    if name != "view_as":
        fn_torch(tx).fill_(-1.0)  # ...reaches the base, as it does in PyTorch
        np.testing.assert_array_equal(x.numpy(), tx.numpy())
    assert (x.numpy() == -1).sum() == out.numel()


def test_expand_is_a_view_and_reshape_of_a_strided_tensor_is_a_copy(torch):
    x = ma.tensor(np.arange(3.0).reshape(3, 1))
    assert np.shares_memory(x.expand(2, 3, 4).data, x.data)
    assert x.expand_as(ma.zeros(3, 5)).data.base is not None
    y = ma.tensor(np.arange(6.0).reshape(2, 3))
    tt = torch.arange(6.0).reshape(2, 3)
    # reshape of a transpose must copy: its rows are not rows of memory (PyTorch copies too)
    assert not np.shares_memory(y.t().reshape(-1).data, y.data)
    assert tt.t().reshape(-1).data_ptr() != tt.data_ptr()
    assert y.contiguous() is y
    c = y.t().contiguous()
    assert c.data.flags.c_contiguous and not np.shares_memory(c.data, y.data)


COPIES = [
    ("flip", lambda x: x.flip(0)),
    ("repeat", lambda x: x.repeat(1, 1)),
    ("repeat_interleave", lambda x: x.repeat_interleave(1, dim=0)),
    ("cat", lambda x: ma.cat([x])),
    ("stack", lambda x: ma.stack([x])),
]


@pytest.mark.parametrize("name, fn", COPIES, ids=[c[0] for c in COPIES])
def test_ops_that_copy_in_pytorch_copy(name, fn):
    x = ma.tensor(np.arange(12.0).reshape(3, 4))
    assert not np.shares_memory(fn(x).data, x.data)


# -- bad input: the kind of error PyTorch raises, and a message that names the shapes ------------

ERRORS = [
    (lambda lib, x: x.transpose(0, 2), r"transpose: axis 2 is out of range .* \[-2, 1\]"),
    (lambda lib, x: x.permute(0), r"permute: dims \(0,\) name 1 axes .* shape \(2, 3\)"),
    (lambda lib, x: x.permute(0, 0), "permute: .* name an axis twice"),
    (lambda lib, x: x.unsqueeze(3), r"unsqueeze: axis 3 is out of range .* \[-3, 2\]"),
    (lambda lib, x: x.squeeze(5), "squeeze: axis 5 is out of range"),
    (lambda lib, x: x.unsqueeze(1).t(), r"t\(\) expects .* shape \(2, 1, 3\) is 3-D"),
    (lambda lib, x: x[0].mT, r"mT is only supported on matrices .* 1-D tensor of shape \(3,\)"),
    (lambda lib, x: x.view(4, 2), r"view: cannot view shape \(2, 3\) \(6 elements\)"),
    (lambda lib, x: x.reshape(4, 2), r"reshape: cannot view shape \(2, 3\)"),
    (lambda lib, x: x.flatten(1, 0), "start_dim 1 comes after end_dim 0"),
    (lambda lib, x: x.unflatten(1, (2, 2)), r"sizes \(2, 2\) don't multiply up .* \(3\)"),
    (lambda lib, x: x.unflatten(1, ()), "sizes must be non-empty"),
    (lambda lib, x: x.expand(3), r"sizes provided \(1\) .* shape \(2, 3\)"),
    (lambda lib, x: x.expand(2, 4), r"expanded size \(4\) must match the existing size \(3\)"),
    (lambda lib, x: x.expand(-1, 2, 3), "-1 isn't allowed in a leading, new dimension 0"),
    (lambda lib, x: x.repeat(2), r"repeat sizes \(1\) can not be smaller .* \(2, 3\)"),
    (lambda lib, x: x.repeat_interleave(-1), "repeats must be non-negative"),
    (lambda lib, x: x.repeat_interleave(lib.tensor([1, 2, 3]), dim=0),
     r"3 repeats for size 2 \(shape \(2, 3\)\)"),
    (lambda lib, x: x.repeat_interleave(lib.tensor([[1, 1]]), dim=0), "0-d or 1-D"),
    (lambda lib, x: x.narrow(1, 4, 1), r"start 4 is out of range .* \[-3, 3\]"),
    (lambda lib, x: x.narrow(1, 2, 2), r"start \(2\) \+ length \(2\) exceeds the size 3"),
    (lambda lib, x: x.narrow(1, 0, -1), "length must be non-negative"),
    (lambda lib, x: x.narrow(5, 0, 1), "narrow: axis 5 is out of range"),
    (lambda lib, x: x.split(0, 1), "split_size can only be 0 if the dimension size is 0"),
    (lambda lib, x: x.split(-1), "split_size must be non-negative"),
    (lambda lib, x: x.split([1, 1], dim=1), r"sizes \[1, 1\] must .* sum exactly to 3"),
    (lambda lib, x: x.chunk(0), "chunks to be greater than 0"),
    (lambda lib, x: x.unbind(2), "unbind: axis 2 is out of range"),
    (lambda lib, x: x.flip(2), "flip: axis 2 is out of range"),
    (lambda lib, x: x.flip(0, 0), r"flip: dims \(0, 0\) name an axis more than once"),
    (lambda lib, x: lib.cat([x, lib.zeros(3, 2)]),
     r"cat: sizes .* except in dimension 0: tensor 0 has shape \(2, 3\) and tensor 1 has shape "
     r"\(3, 2\)"),
    (lambda lib, x: lib.cat([x, lib.zeros(2, 3, 1)]), r"same number of dimensions: .* \(2, 3, 1\)"),
    (lambda lib, x: lib.cat([x, x], dim=2), "cat: axis 2 is out of range"),
    (lambda lib, x: lib.cat([x[0, 0], x[0, 1]]), "0-d tensor .* cannot be concatenated"),
    (lambda lib, x: lib.cat([]), "non-empty list"),
    (lambda lib, x: lib.stack([x, x[0]]), r"shape \(2, 3\) at entry 0 and \(3,\) at entry 1"),
    (lambda lib, x: lib.stack([x, x], dim=3), r"stack: axis 3 is out of range .* \[-3, 2\]"),
]


@pytest.mark.parametrize("fn, pattern", ERRORS, ids=[e[1][:40] for e in ERRORS])
def test_bad_input_raises_pytorchs_kind_of_error(fn, pattern, torch):
    with pytest.raises(Exception) as torch_error:
        fn(torch, torch.zeros(2, 3))
    kind = type(torch_error.value)
    with pytest.raises(kind, match=pattern):  # an error PyTorch code's `except` catches
        fn(ma, ma.zeros(2, 3))


def test_dim_errors_are_also_minattns_value_errors():
    # older minattn code (and tests) catch ValueError for an axis out of range
    for fn in (lambda x: x.transpose(0, 5), lambda x: x.unsqueeze(4), lambda x: ma.cat([x], 3)):
        with pytest.raises(ValueError, match="out of range"):
            fn(ma.zeros(2, 3))


def test_zero_dim_tensors_at_the_edges(torch):
    s, ts = ma.tensor(2.0), torch.tensor(2.0)
    for fn in (lambda x: x.t(), lambda x: x.unsqueeze(-1), lambda x: x.flatten(),
               lambda x: x.squeeze(0), lambda x: x.squeeze(), lambda x: x.permute(()),
               lambda x: x.transpose(0, -1), lambda x: x.expand(3, 2),
               lambda x: x.repeat(2), lambda x: x.flip(0), lambda x: x.repeat_interleave(2)):
        out, want = fn(s), fn(ts)
        assert out.shape == tuple(want.shape)
        np.testing.assert_array_equal(out.numpy(), want.numpy())
    with pytest.raises(RuntimeError):
        torch.zeros(()).narrow(0, 0, 1)
    with pytest.raises(RuntimeError, match="0-d tensor"):
        ma.zeros(()).narrow(0, 0, 1)


# -- every new backward passes gradcheck, and a wrong one is caught ------------------------------


def _f64(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [ma.tensor(rng.standard_normal(s), dtype="float64", requires_grad=True) for s in shapes]


# (Function, case, input shapes, {mutant name: wrong backward})
MUTANTS = [
    (Transpose, lambda a: a.transpose(0, 1), [(3, 3)], {
        "not swapped back": lambda self, dout: dout,
        "negated": lambda self, dout: -dout.T,
    }),
    (Expand, lambda a: a.expand(2, 3, 4), [(3, 1)], {
        "first copy only": lambda self, dout: dout[0, :, :1],
        "mean, not sum": lambda self, dout: dout.mean(axis=(0, 2))[:, None],
    }),
    (Narrow, lambda a: a.narrow(1, 1, 2), [(3, 4)], {
        "slice shifted": lambda self, dout: np.pad(dout, ((0, 0), (0, 2))),
        "spread everywhere": lambda self, dout: np.repeat(dout, 2, axis=1),
    }),
    (Contiguous, lambda a: a.t().contiguous(), [(3, 3)], {
        "transposed": lambda self, dout: dout.T,
        "zeros": lambda self, dout: dout * 0,
    }),
    (Flip, lambda a: a.flip(0), [(3, 4)], {
        "not flipped back": lambda self, dout: dout,
        "flipped the wrong dim": lambda self, dout: np.flip(dout, axis=1),
    }),
    (Repeat, lambda a: a.repeat(2, 3), [(2, 3)], {
        "first tile only": lambda self, dout: dout[:2, :3],
        "interleaved, not tiled": lambda self, dout: dout.reshape(2, 2, 3, 3).sum(axis=(1, 3)),
    }),
    (RepeatInterleave, lambda a: a.repeat_interleave([2, 1, 3], dim=0), [(3, 2)], {
        "tiled, not interleaved": lambda self, dout: np.stack(
            [dout[i::3].sum(axis=0) for i in range(3)]),
        "first copy only": lambda self, dout: dout[[0, 2, 3]],
    }),
    (Cat, lambda a, b: ma.cat([a, b], dim=1), [(2, 3), (2, 3)], {
        "swapped slices": lambda self, dout: (dout[:, 3:], dout[:, :3]),
        "wrong dim": lambda self, dout: (dout[:, :3] * 0 + dout[:, :1], dout[:, 3:]),
    }),
    (Stack, lambda a, b: ma.stack([a, b], dim=-1), [(2, 3), (2, 3)], {
        "swapped": lambda self, dout: (dout[..., 1], dout[..., 0]),
        "summed": lambda self, dout: (dout.sum(-1), dout.sum(-1)),
    }),
]
MUTANT_CASES = [(cls, fn, shapes, name, wrong) for cls, fn, shapes, mutants in MUTANTS
                for name, wrong in mutants.items()]


@pytest.mark.parametrize("cls, fn, shapes", [m[:3] for m in MUTANTS],
                         ids=[m[0].__name__ for m in MUTANTS])
def test_backward_passes_gradcheck(cls, fn, shapes):
    assert ma.gradcheck(fn, _f64(*shapes), mode="full")


@pytest.mark.parametrize("cls, fn, shapes, mutant, wrong", MUTANT_CASES,
                         ids=[f"{c[0].__name__}-{c[3]}" for c in MUTANT_CASES])
def test_wrong_backward_is_caught(monkeypatch, cls, fn, shapes, mutant, wrong):
    monkeypatch.setattr(cls, "backward", wrong)
    assert not ma.gradcheck(fn, _f64(*shapes), mode="full", raise_exception=False), \
        f"{cls.__name__}: '{mutant}' passed gradcheck"


def test_shape_cases_of_minattn_gradcheck_pass():
    from minattn.tools import gradcheck as table

    assert len(table.SHAPE_CASES) >= 20
    for name, fn, shapes in table.SHAPE_CASES:
        assert ma.gradcheck(fn, table.make_inputs(shapes)), name


@pytest.mark.parametrize("cls", [Transpose, Expand, Narrow, Contiguous, Flip, Repeat,
                                 RepeatInterleave, Cat, Stack])
def test_shape_functions_save_no_input_arrays(cls):
    assert cls.saves_inputs is False


def _nanogpt_heads(lib, qkv, n_head: int):
    """nanoGPT's CausalSelfAttention reshapes, word for word (the softmax left out)."""
    B, T, C3 = qkv.size()
    C = C3 // 3
    q, k, v = qkv.split(C, dim=2)
    k = k.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, nh, T, hs)
    q = q.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, nh, T, hs)
    v = v.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, nh, T, hs)
    att = (q @ k.transpose(-2, -1)) * (1.0 / (k.size(-1) ** 0.5))  # (B, nh, T, T)
    y = att @ v  # (B, nh, T, hs)
    return y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)


def test_nanogpt_head_reshapes_run_unchanged(torch, rng):
    qkv_np = rng.standard_normal((2, 3, 12))
    g = rng.standard_normal((2, 3, 4))
    x = ma.tensor(qkv_np, dtype="float64", requires_grad=True)
    tx = torch.tensor(qkv_np, requires_grad=True)
    out, want = _nanogpt_heads(ma, x, 2), _nanogpt_heads(torch, tx, 2)
    np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-12)
    out.backward(ma.tensor(g))
    want.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
