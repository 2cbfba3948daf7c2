"""`minattn train`: tasks, determinism, checkpoints (atomic, resumable to the same result),
the command line, the scaling comparison. Each run here is a few steps of a tiny model."""

import argparse
import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import minattn as ma
from minattn.tools import cli
from minattn.tools import train as T
from minattn.tools.bench import command as bench_command
from minattn.tools.train import checkpoints, loop

FAST = ["--quick", "--quiet", "--no-figures", "--steps", "6", "--eval-every", "3",
        "--checkpoint-every", "3"]  # a tiny model, six steps


def _usage(argv, capsys):
    """(exit status, stderr) of a command line that argparse may end with SystemExit."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def tiny(**kwargs) -> T.TrainConfig:
    """A few steps of a tiny model; dropout on, so the random state matters for resuming."""
    config = T.quick(T.TrainConfig(dropout=0.1))
    return dataclasses.replace(config, **{"steps": 12, "eval_every": 4, "checkpoint_every": 4,
                                          **kwargs})


def params_of(result) -> dict:
    return {k: v.numpy() for k, v in result["model"].state_dict().items()}


def without_times(evals):
    return [{k: v for k, v in e.items() if k != "time_s"} for e in evals]


def assert_same_run(a, b):
    pa, pb = params_of(a), params_of(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)  # bit for bit
    assert a["history"] == b["history"]
    assert without_times(a["evals"]) == without_times(b["evals"])
    assert a["final"] == b["final"]


# -- tasks -----------------------------------------------------------------------------------------


def test_reverse_and_copy_batches():
    for kind in ("reverse", "copy"):
        config = T.TrainConfig(task=kind, seq_len=5, num_symbols=7, batch_size=3)
        task = T.make_task(config)
        inputs, targets = T.train_batch(task, config, step=0)
        assert inputs.shape == targets.shape == (3, 10)
        np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])  # shifted by one
        x = inputs[:, :5]
        assert (inputs[:, 5] == task.delimiter).all() and task.vocab_size == 8
        answer = targets[:, task.answer_start:]
        np.testing.assert_array_equal(answer, x[:, ::-1] if kind == "reverse" else x)


def test_batches_depend_on_seed_and_step_only():
    config = T.TrainConfig(batch_size=4)
    task = T.make_task(config)
    a, _ = T.train_batch(task, config, 7)
    b, _ = T.train_batch(task, config, 7)
    c, _ = T.train_batch(task, config, 8)
    d, _ = T.train_batch(task, dataclasses.replace(config, seed=1), 7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    held_out, _ = T.eval_batch(task, config)
    train_rows = {tuple(r) for s in range(50) for r in T.train_batch(task, config, s)[0]}
    assert not train_rows & {tuple(r) for r in held_out}


def test_char_task_uses_the_shipped_text_and_holds_out_its_end():
    config = T.TrainConfig(task="chars", seq_len=8, batch_size=5, eval_size=6)
    task = T.make_task(config)
    assert T.TEXT.exists() and "e" in task.vocab
    inputs, targets = T.train_batch(task, config, 0)
    assert inputs.shape == (5, 16)
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
    held_out, _ = T.eval_batch(task, config)
    text = "".join(task.vocab[i] for i in task.eval_ids)
    assert all("".join(task.vocab[i] for i in row) in text for row in held_out)
    with pytest.raises(ValueError, match="unknown task"):
        T.make_task(T.TrainConfig(task="sort"))


def test_learning_rate_schedule():
    config = T.TrainConfig(lr=1.0, warmup=10, steps=110, min_lr_ratio=0.1)
    assert T.learning_rate(config, 0) == pytest.approx(0.1)
    assert T.learning_rate(config, 9) == pytest.approx(1.0)
    assert T.learning_rate(config, 60) == pytest.approx(0.55)
    assert T.learning_rate(config, 110) == pytest.approx(0.1)


def test_parse_scale_reads_the_project_wide_names_and_numbers():
    assert T.SCALE_NAMES == ("sqrt", "unscaled", "linear")
    assert T.parse_scale("sqrt", 16) is None  # nn.MultiheadAttention's 1/sqrt(d)
    assert T.parse_scale("unscaled", 16) == 1.0
    assert T.parse_scale("linear", 16) == 1 / 16
    assert T.parse_scale("1", 16) == 1.0  # a number is itself: 1 is unscaled
    assert T.parse_scale(" Linear ", 16) == 1 / 16
    assert T.parse_scale("0.5", 16) == 0.5
    for bad in ("abc", "0", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match="sqrt.*unscaled.*linear.*above 0"):
            T.parse_scale(bad, 16)


@pytest.mark.parametrize("old, value, new", [("none", None, "sqrt"), ("default", None, "sqrt"),
                                             ("1/sqrt(d)", None, "sqrt"), (" None ", None, "sqrt"),
                                             ("1/d", 1 / 16, "linear")])
def test_parse_scale_still_reads_the_old_spellings_with_a_warning(old, value, new):
    with pytest.warns(DeprecationWarning, match=f"read as {new}.*write {new}"):
        assert T.parse_scale(old, 16) == value


def test_none_is_read_as_what_it_meant_in_train_and_the_warning_says_so():
    with pytest.warns(DeprecationWarning) as caught:
        assert T.parse_scale("none", 16) is None  # 1/sqrt(d), as train always read it
    (warning,) = caught
    message = str(warning.message)
    assert "read as sqrt (1/sqrt(d)), what it meant in minattn train" in message
    assert "`minattn scaling` used none for unscaled (1)" in message  # the other meaning


def test_scale_labels_use_the_words():
    assert [T.scale_label(s, 16) for s in (None, 1.0, 1 / 16, 0.5)] == \
        ["sqrt (1/sqrt(d))", "unscaled (1)", "linear (1/d)", "0.5"]
    assert [T.scale_name(s, 16) for s in (None, 1.0, 1 / 16, 0.5)] == \
        ["sqrt", "unscaled", "linear", "0.5"]
    assert T.scale_label(1 / 16) == "0.0625"  # 1/d only when d is known
    config = T.TrainConfig(embed_dim=64, num_heads=4, scale=1 / 16)
    assert config.label() == "linear (1/d)" and config.scale_name() == "linear"


@pytest.mark.parametrize("scale, saved", [(None, "sqrt"), (1.0, "unscaled"), (1 / 16, "linear"),
                                          (0.5, 0.5)])
def test_saved_settings_name_the_scale_and_read_back(scale, saved):
    config = T.TrainConfig(embed_dim=64, num_heads=4, scale=scale)  # d = 16
    assert config.to_dict()["scale"] == saved
    assert T.TrainConfig.from_dict(config.to_dict()) == config
    assert T.TrainConfig.from_dict(dataclasses.asdict(config)) == config  # saved before names


def test_saved_settings_with_a_scale_this_version_cannot_read_are_refused(tmp_path):
    meta = {"config": dict(T.TrainConfig().to_dict(), scale="bogus")}
    with pytest.raises(checkpoints.CheckpointError, match="settings this minattn does not know"):
        checkpoints.saved_config(meta, tmp_path / T.CHECKPOINT)


def test_attention_entropy():
    uniform = np.full((1, 1, 2, 4), 0.25)
    onehot = np.zeros((1, 1, 2, 4))
    onehot[..., 0] = 1.0
    assert T.attention_entropy([uniform, onehot], 0) == pytest.approx([np.log(4), 0.0])


# -- training, checkpoints, resuming ---------------------------------------------------------------


def test_quick_training_writes_metrics_and_checkpoint(tmp_path):
    result = T.train(tiny(), tmp_path, progress=False)
    assert result["finished"] and result["step"] == 12
    assert len(result["history"]) == 12 and [e["step"] for e in result["evals"]] == [4, 8, 12]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"config", "history", "evals", "final", "steps_to_target"} <= metrics.keys()
    assert {"loss", "token_acc", "seq_acc", "greedy_seq_acc", "attn_entropy"} \
        <= metrics["final"].keys()
    assert "layer0.qk" in metrics["history"][0] and metrics["history"][0]["grad_norm"] > 0
    meta, arrays = T.load_checkpoint(tmp_path / T.CHECKPOINT)
    assert meta["step"] == 12 and "model/tok_emb.weight" in arrays
    assert any(k.startswith("optim/") for k in arrays)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_resume_after_stop_gives_identical_parameters(tmp_path):
    straight = T.train(tiny(), tmp_path / "straight", progress=False)
    half = T.train(tiny(), tmp_path / "resumed", progress=False, stop_after=6)
    assert not half["finished"] and half["step"] == 6
    resumed = T.train(tiny(), tmp_path / "resumed", resume=True, progress=False, log=print)
    assert_same_run(straight, resumed)


def test_resume_after_a_crash_gives_identical_parameters(tmp_path):
    straight = T.train(tiny(), tmp_path / "straight", progress=False)

    def crash(step, model):
        if step == 7:  # the last checkpoint was written at step 4
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        T.train(tiny(), tmp_path / "crashed", progress=False, on_step=crash)
    meta, _ = T.load_checkpoint(tmp_path / "crashed" / T.CHECKPOINT)
    assert meta["step"] == 4
    resumed = T.train(tiny(), tmp_path / "crashed", resume=True, progress=False)
    assert_same_run(straight, resumed)


def test_ctrl_c_finishes_the_step_and_checkpoints(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN under a shell's `cmd &`
    straight = T.train(tiny(), tmp_path / "straight", progress=False)

    def press_ctrl_c(step, model):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)  # handled: training stops after this step

    stopped = T.train(tiny(), tmp_path / "stopped", progress=False, on_step=press_ctrl_c)
    assert not stopped["finished"] and stopped["step"] == 5
    assert T.load_checkpoint(tmp_path / "stopped" / T.CHECKPOINT)[0]["step"] == 5
    assert signal.getsignal(signal.SIGINT) is before  # put back as it was
    resumed = T.train(tiny(), tmp_path / "stopped", resume=True, progress=False)
    assert_same_run(straight, resumed)


def test_stop_flag_hands_ctrl_c_back_when_the_old_handler_is_unknown(monkeypatch):
    """signal.signal returns None for a handler set outside Python: Python's own goes back."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    real = signal.signal
    calls = []

    def installs(signum, handler):  # as if the handler before had been set from C
        calls.append(handler)
        previous = real(signum, handler)
        return None if len(calls) == 1 else previous

    monkeypatch.setattr(loop.signal, "signal", installs)
    try:
        with loop._StopFlag() as stop:
            assert signal.getsignal(signal.SIGINT) == stop._handle
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        real(signal.SIGINT, before)


def test_resume_refuses_other_settings(tmp_path):
    T.train(tiny(), tmp_path, progress=False, stop_after=4)
    with pytest.raises(ValueError, match="other settings.*lr"):
        T.train(tiny(lr=0.5), tmp_path, resume=True, progress=False)


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    result = T.train(tiny(steps=4), tmp_path, progress=False)
    before = (tmp_path / T.CHECKPOINT).read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        T.save_checkpoint(tmp_path / T.CHECKPOINT, result["model"],
                          ma.optim.SGD(result["model"].parameters(), lr=0.1), 5, tiny(), {})
    assert (tmp_path / T.CHECKPOINT).read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == sorted([T.CHECKPOINT, "metrics.json"])


@pytest.mark.parametrize("task", ["copy", "chars"])
def test_other_tasks_train(tmp_path, task):
    result = T.train(tiny(task=task, dropout=0.0), tmp_path, progress=False)
    assert result["finished"] and np.isfinite(result["final"]["loss"])


@pytest.mark.slow
def test_reversal_is_learned(tmp_path):
    config = dataclasses.replace(T.TrainConfig(), seq_len=6, embed_dim=32, num_heads=2,
                                 steps=250, batch_size=32, warmup=20, eval_every=50,
                                 eval_size=128)
    result = T.train(config, tmp_path, progress=False)
    assert result["final"]["token_acc"] > 0.95
    assert result["final"]["greedy_seq_acc"] > 0.8


# -- the command line ------------------------------------------------------------------------------


def test_cli_quick_run_with_figures(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["train", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "held-out token accuracy" in out and "steps to 99%" in out
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "training_curves.png").exists()
    assert "sqrt (1/sqrt(d))" in out  # the default scale, by its word
    assert (tmp_path / "attention_sqrt_layer0.png").exists()
    assert (tmp_path / "gradients_sqrt_layer0.png").exists()  # P, dP, dS of the model


def test_cli_stop_and_resume(tmp_path, capsys):
    args = ["train", "--quick", "--quiet", "--no-figures", "--out", str(tmp_path)]
    assert cli.main(args + ["--stop-after", "10"]) == 0
    assert "continue with --resume" in capsys.readouterr().out
    assert not (tmp_path / "metrics.json").exists()
    assert cli.main(args + ["--resume"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 30


def test_cli_compare_scaling(tmp_path, capsys):
    args = ["train", "--quick", "--quiet", "--no-figures", "--compare-scaling",
            "--scales", "sqrt,unscaled,linear,0.5", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert "deprecated" not in captured.err
    labels = ["sqrt (1/sqrt(d))", "unscaled (1)", "linear (1/d)", "0.5"]
    assert all(label in captured.out for label in labels)
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    assert [r["scale_label"] for r in comparison["rows"]] == labels
    assert [r["scale"] for r in comparison["rows"]] == ["sqrt", "unscaled", "linear", 0.5]
    names = ["scale-sqrt", "scale-unscaled", "scale-linear", "scale-0p5"]
    assert comparison["runs"] == [str(tmp_path / n) for n in names]
    for name, scale in zip(names, ("sqrt", "unscaled", "linear", 0.5)):  # quick: d = 16
        saved = json.loads((tmp_path / name / "metrics.json").read_text())["config"]
        assert saved["scale"] == scale  # by its word, or the number when it has none


def test_cli_compare_scaling_defaults_to_sqrt_and_unscaled(tmp_path, capsys):
    args = ["train", *FAST, "--compare-scaling", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    rows = json.loads((tmp_path / "comparison.json").read_text())["rows"]
    assert [r["scale"] for r in rows] == ["sqrt", "unscaled"]
    assert [r["scale_label"] for r in rows] == ["sqrt (1/sqrt(d))", "unscaled (1)"]


@pytest.mark.parametrize("old, new", [("none", "sqrt"), ("default", "sqrt"),
                                      ("1/sqrt(d)", "sqrt"), ("1/d", "linear")])
def test_cli_old_scale_spellings_still_run_and_say_the_new_word(tmp_path, capsys, old, new):
    assert cli.main(["train", *FAST, "--scale", old, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    (line,) = [line for line in captured.err.splitlines() if "deprecated" in line]
    assert line.startswith(f"minattn train: warning: --scale {old!r} is deprecated")
    assert f"read as {new}" in line and f"write {new}" in line
    assert "Traceback" not in captured.err and "Warning" not in captured.err
    assert f"attention scale {T.scale_label(T.parse_scale(new, 16), 16)}," in captured.out
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["scale"] == new


def test_cli_scale_none_says_what_it_meant_here_and_in_scaling(tmp_path, capsys):
    args = ["train", *FAST, "--compare-scaling", "--scales", "none,1", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    (line,) = [line for line in captured.err.splitlines() if "deprecated" in line]
    assert line.startswith("minattn train: warning: --scales 'none' is deprecated and read "
                           "as sqrt (1/sqrt(d)), what it meant in minattn train")
    assert "`minattn scaling` used none for unscaled (1)" in line
    rows = json.loads((tmp_path / "comparison.json").read_text())["rows"]
    assert [r["scale"] for r in rows] == ["sqrt", "unscaled"]
    assert [r["scale_label"] for r in rows] == ["sqrt (1/sqrt(d))", "unscaled (1)"]


def test_cli_an_old_spelling_and_its_new_word_are_one_scale(tmp_path, capsys):
    code, err = _usage(["train", *FAST, "--compare-scaling", "--scales", "none,sqrt",
                        "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "twice" in err and not (tmp_path / "run").exists()


def _as_saved_before_the_words(folder: Path) -> None:
    """Rewrite a run's files as an earlier version wrote them: the scale null (1/sqrt(d))
    or the number, in the checkpoint's settings and in metrics.json."""
    old = {"sqrt": None, "unscaled": 1.0}
    ckpt = folder / T.CHECKPOINT
    with np.load(ckpt) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    meta["config"]["scale"] = old[meta["config"]["scale"]]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(ckpt, **arrays)
    metrics = folder / "metrics.json"
    if metrics.exists():
        result = json.loads(metrics.read_text())
        result["config"]["scale"] = old[result["config"]["scale"]]
        metrics.write_text(json.dumps(result))


def test_runs_saved_before_the_words_still_resume_and_report(tmp_path, capsys):
    """A run of an earlier version: the scale saved as null or a number, the folders named
    scale-1_sqrtd and scale-1. --resume finds its folders and takes its checkpoints; its
    metrics still report."""
    out = tmp_path / "old"
    args = ["train", *FAST, "--compare-scaling", "--out", str(out)]
    assert cli.main(args + ["--stop-after", "3"]) == 0  # stops inside the first run
    (out / "scale-sqrt").rename(out / "scale-1_sqrtd")  # as the earlier version named it
    _as_saved_before_the_words(out / "scale-1_sqrtd")
    assert checkpoints.load_checkpoint(out / "scale-1_sqrtd" / T.CHECKPOINT)[0]["config"][
        "scale"] is None
    capsys.readouterr()
    assert cli.main(args + ["--resume"]) == 0
    assert f"resuming {out / 'scale-1_sqrtd'} at step 3" in capsys.readouterr().out
    assert not (out / "scale-sqrt").exists()
    comparison = json.loads((out / "comparison.json").read_text())
    runs = [out / "scale-1_sqrtd", out / "scale-unscaled"]
    assert comparison["runs"] == [str(run) for run in runs]
    for run in runs:
        _as_saved_before_the_words(run)
    results = [json.loads((run / "metrics.json").read_text()) for run in runs]
    assert [r["config"]["scale"] for r in results] == [None, 1.0]
    rows = [T.summary_row(r) for r in results]
    assert [r["scale"] for r in rows] == ["sqrt", "unscaled"]
    assert [r["scale_label"] for r in rows] == ["sqrt (1/sqrt(d))", "unscaled (1)"]
    assert "unscaled (1)" in T.format_table(rows, 0.99)
    assert T.TrainConfig.from_dict(results[1]["config"]).label() == "unscaled (1)"


def test_scales_start_from_the_same_weights():
    config = tiny()
    task = T.make_task(config)
    scaled, _ = T.build(config, task)
    unscaled, _ = T.build(dataclasses.replace(config, scale=1.0), task)
    for (name, a), (_, b) in zip(scaled.state_dict().items(), unscaled.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    assert unscaled.blocks[0].attn.scale == 1.0 and scaled.blocks[0].attn.scale is None


def test_resume_on_device(device, tmp_path):
    config = tiny(device=device)
    straight = T.train(config, tmp_path / "straight", progress=False)
    T.train(config, tmp_path / "resumed", progress=False, stop_after=5)
    resumed = T.train(config, tmp_path / "resumed", resume=True, progress=False)
    assert straight["device"] == device
    if device == "cpu":
        assert_same_run(straight, resumed)
        return
    # On the GPU the embedding's scatter-add adds repeated rows with atomics, in no fixed
    # order, so even two uninterrupted runs agree only up to float32 rounding. The key
    # projection's bias is left out: softmax ignores a constant added to a row of scores,
    # so its true gradient is 0 and Adam's normalized step turns the rounding noise in it
    # into steps of size ~lr that differ from run to run.
    pa, pb = params_of(straight), params_of(resumed)
    for name in pa:
        if not name.endswith("k_proj.bias"):
            np.testing.assert_allclose(pa[name], pb[name], rtol=1e-3, atol=1e-5, err_msg=name)
    np.testing.assert_allclose([h["loss"] for h in straight["history"]],
                               [h["loss"] for h in resumed["history"]], rtol=1e-4)


def test_cli_a_second_run_sets_the_first_aside(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--quick", "--quiet", "--no-figures", "--out", str(out)]
    assert cli.main(args) == 0
    first = (out / "metrics.json").read_text()
    assert cli.main(args + ["--seed", "1"]) == 0
    assert "held an earlier run: moved it to" in capsys.readouterr().out
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("run-")]
    assert (kept / "metrics.json").read_text() == first  # the earlier results, untouched
    assert (out / "metrics.json").read_text() != first


def test_cli_quick_keeps_options_that_were_given(tmp_path):
    args = ["train", "--quick", "--quiet", "--no-figures", "--steps", "12", "--out",
            str(tmp_path)]
    assert cli.main(args) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["step"] == 12 and metrics["config"]["embed_dim"] == 32  # quick's size


def test_written_files_follow_the_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        assert cli.main(["train", "--quick", "--quiet", "--no-figures", "--out",
                         str(tmp_path)]) == 0
    finally:
        os.umask(umask)
    for name in ("metrics.json", T.CHECKPOINT):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("command, option", [("train", "--resume"), ("scaling", "--quick"),
                                             ("bench", "--quick"), ("gradcheck", "--seed")])
def test_subcommand_help_lists_its_options(capsys, command, option):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0 and option in capsys.readouterr().out


class FakeClock:
    """A clock that a test moves: every training step takes ``per_step`` seconds."""

    def __init__(self, per_step: float):
        self.now, self.per_step = 1000.0, per_step

    def __call__(self) -> float:
        return self.now


def _quiet_run(tmp_path, monkeypatch, per_step: float) -> list[str]:
    """The lines of a quiet 30-step run (a tenth: 3 steps), after the one that says how
    often they come."""
    clock, lines = FakeClock(per_step), []
    batch = loop.train_batch

    def step_takes_time(task, config, step):
        clock.now += clock.per_step
        return batch(task, config, step)

    monkeypatch.setattr(loop, "train_batch", step_takes_time)
    config = dataclasses.replace(T.quick(T.TrainConfig()), steps=30, eval_every=10)
    T.train(config, tmp_path, progress="quiet", log=lines.append, clock=clock)
    assert lines[0].startswith("quiet: a line every 10% of the steps or 60 s, whichever")
    return lines[1:]


def test_quiet_says_a_line_every_tenth_of_a_fast_run(tmp_path, monkeypatch):
    lines = _quiet_run(tmp_path, monkeypatch, per_step=0.4)  # 12 s in all
    assert [line.split()[1] for line in lines] == [f"{s}/30" for s in range(3, 31, 3)]
    assert lines[0].startswith("step 3/30 loss ") and lines[0].endswith(", 1 s")  # 1.2 s
    assert "held-out" not in lines[2] and "held-out acc" in lines[3]  # step 12: after 10's eval
    assert lines[-1].endswith(", 12 s")


def test_quiet_is_never_silent_for_a_minute_in_a_slow_run(tmp_path, monkeypatch):
    lines = _quiet_run(tmp_path, monkeypatch, per_step=40.0)  # a tenth would be 120 s
    assert [line.split()[1] for line in lines] == [f"{s}/30" for s in range(2, 31, 2)]
    assert lines[0].endswith(", 80 s") and lines[-1].endswith(", 1200 s")


METAVAR = r"(?: \{[^}]*\}| [^ ,]+)?"  # --task {reverse,copy,chars}, --seq-len SEQ_LEN


def _help_entries(command: str, capsys) -> dict[str, str]:
    """`minattn COMMAND --help` read back: each option (its first long name) -> its help
    text, on one line; "" where it has none."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    entries, name = {}, None
    for line in text.split("\noptions:\n", 1)[1].splitlines():
        start = re.match(rf"  (-[^ ,]+){METAVAR}(?:, (--[^ ,]+){METAVAR})*(?:  +(.*))?$", line)
        if start:  # "  --seq-len SEQ_LEN     symbols to ..." or "  -h, --help  show ..."
            name = start.group(2) or start.group(1)
            entries[name] = start.group(3) or ""
        elif line.startswith("      ") and name is not None:  # its help, continued
            entries[name] = f"{entries[name]} {line.strip()}".strip()
    return entries


@pytest.mark.parametrize("command", ["train", "bench"])
def test_help_says_what_every_option_does_and_its_default(capsys, command):
    parser = argparse.ArgumentParser()
    {"train": T, "bench": bench_command}[command].add_arguments(parser)
    actions = {a.option_strings[-1]: a for a in parser._actions if a.option_strings}
    entries = _help_entries(command, capsys)
    assert set(entries) == set(actions)  # every option was read back from the help
    for option, action in actions.items():
        if option == "--help":
            continue
        assert entries[option], f"{option} has no help"
        assert "(default: " in entries[option], f"{option} does not say its default"
        if action.default not in (None, False, True):  # said as argparse holds it
            assert f"(default: {action.default})" in entries[option], entries[option]
