"""The engine: tensors, the graph, backward, no_grad, custom Functions, dtypes, errors."""

import numpy as np
import pytest

import minattn as ma
from minattn import backend


def f64(*shape, requires_grad=True):
    return ma.randn(*shape, dtype="float64", requires_grad=requires_grad)


# -- creating tensors ---------------------------------------------------------------------------


def test_tensor_dtypes_follow_pytorch():
    assert ma.tensor([1.0, 2.0]).dtype == np.float32  # Python floats: default float32
    assert ma.tensor(np.array([1.0, 2.0])).dtype == np.float64  # arrays keep their dtype
    assert ma.tensor([1, 2]).dtype == np.int64
    assert ma.tensor([True, False]).dtype == np.bool_
    for name in ("float64", np.float64, ma.float64):
        assert ma.tensor([1.0], dtype=name).dtype == np.float64
    assert ma.randn(2, 3, dtype=ma.float16).dtype == np.float16
    assert ma.zeros(2, 3).dtype == np.float32 and ma.ones((2, 3)).shape == (2, 3)


def test_tensor_copies_its_data():
    a = np.zeros(3)
    t = ma.tensor(a)
    a[0] = 5.0
    assert t.numpy()[0] == 0.0
    t.numpy()[1] = 7.0  # numpy() is a copy too
    assert t.numpy()[1] == 0.0


def test_manual_seed_makes_randn_reproducible():
    ma.manual_seed(42)
    a = ma.randn(3, 4).numpy()
    ma.manual_seed(42)
    b = ma.randn(3, 4).numpy()
    c = ma.randn(3, 4).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match=r"int64.*\(3,\)"):
        ma.tensor([1, 2, 3], requires_grad=True)
    t = ma.tensor([1, 2, 3])
    with pytest.raises(TypeError, match="floating-point"):
        t.requires_grad = True


def test_unknown_dtype_and_device_are_clear_errors():
    with pytest.raises(TypeError, match="dtype"):
        ma.tensor([1.0], dtype="float99")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        ma.tensor([1.0], device="tpu")


@pytest.mark.skipif(backend.cuda_available(), reason="tests the message on a machine without CUDA")
def test_cuda_without_gpu_says_what_is_missing():
    with pytest.raises(RuntimeError, match="device 'cuda' is not available: CuPy"):
        ma.tensor([1.0], device="cuda")


def test_numpy_asarray_reads_a_cpu_tensor():
    t = ma.tensor([1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(t), [1.0, 2.0])


def test_item_numpy_repr_len_bool():
    t = ma.tensor([[1.5]])
    assert t.item() == 1.5 and len(t) == 1 and bool(t)
    with pytest.raises(ValueError, match=r"one-element.*\(2,\)"):
        ma.tensor([1.0, 2.0]).item()
    assert "requires_grad=True" in repr(f64(2))
    assert "grad_fn=Mul" in repr(f64(2) * 2)


# -- the graph and backward ---------------------------------------------------------------------


def test_backward_scalar_needs_no_grad_argument():
    x = ma.tensor([1.0, 2.0, 3.0], dtype="float64", requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])


def test_backward_of_non_scalar_needs_a_gradient():
    x = f64(2, 3)
    with pytest.raises(RuntimeError, match=r"one-element.*\(2, 3\)"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"grad has shape \(3, 2\).*\(2, 3\)"):
        (x * 2).backward(np.ones((3, 2)))


def test_fan_out_gradients_add_up():
    # y = x * x + x uses x three times: dy/dx = 2x + 1
    x = f64(5)
    dout = np.random.default_rng(0).standard_normal(5)
    (x * x + x).backward(dout)
    np.testing.assert_allclose(x.grad.numpy(), dout * (2 * x.numpy() + 1))


def test_a_tensor_reached_by_paths_of_different_lengths():
    # y feeds the division directly and through the sum: both paths must arrive before
    # y passes its gradient on (reverse topological order, not the order of discovery).
    x = f64(4)
    y = x.exp()
    out = y / y.sum()
    dout = np.random.default_rng(1).standard_normal(4)
    out.backward(dout)
    p = out.numpy()
    np.testing.assert_allclose(x.grad.numpy(), p * (dout - (dout * p).sum()), rtol=1e-12)
    assert ma.gradcheck(lambda t: t.exp() / t.exp().sum(), (f64(4),))


def test_diamond_graphs_of_any_depth():
    x = f64(3)
    a = x * 2
    b = a.tanh() * a  # a reaches b directly and through tanh
    c = b * a + x  # and again here, x as well
    assert ma.gradcheck(lambda t: (lambda a: (a.tanh() * a) * a + t)(t * 2), (x,))
    c.backward(np.ones(3))
    assert np.isfinite(x.grad.numpy()).all()


def test_gradients_accumulate_across_backward_calls():
    x = f64(4)
    (x * 3).backward(np.ones(4))
    (x * 3).backward(np.ones(4))
    np.testing.assert_allclose(x.grad.numpy(), 6.0)


def test_second_backward_through_freed_graph_is_an_error():
    x = f64(3)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = f64(3)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)


def test_backward_frees_saved_arrays():
    x = f64(3)
    y = x.exp()
    fn = y._ctx
    y.backward(np.ones(3))
    assert fn.inputs is None and not hasattr(fn, "out")


def test_only_leaves_keep_grad_unless_asked():
    x = f64(3)
    h = x * 2
    k = x * 3
    k.retain_grad()
    (h * k).backward(np.ones(3))
    assert h.grad is None
    np.testing.assert_allclose(k.grad.numpy(), h.numpy())


def test_leaf_grads_do_not_alias_each_other():
    a, b = f64(3), f64(3)
    (a + b).backward(np.ones(3))
    a.grad.data *= 0  # a user zeroing one gradient in place must not touch the other
    np.testing.assert_allclose(b.grad.numpy(), 1.0)


def test_deep_graph_does_not_hit_the_recursion_limit():
    x = f64(2)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.backward(np.ones(2))
    np.testing.assert_allclose(x.grad.numpy(), 1.0)


def test_backward_on_a_tensor_without_grad_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        ma.tensor([1.0]).backward()


def test_no_grad_records_nothing_and_restores():
    x = f64(3)
    with ma.no_grad():
        y = x * 2
        assert not ma.is_grad_enabled()
    assert ma.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None

    @ma.no_grad()
    def double(t):
        return t * 2

    assert not double(x).requires_grad


def test_no_grad_nests_and_recurses():
    x = f64(3)

    @ma.no_grad()
    def recurse(n):
        if n:
            recurse(n - 1)
        return ma.is_grad_enabled(), (x * 2).requires_grad

    assert recurse(3) == (False, False)
    guard = ma.no_grad()
    with guard:
        with guard:
            pass
        assert not ma.is_grad_enabled()
    assert ma.is_grad_enabled() and (x * 2).requires_grad


def test_grad_mode_is_per_thread():
    import threading

    x = f64(3)
    inside, outside = threading.Event(), threading.Event()
    seen = []

    def other_thread():
        inside.wait()
        seen.append((x * 2).requires_grad)  # this thread never entered no_grad
        outside.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with ma.no_grad():
        inside.set()
        outside.wait(10)
    worker.join()
    assert seen == [True]


def test_casting_to_an_integer_dtype_drops_requires_grad():
    y = f64(3).astype("int64")
    assert y.dtype == np.int64 and not y.requires_grad


def test_detach_cuts_the_graph():
    x = f64(3)
    y = (x * 2).detach()
    assert not y.requires_grad and y.is_leaf


def test_dtype_cast_is_differentiable():
    x = ma.randn(3, requires_grad=True)  # float32
    y = x.to(ma.float64)
    assert y.dtype == np.float64
    y.backward(np.ones(3))
    assert x.grad.dtype == np.float32


def test_python_scalars_keep_the_tensor_dtype():
    x = ma.randn(3)  # float32
    assert (x * 2.5).dtype == np.float32 and (1.0 - x).dtype == np.float32
    assert (2 ** x).dtype == np.float32
    assert (x * np.float64(2)).dtype == np.float32 and (x / np.sqrt(4)).dtype == np.float32
    x16 = ma.randn(3, dtype="float16")
    assert ma.where(x16 > 0, x16, 0.0).dtype == np.float16  # the bool condition has no say


def test_arrays_mix_with_tensors_on_either_side():
    x = f64(3)
    a = np.arange(3.0)
    left, right = a + x, x + a
    assert isinstance(left, ma.Tensor) and isinstance(right, ma.Tensor)
    np.testing.assert_allclose(left.numpy(), right.numpy())


# -- user-defined Functions, exactly as the contract shows ---------------------------------------


class Cube(ma.Function):
    def forward(self, x):
        self.x = x
        return x**3

    def backward(self, dout):
        # out = x^3  =>  dx = 3 x^2 dout
        return 3 * self.x**2 * dout


class MulAdd(ma.Function):
    """out = a * b + c with a keyword parameter, returning a tuple of gradients."""

    def forward(self, a, b, c):
        self.a, self.b = a, b
        return self.alpha * a * b + c

    def backward(self, dout):
        return self.alpha * dout * self.b, self.alpha * dout * self.a, dout


def test_custom_function_as_in_the_contract():
    t = f64(4)
    y = Cube.apply(t)
    np.testing.assert_allclose(y.numpy(), t.numpy() ** 3)
    assert ma.gradcheck(Cube.apply, (t,))


def test_custom_function_with_several_inputs_and_parameters():
    a, b, c = f64(3), f64(3), f64(3)
    assert ma.gradcheck(lambda a, b, c: MulAdd.apply(a, b, c, alpha=2.0), (a, b, c))


def test_custom_backward_with_wrong_arity_or_shape_is_named():
    class TwoForOne(ma.Function):
        def forward(self, x):
            return x

        def backward(self, dout):
            return dout, dout

    class WrongShape(ma.Function):
        def forward(self, x):
            return x

        def backward(self, dout):
            return dout.sum()

    with pytest.raises(RuntimeError, match="TwoForOne.backward returned 2 gradient"):
        TwoForOne.apply(f64(3)).backward(np.ones(3))
    with pytest.raises(RuntimeError, match=r"WrongShape.backward.*shape \(\).*\(3,\)"):
        WrongShape.apply(f64(3)).backward(np.ones(3))


def test_constant_array_takes_tensors_arrays_and_lists():
    from minattn.core import constant_array

    arr = np.arange(3)
    assert constant_array(arr, "cpu", "op", "mask", "query") is arr
    np.testing.assert_array_equal(constant_array([[1, 0]], "cpu", "op", "mask", "query"),
                                  [[1, 0]])
    np.testing.assert_array_equal(constant_array(ma.tensor([1.0, 2.0]), "cpu", "op", "m", "q"),
                                  [1.0, 2.0])
    with pytest.raises(ValueError, match=r"op: mask is a constant here .* mask.detach\(\)"):
        constant_array(ma.tensor([1.0], requires_grad=True), "cpu", "op", "mask", "query")
    with pytest.raises(RuntimeError, match="op: mask is on cpu but query is on cuda"):
        constant_array(arr, "cuda", "op", "mask", "query")


def test_backward_passes_on_two_threads_accumulate_every_gradient():
    """Two threads running backward into one shared leaf lose no update (as in PyTorch)."""
    import threading

    w = ma.tensor(np.zeros(3), requires_grad=True)
    n = 1500

    def work():
        for _ in range(n):
            (w * 1.0).backward(ma.tensor(np.ones(3)))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(w.grad.numpy(), 2 * n)
