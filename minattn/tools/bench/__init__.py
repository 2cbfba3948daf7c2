"""``minattn bench``: the attention implementations timed against each other and PyTorch.

Every implementation runs through ``minattn.functional.scaled_dot_product_attention(...,
impl=...)``, on the same float32 inputs, interleaved repeat by repeat (the machine may be
shared and noisy: the table shows medians):

    composed      primitive ops, autograd backward
    fused         one op, hand-written backward over the probabilities (its row softmax
                  by the numba kernel when numba is installed)
    fused-numpy   the same with NumPy alone (ma.kernels.use("numpy"))
    flash-ref     flash with the NumPy (or CuPy) references (ma.kernels.use("reference"))
    flash-ref-1024  the same with 1024 x 1024 tiles: on the GPU, each tile step is then one
                  cuBLAS product over every head (a candidate for a faster GPU path)
    flash-numba   flash with the numba kernels (CPU)
    flash-cupy    flash with the CUDA kernels (GPU)
    torch-sdpa    torch.nn.functional.scaled_dot_product_attention (when torch is installed)
    torch-math    plain torch autograd attention: matmul, softmax, matmul

Columns: median time; GFLOP/s counting 4 L S E flops per head forward and 14 L S E
forward+backward (the recomputation in flash's backward is not counted); speed relative to
torch-sdpa (its time over ours: above 1 is faster); the fraction of this machine's float32
matmul peak, measured in the same run; peak memory beyond the inputs (tracemalloc for
minattn on the CPU, resident-set growth for torch, the allocators' counters on the GPU).
Before timing anything, every implementation is checked against the others on a small case.
An implementation that cannot run here (PyTorch or numba missing) is named with the reason;
``--quick`` is a smoke test, and says so before and under its table: its timings are noise.

The code, by concern: ``harness`` (timing, device sync, memory measurement, ``Case``),
``cases`` (the minattn and PyTorch cases, their inputs, which can run here, agreement),
``machine`` (CPU model, threads, matmul peak, numba compile times, the allocator tweak),
``report`` (tables, targets, Markdown, JSON) and ``command`` (the options and ``run``).
"""

from .cases import (
    CASE_KERNELS,
    CPU_IMPLS,
    CUDA_IMPLS,
    MINATTN_IMPLS,
    available_impls,
    check_agreement,
    make_case,
    make_inputs,
    skipped_impls,
    unavailable,
)
from .command import (
    DEFAULT_SHAPES,
    FLOPS_PER_HEAD,
    LONG_LENGTHS,
    QUICK_SHAPES,
    add_arguments,
    long_sequence_check,
    parse_shapes,
    quick_notice,
    run,
    skipped_notice,
    time_shapes,
)
from .harness import Case
from .machine import compile_times, cpu_model, matmul_peak, reuse_large_allocations, threads_info
from .report import (
    HEADER,
    TARGETS,
    format_long,
    format_markdown,
    format_table,
    format_targets,
    speedup,
    target_checks,
)

__all__ = ["CASE_KERNELS", "CPU_IMPLS", "CUDA_IMPLS", "DEFAULT_SHAPES", "FLOPS_PER_HEAD", "HEADER",
           "LONG_LENGTHS", "MINATTN_IMPLS", "QUICK_SHAPES", "TARGETS", "Case", "add_arguments",
           "available_impls", "check_agreement", "compile_times", "cpu_model", "format_long",
           "format_markdown", "format_table", "format_targets", "long_sequence_check",
           "make_case", "make_inputs", "matmul_peak", "parse_shapes", "quick_notice",
           "reuse_large_allocations", "run", "skipped_impls", "skipped_notice", "speedup",
           "target_checks", "threads_info", "time_shapes", "unavailable"]
