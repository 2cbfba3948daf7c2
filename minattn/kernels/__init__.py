"""All of minattn's speed, behind one seam: the teaching path (engine, ops, attention, nn) is
plain array code, and asks this package for a fast twin where one exists.

    y = kernels.run(softmax_rows, x)       # softmax_rows's fast twin for x if there is one,
                                           # else softmax_rows(x) itself
    xp = kernels.array_module(a, b)        # NumPy with large ops on every core, or CuPy

What is here, and the plain reference each fast piece is held equal to (tests/kernels/):

    module             what                                         its reference
    threads.py         the thread pool; large elementwise ops and   the same NumPy call, unsplit
                       reductions split across it (ThreadedNumPy)
    blas.py            BLAS thread count and idle-thread spinning   (settings only)
    rows.py            which row-softmax twin computes an array;    ops/softmax.py softmax_rows,
                       the NumPy twin (cache-sized blocks of rows)  softmax_rows_backward
    numba_math.py      exp2 that vectorizes, row helpers, BLAS      (helpers of the two below)
                       c += a b, compiling with numba
    numba_rows.py      the row softmax and its backward in numba    ops/softmax.py
    numba_flash.py     flash attention forward and backward, numba  attention/flash.py
    cuda.py            CuPy and compiling CUDA C                    (plumbing)
    cuda_rows.py       the row softmax in CUDA                      ops/softmax.py
    cuda_flash.py      flash attention in CUDA                      attention/flash.py
    layout.py          shape, bias and row-layout checks of both    (checks)
    choice.py          which flash kernels; what impl=None runs     (measured thresholds)

One switch decides how much of it runs (``MINATTN_KERNELS``, read once at import, or
``use``, which also works as a context manager):

- ``"fast"`` (the default): the fastest twin available for each array;
- ``"numpy"``: no compiled CPU kernels: the NumPy twins (blocks of rows, threads) only;
- ``"reference"``: no twin and none of minattn's threads: every op runs the plain array code a
  student reads, so the whole forward and backward can be stepped through in a debugger.

>>> with ma.kernels.use("reference"):
...     out = F.scaled_dot_product_attention(q, k, v)   # plain NumPy, line by line

This package imports only ``minattn.backend``; nothing in it knows about tensors or ops.
"""

from __future__ import annotations

import os

from .. import backend
from . import choice, rows, threads

MODES = ("fast", "numpy", "reference")


def _from_environment() -> str:
    wanted = os.environ.get("MINATTN_KERNELS", "").strip().lower() or "fast"
    if wanted not in MODES:
        raise ValueError(f"MINATTN_KERNELS={wanted!r}: expected one of {', '.join(MODES)}")
    return wanted


_mode = _from_environment()


def mode() -> str:
    """The kernels in use: "fast", "numpy" or "reference"."""
    return _mode


class use:
    """Set the kernels in use: ``kernels.use("reference")`` for the rest of the program, or
    ``with kernels.use("reference"): ...`` for one block (restored when it ends)."""

    def __init__(self, name: str):
        global _mode
        if name not in MODES:
            raise ValueError(f"kernels.use({name!r}): expected one of {', '.join(MODES)}")
        self.before, _mode = _mode, name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _mode
        _mode = self.before
        return False


# reference function's name -> the function that finds its twin for some arguments (or None)
TWINS = {
    "softmax_rows": rows.forward_twin,  # ops/softmax.py
    "softmax_rows_backward": rows.backward_twin,  # ops/softmax.py
    "flash_forward": choice.flash_forward_twin,  # attention/flash.py
    "flash_backward": choice.flash_backward_twin,  # attention/flash.py
}


def twin(reference, *args, **kwargs):
    """The fast twin of ``reference`` for these arguments, or None (the reference then runs).

    A twin takes the reference's arguments and returns what it returns, up to rounding."""
    find = TWINS.get(reference.__name__)
    return None if find is None or _mode == "reference" else find(_mode, *args, **kwargs)


def run(reference, *args, **kwargs):
    """reference(*args, **kwargs), computed by its fast twin when there is one."""
    return (twin(reference, *args, **kwargs) or reference)(*args, **kwargs)


_threaded = threads.ThreadedNumPy()


def array_module(*arrays):
    """The array module for these arrays: NumPy's, with large elementwise ops and reductions
    on every core (``threads.ThreadedNumPy``), or CuPy's; plain NumPy under "reference"."""
    xp = backend.get_array_module(*arrays)
    return _threaded if xp is backend.np and _mode != "reference" else xp


def fastest_attention(q, S: int, dropout_p: float = 0.0, needs_grad: bool = False) -> str:
    """What ``scaled_dot_product_attention(impl=None)`` runs: "fused" or "flash" (choice.py)."""
    return choice.fastest_attention(_mode, q, S, dropout_p, needs_grad)


__all__ = ["MODES", "array_module", "fastest_attention", "mode", "run", "twin", "use"]
