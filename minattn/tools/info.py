"""``minattn info``: what this installation found (backends, devices, kernels, versions)."""

from __future__ import annotations

import importlib.metadata
import os
import platform

from .. import backend, kernels
from ..kernels import numba_math, threads


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _numba_kernels() -> str:
    ok, why = numba_math.numba_status()
    if kernels.mode() != "fast":
        return f"NumPy reference ({kernels.mode()!r} kernels asked for)"
    return ("numba: " if ok else "NumPy reference: ") + why


def _row_kernels() -> str:
    if kernels.mode() == "reference":
        return "the whole-array reference (softmax_rows)"
    if kernels.mode() == "fast" and numba_math.available():
        return "numba kernel"
    return "NumPy, in blocks of rows"


def collect() -> dict:
    """Everything ``minattn info`` prints, as a dict (also used by the benchmark's JSON)."""
    import numpy

    cuda_ok, cuda_why = backend.cuda_status()
    cupy_dists = [d for d in ("cupy", "cupy-cuda12x", "cupy-cuda13x", "cupy-cuda11x")
                  if _version(d) != "not installed"]
    return {
        "minattn": _version("minattn"),
        "kernels": f"{kernels.mode()} (MINATTN_KERNELS or ma.kernels.use sets them)",
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s)",
        "numpy": numpy.__version__,
        "numba": _version("numba"),
        "cupy": ", ".join(f"{d} {_version(d)}" for d in cupy_dists) or "not installed",
        "matplotlib": _version("matplotlib"),
        "torch (tests, benchmarks only)": _version("torch"),
        "flash kernels, cpu": _numba_kernels(),
        "flash kernels, cuda": "CuPy RawKernels" if cuda_ok else "unavailable (no CUDA)",
        "row softmax, cpu": _row_kernels(),
        "cpu threads (elementwise, rows)": f"{threads.num_threads()} (MINATTN_NUM_THREADS "
                                           "sets them)",
        "device cpu": "available (NumPy)",
        "device cuda": ("available: " if cuda_ok else "unavailable: ") + cuda_why,
        "default device": backend.default_device(),
    }


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    for key, value in collect().items():
        print(f"{key:<32} {value}")
    return 0
