"""The machine ``minattn bench`` runs on: CPU model, threads, matmul peak, compile times.

Also ``reuse_large_allocations``, the one tweak the benchmark makes to its own process.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile

import numpy as np

from ... import backend
from .harness import _sync, _timed, _torch


def matmul_peak(device: str, repeat: int = 3) -> dict:
    """The float32 matmul rate of this machine, in GFLOP/s: NumPy (CuPy) and torch."""
    n = 2048 if device == "cpu" else 8192
    sync = _sync(device)
    rates = {}
    xp = backend.xp_for(device)
    a = xp.asarray(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32))
    a @ a
    rates["numpy" if device == "cpu" else "cupy"] = 2 * n**3 / min(
        _timed(lambda: a @ a, sync) for _ in range(repeat)) / 1e9
    torch = _torch()
    if torch is not None and (device == "cpu" or torch.cuda.is_available()):
        t = torch.tensor(backend.to_numpy(a), device="cuda" if device == "cuda" else "cpu")
        torch.mm(t, t)
        rates["torch"] = 2 * n**3 / min(
            _timed(lambda: torch.mm(t, t), sync) for _ in range(repeat)) / 1e9
    return rates


def compile_times() -> dict:
    """Seconds for the first float32 flash forward+backward call of the numba kernels: cold
    (an empty numba cache, in a fresh process) and warm (loading this machine's cache)."""
    script = ("import time, numpy as np\n"
              "t = time.perf_counter()\n"
              "from minattn.kernels import numba_flash as nk\n"
              "q = np.ones((1, 70, 16), np.float32)\n"
              "out, stats = nk.flash_forward(q, q, q, 0.25)\n"
              "nk.flash_backward(q, q, q, out, stats, q, 0.25)\n"
              "print(time.perf_counter() - t)\n")
    import minattn

    root = os.path.dirname(os.path.dirname(os.path.abspath(minattn.__file__)))  # holds minattn/
    times = {}
    with tempfile.TemporaryDirectory() as cache:
        for label, env in (("cold_s", {"NUMBA_CACHE_DIR": cache}), ("warm_s", {})):
            env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get(
                "PYTHONPATH", ""), **env)
            try:
                result = subprocess.run([sys.executable, "-c", script], env=env, timeout=600,
                                        capture_output=True, text=True, check=True)
                times[label] = round(float(result.stdout.split()[-1]), 2)
            except (subprocess.SubprocessError, ValueError, IndexError):
                times[label] = None
    return times


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def threads_info(device: str) -> dict:
    info = {"cpu_count": os.cpu_count()}
    torch = _torch()
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    try:
        import numba

        info["numba_threads"] = numba.get_num_threads()
        from ...kernels import numba_math

        info["numba_threading_layer"] = numba_math.threading_layer()
    except ImportError:
        pass
    if device == "cuda":
        cp = backend._import_cupy()
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) \
            else str(props["name"])
    return info


def reuse_large_allocations() -> bool:
    """Let glibc reuse freed large blocks instead of mapping fresh pages for each array.

    By default glibc serves every allocation above 32 MiB with a new mmap and returns it on
    free, so each (L, S) temporary of the NumPy paths costs page faults and zeroing, often
    more than its arithmetic (at H = 8, L = 2048 one is 128 MiB). PyTorch's CPU allocator
    keeps such blocks; this puts NumPy on the same footing, for this benchmark process only.
    Returns whether it took effect (glibc on Linux).
    """
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 2**30)  # C ints: below 2**31
                    and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False
