"""The rates that bound the open CPU targets, measured in one run on this machine.

    .venv/bin/python benchmarks/ceilings.py [--length 2048] [--repeat 9]

benchmarks/RESULTS.md explains why some targets of issue 4 stay open from these numbers:

- **Tile products.** Flash's products are BLAS calls on small tiles, each thread its own:
  per pair of a query block and a key block, q_i k_j^T (64 x 64 by 64 x 128) and p v_j in
  the forward pass, and five products of the same size in the backward pass. The rate of
  the first in a numba loop, on one thread and on every thread, is about the most the
  kernels' products can reach (the others measured 149-159 GFLOP/s on one thread, the same
  within the noise). Flash forward+backward does 16 L S E flops per head (the
  benchmark counts 14: the backward pass's recomputation of the scores is not counted), so
  16 H L S E at that rate is the least time its products alone can take, at H = 1 and 8.
- **torch SDPA forward+backward at H = 1 and 8**, when PyTorch is installed, beside the
  targets: flash at least 1.5x faster at H = 1, at least as fast at H = 8.
- **q k^T as one product** (L x 64 by 64 x L, the first product of fused and composed):
  NumPy's BLAS against PyTorch's.
- **One elementwise pass over an (L, S) float32 array** (one read, one write into a new
  array), as each of composed's elementwise ops makes: one thread, and split across every
  thread as minattn/kernels/threads.py does.

Medians of --repeat timings; the machine is shared, so rerun it for a second opinion.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from minattn.kernels import blas, threads
from minattn.tools.bench import reuse_large_allocations

BQ, BK, E = 64, 128, 64  # flash's CPU tiles (kernels/numba_flash.flash_forward's defaults)


def median_ms(fn, repeat: int) -> float:
    """Median wall time of fn() in ms, after two untimed calls."""
    fn()
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def tile_rates(repeat: int) -> tuple[float, float]:
    """GFLOP/s of the (BQ, E) x (E, BK) tile product in numba: one thread, every thread."""
    import numba

    @numba.njit(parallel=True)
    def products(a, b, c, reps):  # each thread: reps products of its own tiles
        for t in numba.prange(a.shape[0]):
            for r in range(reps):
                np.dot(a[t], b[r % b.shape[0]], c[t])  # (BQ, BK) = (BQ, E) x (E, BK)

    threads = numba.get_num_threads()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((threads, BQ, E), dtype=np.float32)
    b = rng.standard_normal((16, E, BK), dtype=np.float32)  # 16 key tiles, as at S = 2048
    c = np.empty((threads, BQ, BK), np.float32)
    reps = 2000
    flops = 2 * BQ * E * BK * reps
    with blas.single_thread():  # as inside the flash kernels
        one = median_ms(lambda: products(a[:1], b, c[:1], reps), repeat)
        every = median_ms(lambda: products(a, b, c, reps), repeat)
    return flops / one / 1e6, threads * flops / every / 1e6


def sdpa_ms(H: int, L: int, repeat: int):
    """torch SDPA forward+backward at B = 1, E = 64 (ms), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    q, k, v, dout = (torch.randn(1, H, L, E) for _ in range(4))
    for t in (q, k, v):
        t.requires_grad_(True)

    def step():
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        out.backward(dout)

    return median_ms(step, repeat)


def product_ms(L: int, repeat: int) -> dict:
    """q k^T, (L, E) x (E, L) in float32: NumPy's time and, if installed, torch's (ms)."""
    rng = np.random.default_rng(1)
    q, k = (rng.standard_normal((L, E), dtype=np.float32) for _ in range(2))
    scores = np.empty((L, L), np.float32)
    times = {"numpy": median_ms(lambda: np.matmul(q, k.T, out=scores), repeat)}
    try:
        import torch
    except ImportError:
        return times
    tq, tk, ts = torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(scores)
    times["torch"] = median_ms(lambda: torch.matmul(tq, tk.T, out=ts), repeat)
    return times


def pass_ms(L: int, repeat: int) -> tuple[float, float]:
    """One elementwise pass (np.negative into a new array, as composed's ops make theirs) over
    an (L, L) float32 array: on one thread, and split across every thread (ms)."""
    x = np.random.default_rng(2).standard_normal((L, L), dtype=np.float32)
    one = median_ms(lambda: np.negative(x), repeat)
    every = median_ms(lambda: threads.run(np.negative, x), repeat)
    return one, every


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=2048, help="L = S (default 2048)")
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per number")
    args = parser.parse_args(argv)
    L = args.length
    reuse_large_allocations()
    blas.short_spin_wait()

    one, every = tile_rates(args.repeat)
    print(f"tile product ({BQ} x {E}) x ({E} x {BK}) in numba: {one:.0f} GFLOP/s on one "
          f"thread, {every:.0f} on {threads.num_threads()} threads")
    for H, target in ((1, 1.5), (8, 1.0)):
        gflop = 16 * H * L * L * E / 1e9  # forward+backward products, with the recomputation
        line = (f"H = {H}, L = S = {L}: flash's products {gflop:.2f} GFLOP, at least "
                f"{gflop / every * 1e3:.1f} ms at that rate")
        sdpa = sdpa_ms(H, L, args.repeat)
        if sdpa is not None:
            line += (f"; torch SDPA forward+backward {sdpa:.1f} ms, divided by the target's "
                     f"{target}: {sdpa / target:.1f} ms")
        print(line)
    products = product_ms(L, args.repeat)
    print(f"q k^T, ({L} x {E}) x ({E} x {L}): " + ", ".join(
        f"{name} {ms:.2f} ms ({2 * L * L * E / ms / 1e6:.0f} GFLOP/s)"
        for name, ms in products.items()))
    one, every = pass_ms(L, args.repeat)
    print(f"one elementwise pass over a {L} x {L} float32 array: {one:.2f} ms on one thread, "
          f"{every:.2f} ms on {threads.num_threads()} threads")


if __name__ == "__main__":
    main()
