"""In-place ops, item assignment, the version check and type promotion, with PyTorch as the
oracle: the silent traps of NumPy semantics (``p -= lr * p.grad`` updating nothing, a
backward reading overwritten values) behave as in PyTorch."""

import numpy as np
import pytest

import minattn as ma
from minattn.ops.arithmetic import Remainder, unbroadcast
from minattn.ops.inplace import Clone, CopyInto, SetItem
from minattn.tools.gradcheck import INPLACE_CASES, all_cases

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)


def pair(*shape, requires_grad=True):
    data = RNG.standard_normal(shape)
    return (ma.tensor(data, dtype="float64", requires_grad=requires_grad),
            torch.tensor(data, dtype=torch.float64, requires_grad=requires_grad))


def close(a, b):
    np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-12)


# -- in-place arithmetic in the graph ---------------------------------------------------------

@pytest.mark.parametrize("step", [
    lambda y, w: y.add_(w, alpha=2.0),
    lambda y, w: y.sub_(w),
    lambda y, w: y.mul_(w),
    lambda y, w: y.div_(w * w + 1),
    lambda y, w: y.__iadd__(w),
    lambda y, w: y.__imul__(3.0),
    lambda y, w: y.copy_(w),
    lambda y, w: y.fill_(2.0),
    lambda y, w: y.zero_(),
], ids=["add_ alpha", "sub_", "mul_", "div_", "+=", "*= number", "copy_", "fill_", "zero_"])
def test_in_place_ops_differentiate_as_pytorch(step):
    x, tx = pair(3, 4)
    w, tw = pair(3, 4)
    g = RNG.standard_normal((3, 4))
    outs = []
    for lib, a, b in ((ma, x, w), (torch, tx, tw)):
        y = a * 1.5  # a non-leaf: it may be modified in place
        consumer = y * 2  # reads y before the in-place op: its gradient must not change
        step(y, b)
        (y * y + consumer).backward(lib.tensor(g) if lib is ma else torch.tensor(g))
        outs.append(y)
    close(outs[0], outs[1])
    close(x.grad, tx.grad)
    if tw.grad is not None:
        close(w.grad, tw.grad)
    else:
        assert w.grad is None


def test_item_assignment_differentiates_as_pytorch():
    x, tx = pair(4, 5)
    v, tv = pair(5)
    g = RNG.standard_normal((4, 5))
    for lib, a, b in ((ma, x, v), (torch, tx, tv)):
        y = a + 0.0
        y[1] = b  # a row from a tensor that requires grad
        y[2:, ::2] = 7.0  # a slice, from a number
        y[y < -1] = 0.0  # a boolean mask
        y[[0, 3], [1, 1]] = b[:2] * 3  # integer index arrays
        (y * y).backward(ma.tensor(g) if lib is ma else torch.tensor(g))
    close(x.grad, tx.grad)
    close(v.grad, tv.grad)


def test_item_assignment_without_a_graph_writes_the_memory_and_casts_as_pytorch():
    t, tt = ma.zeros(3, dtype=np.int64), torch.zeros(3, dtype=torch.int64)
    t[0], tt[0] = 2.7, 2.7  # PyTorch truncates into an integer tensor
    t[1:] = ma.tensor([5, 6])
    tt[1:] = torch.tensor([5, 6])
    np.testing.assert_array_equal(t.numpy(), tt.numpy())
    with pytest.raises(IndexError, match=r"shape \(3,\)"):
        t[5] = 1


# -- the silent traps ---------------------------------------------------------------------------

def test_an_sgd_step_under_no_grad_updates_the_parameter():
    p = ma.nn.Parameter(ma.tensor([1.0, 2.0]))
    (p * p).sum().backward()
    with ma.no_grad():
        p -= 0.1 * p.grad  # was a rebinding of the name p: the parameter stayed as it was
    np.testing.assert_allclose(p.numpy(), [0.8, 1.6])
    assert p.is_leaf and p.requires_grad and p._version == 1


def test_in_place_on_a_leaf_that_requires_grad_is_an_error_outside_no_grad():
    x, tx = pair(3)
    with pytest.raises(RuntimeError, match="leaf"):
        tx += 1
    with pytest.raises(RuntimeError, match=r"leaf tensor that requires grad .*no_grad"):
        x += 1
    with pytest.raises(RuntimeError, match="leaf"):
        x[0] = 2.0


@pytest.mark.parametrize("make, use, change", [
    (lambda x: x.exp(), lambda y: y + 1, lambda y: y.add_(1)),  # exp saved its output y
    (lambda x: x * 2, lambda y: y * y, lambda y: y.mul_(2)),  # y * y saved y
    (lambda x: x.softmax(-1), lambda y: y + 1, lambda y: y.__setitem__(0, 0.0)),
    (lambda x: x.tanh(), lambda y: y - 1, lambda y: y.zero_()),
], ids=["exp", "mul", "softmax", "tanh"])
def test_modifying_a_saved_tensor_raises_as_pytorch(make, use, change):
    for lib in (ma, torch):
        x = lib.tensor(RNG.standard_normal((2, 3)), requires_grad=True)
        y = make(x)
        out = use(y)  # add and sub save nothing: only what made y can notice
        change(y)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.backward(lib.ones_like(out) if lib is torch else ma.tensor(np.ones((2, 3))))


def test_the_error_names_the_op_and_the_versions():
    x = ma.randn(2, 3, requires_grad=True)
    y = x.exp()
    y += 1
    with pytest.raises(RuntimeError, match=r"output of Exp.*version 1; expected version 0"):
        y.backward(ma.randn(2, 3))


def test_a_view_shares_the_version_counter():
    x = ma.zeros(2, 3)
    v = x[0]
    v += 1  # writes x's memory, as PyTorch's views do
    np.testing.assert_array_equal(x.numpy(), [[1, 1, 1], [0, 0, 0]])
    assert x._version == v._version == 1
    d = x.detach()
    d.zero_()
    assert x._version == 2 and float(x.sum()) == 0.0


def test_in_place_on_a_view_in_a_graph_is_a_clear_error_not_a_wrong_gradient():
    x = ma.randn(2, 3, requires_grad=True)
    y = x * 1.0
    with pytest.raises(RuntimeError, match="view of another tensor"):
        y[0].mul_(2)


def test_in_place_keeps_the_dtype_as_pytorch():
    t, tt = ma.tensor([1, 2]), torch.tensor([1, 2])
    with pytest.raises(RuntimeError):
        tt += 0.5
    with pytest.raises(RuntimeError, match="can't be cast"):
        t += 0.5
    f = ma.ones(2, dtype=ma.float32)
    f += ma.tensor(2.0, dtype=ma.float64)  # a 0-d float64 does not widen: stays float32
    assert f.dtype == ma.float32


def test_clone_is_a_copy_in_the_graph():
    x, tx = pair(3)
    g = RNG.standard_normal(3)
    for lib, a in ((ma, x), (torch, tx)):
        c = a.clone()
        c.mul_(2)
        c.backward(ma.tensor(g) if lib is ma else torch.tensor(g))
    close(x.grad, tx.grad)
    assert not np.shares_memory(x.clone().data, x.data)


# -- type promotion -----------------------------------------------------------------------------

@pytest.mark.parametrize("a, b", [
    ([1, 2, 3], 2.5), ([1, 2, 3], 2), ("uint8", 300 % 256), ([True, False], 1),
    ([1.0, 2.0], ("float64", 0)), (("float64", 1), [1.0, 2.0]), ([1, 2], ("float64", 0)),
    (("int32", 1), ("int64", 0)), ([True, False], 2.5),
], ids=["int+float", "int+int", "uint8+int", "bool+int", "f32+f64 0-d", "f64 dims+f32",
        "int+f64 0-d", "int32+int64 0-d", "bool+float"])
@pytest.mark.parametrize("op", ["add", "mul", "div", "sub", "lt"])
def test_type_promotion_follows_pytorch(a, b, op):
    def make(lib, spec):
        if isinstance(spec, tuple):  # (dtype, ndim): a tensor of that dtype and rank
            dtype, ndim = spec
            data = np.array([1.5, 2.5]) if ndim else np.array(1.5)
            return lib.tensor(data.astype(dtype))
        if spec == "uint8":
            return lib.tensor(np.array([1, 2], dtype=np.uint8))
        return lib.tensor(spec) if isinstance(spec, list) else spec

    if op == "sub" and ((isinstance(a, list) and isinstance(a[0], bool)) or b is True):
        pytest.skip("PyTorch refuses - on booleans")
    got = getattr(ma, op)(make(ma, a), make(ma, b))
    want = getattr(torch, op)(make(torch, a), make(torch, b))
    assert str(got.dtype) == str(want.dtype).removeprefix("torch.")
    np.testing.assert_allclose(got.numpy().astype(float), want.numpy().astype(float),
                               rtol=1e-6)


def test_python_numbers_keep_the_tensor_dtype():
    assert (ma.ones(2, dtype=ma.float16) * 3).dtype == ma.float16
    assert (2.5 * ma.ones(2, dtype=ma.float64)).dtype == ma.float64


# -- small PyTorch conveniences ---------------------------------------------------------------

def test_format_index_and_numbers():
    t = ma.tensor(3.14159)
    assert f"{t:.2f}" == f"{torch.tensor(3.14159):.2f}" == "3.14"
    assert [10, 20, 30][ma.tensor(2)] == 30
    assert int(ma.tensor([7])) == 7 and float(ma.tensor(0.5)) == 0.5
    with pytest.raises(TypeError, match="integer tensors of a single element"):
        [1, 2][ma.tensor(1.0)]
    with pytest.raises(TypeError, match="one-element"):
        f"{ma.zeros(2):.2f}"


def test_tensor_constructor_as_pytorch():
    assert ma.Tensor([1, 2]).dtype == ma.float32 and torch.Tensor([1, 2]).dtype == torch.float32
    assert ma.Tensor(2, 3).shape == tuple(torch.Tensor(2, 3).shape) == (2, 3)
    assert ma.Tensor().shape == (0,)
    assert ma.Tensor(np.array([1, 2])).dtype == np.int64  # an array is wrapped as it is


def test_a_missing_method_names_itself():
    with pytest.raises(AttributeError, match=r"minattn has no torch.Tensor.unfold; see the"):
        ma.zeros(3).unfold(0, 2, 1)


def test_remainder_floor_divide_and_logical_ops_match_pytorch():
    a, ta = pair(5, requires_grad=True)
    b = np.array([0.7, -1.3, 2.0, 0.9, -0.4])
    g = RNG.standard_normal(5)
    (a % ma.tensor(b)).backward(ma.tensor(g))
    (ta % torch.tensor(b)).backward(torch.tensor(g))
    close(a.grad, ta.grad)
    i, ti = ma.tensor([7, -3, 4]), torch.tensor([7, -3, 4])
    np.testing.assert_array_equal((i // 2).numpy(), (ti // 2).numpy())
    np.testing.assert_array_equal((i % 3).numpy(), (ti % 3).numpy())
    m, tm = ma.tensor([True, False, True]), torch.tensor([True, False, True])
    for f in (lambda x: ~x, lambda x: x & (~x), lambda x: x | (~x), lambda x: x ^ x):
        np.testing.assert_array_equal(f(m).numpy(), f(tm).numpy())
    idx, tidx = ma.where(m), torch.where(tm)
    np.testing.assert_array_equal(idx[0].numpy(), tidx[0].numpy())


# -- gradchecks and mutants of the new backwards ------------------------------------------------

def _inputs(*shapes, seed=1):
    rng = np.random.default_rng(seed)
    return [ma.tensor(rng.standard_normal(s), dtype="float64", requires_grad=True)
            for s in shapes]


@pytest.mark.parametrize("name, fn, shapes", INPLACE_CASES, ids=[c[0] for c in INPLACE_CASES])
def test_new_backwards_pass_gradcheck(name, fn, shapes):
    assert ma.gradcheck(fn, _inputs(*shapes))


def test_inplace_cases_are_listed_for_the_command():
    assert {c[0] for c in INPLACE_CASES} >= {"setitem", "copy_", "remainder", "clone"}
    assert all(c in all_cases() for c in INPLACE_CASES)


CASE = {name: (fn, shapes) for name, fn, shapes in INPLACE_CASES}
MUTANTS = [
    (SetItem, "dx keeps the overwritten entries",
     lambda self, dout: (dout, unbroadcast(dout[self.index], self.value_shape))),
    (SetItem, "dvalue not summed", lambda self, dout: (None, dout[self.index][0])),
    (CopyInto, "dx passes dout", lambda self, dout: (dout, dout.sum(0))),
    (Remainder, "db sign", lambda self, dout: (dout, self.quotient * dout)),
    (Clone, "doubled", lambda self, dout: 2 * dout),
]


@pytest.mark.parametrize("cls, name, wrong", MUTANTS, ids=[m[1] for m in MUTANTS])
def test_wrong_backwards_are_caught(cls, name, wrong, monkeypatch):
    monkeypatch.setattr(cls, "backward", wrong)
    fn, shapes = CASE[{SetItem: "setitem", CopyInto: "copy_", Remainder: "remainder",
                       Clone: "clone"}[cls]]
    with pytest.raises(ma.GradcheckError):
        ma.gradcheck(fn, _inputs(*shapes))


def test_functional_inplace_flags_write_over_the_input_as_pytorch():
    import torch.nn.functional as tF

    import minattn.functional as F
    x, tx = pair(2, 3)
    g = RNG.standard_normal((2, 3))
    for f, a, lib in ((F, x, ma), (tF, tx, torch)):
        h = a * 2.0
        out = f.silu(h, inplace=True)
        assert out is h
        (h * 3.0).backward(ma.tensor(g) if lib is ma else torch.tensor(g))
        h2 = a.exp()  # exp saves its output ...
        f.silu(h2, inplace=True)  # ... which this overwrites
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            h2.backward(ma.tensor(g) if lib is ma else torch.tensor(g))
    close(x.grad, tx.grad)
