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


def flash_forward_twin(mode: str, q, *args, **kwargs):
    """The compiled flash_forward for q's device, or None."""
    pair = flash_pair(mode, q)
    return pair[0] if pair else None


def flash_backward_twin(mode: str, q, *args, **kwargs):
    """The compiled flash_backward for q's device, or None."""
    pair = flash_pair(mode, q)
    return pair[1] if pair else None


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
