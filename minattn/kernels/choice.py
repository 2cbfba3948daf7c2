"""Which implementation is fastest: the flash kernels for a device, and what
``scaled_dot_product_attention(impl=None)`` runs. The thresholds are measured; the numbers
behind them are in benchmarks/RESULTS.md ("Small shapes", "GPU").
"""

from __future__ import annotations

from .. import backend

# Below about this many scores (B*H*L*S) one fused op is as fast as the tiled kernels,
# whose per-call overhead then dominates; above it the numba kernels win (at 2^17 scores,
# 1.1 against 1.9 ms forward+backward; "Small shapes" in benchmarks/RESULTS.md).
FLASH_MIN_SCORES = 2**16

# On the GPU, fused attention (cuBLAS products) runs forward+backward faster than the CUDA
# flash kernels (74 against 95 ms at B=4, H=16, L=S=4096 on an H200; the flash kernels
# were faster forward only, 21 against 30 ms). It holds a few (..., L, S) arrays at once
# (scores becoming P, dP becoming dS, cuBLAS's workspace), so it is picked only while
# this many of them fit in the GPU memory still free; past that, flash.
FUSED_GPU_ARRAYS = 4


def flash_pair(mode: str, q):
    """(forward, backward) compiled flash kernels for q's device, or None for the references.

    CPU arrays get the numba kernels (numba_flash.py) when numba and SciPy are installed;
    CuPy arrays get the CUDA kernels (cuda_flash.py). Both take the arguments of
    attention/flash.py's flash_forward and flash_backward.
    """
    if mode == "reference":
        return None
    if backend.is_cupy_array(q):  # (under "numpy" too, which sets the CPU kernels only)
        from . import cuda_flash

        return cuda_flash.flash_forward, cuda_flash.flash_backward
    from . import numba_math

    if mode == "fast" and backend.is_numpy_array(q) and numba_math.available():
        from . import numba_flash

        return numba_flash.flash_forward, numba_flash.flash_backward
    return None


def finite_scores(q, k, v, scale, bias=None, dout=None) -> bool:
    """Whether every score scale q.k + bias is finite or -inf, and v (and dout) is finite.

    Only then may the compiled kernels run (their fast-math loops assume no NaN, see
    numba_math.py), and only then may causal attention skip the tiles above the diagonal:
    PyTorch computes every score, and one that is NaN or +inf, masked or not (NaN - inf and
    inf - inf are NaN), makes its whole row NaN; a NaN in v (or dout) reaches every row
    through the zeros that multiply it (0 * NaN = NaN). One pass over each input decides it,
    by the bound |scale q.k| <= |scale| E max|q| max|k| (and max|scale k|, which the numba
    kernels form): a NaN or inf input makes the bound NaN or inf, and the answer False.
    """
    work = backend.work_dtype(q.dtype)
    big = float(backend.np.finfo(work).max) / 2
    aq, ak = _max_abs(q), _max_abs(k)
    bound = max(q.shape[-1] * aq * ak, ak) * max(abs(scale), 1.0)  # in Python floats: no overflow
    if bias is not None and bias.size:
        bound += max(float(bias.max()), 0.0)  # NaN or +inf in the bias: the bound is too
    return bound < big and _max_abs(v) < big and (dout is None or _max_abs(dout) < big)


def _max_abs(x) -> float:
    """max |x| as a Python float: NaN if x holds a NaN, inf if an inf; 0 for an empty x."""
    if not x.size:
        return 0.0
    if x.dtype.itemsize == 2:
        # float16, whose max NumPy computes 50 times slower than float32's: |x| read off the
        # bits, the sign bit cleared; as integers they order as the magnitudes do, and a NaN
        # comes out above inf, above every finite value
        bits = x.view(backend.np.uint16) & backend.np.uint16(0x7FFF)
        return float(bits.max().view(x.dtype))
    return max(float(x.max()), -float(x.min()))


def flash_forward_twin(mode: str, q, k, v, scale, bias=None, *args, **kwargs):
    """The compiled flash_forward for q's device, or None: also for empty inputs (nothing
    to tile) and when finite_scores says no (the reference then gives PyTorch's NaN)."""
    pair = flash_pair(mode, q)
    fits = pair and q.size and k.size and v.size and finite_scores(q, k, v, scale, bias)
    return pair[0] if fits else None


def flash_backward_twin(mode: str, q, k, v, out, stats, dout, scale, bias=None, *args,
                        **kwargs):
    """The compiled flash_backward for q's device, or None (as flash_forward_twin)."""
    pair = flash_pair(mode, q)
    fits = pair and q.size and k.size and v.size and finite_scores(q, k, v, scale, bias, dout)
    return pair[1] if fits else None


def fastest_attention(mode: str, q, S: int, dropout_p: float = 0.0,
                      needs_grad: bool = False) -> str:
    """What ``impl=None`` runs for the query array q (..., L, E) and S keys.

    Dropout needs the materialized probabilities, so "fused". On the CPU: "flash" when
    compiled flash kernels exist and the problem is large enough for tiles to pay off, else
    "fused" (the NumPy flash reference loops over tiles in Python: exact, but slower than one
    matmul). On the GPU: "fused" when a backward pass will follow (``needs_grad``) and its
    (..., L, S) arrays fit in the free GPU memory, else "flash".
    """
    if dropout_p > 0:
        return "fused"
    scores = q.size // q.shape[-1] * S  # B * H * L * S
    if backend.is_cupy_array(q):
        need = FUSED_GPU_ARRAYS * scores * q.itemsize
        return "fused" if needs_grad and need <= backend.gpu_memory_available() else "flash"
    fast = flash_pair(mode, q) is not None
    return "flash" if fast and scores >= FLASH_MIN_SCORES else "fused"
