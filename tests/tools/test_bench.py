"""`minattn bench` runs end to end and writes well-formed JSON (timings are never asserted)."""

import json
import math

import pytest

from minattn.tools import bench
from minattn.tools.bench import cases, report
from minattn.tools.bench import command as bench_command
from minattn.tools.cli import main


@pytest.mark.slow
def test_quick_bench_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "median ms" in printed and "agreement" in printed
    result = json.loads(out.read_text())
    assert set(result) == {"meta", "rows", "long_sequence"}
    meta = result["meta"]
    assert meta["peak_used_gflops"] > 0 and meta["threads"]["cpu_count"] >= 1
    impls = bench.available_impls("cpu")
    assert {"composed", "fused", "flash-ref"} <= set(impls)
    assert all(err < 1e-3 for err in meta["agreement"].values())
    rows = result["rows"]
    assert len(rows) == len(impls) * 2 * len(bench.parse_shapes(bench.QUICK_SHAPES))
    for row in rows:
        assert row["impl"] in impls and row["mode"] in bench.FLOPS_PER_HEAD
        assert math.isfinite(row["median_ms"]) and row["median_ms"] > 0
        assert row["gflops"] > 0 and row["runs"] == 2
        if row["mode"] == "forward+backward":
            assert row["peak_mib"] is not None and row["peak_mib"] >= 0
        if "torch-sdpa" in impls:
            assert row["speed_vs_sdpa"] > 0
    if "flash-numba" in impls:
        assert [r["L"] for r in result["long_sequence"]] == [256, 512]
        assert all(r["peak_mib"] < 64 for r in result["long_sequence"])


def test_bench_options_are_checked():
    assert bench.parse_shapes("1x512,8x2048") == [(1, 512), (8, 2048)]
    with pytest.raises(SystemExit, match="HxL"):
        bench.parse_shapes("8-2048")
    with pytest.raises(SystemExit, match="unknown --impl nope"):
        bench.available_impls("cpu", ["fused", "nope"])


def test_table_shows_skipped_cases_and_ratios():
    rows = [{"impl": "torch-sdpa", "mode": "forward", "B": 1, "H": 8, "L": 512, "S": 512,
             "median_ms": 2.0, "gflops": 100.0},
            {"impl": "flash-numba", "mode": "forward", "B": 1, "H": 8, "L": 512, "S": 512,
             "median_ms": 1.0, "gflops": 200.0, "peak_mib": None},
            {"impl": "composed", "mode": "forward", "B": 1, "H": 8, "L": 512, "S": 512,
             "skipped": "needs ~9 GiB"}]
    report._relate(rows)
    assert rows[1]["speed_vs_sdpa"] == 2.0
    table = bench.format_table(rows, peak_gflops=400.0)
    assert "skipped: needs ~9 GiB" in table and "50.0%" in table and "2.00" in table


def test_target_checks_read_the_rows_both_ways():
    """Speed-ups must reach their line, slow-downs stay under theirs; absent rows are skipped."""
    rows = [dict(impl=i, mode="forward+backward", H=h, L=2048, median_ms=t, gflops=g)
            for i, h, t, g in [("composed", 1, 40.0, 1), ("fused", 1, 24.0, 1),
                               ("torch-math", 1, 22.0, 1), ("flash-numba", 8, 130.0, 99),
                               ("torch-sdpa", 8, 131.0, 1)]]
    checks = {c["target"]: c for c in bench.target_checks(
        rows, [dict(L=16384, peak_mib=70.0)], peak_gflops=150.0)}
    flash = checks["flash at least as fast as torch SDPA, H=8, L=2048"]
    assert flash["met"] and flash["value"] == "1.01x"
    fused = checks["fused at least as fast as torch-math, H=1, L=2048"]
    assert not fused["met"] and fused["value"] == "0.92x"
    composed = checks["composed at most 1.5x the time of fused, H=1, L=2048"]
    assert not composed["met"] and composed["value"] == "1.67x"
    assert checks["flash at 65% of the matmul peak, H=8, L=2048"]["met"]  # 99 of 150
    assert not checks["flash extra memory under 64 MB, L=16384"]["met"]  # 70 MiB
    assert not any("H=16" in t or "fused-numpy" in t for t in checks)  # no rows for those


def test_speedup_pairs_the_repeats():
    """Each repeat runs every implementation once, so a slow stretch of the machine slows
    both sides of a pair: the median of the paired ratios sees through it, the ratio of the
    medians does not."""
    ref = {"median_ms": 12.0, "times_ms": [10.0, 12.0, 30.0]}
    ours = {"median_ms": 15.0, "times_ms": [5.0, 30.0, 15.0]}  # the 2nd repeat ran slow
    assert bench.speedup(ref, ours) == 2.0  # ratios 2, 0.4, 2
    assert bench.speedup({"median_ms": 12.0}, {"median_ms": 15.0}) == 0.8  # no repeats kept
    rows = [dict(impl=i, mode="forward", H=1, L=8, **r) for i, r in
            (("torch-sdpa", ref), ("fused", ours))]
    report._relate(rows)
    assert rows[1]["speed_vs_sdpa"] == 2.0


@pytest.mark.slow
def test_ceilings_script_prints_each_bound(capsys):
    """benchmarks/ceilings.py (the rates RESULTS.md reasons from) runs and prints them."""
    import pathlib
    import runpy

    pytest.importorskip("numba")
    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "ceilings.py"
    ceilings = runpy.run_path(str(path))  # defines main() without running it
    ceilings["main"](["--length", "256", "--repeat", "1"])
    printed = capsys.readouterr().out
    assert "tile product" in printed and printed.count("flash's products") == 2
    assert "q k^T" in printed and "elementwise pass" in printed


def test_gpu_check_asks_the_bench_for_what_it_has_on_cuda():
    """benchmarks/gpu_check.sh runs only where a GPU is lent: its `minattn bench` lines must
    parse, and name only CUDA implementations, before one is (a typo would waste the GPU)."""
    import argparse
    import pathlib
    import shlex

    script = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
    text = script.read_text().replace("\\\n", " ")  # join continued lines
    calls = [line.split("-m minattn bench", 1)[1] for line in text.splitlines()
             if "-m minattn bench" in line]
    assert len(calls) == 2  # the 16x4096 benchmark and the small shapes
    for call in calls:
        parser = argparse.ArgumentParser()
        bench.add_arguments(parser)
        args = parser.parse_args(shlex.split(call.replace('"$LOGS', '"logs')))
        assert args.device == "cuda"
        impls = args.impl.split(",")
        assert set(impls) <= set(bench.CUDA_IMPLS), impls
        assert bench.parse_shapes(args.shapes)


@pytest.mark.parametrize("quick", [True, False])
def test_bench_says_what_it_leaves_out_before_and_under_its_table(tmp_path, capsys,
                                                                  monkeypatch, quick):
    """--quick says up front, and again under the table, that its numbers are noise; an
    implementation that cannot run here (PyTorch missing) is named with why, not dropped
    silently. One tiny case, so that the test takes seconds."""
    monkeypatch.setattr(cases, "_torch", lambda: None)  # as on a machine without PyTorch
    monkeypatch.setattr(bench_command, "matmul_peak", lambda device: {"numpy": 100.0})
    out = tmp_path / "bench.json"
    args = ["bench", "--impl", "fused,torch-sdpa", "--shapes", "1x8", "--repeat", "1",
            "--no-long", "--out", str(out)]
    assert main(args + ["--quick"] * quick) == 0
    printed = capsys.readouterr().out
    before, after = printed.split("agreement", 1)[0], printed.split("median ms", 1)[1]
    skipped = "not timed here: torch-sdpa: PyTorch is not installed"
    noise = ("quick: at these sizes the timings are noise (a forward can come out slower "
             "than its forward+backward); run `minattn bench` for numbers.")
    for part in (before, after):
        assert skipped in part and "the vs SDPA column stays empty" in part
        assert (noise in part) == quick
        assert ("quick: a smoke test, not a measurement: shapes 1x8, 1 repeat." in part) == quick
    meta = json.loads(out.read_text())["meta"]
    assert meta["quick"] is quick and list(meta["skipped"]) == ["torch-sdpa"]
    assert [r["impl"] for r in json.loads(out.read_text())["rows"]] == ["fused", "fused"]


def test_quick_notice_names_only_what_this_run_cuts_short():
    full = bench.quick_notice("1x64,2x128", 2, long=True, numba=True)
    assert full.startswith("quick: a smoke test, not a measurement: shapes 1x64,2x128, "
                           "2 repeats, long sequences only to L = 512, no numba compile times.")
    assert len(full.splitlines()) == 2 and "noise" in full.splitlines()[1]
    assert "long" not in bench.quick_notice("1x8", 1, long=False, numba=False)
    assert bench.skipped_notice({}) is None
    assert bench.skipped_notice({"torch-sdpa": "no torch", "torch-math": "no torch",
                                 "flash-numba": "no numba"}).splitlines() == [
        "not timed here: torch-sdpa, torch-math: no torch",
        "not timed here: flash-numba: no numba",
        "  (without torch-sdpa, the vs SDPA column stays empty)"]


def test_markdown_says_a_quick_run_is_noise_and_what_was_not_timed():
    meta = {"machine": "m", "threads": {}, "peak_used_gflops": 1.0,
            "matmul_peak_gflops": {"numpy": 1.0}, "quick": True,
            "skipped": {"torch-sdpa": "PyTorch is not installed"}}
    text = bench.format_markdown(meta, [], [])
    assert "timings are noise" in text and "torch-sdpa (PyTorch is not installed)" in text
    assert "noise" not in bench.format_markdown(dict(meta, quick=False, skipped={}), [], [])
