"""Creation functions, dtype names and the casting methods against PyTorch."""

import numpy as np
import pytest

import minattn as ma

torch = pytest.importorskip("torch")


def same(got, want):
    assert str(got.dtype) == str(want.dtype).removeprefix("torch."), (got.dtype, want.dtype)
    np.testing.assert_allclose(got.numpy().astype(float), want.numpy().astype(float),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("make", [
    lambda l: l.arange(5), lambda l: l.arange(2, 9, 3), lambda l: l.arange(0, 1, 0.1),
    lambda l: l.arange(-1.0, 1.0, 0.25), lambda l: l.arange(5, dtype=l.float64),
    lambda l: l.arange(0, 10, 2, dtype=l.long), lambda l: l.linspace(-1, 1, 7),
    lambda l: l.eye(3), lambda l: l.eye(2, 4), lambda l: l.full((2, 3), 7),
    lambda l: l.full((2,), 0.5), lambda l: l.full((2,), True), lambda l: l.zeros(2, dtype=l.long),
    lambda l: l.zeros_like(l.ones(2, 3, dtype=l.int32)), lambda l: l.ones_like(l.eye(2)),
    lambda l: l.full_like(l.eye(2), 4.5), lambda l: l.LongTensor([1, 2]),
    lambda l: l.FloatTensor([1, 2]), lambda l: l.tensor([1, 2]).float(),
    lambda l: l.tensor([1.7, -2.2]).long(), lambda l: l.tensor([0.0, 2.0]).bool(),
    lambda l: l.tensor([1.0, 2.0]).double(), lambda l: l.tensor([1.0]).half(),
    lambda l: l.tensor([1, 2]).type_as(l.tensor([0.5])), lambda l: l.ones(2).new_zeros(3),
    lambda l: l.ones(2, dtype=l.float64).new_full((2,), 3.0), lambda l: l.tensor([3]).int(),
    lambda l: l.tensor([1, 2]).type(l.float64),
], ids=lambda f: "")
def test_deterministic_creation_matches_pytorch(make):
    same(make(ma), make(torch))


def test_dtype_names_and_type_strings():
    for name in ("long", "int64", "int32", "int16", "int8", "uint8", "bool", "float", "double",
                 "half", "float16", "float32", "float64", "int"):
        assert str(getattr(ma, name)) == str(getattr(torch, name)).removeprefix("torch.")
    x, t = ma.zeros(2), torch.zeros(2)
    assert x.type() == t.type() == "torch.FloatTensor"
    assert x.type("torch.LongTensor").dtype == ma.long
    assert ma.get_default_dtype() == ma.float32 and x.element_size() == t.element_size()
    assert x.tolist() == t.tolist() and ma.is_tensor(x) and not ma.is_tensor(np.zeros(1))
    assert ma.numel(ma.zeros(2, 3)) == 6 and ma.is_floating_point(x)
    assert ma.cuda.is_available() in (True, False) and not x.is_cuda


def test_from_numpy_shares_memory_as_pytorch():
    a = np.zeros(3)
    t = ma.from_numpy(a)
    t[0] = 5.0
    a[1] = 7.0
    np.testing.assert_array_equal(t.numpy(), [5.0, 7.0, 0.0])
    assert t.dtype == np.float64  # keeps the array's dtype, as torch.from_numpy
    with pytest.raises(TypeError, match="NumPy array"):
        ma.from_numpy([1, 2])


def test_random_draws_are_seeded_and_in_range():
    ma.manual_seed(3)
    first = [ma.rand(4), ma.randint(0, 5, (50,)), ma.normal(2.0, 0.1, (200,)), ma.randn_like(
        ma.zeros(3)), ma.rand_like(ma.zeros(2))]
    ma.manual_seed(3)
    again = [ma.rand(4), ma.randint(0, 5, (50,)), ma.normal(2.0, 0.1, (200,)), ma.randn_like(
        ma.zeros(3)), ma.rand_like(ma.zeros(2))]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    r, i, n = first[:3]
    assert r.dtype == ma.float32 and 0 <= r.numpy().min() and r.numpy().max() < 1
    assert i.dtype == ma.long and set(i.numpy()) <= set(range(5))
    assert abs(float(n.mean()) - 2.0) < 0.05 and n.dtype == ma.float32
    x = ma.zeros(1000)
    x.normal_(1.0, 0.5)
    assert abs(float(x.mean()) - 1.0) < 0.1 and abs(float(x.std()) - 0.5) < 0.1
    x.uniform_(-2, -1)
    assert -2 <= x.numpy().min() and x.numpy().max() < -1


def test_multinomial_never_draws_zero_probability_and_follows_the_weights():
    ma.manual_seed(0)
    probs = ma.tensor([[0.0, 3.0, 1.0], [1.0, 0.0, 0.0]])
    draws = ma.multinomial(probs, 1)
    assert draws.shape == (2, 1) and draws.dtype == ma.long and int(draws[1, 0]) == 0
    many = ma.multinomial(ma.tensor([0.0, 3.0, 1.0]), 4000, replacement=True).numpy()
    assert 0 not in many and abs((many == 1).mean() - 0.75) < 0.03
    two = ma.multinomial(ma.tensor([0.2, 0.0, 0.8]), 2).numpy()
    assert sorted(two) == [0, 2]
    with pytest.raises(RuntimeError, match="without replacement"):
        ma.multinomial(ma.tensor([0.5, 0.5]), 3)
    with pytest.raises(RuntimeError, match="< 0"):
        ma.multinomial(ma.tensor([-1.0, 2.0]), 1)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(RuntimeError, match="step must be nonzero"):
        ma.arange(0, 3, 0)
    with pytest.raises(RuntimeError, match="low .* less than high"):
        ma.randint(3, 3, (2,))
    with pytest.raises(ValueError, match="unknown tensor type"):
        ma.zeros(2).type("torch.BananaTensor")
    with pytest.raises(TypeError, match="unknown dtype"):
        ma.zeros(2).type("banana")


def test_device_objects_compare_as_names_and_read_as_pytorch():
    d, td = ma.device("cpu"), torch.device("cpu")
    assert d == "cpu" and d.type == td.type == "cpu" and repr(d) == repr(td)
    x = ma.zeros(2).to(d)
    assert x.device == d and x.device.type == "cpu"
    assert repr(x.device) == repr(torch.zeros(1).device)
    assert ma.zeros(1, device=ma.device("cpu")).device == "cpu"
    assert ma.device("cuda", 1).index == torch.device("cuda", 1).index == 1
    with pytest.raises(RuntimeError, match="unknown device"):
        ma.device("tpu")
