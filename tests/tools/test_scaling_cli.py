"""`minattn scaling`: what it writes, and that no run ever destroys another."""

import json

import pytest

from minattn.experiments import plots, suite
from minattn.tools.cli import main

REQUIRED = {"experiment", "d", "scaling", "dtype"}


def scaling(*args) -> int:
    return main(["scaling", "--no-progress", *map(str, args)])


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One whole quick run (what `make demo` does), shared by the tests that read it."""
    out = tmp_path_factory.mktemp("runs") / "scaling"
    assert scaling("--quick", "--out", out) == 0
    return out


def test_quick_run_writes_report_figures_and_rows(quick_run, capsys):
    names = {p.name for p in quick_run.iterdir()}
    assert {"report.md", "results.json", "config.json"} <= names
    assert not (quick_run / "checkpoints").exists()
    if plots.matplotlib_missing() is None:
        assert {suite.BY_NUMBER[n].figure_file for n in range(1, 6)} <= names
    rows = json.loads((quick_run / "results.json").read_text())
    assert {r["experiment"] for r in rows} == {1, 2, 3, 4, 5}  # training is opt-in with --quick
    assert all(REQUIRED <= set(r) for r in rows)
    assert {r["scaling"] for r in rows} == {"sqrt", "unscaled", "linear"}


def test_rows_carry_the_metrics_the_issue_names(quick_run):
    rows = json.loads((quick_run / "results.json").read_text())
    present = set().union(*rows)
    assert {"score_std", "entropy_mean", "entropy_median", "max_weight_mean",
            "saturated_fraction", "jacobian_fro_median", "grad_q_median", "grad_q_mean",
            "grad_k_median", "h", "rel_error", "bad_entry_fraction",
            "nan_row_fraction", "seed"} <= present


def test_report_has_a_section_and_a_figure_per_experiment(quick_run):
    report = (quick_run / "report.md").read_text()
    for n in range(1, 6):
        assert f"## {n}. " in report
        if plots.matplotlib_missing() is None:
            assert f"]({suite.BY_NUMBER[n].figure_file})" in report
    assert "## The key numbers" in report
    assert "quick" in report


def test_every_key_number_says_whether_it_holds(quick_run):
    report = (quick_run / "report.md").read_text()
    table = report.split("## The key numbers")[1].split("\n## ")[0]
    lines = [line for line in table.splitlines() if line.startswith("| ")][1:]  # no header
    assert lines, "no key numbers"
    verdicts = [line.rsplit("|", 2)[1].strip() for line in lines]
    assert all(v == "yes" or v.startswith("**no**") for v in verdicts), verdicts
    failed = sum(v != "yes" for v in verdicts)
    assert (f"All {len(lines)} expectations hold" in table if failed == 0 else
            f"{len(lines) - failed} of {len(lines)} expectations hold" in table)


def test_an_earlier_run_is_kept(tmp_path):
    out = tmp_path / "scaling"
    assert scaling("--quick", "--only", "1", "--out", out) == 0
    (out / "marker").write_text("first run")
    assert scaling("--quick", "--only", "1", "--out", out) == 0
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("scaling-")]
    assert len(kept) == 1 and (kept[0] / "marker").read_text() == "first run"
    assert not (out / "marker").exists() and (out / "report.md").exists()


def test_resume_skips_finished_experiments(tmp_path, monkeypatch):
    out = tmp_path / "scaling"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(suite.BY_NUMBER[5], "run", interrupt)
    assert scaling("--quick", "--only", "1,5", "--out", out) == 130
    partial = tmp_path / "scaling.partial"
    assert (partial / "checkpoints" / "experiment1.json").exists() and not out.exists()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished experiment ran again")

    monkeypatch.undo()  # experiment 5 runs normally now, experiment 1 must not run at all
    monkeypatch.setattr(suite.BY_NUMBER[1], "run", must_not_run)
    assert scaling("--quick", "--only", "1,5", "--out", out, "--resume") == 0
    rows = json.loads((out / "results.json").read_text())
    assert {r["experiment"] for r in rows} == {1, 5}
    assert not partial.exists()


def test_resume_reads_rows_that_an_earlier_minattn_saved_as_none(tmp_path, monkeypatch):
    out = tmp_path / "scaling"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(suite.BY_NUMBER[5], "run", interrupt)
    assert scaling("--quick", "--only", "1,5", "--out", out) == 130
    checkpoint = tmp_path / "scaling.partial" / "checkpoints" / "experiment1.json"
    rows = json.loads(checkpoint.read_text())
    old = [dict(r, scaling="none") if r["scaling"] == "unscaled" else r for r in rows]
    checkpoint.write_text(json.dumps(old))  # as minattn wrote it before the rename
    monkeypatch.undo()
    assert scaling("--quick", "--only", "1,5", "--out", out, "--resume") == 0
    rows = json.loads((out / "results.json").read_text())
    assert {r["scaling"] for r in rows if r["experiment"] == 1} == {"sqrt", "unscaled", "linear"}
    assert "std unscaled" in (out / "report.md").read_text()  # its column is there


def test_resume_refuses_other_settings_and_missing_runs(tmp_path, monkeypatch, capsys):
    out = tmp_path / "scaling"
    assert scaling("--quick", "--only", "1", "--out", out, "--resume") == 2
    assert "no interrupted run" in capsys.readouterr().err

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(suite.BY_NUMBER[1], "run", interrupt)
    assert scaling("--quick", "--only", "1", "--out", out) == 130
    assert scaling("--only", "1", "--out", out, "--resume") == 2  # not --quick this time
    assert "other settings" in capsys.readouterr().err


def test_a_leftover_partial_run_is_set_aside_not_deleted(tmp_path, capsys):
    out = tmp_path / "scaling"
    leftover = tmp_path / "scaling.partial"
    leftover.mkdir()
    (leftover / "config.json").write_text("{}")
    assert scaling("--quick", "--only", "1", "--out", out) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("scaling.partial-")]
    assert len(aside) == 1 and (aside[0] / "config.json").exists()
    assert "set aside" in capsys.readouterr().out


def test_without_matplotlib_the_run_still_writes_its_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plots, "matplotlib_missing", lambda: "matplotlib is not installed")
    out = tmp_path / "scaling"
    assert scaling("--quick", "--only", "1", "--out", out) == 0
    assert not list(out.glob("*.png"))
    assert "no figure" in (out / "report.md").read_text()
    assert "matplotlib is not installed" in capsys.readouterr().out


def test_training_experiment_end_to_end(tmp_path, monkeypatch):
    part = suite.BY_NUMBER[6].parts[0]
    monkeypatch.setattr(part, "quick", dict(d_values=(16,), seeds=(0,), steps=10))
    out = tmp_path / "scaling"
    assert scaling("--quick", "--train", "--only", "6", "--out", out) == 0
    rows = json.loads((out / "results.json").read_text())
    assert {r["kind"] for r in rows} == {"run", "sweep"}
    assert all("lr_sensitivity" in r for r in rows if r["kind"] == "sweep")
    assert "## 6. " in (out / "report.md").read_text()


def test_an_unavailable_device_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from minattn import backend

    monkeypatch.setattr(backend, "cuda_status", lambda: (False, "no GPU here"))
    assert scaling("--quick", "--only", "1", "--device", "cuda", "--out", tmp_path / "x") == 2
    assert "no GPU here" in capsys.readouterr().err
    assert not (tmp_path / "x.partial").exists()


def test_bad_experiment_list_is_a_clear_error(tmp_path, capsys):
    """A usage error (exit 2, as argparse gives) naming --only, before anything runs."""
    for only, says in (("7", "no experiment '7'"), ("a,b", "numbered 1 to 6"),
                       ("", "comma-separated list")):
        with pytest.raises(SystemExit) as exit_info:
            scaling("--quick", "--only", only, "--out", tmp_path / "x")
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "argument --only" in err and says in err
        assert not (tmp_path / "x.partial").exists()


def test_progress_units_match_the_work():
    for experiment in suite.EXPERIMENTS:
        ticks = []
        if experiment.number in (3, 4, 6):
            continue  # the slow ones: counted the same way, checked on the fast ones
        experiment.run(quick=True, progress=ticks.append)
        assert sum(ticks) == experiment.units(quick=True)
