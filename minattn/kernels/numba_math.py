"""What the numba kernels share: the exp2 that vectorizes, the row helpers, BLAS's c += a b,
and the compiling (numba is imported here, on first use).

The kernels work in base 2 (see ``_exp2``): numba has no vector exp without Intel's SVML,
and a scalar libm exp per score would cost as much as the tile products themselves.

How the kernels are compiled, once per process (``cache=True`` keeps them on disk):

- the helpers below are registered with numba (``register_jitable``); ``_float_from_bits``,
  ``_is_nan``, ``_fmax``, ``_gemm_acc`` and ``_exp2`` get typed versions that are a single
  LLVM instruction or a BLAS call (``compiler``);
- every fast-math flag but "ninf" is on: masked scores are -inf and must stay -inf;
- ``jit`` (parallel, prange) is for the flash kernels, ``jit_nogil`` for the row kernels,
  which run on the threads of kernels/threads.py;
- ``launch()`` surrounds every call of a flash kernel: one at a time, BLAS on one thread.

Numba is optional: this module imports without it. ``NUMBA_DISABLE_JIT=1`` runs the very
same code as Python (slowly), which is how a kernel is debugged.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import types as pytypes

import numpy as np

from . import blas

# Every fast-math flag except "ninf": masked scores are -inf and must stay -inf.
FASTMATH = frozenset({"nnan", "nsz", "arcp", "contract", "reassoc", "afn"})



def numba_status() -> tuple[bool, str]:
    """(usable, reason): whether the numba kernels can run here, and if not, why."""
    try:
        import numba
    except Exception as exc:  # ImportError, or an llvmlite that fails to load
        return False, (f"numba is not installed or failed to import ({type(exc).__name__}: "
                       f"{exc}); install it with `pip install minattn[fast]` (numba, scipy)")
    try:
        import scipy.linalg.cython_blas  # noqa: F401 - numba's np.dot calls its BLAS
    except Exception as exc:
        return False, (f"numba {numba.__version__} is installed but SciPy is not ({exc}); "
                       "numba's np.dot needs SciPy's BLAS: `pip install scipy`")
    return True, f"numba {numba.__version__}, threading layer {threading_layer()}"


@functools.cache
def available() -> bool:
    """Whether numba_status() says yes (asked once per process)."""
    return numba_status()[0]


# -- exp2 that vectorizes ---------------------------------------------------------------------
#
# The kernels compute softmax's exp(s - m) as exp2(log2(e) (s - m)): the row max is subtracted
# first, in the scores' own units (so that nothing overflows near finfo.min or rounds off at
# large |s|), and only the difference is scaled to base 2, where exp2 is the cheaper function:
# exp2(x) = 2^n 2^f with n = round(x) and f = x - n in [-1/2, 1/2]
# (exact). 2^f is a polynomial (degree 6, fitted at Chebyshev nodes, within 1.1e-7 in
# float32; degree 13 Taylor in float64, within 2e-16), and 2^n is made by writing n + bias
# into the exponent bits of a float. Every step is plain arithmetic, so LLVM vectorizes a loop
# that calls it (numba has no vector exp without Intel's SVML). Far below the smallest normal
# float (x <= -126.5 in float32, -1022.5 in float64) the result is 0, as exp2(-inf) is.

LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(LOG2E x)
LN2 = 0.6931471805599453  # ln(2): log(x) = LN2 log2(x)


def _float_from_bits(b):
    """The float that has the bits of the integer b: int32 -> float32, int64 -> float64."""
    return b.view(np.float32 if b.dtype == np.int32 else np.float64)  # numba: a bitcast


def _exp2_f32(x):
    """2**x for a float32 x, vectorizable."""
    v = min(max(x, np.float32(-127.0)), np.float32(127.0))
    n = np.floor(v + np.float32(0.5))
    f = v - n  # in [-1/2, 1/2]
    p = np.float32(1.5461444724808513e-4)
    p = p * f + np.float32(1.3400428177711937e-3)
    p = p * f + np.float32(9.61805667843204e-3)
    p = p * f + np.float32(5.550327226669895e-2)
    p = p * f + np.float32(0.24022650922289554)
    p = p * f + np.float32(0.6931472067028329)
    p = p * f + np.float32(1.0)
    # 2^n: the exponent field n + 127, shifted by 23 bits (as a float product, which is exact,
    # so that no integer arithmetic widens the vectors); n = -127 gives the bits of +0.0
    return p * _float_from_bits(np.int32((n + np.float32(127.0)) * np.float32(8388608.0)))


def _exp2_f64(x):
    """2**x for a float64 x, vectorizable."""
    v = min(max(x, -1023.0), 1023.0)
    n = np.floor(v + 0.5)
    r = (v - n) * LN2  # 2^f = e^r, |r| <= ln(2) / 2
    p = 1 / 6227020800
    p = p * r + 1 / 479001600
    p = p * r + 1 / 39916800
    p = p * r + 1 / 3628800
    p = p * r + 1 / 362880
    p = p * r + 1 / 40320
    p = p * r + 1 / 5040
    p = p * r + 1 / 720
    p = p * r + 1 / 120
    p = p * r + 1 / 24
    p = p * r + 1 / 6
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _float_from_bits(np.int64((n + 1023.0) * 4503599627370496.0))  # 2^n, 2^52


def _exp2(x):
    """2**x by _exp2_f32 or _exp2_f64 (numba picks one from x's type when compiling)."""
    return _exp2_f32(x) if x.dtype == np.float32 else _exp2_f64(x)



def _fmax(a, b):
    """max(a, b) (numba: LLVM's maxnum, which vectorizes in a reduction; max() does not)."""
    return max(a, b)


def _row_max(row):
    """max(row), in the row's dtype (float32 below becomes float64 for a float64 row)."""
    m = np.float32(-np.inf)
    for c in range(row.size):  # from 0: a loop over whole vectors leaves no scalar tail
        m = _fmax(m, row[c])
    return m



def _gemm_acc(a, b, c):
    """c += a @ b, in place: BLAS gemm with beta = 1 (numba: a, b C- or F-ordered tiles, c C).

    np.dot can only overwrite its output; summing tiles with it would cost one more pass
    over every tile. numba gives no public way to ask for beta = 1, so compiler() registers a
    version that calls the same BLAS wrapper as numba's own np.dot (numba_xxgemm).
    """
    c += a @ b


def _exp_shifted(row, shift, log2e):
    """row <- exp(row - shift) = 2^((row - shift) log2(e)); returns the new row's sum.

    The shift is subtracted before the scaling to base 2: exact where row is near shift, and
    nothing overflows near finfo.min. log2e is log2(e) in the row's dtype."""
    total = np.float32(0.0)  # float64 for a float64 row (numba unifies the two)
    for c in range(row.size):
        e = _exp2((row[c] - shift) * log2e)
        row[c] = e
        total += e
    return total


def _is_nan(x):
    """x is NaN: its exponent bits all set, its mantissa not 0 (numba: tested on the integer
    bits, since fast-math, which the kernels inherit, folds x != x to False)."""
    return x != x


def _count_nan(row):
    """How many entries of row are NaN."""
    n = 0
    for c in range(row.size):
        n += _is_nan(row[c])
    return n



# -- compiling: numba is imported here, on first use ------------------------------------------

def threading_layer() -> str:
    """The threading layer the kernels run on (or will: numba's choice until one has run)."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        chosen = os.environ.get("NUMBA_THREADING_LAYER", "default")
        return f"{chosen} (tbb, omp or workqueue, the first that loads)" \
            if chosen == "default" else chosen


@functools.cache
def compiler():
    """Register the helpers with numba; returns (jit, jit_nogil, register), the decorators that
    compile a kernel (cache=True: once per disk) and register one more helper.

    Threading layer: numba's default (TBB, else OpenMP, else its own workqueue), or what
    $NUMBA_THREADING_LAYER names. BLAS calls inside prange are what can oversubscribe or
    deadlock an OpenMP layer; the kernels hold BLAS to one thread while they run
    (blas.single_thread), which makes OpenMP safe here, and it measured about 5% faster
    than workqueue on two cores. GNU OpenMP is not fork-safe: a program that forks after
    running the kernels should set NUMBA_THREADING_LAYER=workqueue.
    """
    ok, why = numba_status()
    if not ok:
        raise RuntimeError(f"the numba kernels cannot run: {why}")
    import numba
    from llvmlite import ir as llvm_ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic, overload, register_jitable
    from numba.np import linalg as numba_linalg

    options = {"fastmath": set(FASTMATH), "error_model": "numpy"}
    register_jitable(**options)(_count_nan)
    for helper in (_row_max, _exp_shifted):
        register_jitable(**options)(helper)
    # exp2's f = x - round(x) must be evaluated as written: no "reassoc"
    exp_options = dict(options, fastmath=set(FASTMATH) - {"reassoc"})
    for helper in (_exp2_f32, _exp2_f64):
        register_jitable(**exp_options)(helper)

    @intrinsic
    def bitcast_to_float(typingctx, b):  # reinterpret an int's bits: one LLVM instruction
        to = types.float32 if b.bitwidth == 32 else types.float64
        return to(b), lambda context, builder, sig, args: builder.bitcast(
            args[0], context.get_value_type(to))

    @overload(_float_from_bits, jit_options=options)
    def _float_from_bits_typed(b):
        return lambda b: bitcast_to_float(b)

    @intrinsic
    def bitcast_to_int(typingctx, x):  # a float's bits as an int of its width
        to = types.int32 if x.bitwidth == 32 else types.int64
        return to(x), lambda context, builder, sig, args: builder.bitcast(
            args[0], context.get_value_type(to))

    @overload(_is_nan, jit_options=options)
    def _is_nan_typed(x):
        if x == types.float32:
            return lambda x: (bitcast_to_int(x) & np.int32(0x7FFFFFFF)) > np.int32(0x7F800000)
        return lambda x: ((bitcast_to_int(x) & np.int64(0x7FFFFFFFFFFFFFFF))
                          > np.int64(0x7FF0000000000000))

    @intrinsic
    def maxnum(typingctx, a, b):  # llvm.maxnum with no-NaN flags: a vectorizable max
        if not (isinstance(a, types.Float) and isinstance(b, types.Float)):
            return None
        wide = a if a.bitwidth >= b.bitwidth else b

        def codegen(context, builder, sig, args):
            ty = context.get_value_type(wide)
            fn = cgutils.get_or_insert_function(builder.module, llvm_ir.FunctionType(
                ty, [ty, ty]), f"llvm.maxnum.f{wide.bitwidth}")
            x, y = (context.cast(builder, v, t, wide) for v, t in zip(args, sig.args))
            return builder.call(fn, [x, y], fastmath=("nnan", "nsz"))

        return wide(a, b), codegen

    @overload(_fmax, jit_options=options)
    def _fmax_typed(a, b):
        return lambda a, b: maxnum(a, b)

    @overload(_gemm_acc, jit_options=options)
    def _gemm_acc_typed(a, b, c):
        # Row-major c (m, n) = a (m, k) b (k, n) is column-major c^T = b^T a^T. Read in
        # column-major order, a C-ordered tile is its own transpose: no transpose flag then.
        xxgemm = numba_linalg._BLAS().numba_xxgemm(c.dtype)
        kind = ord(numba_linalg.get_blas_kind(c.dtype))
        one = np.ones(1, numba.np.numpy_support.as_dtype(c.dtype))  # alpha = beta = 1
        b_c, a_c = b.layout == "C", a.layout == "C"
        trans_b, trans_a = ord("n" if b_c else "t"), ord("n" if a_c else "t")

        def gemm_acc(a, b, c):
            m, k = a.shape
            n = b.shape[1]
            xxgemm(kind, trans_b, trans_a, n, m, k, one.ctypes, b.ctypes, n if b_c else k,
                   a.ctypes, k if a_c else m, one.ctypes, c.ctypes, n)

        return gemm_acc

    @overload(_exp2, jit_options=options)  # picked from x's type when typing
    def _exp2_typed(x):
        return (lambda x: _exp2_f32(x)) if x == types.float32 else (lambda x: _exp2_f64(x))

    def jit(fn):
        return numba.njit(parallel=True, cache=True, **options)(fn)

    def jit_nogil(fn):  # one thread each; called from the threads of kernels/threads.py
        return numba.njit(nogil=True, cache=True, **options)(fn)

    return pytypes.SimpleNamespace(jit=jit, jit_nogil=jit_nogil,
                                   register=register_jitable(**options))


_launch_lock = threading.Lock()
CHUNKSIZE = 1  # prange hands out work items one at a time (see launch)


@contextlib.contextmanager
def launch():
    """Around every kernel call: one launch at a time, with BLAS on one thread.

    The BLAS thread count is process-wide state, and numba's workqueue layer (if that is the
    one in use) must not be entered by two Python threads at once: it would abort the
    process. The lock makes concurrent callers wait their turn instead.
    """
    import numba

    with _launch_lock, blas.single_thread():
        # Hand out work items one at a time, as threads become free: on a shared machine a
        # thread that loses its core for a while no longer holds up the others. (Results
        # do not depend on which thread runs an item.)
        before = numba.get_parallel_chunksize()
        numba.set_parallel_chunksize(CHUNKSIZE)
        try:
            yield
        finally:
            numba.set_parallel_chunksize(before)

