"""What ``minattn bench`` prints and writes: the tables, the targets, Markdown and JSON.

Also the speed ratios between rows (``speedup``, and ``_relate`` against torch-sdpa).
"""

from __future__ import annotations

import math
import statistics

import numpy as np


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
    if meta.get("quick"):
        lines += ["**A quick run (`minattn bench --quick`): a smoke test, its timings are "
                  "noise; run `minattn bench` for numbers.**", ""]
    if meta.get("skipped"):
        lines += ["Not timed here: " + "; ".join(f"{n} ({why})"
                                                 for n, why in meta["skipped"].items()) + ".",
                  ""]
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


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)
