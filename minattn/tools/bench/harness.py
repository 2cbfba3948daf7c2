"""How ``minattn bench`` times and measures: device sync, settled timing, peak memory.

A ``Case`` is the pair of closures (forward, forward+backward) that runs one
implementation on one set of inputs, with the way its peak memory is measured.
"""

from __future__ import annotations

import gc
import time
import tracemalloc

from ... import backend

SETTLE_S = 0.15  # pause before each timed call (see _timed)
WARM_S = 0.25  # cases faster than this run again, untimed, after the pause...
WARM_BUSY_S = 0.1  # ...for this long


# -- timing helpers -----------------------------------------------------------------------------


def _sync(device: str):
    """A function that waits for the device to finish (a no-op on the CPU)."""
    if device != "cuda":
        return lambda: None
    cp = backend._import_cupy()

    def sync():
        cp.cuda.Device().synchronize()
        torch = _torch()
        if torch is not None and torch.cuda.is_available():
            torch.cuda.synchronize()

    return sync


def _timed(fn, sync, previous=None, settle: float = SETTLE_S) -> float:
    """Seconds fn takes, when the machine is settled.

    First a pause: the threads of the previous case spin for a while after their work
    (OpenBLAS's for up to 2^28 cycles, about 0.1 s, unless blas.short_spin_wait shortened
    it; PyTorch's OpenMP for less), and on a small machine that spinning would be charged
    to this case. A pause lets idle threads and cores fall asleep, though, and on a virtual
    machine they take tens of milliseconds of work to come back to speed (one 8 ms case
    measured 20 ms right after a pause and a single warm-up call); so a case that took
    under WARM_S last time runs untimed until WARM_BUSY_S of work has passed, then is timed.
    """
    sync()
    time.sleep(settle)
    if previous is None or previous < WARM_S:
        busy = time.perf_counter() + WARM_BUSY_S
        while True:
            fn()
            sync()
            if time.perf_counter() >= busy:
                break
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _status_kib(field: str):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _rss_growth_mib(fn):
    """Peak resident set growth while fn runs (Linux: reset the high-water mark first)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return None
    base = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    return None if base is None or peak is None else max(0.0, (peak - base) / 1024)


def _tracemalloc_mib(fn) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


class Case:
    """The closures that run one implementation on one set of inputs."""

    def __init__(self, name, forward, forward_backward, peak_memory, memory_how):
        self.name, self.forward, self.forward_backward = name, forward, forward_backward
        self.peak_memory, self.memory_how = peak_memory, memory_how
