"""``minattn bench``: the attention implementations timed against each other and PyTorch.

Every implementation runs through ``minattn.functional.scaled_dot_product_attention(...,
impl=...)``, on the same float32 inputs, interleaved repeat by repeat (the machine may be
shared and noisy: the table shows medians):

    composed      primitive ops, autograd backward
    fused         one op, hand-written backward over the probabilities (its row softmax
                  by the numba kernel when numba is installed)
    fused-numpy   the same with NumPy alone (MINATTN_ROW_KERNELS=numpy)
    flash-ref     flash with the NumPy (or CuPy) reference kernels (MINATTN_FLASH_KERNELS)
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
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

from . import backend, blas

CPU_IMPLS = ("composed", "fused", "fused-numpy", "flash-ref", "flash-numba", "torch-sdpa",
             "torch-math")
CUDA_IMPLS = ("composed", "fused", "flash-ref", "flash-ref-1024", "flash-cupy", "torch-sdpa",
              "torch-math")
MINATTN_IMPLS = {"composed": "composed", "fused": "fused", "fused-numpy": "fused",
                 "flash-ref": "flash", "flash-ref-1024": "flash", "flash-numba": "flash",
                 "flash-cupy": "flash"}
# the environment each case runs in (read by flash.flash_kernels and ops/rowwise.py); every
# other case runs with these unset
CASE_ENV = {"flash-ref": {"MINATTN_FLASH_KERNELS": "reference"},
            "flash-ref-1024": {"MINATTN_FLASH_KERNELS": "reference"},
            "fused-numpy": {"MINATTN_ROW_KERNELS": "numpy"}}
FLOPS_PER_HEAD = {"forward": 4, "forward+backward": 14}  # times L * S * E
DEFAULT_SHAPES = {"cpu": "1x512,1x1024,1x2048,1x4096,8x512,8x1024,8x2048,8x4096",
                  "cuda": "16x4096"}
QUICK_SHAPES = "1x64,2x128"
LONG_LENGTHS = (4096, 8192, 16384)
SETTLE_S = 0.15  # pause before each timed call (see _timed)
WARM_S = 0.25  # cases faster than this run again, untimed, after the pause...
WARM_BUSY_S = 0.1  # ...for this long


def add_arguments(parser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--impl", default=None,
                        help="comma-separated implementations (default: all for the device: "
                             f"{', '.join(CPU_IMPLS)} on cpu; flash-cupy instead of "
                             "flash-numba on cuda)")
    parser.add_argument("--shapes", default=None,
                        help="comma-separated HxL (heads x length, L = S), e.g. 1x512,8x2048; "
                             f"default {DEFAULT_SHAPES['cpu']} (cpu), {DEFAULT_SHAPES['cuda']} "
                             "(cuda)")
    parser.add_argument("--batch", type=int, default=None, help="B (default 1 cpu, 4 cuda)")
    parser.add_argument("--dim", type=int, default=64, help="E = Ev, the head size")
    parser.add_argument("--no-malloc-reuse", dest="malloc_reuse", action="store_false",
                        help="leave glibc's allocator as it is (see reuse_large_allocations)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per case "
                        "(default 5; 2 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes and few repeats: checks that the benchmark runs")
    parser.add_argument("--no-long", dest="long", action="store_false",
                        help="skip the long-sequence memory check (flash at L = S = 16384)")
    parser.add_argument("--max-memory", type=float, default=3.0,
                        help="skip a case whose (L, S) arrays would need more GiB than this")
    parser.add_argument("--out", default=None, help="write the rows as JSON to this file")
    parser.add_argument("--markdown", default=None,
                        help="write the tables as Markdown to this file (for RESULTS.md)")


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


@contextlib.contextmanager
def _case_env(name: str):
    """The environment of CASE_ENV[name] while the case runs; the variables unset otherwise
    (and flash's tile sizes for flash-ref-1024)."""
    keys = {key for env in CASE_ENV.values() for key in env}
    before = {key: os.environ.get(key) for key in keys}
    for key in keys:
        os.environ.pop(key, None)
    os.environ.update(CASE_ENV.get(name, {}))
    from .attention import flash

    tiles = flash.BLOCK_Q, flash.BLOCK_K
    if name == "flash-ref-1024":
        flash.BLOCK_Q = flash.BLOCK_K = 1024
    try:
        yield
    finally:
        flash.BLOCK_Q, flash.BLOCK_K = tiles
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


# -- the cases: one (forward, forward+backward) pair of closures per implementation ------------


class Case:
    """The closures that run one implementation on one set of inputs."""

    def __init__(self, name, forward, forward_backward, peak_memory, memory_how):
        self.name, self.forward, self.forward_backward = name, forward, forward_backward
        self.peak_memory, self.memory_how = peak_memory, memory_how


def _minattn_case(name: str, arrays: dict, device: str, scale: float) -> Case:
    import minattn as ma
    import minattn.functional as F

    impl = MINATTN_IMPLS[name]
    consts = [ma.tensor(arrays[n], device=device) for n in ("q", "k", "v")]
    leaves = [ma.tensor(arrays[n], device=device, requires_grad=True) for n in ("q", "k", "v")]
    dout = backend.as_array(arrays["dout"], device=device)

    def forward():
        with _case_env(name), ma.no_grad():
            return F.scaled_dot_product_attention(*consts, scale=scale, impl=impl)

    def forward_backward():
        for t in leaves:
            t.grad = None
        with _case_env(name):
            out = F.scaled_dot_product_attention(*leaves, scale=scale, impl=impl)
            out.backward(dout)
        return out, [t.grad for t in leaves]

    if device == "cuda":
        def peak(fn):
            pool = backend._import_cupy().get_default_memory_pool()
            before = pool.used_bytes()
            fn()
            return max(0.0, (pool.total_bytes() - before) / 2**20)  # pool growth: an upper bound
        how = "cupy pool growth"
    else:
        peak, how = _tracemalloc_mib, "tracemalloc"
    return Case(name, forward, forward_backward, peak, how)


def _torch_case(name: str, arrays: dict, device: str, scale: float) -> Case:
    torch = _torch()
    dev = "cuda" if device == "cuda" else "cpu"
    consts = [torch.tensor(arrays[n], device=dev) for n in ("q", "k", "v")]
    leaves = [torch.tensor(arrays[n], device=dev, requires_grad=True) for n in ("q", "k", "v")]
    dout = torch.tensor(arrays["dout"], device=dev)

    def attend(q, k, v):
        if name == "torch-sdpa":
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)
        probs = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)  # (B, H, L, S)
        return probs @ v

    def forward():
        with torch.no_grad():
            return attend(*consts)

    def forward_backward():
        for t in leaves:
            t.grad = None
        out = attend(*leaves)
        out.backward(dout)
        return out, [t.grad for t in leaves]

    if device == "cuda":
        def peak(fn):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            fn()
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - before) / 2**20
        how = "torch.cuda peak"
    else:
        peak, how = _rss_growth_mib, "RSS growth"
    return Case(name, forward, forward_backward, peak, how)


def make_case(name: str, arrays: dict, device: str, scale: float) -> Case:
    if name.startswith("torch"):
        return _torch_case(name, arrays, device, scale)
    return _minattn_case(name, arrays, device, scale)


def _to_numpy(x):
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return x.numpy()  # a minattn Tensor


# -- the parts of a run -------------------------------------------------------------------------


def available_impls(device: str, wanted=None) -> list[str]:
    """The implementations to run: the device's list (or the asked ones) that can run here."""
    names = list(CUDA_IMPLS if device == "cuda" else CPU_IMPLS) if wanted is None else wanted
    unknown = [n for n in names if n not in CPU_IMPLS + CUDA_IMPLS]
    if unknown:
        raise SystemExit(f"minattn bench: unknown --impl {', '.join(unknown)}; choose from "
                         f"{', '.join(dict.fromkeys(CPU_IMPLS + CUDA_IMPLS))}")
    keep = []
    for n in names:
        if n.startswith("torch") and _torch() is None:
            continue
        if n.startswith("torch") and device == "cuda" and not _torch().cuda.is_available():
            continue
        if n == "flash-numba":
            from .attention import numba_kernels

            if device != "cpu" or not numba_kernels.available():
                continue
        if n == "flash-cupy" and device != "cuda":
            continue
        keep.append(n)
    return keep


def make_inputs(B, H, L, E, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((B, H, L, E)).astype(np.float32)
            for n in ("q", "k", "v", "dout")}


def check_agreement(impls, device) -> dict:
    """Every implementation's output and gradients against the first one's, on a small case."""
    arrays = make_inputs(1, 2, 96, 32, seed=1)
    results = {}
    for name in impls:
        case = make_case(name, arrays, device, 32**-0.5)
        out, grads = case.forward_backward()
        results[name] = [_to_numpy(out)] + [_to_numpy(g) for g in grads]
    first = impls[0]
    return {name: max(float(np.abs(a - b).max()) for a, b in zip(res, results[first]))
            for name, res in results.items()}


def matmul_peak(device: str, repeat: int = 3) -> dict:
    """The float32 matmul rate of this machine, in GFLOP/s: NumPy (CuPy) and torch."""
    n = 2048 if device == "cpu" else 8192
    sync = _sync(device)
    rates = {}
    xp = backend.xp_for(device)
    a = xp.asarray(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32))
    a @ a
    rates["numpy" if device == "cpu" else "cupy"] = 2 * n**3 / min(
        _timed(lambda: a @ a, sync) for _ in range(repeat)) / 1e9
    torch = _torch()
    if torch is not None and (device == "cpu" or torch.cuda.is_available()):
        t = torch.tensor(backend.to_numpy(a), device="cuda" if device == "cuda" else "cpu")
        torch.mm(t, t)
        rates["torch"] = 2 * n**3 / min(
            _timed(lambda: torch.mm(t, t), sync) for _ in range(repeat)) / 1e9
    return rates


def compile_times() -> dict:
    """Seconds for the first float32 flash forward+backward call of the numba kernels: cold
    (an empty numba cache, in a fresh process) and warm (loading this machine's cache)."""
    script = ("import time, numpy as np\n"
              "t = time.perf_counter()\n"
              "from minattn.attention import numba_kernels as nk\n"
              "q = np.ones((1, 70, 16), np.float32)\n"
              "out, lse = nk.flash_forward(q, q, q, 0.25)\n"
              "nk.flash_backward(q, q, q, out, lse, q, 0.25)\n"
              "print(time.perf_counter() - t)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    times = {}
    with tempfile.TemporaryDirectory() as cache:
        for label, env in (("cold_s", {"NUMBA_CACHE_DIR": cache}), ("warm_s", {})):
            env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get(
                "PYTHONPATH", ""), **env)
            try:
                result = subprocess.run([sys.executable, "-c", script], env=env, timeout=600,
                                        capture_output=True, text=True, check=True)
                times[label] = round(float(result.stdout.split()[-1]), 2)
            except (subprocess.SubprocessError, ValueError, IndexError):
                times[label] = None
    return times


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def threads_info(device: str) -> dict:
    info = {"cpu_count": os.cpu_count()}
    torch = _torch()
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    try:
        import numba

        info["numba_threads"] = numba.get_num_threads()
        from .attention import numba_kernels

        info["numba_threading_layer"] = numba_kernels.threading_layer()
    except ImportError:
        pass
    if device == "cuda":
        cp = backend._import_cupy()
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) \
            else str(props["name"])
    return info


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        try:
            H, L = (int(x) for x in part.lower().split("x"))
        except ValueError:
            raise SystemExit(f"minattn bench: --shapes wants HxL pairs like 8x2048, got "
                             f"{part!r}") from None
        shapes.append((H, L))
    return shapes


def _memory_gib(name: str, B: int, H: int, L: int) -> float:
    """What the (L, S) arrays of an implementation take, roughly (float32)."""
    per = {"composed": 8, "fused": 3, "fused-numpy": 3, "torch-math": 4}.get(name, 0)
    return per * B * H * L * L * 4 / 2**30


class Progress:
    """tqdm when it is installed, else one line per step on stderr."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.done, self.bar = total, 0, None
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="case", leave=False, disable=quiet)
        except ImportError:
            pass

    def step(self, text: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_description(text)
            self.bar.update()
        else:
            print(f"[{self.done}/{self.total}] {text}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def time_shapes(impls, shapes, B, E, device, repeat, max_memory, progress) -> list[dict]:
    """Median times of every implementation, interleaved repeat by repeat, per shape."""
    sync = _sync(device)
    rows = []
    for H, L in shapes:
        arrays = make_inputs(B, H, L, E)
        runnable = [n for n in impls if _memory_gib(n, B, H, L) <= max_memory]
        cases = {n: make_case(n, arrays, device, E**-0.5) for n in runnable}
        times = {(n, m): [] for n in runnable for m in FLOPS_PER_HEAD}
        for case in cases.values():  # warm up: compile, fill caches
            case.forward()
            case.forward_backward()
        for _ in range(repeat):
            for n, case in cases.items():
                for mode, fn in (("forward", case.forward),
                                 ("forward+backward", case.forward_backward)):
                    runs = times[(n, mode)]
                    runs.append(_timed(fn, sync, runs[-1] if runs else None))
                progress.step(f"{n} H={H} L={L}")
        memory = {}
        for n, case in cases.items():
            gc.collect()
            memory[n] = case.peak_memory(case.forward_backward)
        for n in impls:
            for mode, per_head in FLOPS_PER_HEAD.items():
                row = {"impl": n, "device": device, "mode": mode, "B": B, "H": H, "L": L,
                       "S": L, "E": E, "dtype": "float32"}
                if n not in runnable:
                    row["skipped"] = (f"needs ~{_memory_gib(n, B, H, L):.1f} GiB > "
                                      f"--max-memory {max_memory}")
                else:
                    t = statistics.median(times[(n, mode)])
                    row.update(median_ms=t * 1e3, runs=len(times[(n, mode)]),
                               times_ms=[round(x * 1e3, 4) for x in times[(n, mode)]],
                               gflops=per_head * B * H * L * L * E / t / 1e9,
                               peak_mib=memory[n] if mode == "forward+backward" else None,
                               memory_how=cases[n].memory_how)
                rows.append(row)
        del cases
        gc.collect()
    _relate(rows)
    return rows


def speedup(ref, ours) -> float:
    """How many times faster ``ours`` ran than ``ref`` (two rows of one run): the median over
    repeats of ref's time divided by ours in the same repeat. The implementations take turns
    within each repeat, so a stretch where the shared machine runs slow slows both sides of
    a pair; the ratio of the two medians is the fallback for rows without their repeats."""
    a, b = ref.get("times_ms"), ours.get("times_ms")
    if a and b and len(a) == len(b):
        return statistics.median(x / y for x, y in zip(a, b))
    return ref["median_ms"] / ours["median_ms"]


def _relate(rows) -> None:
    """Speed relative to torch-sdpa for the same shape and mode."""
    ref = {(r["H"], r["L"], r["mode"]): r for r in rows
           if r["impl"] == "torch-sdpa" and "median_ms" in r}
    for r in rows:
        base = ref.get((r["H"], r["L"], r["mode"]))
        if base and "median_ms" in r:
            r["speed_vs_sdpa"] = speedup(base, r)


def long_sequence_check(device: str, lengths, E: int, repeat: int) -> list[dict]:
    """Flash forward+backward at B = H = 1 for growing L = S: time ~ L S, memory ~ L."""
    sync = _sync(device)
    name = "flash-numba" if device == "cpu" else "flash-cupy"
    rows = []
    for L in lengths:
        arrays = make_inputs(1, 1, L, E, seed=2)
        case = _minattn_case(name, arrays, device, E**-0.5)
        case.forward_backward()  # warm up
        t = statistics.median(_timed(case.forward_backward, sync) for _ in range(repeat))
        gc.collect()
        peak = case.peak_memory(case.forward_backward)
        del case
        rows.append({"impl": name, "mode": "forward+backward", "B": 1, "H": 1, "L": L, "S": L,
                     "E": E, "median_ms": t * 1e3, "peak_mib": peak,
                     "ns_per_score": t / (L * L) * 1e9,
                     "one_LxS_float32_mib": L * L * 4 / 2**20})
    return rows


# -- output ---------------------------------------------------------------------------------------


HEADER = ("impl", "mode", "B", "H", "L=S", "median ms", "GFLOP/s", "vs SDPA", "% peak",
          "peak MiB")


def _cells(r, peak_gflops: float, digits: int) -> list[str]:
    """One row's cells under HEADER: the numbers with ``digits`` decimals (one fewer for
    GFLOP/s and the memory), or the reason in the time's cell for a skipped case."""
    first = [r["impl"], r["mode"], str(r["B"]), str(r["H"]), str(r["L"])]
    if "median_ms" not in r:
        return first + [f"skipped: {r['skipped']}"] + [""] * 4
    speed = f"{r['speed_vs_sdpa']:.2f}" if r.get("speed_vs_sdpa") else "-"
    mem = f"{r['peak_mib']:.{digits - 1}f}" if r.get("peak_mib") is not None else "-"
    return first + [f"{r['median_ms']:.{digits}f}", f"{r['gflops']:.{digits - 1}f}", speed,
                    f"{100 * r['gflops'] / peak_gflops:.{digits - 1}f}%", mem]


def format_table(rows, peak_gflops: float) -> str:
    w = max([12] + [len(r["impl"]) for r in rows])  # the impl column fits the longest name
    widths = (w, 17, 2, 2, 5, 10, 8, 7, 7, 9)

    def line(cells, skipped=False):  # a skipped case's reason runs past the number columns
        shown = cells[:5] if skipped else cells
        text = " ".join(f"{c:<{n}}" if i < 2 else f"{c:>{n}}"
                        for i, (c, n) in enumerate(zip(shown, widths)))
        return f"{text}  {cells[5]}" if skipped else text

    head = line(HEADER)
    return "\n".join([head, "-" * len(head)]
                     + [line(_cells(r, peak_gflops, 2), "median_ms" not in r) for r in rows])


# The speed targets of the benchmark's issue: (text, our impl, reference impl, H, L, line).
# A positive line is the least speed-up (reference time / ours) that meets it; a negative
# one, -x, the most slow-down (ours / reference) that does.
TARGETS = [
    ("flash at least as fast as torch SDPA, H=8", "flash-numba", "torch-sdpa", 8, 2048, 1.0),
    ("flash at least 1.5x torch SDPA, H=1", "flash-numba", "torch-sdpa", 1, 2048, 1.5),
    ("fused at least as fast as torch-math, H=8", "fused", "torch-math", 8, 2048, 1.0),
    ("fused at least as fast as torch-math, H=1", "fused", "torch-math", 1, 2048, 1.0),
    ("fused-numpy at least as fast as torch-math, H=8", "fused-numpy", "torch-math", 8, 2048,
     1.0),
    ("fused-numpy at least as fast as torch-math, H=1", "fused-numpy", "torch-math", 1, 2048,
     1.0),
    ("composed at most 1.5x the time of fused, H=8", "composed", "fused", 8, 2048, -1.5),
    ("composed at most 1.5x the time of fused, H=1", "composed", "fused", 1, 2048, -1.5),
    ("flash-cupy at most 1.5x the time of torch SDPA, H=16", "flash-cupy", "torch-sdpa", 16,
     4096, -1.5),
    ("fused at most 1.5x the time of torch SDPA, H=16", "fused", "torch-sdpa", 16, 4096, -1.5),
]


def target_checks(rows, long_rows, peak_gflops: float) -> list[dict]:
    """The TARGETS (forward+backward) that this run's rows can answer, each with the ratio
    measured and whether it met the line; also 65% of peak for flash at H=8 and flash's
    memory at L=16384 (under 64 MB)."""
    times = {(r["impl"], r["H"], r["L"]): r for r in rows
             if r["mode"] == "forward+backward" and "median_ms" in r}
    checks = []
    for text, ours, ref, H, L, line in TARGETS:
        if (ours, H, L) in times and (ref, H, L) in times:
            ratio = speedup(times[(ref, H, L)], times[(ours, H, L)])
            if line < 0:  # a slow-down: ours / reference
                ratio, met = 1 / ratio, 1 / ratio <= -line
            else:
                met = ratio >= line
            checks.append({"target": f"{text}, L={L}", "value": f"{ratio:.2f}x", "met": met})
    if ("flash-numba", 8, 2048) in times:
        share = times[("flash-numba", 8, 2048)]["gflops"] / peak_gflops
        checks.append({"target": "flash at 65% of the matmul peak, H=8, L=2048",
                       "value": f"{100 * share:.0f}%", "met": share >= 0.65})
    for r in long_rows:
        if r["L"] == 16384:
            mib = r["peak_mib"]
            checks.append({"target": "flash extra memory under 64 MB, L=16384",
                           "value": f"{mib:.1f} MiB", "met": mib < 64e6 / 2**20})
    return checks


def format_targets(checks) -> str:
    return "\n".join(f"  {'met    ' if c['met'] else 'NOT MET'}  {c['target']}: {c['value']}"
                     for c in checks)


def format_long(rows) -> str:
    lines = [f"{'L=S':>6} {'fwd+bwd ms':>11} {'ns per score':>13} {'peak MiB':>9} "
             f"{'one LxS array MiB':>18}"]
    for r in rows:
        lines.append(f"{r['L']:>6} {r['median_ms']:>11.1f} {r['ns_per_score']:>13.3f} "
                     f"{r['peak_mib']:>9.1f} {r['one_LxS_float32_mib']:>18.0f}")
    return "\n".join(lines)


def format_markdown(meta, rows, long_rows) -> str:
    """The same tables in Markdown, with the machine and thread counts above them."""
    peak = meta["peak_used_gflops"]
    lines = [f"Machine: {meta['machine']}; threads: "
             + ", ".join(f"{k} {v}" for k, v in meta["threads"].items())
             + f". float32 matmul peak: {peak:.0f} GFLOP/s, the best of a large square "
             + "matmul timed at the start ("
             + ", ".join(f"{k} {v:.0f}" for k, v in meta["matmul_peak_gflops"].items())
             + ") and at the end ("
             + ", ".join(f"{k} {v:.0f}" for k, v in meta.get("matmul_peak_gflops_end",
                                                               {}).items())
             + ") of the run. Large NumPy buffers reused: "
             + ("yes" if meta.get("malloc_reuse") else "no")
             + f"; OpenBLAS idle spin: {meta.get('openblas_spin', 'not recorded')}.", ""]
    compile_s = meta.get("numba_compile_first_call") or {}
    if compile_s:
        lines += [f"numba kernels, first float32 forward+backward call: "
                  f"{compile_s.get('cold_s')} s compiling (empty cache), "
                  f"{compile_s.get('warm_s')} s loading the cache.", ""]
    drop_b = [i for i in range(len(HEADER)) if HEADER[i] != "B"]  # one B for all, said above
    lines += ["| " + " | ".join(HEADER[i] for i in drop_b) + " |",
              "|---|---|" + "--:|" * (len(drop_b) - 2)]
    for r in rows:
        cells = _cells(r, peak, 1)
        lines.append("| " + " | ".join(cells[i] for i in drop_b) + " |")
    if meta.get("targets"):
        lines += ["", "Targets in this run (forward+backward):", ""]
        lines += [f"- {'met' if c['met'] else '**not met**'}: {c['target']}: {c['value']}"
                  for c in meta["targets"]]
    if long_rows:
        lines += ["", "| L=S | forward+backward ms | ns per score | peak MiB | "
                      "one L x S float32 array, MiB |", "|--:|--:|--:|--:|--:|"]
        for r in long_rows:
            lines.append(f"| {r['L']} | {r['median_ms']:.0f} | {r['ns_per_score']:.3f} | "
                         f"{r['peak_mib']:.1f} | {r['one_LxS_float32_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def reuse_large_allocations() -> bool:
    """Let glibc reuse freed large blocks instead of mapping fresh pages for each array.

    By default glibc serves every allocation above 32 MiB with a new mmap and returns it on
    free, so each (L, S) temporary of the NumPy paths costs page faults and zeroing, often
    more than its arithmetic (at H = 8, L = 2048 one is 128 MiB). PyTorch's CPU allocator
    keeps such blocks; this puts NumPy on the same footing, for this benchmark process only.
    Returns whether it took effect (glibc on Linux).
    """
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 2**30)  # C ints: below 2**31
                    and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def run(args) -> int:
    try:
        device = backend.check_device(args.device)
    except RuntimeError as err:
        print(f"minattn bench: {err}", file=sys.stderr)
        return 2
    quick = args.quick
    repeat = args.repeat or (2 if quick else 5)
    B = args.batch or (4 if device == "cuda" else 1)
    shapes = parse_shapes(args.shapes or (QUICK_SHAPES if quick else DEFAULT_SHAPES[device]))
    impls = available_impls(device, args.impl.split(",") if args.impl else None)
    if not impls:
        print("minattn bench: none of the asked implementations can run here", file=sys.stderr)
        return 1

    malloc_reuse = args.malloc_reuse and device == "cpu" and reuse_large_allocations()
    agreement = check_agreement(impls, device)
    print("agreement on B=1, H=2, L=S=96, E=32 (max abs difference to "
          f"{impls[0]}, outputs and gradients):")
    for name, err in agreement.items():
        print(f"  {name:<12} {err:.2e}")
    bad = {n: e for n, e in agreement.items() if not e < 1e-3}
    if bad:
        print(f"minattn bench: implementations disagree: {bad}; not timing", file=sys.stderr)
        return 1

    compile_s = compile_times() if ("flash-numba" in impls and not quick) else {}
    peak = matmul_peak(device)
    peak_gflops = max(peak.values())
    meta = {"machine": cpu_model(), "device": device, "python": platform.python_version(),
            "threads": threads_info(device), "matmul_peak_gflops": peak,
            "peak_used_gflops": peak_gflops, "numba_compile_first_call": compile_s,
            "repeat": repeat, "agreement": agreement, "malloc_reuse": malloc_reuse,
            "openblas_spin": blas.spin_status(),
            "flops": "forward 4*L*S*E, forward+backward 14*L*S*E per head"}
    steps = sum(repeat for H, L in shapes for n in impls
                if _memory_gib(n, B, H, L) <= args.max_memory)
    progress = Progress(steps)
    try:
        rows = time_shapes(impls, shapes, B, args.dim, device, repeat, args.max_memory,
                           progress)
    finally:
        progress.close()
    long_rows = []
    if args.long and any(n in impls for n in ("flash-numba", "flash-cupy")):
        lengths = (256, 512) if quick else LONG_LENGTHS
        long_rows = long_sequence_check(device, lengths, args.dim, 1 if quick else 3)
    peak2 = matmul_peak(device)  # again at the end: the machine may have been busy
    meta["matmul_peak_gflops_end"] = peak2
    peak_gflops = meta["peak_used_gflops"] = max(peak_gflops, *peak2.values())  # the best seen
    for r in rows:
        if "gflops" in r:
            r["fraction_of_peak"] = r["gflops"] / peak_gflops

    print(f"\n{meta['machine']}, {meta['threads']}, large NumPy buffers reused: "
          f"{'yes' if malloc_reuse else 'no'}, OpenBLAS idle spin: {meta['openblas_spin']}")
    print(f"float32 matmul peak: {', '.join(f'{k} {v:.0f}' for k, v in peak.items())} GFLOP/s "
          f"(at the end: {', '.join(f'{k} {v:.0f}' for k, v in peak2.items())})")
    if compile_s:
        print(f"numba kernels, first float32 forward+backward call: {compile_s.get('cold_s')} s "
              f"compiling, {compile_s.get('warm_s')} s from the cache")
    print(format_table(rows, peak_gflops))
    if long_rows:
        print("\nlong sequences (flash, B = H = 1, forward+backward):")
        print(format_long(long_rows))
    checks = meta["targets"] = target_checks(rows, long_rows, peak_gflops)
    if checks:
        print("\ntargets (forward+backward, measured in this run):")
        print(format_targets(checks))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows, "long_sequence": long_rows}, f, indent=1,
                      default=_json_default)
        print(f"\nwrote {args.out}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(format_markdown(meta, rows, long_rows))
        print(f"wrote {args.markdown}")
    return 0


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)
