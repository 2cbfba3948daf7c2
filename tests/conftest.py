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
