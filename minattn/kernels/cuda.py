"""What the CUDA kernels share: CuPy, found on first use, and the compiling of CUDA C source.

Each kernel file (cuda_flash.py, cuda_rows.py) holds its CUDA C source as text, written for
a type ``T`` and compile-time constants; ``compile_source`` prepends the typedef, the
constants and the float or double spellings of -inf, exp, log and max, and compiles it with
``cupy.RawModule``.
"""

from __future__ import annotations

from .. import backend


def cupy():
    """The cupy module, or a RuntimeError that says why the CuPy kernels cannot run."""
    ok, why = backend.cuda_status()
    if not ok:
        raise RuntimeError(f"the CuPy kernels cannot run: {why}")
    return backend._import_cupy()


def source(body: str, dtype_name: str, params: dict) -> str:
    """The CUDA C source ``body`` for T = float (float32) or double (float64), with params
    as #defines."""
    single = {"float32": True, "float64": False}[dtype_name]
    lines = [f"typedef {'float' if single else 'double'} T;"]
    lines += [f"#define {name} {value}" for name, value in params.items()]
    if single:
        lines += ["#define NEG_INF (-__int_as_float(0x7f800000))",
                  "#define EXP(x) expf(x)", "#define LOG(x) logf(x)",
                  "#define MAX(a, b) fmaxf(a, b)"]
    else:
        lines += ["#define NEG_INF (-__longlong_as_double(0x7ff0000000000000LL))",
                  "#define EXP(x) exp(x)", "#define LOG(x) log(x)", "#define MAX(a, b) fmax(a, b)"]
    return "\n".join(lines) + "\n" + body


def compile_source(code: str):
    """cupy.RawModule of the source (CuPy caches the compiled binary on disk)."""
    return cupy().RawModule(code=code, options=("--std=c++14",))


def contiguous(x, dtype):
    """x as a C-ordered CuPy array in dtype (a copy only where it is not that already)."""
    return cupy().ascontiguousarray(x, dtype=dtype)
