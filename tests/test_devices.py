"""Devices: every op and its gradient on CUDA equals the CPU; moving tensors and modules;
the default device; clear errors for mixed devices and for a CUDA that is not there.

Every test that takes the ``device`` fixture runs on "cpu" and, where CuPy and a GPU are
present, on "cuda" (tests/conftest.py skips it otherwise).
"""

import numpy as np
import pytest

import minattn as ma
import minattn.functional as F
from minattn import backend
from minattn.tools.gradcheck import all_cases, make_inputs

CASES = all_cases()  # the primitive ops, softmax, cross-entropy and attention, as gradchecked


@pytest.fixture(autouse=True)
def _restore_default_device(monkeypatch):
    monkeypatch.delenv("MINATTN_DEVICE", raising=False)
    yield
    backend._default_device = None


# -- every op and its gradient: the device against the CPU, float64 ------------------------------


def _one_output(out):
    """split, chunk, unbind give tuples: their parts, flattened into one tensor."""
    return ma.cat([o.reshape(-1) for o in out]) if isinstance(out, tuple) else out


@pytest.mark.parametrize("name, fn, shapes", CASES, ids=[c[0] for c in CASES])
def test_op_and_gradient_on_device_match_cpu(device, name, fn, shapes):
    on_cpu = make_inputs(shapes, seed=7)
    on_device = make_inputs(shapes, seed=7, device=device)
    out_cpu, out_dev = (_one_output(fn(*xs)) for xs in (on_cpu, on_device))
    assert out_dev.device == device and out_dev.dtype == out_cpu.dtype == np.float64
    np.testing.assert_allclose(out_dev.numpy(), out_cpu.numpy(), rtol=1e-10, atol=1e-12)
    upstream = np.random.default_rng(3).standard_normal(out_cpu.shape)  # never out.sum()
    out_cpu.backward(upstream)
    out_dev.backward(backend.to_device(upstream, device))
    for x_cpu, x_dev in zip(on_cpu, on_device):
        assert x_dev.grad.device == device
        np.testing.assert_allclose(x_dev.grad.numpy(), x_cpu.grad.numpy(), rtol=1e-10,
                                   atol=1e-12)


@pytest.mark.parametrize("impl", ["composed", "fused", "flash"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_on_device_matches_cpu(device, impl, is_causal):
    rng = np.random.default_rng(11)
    shapes = [(2, 3, 37, 8), (2, 3, 45, 8), (2, 3, 45, 5)]
    data = [rng.standard_normal(s) for s in shapes]
    dout = rng.standard_normal((2, 3, 37, 5))
    mask = None if is_causal else rng.random((37, 45)) > 0.3
    results = {}
    for dev in ("cpu", device):
        q, k, v = (ma.tensor(d, requires_grad=True, device=dev) for d in data)
        m = None if mask is None else ma.tensor(mask, device=dev)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=is_causal,
                                             impl=impl)
        out.backward(backend.to_device(dout, dev))
        assert out.device == q.grad.device == dev
        results[dev] = [out.numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()]
    for got, want in zip(results[device], results["cpu"]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_gradcheck_runs_on_device(device):
    q, k, v = make_inputs([(2, 5, 4), (2, 6, 4), (2, 6, 3)], seed=2, device=device)
    assert ma.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, impl="flash"),
                        [q, k, v])


# -- moving tensors and modules ------------------------------------------------------------------


def test_tensor_to_device_and_back_is_differentiable(device):
    x = ma.tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)
    y = x.to(device)
    assert y.device == device and y.dtype == x.dtype
    z = (y * y).to("cpu")  # the copy back is an op too
    assert z.device == "cpu"
    z.backward(np.ones((2, 2), np.float32))
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())
    assert x.grad.device == "cpu"
    assert x.to(device, ma.float64).dtype == np.float64


def test_tensor_factories_take_a_device(device):
    t = ma.tensor([[1.0, 2.0]], device=device)
    assert t.device == device and t.dtype == np.float32
    np.testing.assert_array_equal(t.numpy(), [[1.0, 2.0]])
    for make in (ma.zeros, ma.ones, ma.randn):
        made = make(2, 3, device=device, dtype="float64")
        assert made.device == device and made.shape == (2, 3) and made.dtype == np.float64
    assert type(t.data).__module__.split(".")[0] == ("cupy" if device == "cuda" else "numpy")


def test_module_to_device_moves_every_parameter(device):
    block = ma.nn.Linear(4, 3)
    before = {n: p.numpy() for n, p in block.named_parameters()}
    params = list(block.parameters())
    assert block.to(device) is block
    assert [id(p) for p in block.parameters()] == [id(p) for p in params]  # same objects
    for name, p in block.named_parameters():
        assert p.device == device
        np.testing.assert_array_equal(p.numpy(), before[name])
    out = block(ma.randn(5, 4, device=device))
    out.backward(ma.ones(5, 3, device=device))
    assert all(p.grad.device == device for p in block.parameters())
    assert all(t.device == device for t in block.state_dict().values())
    block.load_state_dict(before)  # host arrays land on the module's device
    assert all(p.device == device for p in block.parameters())


def test_default_device_from_environment(device, monkeypatch):
    monkeypatch.setenv("MINATTN_DEVICE", device)
    assert ma.default_device() == device
    assert ma.zeros(2).device == ma.randn(2).device == ma.tensor([1.0]).device == device
    assert ma.tensor([1.0], device="cpu").device == "cpu"  # an explicit device wins


def test_set_default_device(device):
    ma.set_default_device(device)
    assert ma.default_device() == device and ma.ones(3).device == device
    ma.set_default_device("cpu")
    assert ma.ones(3).device == "cpu"


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_mixing_devices_names_both(device):
    if device != "cuda":
        pytest.skip("needs two devices")
    a, b = ma.randn(2, 3, device="cuda"), ma.randn(2, 3)
    for op in (lambda: a + b, lambda: b * a, lambda: a @ b.T, lambda: ma.where(a > 0, a, b)):
        with pytest.raises(RuntimeError, match=r"different devices.*(cuda.*cpu|cpu.*cuda)"):
            op()
    x = ma.randn(2, 3, device="cuda", requires_grad=True)
    with pytest.raises(RuntimeError, match="cuda.*cpu|cpu.*cuda"):
        (x * 2).backward(np.ones((2, 3), np.float32))  # a host gradient for a GPU tensor


@pytest.mark.gpu
def test_a_host_mask_for_gpu_attention_is_an_error_not_a_copy(device):
    if device != "cuda":
        pytest.skip("needs two devices")
    q = ma.randn(1, 4, 8, device="cuda")
    with pytest.raises(RuntimeError, match="cpu.*cuda|cuda.*cpu"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((4, 4), bool))


@pytest.mark.skipif(backend.cuda_available(), reason="checks the message where CUDA is missing")
def test_cuda_without_cupy_or_gpu_says_what_is_missing(monkeypatch):
    ok, why = backend.cuda_status()
    assert not ok
    for attempt in (lambda: ma.tensor([1.0], device="cuda"),
                    lambda: ma.zeros(2, device="cuda"),
                    lambda: ma.randn(2).to("cuda"),
                    lambda: ma.nn.Linear(2, 2).to("cuda"),
                    lambda: ma.set_default_device("cuda")):
        with pytest.raises(RuntimeError, match="device 'cuda' is not available: ") as err:
            attempt()
        assert why in str(err.value) and ("CuPy" in why)
    monkeypatch.setenv("MINATTN_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="device 'cuda' is not available"):
        ma.zeros(2)


def test_cupy_without_gpu_says_no_gpu(monkeypatch):
    """CuPy present but no usable GPU: the message says which of the two is missing."""

    class Runtime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    class FakeCupy:
        __version__ = "14.0.0"

        class cuda:  # noqa: N801 - cupy's name
            runtime = Runtime

    monkeypatch.setattr(backend, "_cupy", FakeCupy)
    ok, why = backend.cuda_status()
    assert not ok and "CuPy is installed but no CUDA GPU is usable" in why
    with pytest.raises(RuntimeError, match="no CUDA GPU is usable.*no CUDA-capable device"):
        ma.tensor([1.0], device="cuda")
    monkeypatch.setattr(backend, "_cupy", False)
    monkeypatch.setattr(backend, "_cupy_error", "ModuleNotFoundError: No module named 'cupy'")
    ok, why = backend.cuda_status()
    assert not ok and "CuPy is not installed" in why and "pip install" in why


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        ma.zeros(2, device="tpu")
