"""Softmax, log-softmax and cross-entropy: values, gradients, stability, and the
hand-written backward passes against their composed twins and against mutations."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minattn as ma
import minattn.functional as F
from minattn.ops.softmax import LogSoftmax, Softmax, log_softmax_composed, softmax_composed

SHAPES_AXES = [((5,), -1), ((3, 7), -1), ((3, 7), 0), ((2, 3, 4), 1), ((2, 3, 4), -3)]


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def backward_of(fn, x_np, dout_np, device, dtype="float64"):
    x = ma.tensor(x_np, dtype=dtype, requires_grad=True, device=device)
    out = fn(x)
    out.backward(ma.tensor(dout_np, dtype=dtype, device=device))
    return out.numpy(), x.grad.numpy()


# -- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
def test_softmax_and_log_softmax_match_numpy(shape, axis, device, rng):
    x = rng.standard_normal(shape) * 3
    t = ma.tensor(x, dtype="float64", device=device)
    np.testing.assert_allclose(F.softmax(t, axis=axis).numpy(), np_softmax(x, axis), rtol=1e-13)
    np.testing.assert_allclose(F.log_softmax(t, axis=axis).numpy(), np_log_softmax(x, axis),
                               rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(t.softmax(axis=axis).numpy(), np_softmax(x, axis), rtol=1e-13)
    np.testing.assert_allclose(t.log_softmax(axis).numpy(), np_log_softmax(x, axis),
                               rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
def test_softmax_gradients_match_torch(shape, axis, rng, torch):
    x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
    for ours, theirs in [(F.softmax, torch.softmax), (F.log_softmax, torch.log_softmax)]:
        out, dx = backward_of(lambda t, f=ours: f(t, axis=axis), x, dout, "cpu")
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt, dim=axis)
        yt.backward(torch.tensor(dout))
        np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_softmax_rows_sum_to_one_and_accept_arrays(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    p = F.softmax(x)  # a plain array works too
    assert isinstance(p, ma.Tensor) and p.dtype == np.float32
    np.testing.assert_allclose(p.numpy().sum(axis=-1), 1, rtol=1e-6)


def test_axis_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="out of range"):
        F.softmax(ma.randn(3, 4), axis=2)
    with pytest.raises(TypeError, match="one int"):
        F.softmax(ma.randn(3, 4), axis=(0, 1))


# -- hand-written backward against the composed twin and central differences -------------------


@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
@pytest.mark.parametrize("fused, composed", [(F.softmax, softmax_composed),
                                             (F.log_softmax, log_softmax_composed)])
def test_fused_equals_composed_twin(fused, composed, shape, axis, device, rng):
    x, dout = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    out_f, dx_f = backward_of(lambda t: fused(t, axis=axis), x, dout, device)
    out_c, dx_c = backward_of(lambda t: composed(t, axis=axis), x, dout, device)
    np.testing.assert_allclose(out_f, out_c, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(dx_f, dx_c, rtol=1e-11, atol=1e-13)


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data())
def test_fused_equals_composed_on_any_shape(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(len(shape) * 10 + axis)
    x, dout = rng.standard_normal(shape) * 4, rng.standard_normal(shape)
    for fused, composed in [(F.softmax, softmax_composed), (F.log_softmax, log_softmax_composed)]:
        out_f, dx_f = backward_of(lambda t, f=fused: f(t, axis=axis), x, dout, "cpu")
        out_c, dx_c = backward_of(lambda t, f=composed: f(t, axis=axis), x, dout, "cpu")
        np.testing.assert_allclose(out_f, out_c, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(dx_f, dx_c, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax, softmax_composed,
                                log_softmax_composed])
def test_gradcheck(fn, shape, axis, device):
    x = ma.randn(*shape, dtype="float64", requires_grad=True, device=device)
    assert ma.gradcheck(lambda t: fn(t, axis=axis), (x,))


# -- mutation tests: wrong backward passes must be caught ----------------------------------------


class SoftmaxForgotP(Softmax):
    def backward(self, dout):  # dx = dy - sum(dy * y): the leading factor y is missing
        y = self.out
        return dout - (dout * y).sum(axis=self.axis, keepdims=True)


class SoftmaxNoRowSum(Softmax):
    def backward(self, dout):  # dx = y * dy: the diagonal of the Jacobian only
        return self.out * dout


class SoftmaxSignFlip(Softmax):
    def backward(self, dout):
        y = self.out
        return -y * (dout - (dout * y).sum(axis=self.axis, keepdims=True))


class SoftmaxSumsAllAxes(Softmax):
    def backward(self, dout):  # the row sum taken over the whole tensor
        y = self.out
        return y * (dout - (dout * y).sum(keepdims=True))


class LogSoftmaxNoSoftmaxTerm(LogSoftmax):
    def backward(self, dout):  # dx = dy: forgets that log-sum-exp depends on x
        return dout


class LogSoftmaxUsesLogProbs(LogSoftmax):
    def backward(self, dout):  # multiplies by y = log p instead of p = exp(y)
        return dout - self.out * dout.sum(axis=self.axis, keepdims=True)


@pytest.mark.parametrize("mutant", [SoftmaxForgotP, SoftmaxNoRowSum, SoftmaxSignFlip,
                                    SoftmaxSumsAllAxes, LogSoftmaxNoSoftmaxTerm,
                                    LogSoftmaxUsesLogProbs])
def test_gradcheck_catches_wrong_backward(mutant):
    x = ma.randn(3, 5, dtype="float64", requires_grad=True)
    assert not ma.gradcheck(lambda t: mutant.apply(t, axis=-1), (x,), raise_exception=False)
    with pytest.raises(ma.GradcheckError):
        ma.gradcheck(lambda t: mutant.apply(t, axis=-1), (x,))
    correct = Softmax if issubclass(mutant, Softmax) else LogSoftmax  # the control passes
    assert ma.gradcheck(lambda t: correct.apply(t, axis=-1), (x,))


# -- huge logits ---------------------------------------------------------------------------------

TOLERANCE = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-12}


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_logits_of_1e4_give_finite_values_and_correct_gradients(dtype, device, rng):
    x = rng.uniform(-1e4, 1e4, size=(4, 7)).astype(dtype)
    x[0, :2] = 1e4  # a tie at the top
    x[1] = -1e4  # a flat row
    x64 = x.astype(np.float64)  # the oracle sees the very same (rounded) logits
    dout = rng.standard_normal((4, 7))
    tol = TOLERANCE[dtype]
    for fn, ref in [(F.softmax, np_softmax), (F.log_softmax, np_log_softmax)]:
        out, dx = backward_of(lambda t, f=fn: f(t, axis=-1), x, dout.astype(dtype), device,
                              dtype)
        assert np.isfinite(out).all() and np.isfinite(dx).all()
        expected = ref(x64, -1)
        np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
        p = np_softmax(x64, -1)
        g = dout.astype(dtype).astype(np.float64)
        if fn is F.softmax:
            expected_dx = p * (g - (g * p).sum(axis=-1, keepdims=True))
        else:
            expected_dx = g - p * g.sum(axis=-1, keepdims=True)
        np.testing.assert_allclose(dx, expected_dx, rtol=tol, atol=tol * 4)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_cross_entropy_with_logits_of_1e4(dtype, device, rng):
    x = rng.uniform(-1e4, 1e4, size=(5, 6)).astype(dtype)
    target = np.array([0, 5, 2, 2, 3])
    logits = ma.tensor(x, requires_grad=True, device=device)
    loss = F.cross_entropy(logits, ma.tensor(target, device=device))
    loss.backward()
    x64 = x.astype(np.float64)
    expected = -np_log_softmax(x64, -1)[np.arange(5), target].mean()
    assert np.isfinite(loss.item()) and np.isfinite(logits.grad.numpy()).all()
    assert loss.dtype == np.dtype(dtype)
    np.testing.assert_allclose(loss.item(), expected, rtol=TOLERANCE[dtype])
    expected_dx = (np_softmax(x64, -1) - np.eye(6)[target]) / 5  # (softmax - onehot) / N
    np.testing.assert_allclose(logits.grad.numpy(), expected_dx, atol=TOLERANCE[dtype])


# -- cross-entropy -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 4), (4,)])
def test_cross_entropy_matches_torch(shape, rng, torch):
    x = rng.standard_normal(shape) * 3
    target = rng.integers(0, shape[-1], size=shape[:-1])
    logits = ma.tensor(x, dtype="float64", requires_grad=True)
    loss = F.cross_entropy(logits, target)
    loss.backward()
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(xt, torch.tensor(target))
    lt.backward()
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), lt.item(), rtol=1e-12)
    np.testing.assert_allclose(logits.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_cross_entropy_gradcheck_and_target_kinds(rng):
    x = ma.tensor(rng.standard_normal((4, 3)), dtype="float64", requires_grad=True)
    target = [2, 0, 1, 1]
    assert ma.gradcheck(lambda t: F.cross_entropy(t, target), (x,))
    values = [F.cross_entropy(x, t).item() for t in
              (target, np.array(target), ma.tensor(target), np.array(target, dtype=np.uint8))]
    assert np.allclose(values, values[0], rtol=0, atol=0)
    one = F.cross_entropy(x[1], 0)  # one sample: (C,) logits and an int target
    np.testing.assert_allclose(one.item(), -np_log_softmax(x.numpy()[1], -1)[0])


def test_cross_entropy_rejects_bad_input():
    logits = ma.randn(3, 4)
    with pytest.raises(TypeError, match="integer class indices"):
        F.cross_entropy(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"target of shape \(2,\).*\(3, 4\)"):
        F.cross_entropy(logits, [0, 1])
    with pytest.raises(IndexError, match=r"outside \[0, 4\)"):
        F.cross_entropy(logits, [0, 4, 1])
    with pytest.raises(IndexError, match="outside"):
        F.cross_entropy(logits, [0, -1, 1])
    with pytest.raises(TypeError, match="floating point"):
        F.cross_entropy(ma.tensor([[1, 2]]), [0])
    with pytest.raises(ValueError, match=r"\(2, 3, 4\): expected shape \(2, 4\)"):
        F.cross_entropy(ma.randn(2, 3, 4), [0, 1])  # (N, C, d1) logits need (N, d1) targets
