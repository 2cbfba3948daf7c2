"""Shared fixtures: the devices to run on, the PyTorch oracle, seeded generators."""

import numpy as np
import pytest

import minattn as ma
from minattn import backend

CUDA_OK, CUDA_WHY = backend.cuda_status()


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Every device test runs on the CPU and, where CuPy and a GPU are present, on CUDA."""
    if request.param == "cuda" and not CUDA_OK:
        pytest.skip(f"no CUDA device: {CUDA_WHY}")
    return request.param


@pytest.fixture
def torch():
    """PyTorch as a test oracle; tests that use it skip cleanly when it is absent."""
    return pytest.importorskip("torch")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_minattn():
    ma.manual_seed(0)
    yield


def _numba_ok() -> bool:
    from minattn.kernels import numba_math

    return numba_math.available()


@pytest.fixture(params=["fast", "numpy", "reference"])
def kernels(request):
    """Every kernel test runs with each setting of ``ma.kernels.use``: the fastest twins
    ("fast", numba where installed), the NumPy twins, and the plain references."""
    with ma.kernels.use(request.param):
        yield request.param


@pytest.fixture
def numba_kernels():
    """The numba kernels module tests, skipped (saying why) where numba cannot run."""
    from minattn.kernels import numba_math

    ok, why = numba_math.numba_status()
    if not ok:
        pytest.skip(why)
    return numba_math
