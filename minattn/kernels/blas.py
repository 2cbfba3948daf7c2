"""The BLAS libraries that NumPy and numba call: how many threads they use, and how long their
idle threads spin.

Two pools of threads share the cores whenever minattn runs a compiled kernel between matrix
products: numba's threads (or the row-softmax threads of kernels/rows.py) and OpenBLAS's own.
Two things keep them from fighting:

- ``single_thread()``: inside it every BLAS library found runs on one thread. The numba
  kernels call BLAS on small tiles from each of their threads, so a multithreaded BLAS
  there would oversubscribe the cores (with some OpenMP runtimes, deadlock).
- ``short_spin_wait()``: after each call OpenBLAS keeps its idle threads spinning for about
  2^28 cycles (0.1 s), ready for the next call. A kernel that starts in that time shares
  its cores with them: a row softmax right after a matrix product measured twice as slow
  (48.8 against 23.7 ms at 16384 x 2048). This shortens the spin to 2^4 cycles, as
  ``OPENBLAS_THREAD_TIMEOUT=4`` does at start-up; matrix products measured no slower.

Found through /proc/self/maps (Linux), as threadpoolctl does, for the few libraries that
NumPy and numba reach; elsewhere nothing is found and both are no-ops.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os

SPIN_EXPONENT = "4"  # OpenBLAS spins 2^n cycles before sleeping; its default n is 28


def _loaded_blas() -> list:
    """The loaded shared libraries that look like a BLAS, as ctypes handles."""
    try:  # the BLAS that numba's np.dot calls, so that it is among the libraries found
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        pass
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if ".so" in line}
    except OSError:
        return []
    libs = []
    for path in sorted(p for p in paths if "blas" in p.lower() or "mkl" in p.lower()):
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libs


@functools.cache
def thread_controls() -> list:
    """(get, set) of the thread count of every OpenBLAS/MKL library loaded, as ctypes functions."""
    names = [("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
             ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
             ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
             ("openblas_get_num_threads", "openblas_set_num_threads"),
             ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads")]
    controls = []
    for lib in _loaded_blas():
        for get_name, set_name in names:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                get, set_ = getattr(lib, get_name), getattr(lib, set_name)
                get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                controls.append((get, set_))
                break
    return controls


@contextlib.contextmanager
def single_thread():
    """Inside: every BLAS found runs on one thread (the caller's threads are the parallelism)."""
    controls = thread_controls()
    before = [get() for get, _ in controls]
    for _, set_ in controls:
        set_(1)
    try:
        yield
    finally:
        for (_, set_), n in zip(controls, before):
            set_(n)


def short_spin_wait() -> int:
    """Let OpenBLAS's idle threads sleep after 2^4 cycles of spinning instead of 2^28.

    Call it once, early, while no other thread is running a BLAS call: it stops OpenBLAS's
    threads (``blas_thread_shutdown_``), and OpenBLAS starts them again, with the short
    spin, at its next call. Leaves alone an OPENBLAS_THREAD_TIMEOUT that the environment
    already sets. ``minattn`` commands call it at start-up. Returns how many libraries it
    changed.
    """
    if os.environ.get("OPENBLAS_THREAD_TIMEOUT", SPIN_EXPONENT) != SPIN_EXPONENT:
        return 0  # the user's choice
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = SPIN_EXPONENT
    changed = 0
    for lib in _loaded_blas():
        if hasattr(lib, "openblas_read_env") and hasattr(lib, "blas_thread_shutdown_"):
            lib.openblas_read_env()  # reads the timeout again...
            lib.blas_thread_shutdown_()  # ...which the threads take when they next start
            changed += 1
    return changed


def spin_status() -> str:
    """What OPENBLAS_THREAD_TIMEOUT is in this process (for `minattn bench` and `info`)."""
    n = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    return f"2^{n} cycles" if n else "OpenBLAS's default (2^28 cycles)"
