"""The CUDA kernels' source (cuda_flash.py, cuda_rows.py), run on the CPU.

Without a GPU the CUDA kernels can still be checked: g++ compiles their source with a shim in
which a thread block is a set of std::threads, __syncthreads() a std::barrier and __shared__
a static array (blocks run one after another). A fake ``cupy`` (NumPy, with a RawModule that
builds and calls that library) stands in for ``kernels.cuda.cupy()``, through which every
CUDA kernel module reaches CuPy, so that the modules run unchanged.
"""

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from kernel_oracles import check_flash_kernels, check_softmax_kernels

import minattn as ma
from minattn.kernels import cuda, cuda_flash, cuda_rows, rows
from minattn.ops.softmax import softmax_rows, softmax_rows_backward

EMU_SHIM = r"""
#include <algorithm>
#include <barrier>
#include <cstring>
#include <math.h>
#include <thread>
#include <vector>
struct Dim { unsigned x = 0, y = 0, z = 0; };
static Dim blockIdx;
thread_local Dim threadIdx;
static std::barrier<>* block_barrier;
using std::max;
using std::min;
#define __global__
#define __device__
#define __launch_bounds__(n)
#define __restrict__
#define __shared__ static
#define __syncthreads() block_barrier->arrive_and_wait()
static float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
"""
KERNEL = re.compile(r'extern "C" __global__ void __launch_bounds__\(\w+\) (\w+)\((.*?)\)\s*\{',
                    re.S)


class EmulatedRawModule:
    """cupy.RawModule's interface over the CUDA source compiled for the CPU by g++."""

    def __init__(self, code, options=()):
        self.threads = int(re.search(r"#define THREADS (\d+)", code).group(1))
        real = ctypes.c_float if "typedef float T;" in code else ctypes.c_double
        launchers, self.argtypes = [], {}
        for name, params in KERNEL.findall(code):
            decls = [" ".join(p.replace("__restrict__", "").split()) for p in params.split(",")]
            names = ", ".join(d.split()[-1].lstrip("*") for d in decls)
            self.argtypes[name] = [
                ctypes.c_void_p if "*" in d else
                {"int": ctypes.c_int, "long long": ctypes.c_longlong, "T": real}[
                    d.rsplit(" ", 1)[0].replace("const", "").strip()] for d in decls]
            launchers.append(
                f'extern "C" void launch_{name}(int gx, int gy, int threads, '
                f'{", ".join(decls)}) {{\n'
                "  for (int by = 0; by < gy; ++by) for (int bx = 0; bx < gx; ++bx) {\n"
                "    blockIdx.x = bx; blockIdx.y = by;\n"
                "    std::barrier<> bar(threads); block_barrier = &bar;\n"
                "    std::vector<std::thread> pool;\n"
                "    for (int t = 0; t < threads; ++t)\n"
                f"      pool.emplace_back([&, t] {{ threadIdx.x = t; {name}({names}); }});\n"
                "    for (auto& th : pool) th.join();\n  }\n}\n")
        source = EMU_SHIM + code + "\n" + "".join(launchers)
        folder = os.path.join(tempfile.gettempdir(), "minattn-cuda-on-cpu")
        os.makedirs(folder, exist_ok=True)
        lib = os.path.join(folder, hashlib.sha1(source.encode()).hexdigest()[:16] + ".so")
        if not os.path.exists(lib):
            with open(lib[:-3] + ".cpp", "w") as f:
                f.write(source)
            subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w",
                            lib[:-3] + ".cpp", "-o", lib + ".tmp"], check=True)
            os.replace(lib + ".tmp", lib)
        self.lib = ctypes.CDLL(lib)

    def get_function(self, name):
        launcher = getattr(self.lib, "launch_" + name)
        launcher.argtypes = [ctypes.c_int] * 3 + self.argtypes[name]

        def launch(grid, block, args, shared_mem=0):
            assert tuple(block) == (self.threads,) and len(args) == len(self.argtypes[name])
            for a in args:  # what CuPy needs too: arrays, and scalars with a dtype
                assert isinstance(a, (np.ndarray, np.generic)), (name, type(a))
            values = [a.ctypes.data if isinstance(a, np.ndarray) else a.item() for a in args]
            gx, gy = (tuple(grid) + (1,))[:2]
            launcher(gx, gy, block[0], *values)

        return launch


class EmulatedCupy:
    """NumPy, dressed as CuPy, with RawModule running the CUDA source on the CPU."""

    RawModule = EmulatedRawModule
    ndarray = np.ndarray

    def __getattr__(self, name):
        return getattr(np, name)


def _have_cxx20() -> bool:
    if shutil.which("g++") is None:
        return False
    probe = subprocess.run(["g++", "-std=c++20", "-x", "c++", "-fsyntax-only", "-"],
                           input="#include <barrier>\nint main() {}\n", text=True,
                           capture_output=True)
    return probe.returncode == 0


@pytest.fixture
def emulated_cuda(monkeypatch):
    """cuda.cupy() answers with EmulatedCupy: the CUDA kernel modules run their source on the
    CPU (the compiled-module caches are emptied before and after)."""
    if not _have_cxx20():
        pytest.skip("needs g++ with C++20 <barrier> to run the CUDA source on the CPU")
    monkeypatch.setattr(cuda, "cupy", EmulatedCupy)  # cuda.cupy() is an EmulatedCupy()
    cuda_flash._module.cache_clear()
    cuda_rows._module.cache_clear()
    yield
    cuda_flash._module.cache_clear()
    cuda_rows._module.cache_clear()


IDENTITY = (lambda x: x), (lambda x: x)  # to_device, to_host: the "device" is the CPU


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_cuda_source_on_the_cpu_matches_oracles(emulated_cuda, dtype):
    for N, L, S, E, Ev, mask, is_causal in [(2, 37, 70, 8, 5, None, False),
                                            (2, 70, 29, 8, 5, None, True),
                                            (2, 45, 45, 8, 5, "bias", False),
                                            (1, 33, 21, 8, 5, "broadcast", False),
                                            (1, 130, 140, 8, 5, None, True)]:
        check_flash_kernels(cuda_flash, *IDENTITY, dtype, N, L, S, E, Ev, mask, is_causal)
    check_softmax_kernels(cuda_rows, *IDENTITY, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_cuda_source_keeps_large_scores(emulated_cuda, dtype):
    """-1e9 and finfo.min fills (rows of nothing else are uniform averages) and unscaled
    scores at scale 1e6: the backward kernels recompute the forward's very scores, so
    p = exp((s - m) - log l) is exact at the max (test_flash.py has the numba twin of this)."""
    for mask, scale in (("-1e9", None), ("finfo.min", None), (None, 1e6)):
        check_flash_kernels(cuda_flash, *IDENTITY, dtype, 2, 45, 70, 8, 5, mask, False,
                            scale=scale)


@pytest.mark.slow
@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-13), (np.float16, 2e-3)],
                         ids=["float64", "float16"])
@pytest.mark.parametrize("empty_rows", ["zero", "nan"])
def test_the_switch_hands_cupy_arrays_to_the_cuda_row_kernels(emulated_cuda, monkeypatch, rng,
                                                              empty_rows, dtype, atol):
    """The Softmax op and fused attention reach the CUDA row kernels through kernels.run (here
    on the CPU: the kernels emulated, and rows.kind told that these arrays live on the GPU).
    float16 is computed in float32 and written back into the caller's float16 array."""
    x = rng.standard_normal((3, 40, 70)).astype(dtype)
    x[0, 5] = -np.inf  # an empty row
    x[1, 2, 9] = np.nan
    dy = rng.standard_normal(x.shape).astype(dtype)
    with np.errstate(invalid="ignore"):  # the plain reference
        want = softmax_rows(x, empty_rows=empty_rows)
        want_dx = softmax_rows_backward(want, dy)
    monkeypatch.setattr(rows, "kind", lambda x, out=None, mode="fast": "cuda")
    calls = []
    real = cuda_rows.softmax_forward
    monkeypatch.setattr(cuda_rows, "softmax_forward",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    y = x.copy()
    assert ma.kernels.run(softmax_rows, y, out=y, empty_rows=empty_rows) is y  # in place
    assert calls and y.dtype == dtype
    np.testing.assert_allclose(y, want, atol=atol)
    dx = ma.kernels.run(softmax_rows_backward, y, dy.copy())
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, want_dx, atol=atol)


def test_cuda_grid_takes_more_heads_than_grid_y_allows():
    """Heads ride along grid x (up to 2^31 - 1 blocks), not grid y (65535): B * H = 70000
    heads of 100 rows launch as one axis of 140000 blocks; the kernels split blockIdx.x back
    into (head, block), which the emulated runs above check with several heads."""
    assert cuda_flash._grid(100, 70000) == (2 * 70000,)
    assert cuda_flash._grid(0, 3) == (3,)  # at least one block per head


def test_the_cuda_source_is_written_for_one_type():
    """kernel_source spells T and the math for float or double, with the block constants."""
    single = cuda_flash.kernel_source("float32", 64, 32)
    double = cuda_flash.kernel_source("float64", 64, 32)
    assert single.startswith("typedef float T;") and "expf(x)" in single
    assert double.startswith("typedef double T;") and "exp(x)" in double
    assert f"#define THREADS {cuda_flash.THREADS}" in single
    assert "#define DIM_E 64" in single and "#define DIM_EV 32" in single
    assert f"#define THREADS {cuda_rows.SOFTMAX_THREADS}" in cuda_rows.kernel_source("float32")
    with pytest.raises(KeyError):
        cuda_rows.kernel_source("float16")  # float16 is computed in float32
