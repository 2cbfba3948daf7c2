"""``minattn bench`` on the command line: its options, the timed runs, and ``run``.

``time_shapes`` times every implementation, interleaved repeat by repeat, on each shape;
``long_sequence_check`` times flash at growing lengths; ``run`` checks agreement, measures
the machine, times, and prints and writes the results.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys

from ...kernels import blas
from ..options import DEVICES, UsageError, check_device, out_file, positive_float, positive_int
from ..runs import dumps, write_atomic
from .cases import (
    CPU_IMPLS,
    CUDA_IMPLS,
    _memory_gib,
    _minattn_case,
    available_impls,
    check_agreement,
    make_case,
    make_inputs,
    skipped_impls,
)
from .harness import _sync, _timed
from .machine import compile_times, cpu_model, matmul_peak, reuse_large_allocations, threads_info
from .report import (
    _json_default,
    _relate,
    format_long,
    format_markdown,
    format_table,
    format_targets,
    target_checks,
)

FLOPS_PER_HEAD = {"forward": 4, "forward+backward": 14}  # times L * S * E
DEFAULT_SHAPES = {"cpu": "1x512,1x1024,1x2048,1x4096,8x512,8x1024,8x2048,8x4096",
                  "cuda": "16x4096"}
QUICK_SHAPES = "1x64,2x128"
LONG_LENGTHS = (4096, 8192, 16384)
QUICK_LONG_LENGTHS = (256, 512)


def _shapes_option(text: str) -> str:
    """--shapes as typed, checked: HxL pairs of whole numbers of 1 or more."""
    try:
        _parse_shapes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _impl_option(text: str) -> str:
    """--impl as typed, checked: known implementation names, comma-separated."""
    known = list(dict.fromkeys(CPU_IMPLS + CUDA_IMPLS))
    unknown = [n for n in (n.strip() for n in text.split(",")) if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown implementation {', '.join(map(repr, unknown))}"
                                         f"; choose from {', '.join(known)}")
    return text


def add_arguments(parser) -> None:
    """Every option, with its default in its help (a test holds --help to that)."""
    add = parser.add_argument
    add("--device", choices=DEVICES, default="cpu",
        help="where the implementations run (default: %(default)s)")
    add("--impl", type=_impl_option, default=None,
        help="comma-separated implementations (default: all that can run on the device: "
             f"{', '.join(CPU_IMPLS)} on cpu; flash-cupy instead of flash-numba on cuda)")
    add("--shapes", type=_shapes_option, default=None,
        help="comma-separated HxL (heads x length, L = S), e.g. 1x512,8x2048 (default: "
             f"{DEFAULT_SHAPES['cpu']} on cpu, {DEFAULT_SHAPES['cuda']} on cuda, "
             f"{QUICK_SHAPES} with --quick)")
    add("--batch", type=positive_int, default=None,
        help="B, the batch size (default: 1 on cpu, 4 on cuda)")
    add("--dim", type=positive_int, default=64,
        help="E = Ev, the head size (default: %(default)s)")
    add("--no-malloc-reuse", dest="malloc_reuse", action="store_false",
        help="leave glibc's allocator as it is (default: large NumPy buffers are reused, "
             "see reuse_large_allocations)")
    add("--repeat", type=positive_int, default=None,
        help="timed runs per case (default: 5; 2 with --quick)")
    add("--quick", action="store_true",
        help="a smoke test that the benchmark runs: tiny shapes and few repeats, so its "
             "timings are noise (default: off)")
    add("--no-long", dest="long", action="store_false",
        help="skip the long-sequence memory check (default: flash at L = S up to "
             f"{LONG_LENGTHS[-1]}; {QUICK_LONG_LENGTHS[-1]} with --quick)")
    add("--max-memory", type=positive_float, default=3.0,
        help="skip a case whose (L, S) arrays would need more GiB than this "
             "(default: %(default)s)")
    add("--out", type=out_file, default=None,
        help="write the rows as JSON to this file, replaced whole when the run ends, NaN "
             "written as null (default: none)")
    add("--markdown", type=out_file, default=None,
        help="write the tables as Markdown to this file, for RESULTS.md (default: none)")


# -- the parts of a run -------------------------------------------------------------------------


def _parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        try:
            H, L = (int(x) for x in part.lower().split("x"))
        except ValueError:
            H = L = 0
        if H < 1 or L < 1:
            raise ValueError(f"expected HxL pairs of whole numbers of 1 or more, like 8x2048, "
                             f"got {part!r}")
        shapes.append((H, L))
    return shapes


def parse_shapes(text: str) -> list[tuple[int, int]]:
    try:
        return _parse_shapes(text)
    except ValueError as exc:
        raise SystemExit(f"minattn bench: --shapes {exc}") from None


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


def quick_notice(shapes: str, repeat: int, long: bool, numba: bool) -> str:
    """What --quick leaves out, and what its numbers are worth (two lines): said before the
    run and again under its table. ``long``, ``numba``: whether the run has a long-sequence
    check and numba kernels, whose full versions quick cuts short."""
    parts = [f"shapes {shapes}", f"{repeat} repeat{'s' if repeat != 1 else ''}"]
    if long:
        parts.append(f"long sequences only to L = {QUICK_LONG_LENGTHS[-1]}")
    if numba:
        parts.append("no numba compile times")
    return (f"quick: a smoke test, not a measurement: {', '.join(parts)}.\n"
            "quick: at these sizes the timings are noise (a forward can come out slower than "
            "its forward+backward); run `minattn bench` for numbers.")


def skipped_notice(skipped: dict[str, str]) -> str | None:
    """One line per reason for the implementations that cannot run here (None: none)."""
    by_reason: dict[str, list[str]] = {}
    for name, why in skipped.items():
        by_reason.setdefault(why, []).append(name)
    lines = [f"not timed here: {', '.join(names)}: {why}" for why, names in by_reason.items()]
    if "torch-sdpa" in skipped:
        lines.append("  (without torch-sdpa, the vs SDPA column stays empty)")
    return "\n".join(lines) or None


def run(args) -> int:
    device = check_device(args.device)  # UsageError (exit 2) before any work
    quick = args.quick
    repeat = args.repeat or (2 if quick else 5)
    B = args.batch or (4 if device == "cuda" else 1)
    shapes = parse_shapes(args.shapes or (QUICK_SHAPES if quick else DEFAULT_SHAPES[device]))
    wanted = [n.strip() for n in args.impl.split(",")] if args.impl else None
    impls, skipped = available_impls(device, wanted), skipped_impls(device, wanted)
    if not impls:
        raise UsageError("--impl", f"none of {args.impl or 'the implementations'} can run "
                                   f"on {device} here ("
                                   + "; ".join(f"{n}: {why}" for n, why in skipped.items())
                                   + "); `minattn info` lists what is installed")
    long = args.long and any(n in impls for n in ("flash-numba", "flash-cupy"))
    notices = [n for n in (skipped_notice(skipped),
                           quick and quick_notice(args.shapes or QUICK_SHAPES, repeat, long,
                                                  "flash-numba" in impls)) if n]
    for notice in notices:  # before the run, so that nobody waits for numbers it won't give
        print(notice)

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
            "repeat": repeat, "quick": quick, "skipped": skipped,
            "agreement": agreement, "malloc_reuse": malloc_reuse,
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
    if long:
        lengths = QUICK_LONG_LENGTHS if quick else LONG_LENGTHS
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
    if notices:  # again under the numbers, where a reader of the output looks
        print("\n" + "\n".join(notices))
    checks = meta["targets"] = target_checks(rows, long_rows, peak_gflops)
    if checks:
        print("\ntargets (forward+backward, measured in this run):")
        print(format_targets(checks))
    # written whole or not at all (a temp file, then renamed); strict JSON, NaN as null
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        write_atomic(args.out, dumps({"meta": meta, "rows": rows, "long_sequence": long_rows},
                                     indent=1, default=_json_default) + "\n")
        print(f"\nwrote {args.out}")
    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        write_atomic(args.markdown, format_markdown(meta, rows, long_rows))
        print(f"wrote {args.markdown}")
    return 0
