"""The command line's promises to a user who gets it wrong.

A bad option is a usage error: exit status 2, one line that names the option, its value and
what is allowed, no traceback, and nothing done before it (no training, no folder made).
Run folders: one run at a time per folder (a lock holding the pid), only minattn's own
folders are ever moved, a corrupt checkpoint or config is one line naming the file, and the
JSON written is strict (NaN as null). A second Ctrl-C stops at once, in one line, exit 130.
"""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minattn import backend
from minattn.tools import cli, runs
from minattn.tools import train as T
from minattn.tools.bench import command as bench_command
from minattn.tools.train import command as train_command
from minattn.tools.train import loop

FAST = ["--quick", "--quiet", "--no-figures", "--steps", "6", "--eval-every", "3",
        "--checkpoint-every", "3"]  # a tiny model, six steps: about a second


def call(argv, capsys):
    """(exit status, stdout, stderr) of `minattn ARGV`, run in this process."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, command, option, *says):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    message = lines[-1]
    assert message.startswith(f"minattn {command}: error: argument {option}"), err
    assert all(s in message for s in says), message
    assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), err  # the usage


@pytest.fixture
def no_work(monkeypatch):
    """Every subcommand's work, replaced by a failure: a usage error must come first."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(train_command, "train", must_not_run)
    monkeypatch.setattr(bench_command, "check_agreement", must_not_run)
    monkeypatch.setattr("minattn.tools.gradcheck.run_all", must_not_run)
    monkeypatch.setattr("minattn.tools.scaling._run", must_not_run)


# -- each wrong usage: the option, what the message must say -------------------------------

TRAIN_ERRORS = [
    (["--scale", "abc"], "--scale", "'abc'", "sqrt (1/sqrt(d)), unscaled (1), linear (1/d) or a "
     "number above 0"),
    (["--scale", "sqrtd"], "--scale", "'sqrtd'", "sqrt (1/sqrt(d))"),
    (["--scale", "-1"], "--scale", "'-1'", "above 0"),
    (["--steps", "0"], "--steps", "'0'", "1 or more"),
    (["--steps", "-5"], "--steps", "'-5'", "1 or more"),
    (["--steps", "ten"], "--steps", "'ten'"),
    (["--device", "gpu"], "--device", "'gpu'", "'cpu', 'cuda'"),
    (["--num-heads", "3"], "--num-heads", "3", "--embed-dim 32", "1, 2, 4"),
    (["--embed-dim", "30", "--num-heads", "4"], "--num-heads", "--embed-dim 30"),
    (["--task", "chars", "--text", "{missing}"], "--text", "does not exist"),
    (["--task", "chars", "--text", "{folder}"], "--text", "is a folder"),
    (["--text", "{file}"], "--text", "--task chars"),
    (["--task", "chars", "--text", "{file}"], "--text", "too short"),
    (["--task", "chars", "--seq-len", "5000"], "--seq-len", "too short"),
    (["--batch-size", "0"], "--batch-size", "'0'"),
    (["--seq-len", "0"], "--seq-len", "'0'"),
    (["--checkpoint-every", "0"], "--checkpoint-every", "'0'"),
    (["--dtype", "float16"], "--dtype", "'float16'", "'float32', 'float64'"),
    (["--lr", "-0.1"], "--lr", "'-0.1'", "above 0"),
    (["--lr", "nan"], "--lr", "'nan'"),
    (["--lr", "inf"], "--lr", "'inf'"),
    (["--warmup", "-1"], "--warmup", "'-1'"),
    (["--weight-decay", "-1"], "--weight-decay", "'-1'"),
    (["--grad-clip", "-1"], "--grad-clip", "'-1'"),
    (["--dropout", "1"], "--dropout", "'1'"),
    (["--target", "1.5"], "--target", "'1.5'"),
    (["--eval-every", "0"], "--eval-every", "'0'"),
    (["--eval-size", "0"], "--eval-size", "'0'"),
    (["--seed", "-1"], "--seed", "'-1'"),
    (["--embed-dim", "0"], "--embed-dim", "'0'"),
    (["--num-layers", "0"], "--num-layers", "'0'"),
    (["--num-symbols", "0"], "--num-symbols", "'0'"),
    (["--stop-after", "0"], "--stop-after", "'0'"),
    (["--scales", "sqrt,unscaled"], "--scales", "--compare-scaling"),
    (["--compare-scaling", "--scales", "sqrt,"], "--scales", "'sqrt,'"),
    (["--compare-scaling", "--scales", "sqrt,bogus"], "--scales", "'bogus'", "unscaled (1)"),
    (["--compare-scaling", "--scales", "1,1.0"], "--scales", "twice"),
    (["--compare-scaling", "--scales", "unscaled,1"], "--scales", "twice", "unscaled (1)"),
    (["--compare-scaling", "--scale", "1"], "--scale", "--scales"),
    (["--out", "{file}"], "--out", "is a file"),
    (["--out", ""], "--out", "''"),
    (["--resume", "--out", "{new}"], "--resume", "no run to resume"),
]


def test_an_option_given_at_its_default_value_still_beats_quick():
    import argparse

    parser = argparse.ArgumentParser()
    T.add_arguments(parser)
    config = T.config_from_args(parser.parse_args(["--quick", "--num-heads", "4",
                                                   "--steps", "600"]))
    assert (config.num_heads, config.steps, config.embed_dim) == (4, 600, 32)  # 32: quick's


def _fill(argv, tmp_path):
    (tmp_path / "short.txt").write_text("abc")
    (tmp_path / "folder").mkdir(exist_ok=True)
    places = {"{missing}": tmp_path / "missing.txt", "{file}": tmp_path / "short.txt",
              "{folder}": tmp_path / "folder", "{new}": tmp_path / "new"}
    return [str(places.get(a, a)) for a in argv]


@pytest.mark.parametrize("argv, option, says", [(c[0], c[1], c[2:]) for c in TRAIN_ERRORS],
                         ids=[" ".join(c[0]) for c in TRAIN_ERRORS])
def test_train_usage_errors(tmp_path, capsys, no_work, argv, option, says):
    out = tmp_path / "run"
    argv = _fill(argv, tmp_path)
    if "--out" not in argv:
        argv += ["--out", out]
    code, _, err = call(["train", *FAST, *argv], capsys)
    assert_usage_error(code, err, "train", option, *says)
    assert not out.exists() and not (tmp_path / "run.lock").exists()


OTHER_ERRORS = [
    ("gradcheck", ["--device", "gpu"], "--device", "'gpu'"),
    ("gradcheck", ["--seed", "-1"], "--seed", "'-1'"),
    ("scaling", ["--only", ""], "--only", "''"),
    ("scaling", ["--only", "7"], "--only", "'7'", "1 to 6"),
    ("scaling", ["--only", "1,1"], "--only", "twice"),
    ("scaling", ["--device", "gpu"], "--device", "'gpu'"),
    ("scaling", ["--out", "{file}"], "--out", "is a file"),
    ("bench", ["--device", "gpu"], "--device", "'gpu'"),
    ("bench", ["--repeat", "0"], "--repeat", "'0'"),
    ("bench", ["--batch", "0"], "--batch", "'0'"),
    ("bench", ["--dim", "-4"], "--dim", "'-4'"),
    ("bench", ["--max-memory", "0"], "--max-memory", "'0'"),
    ("bench", ["--shapes", "8x0"], "--shapes", "'8x0'"),
    ("bench", ["--shapes", ""], "--shapes", "''"),
    ("bench", ["--impl", "nope"], "--impl", "'nope'", "flash-ref"),
    ("bench", ["--impl", "fused,"], "--impl", "''"),
    ("bench", ["--impl", "flash-cupy"], "--impl", "flash-cupy", "cpu"),
    ("bench", ["--out", "{folder}"], "--out", "is a folder"),
    ("bench", ["--out", "{file}/bench.json"], "--out", "is a file"),
    ("bench", ["--markdown", "{folder}"], "--markdown", "is a folder"),
]


@pytest.mark.parametrize("command, argv, option, says",
                         [(c[0], c[1], c[2], c[3:]) for c in OTHER_ERRORS],
                         ids=[f"{c[0]} {' '.join(c[1])}" for c in OTHER_ERRORS])
def test_other_usage_errors(tmp_path, capsys, no_work, command, argv, option, says):
    argv = [a.replace("{file}", str(tmp_path / "short.txt")) for a in _fill(argv, tmp_path)]
    if command == "scaling" and "--out" not in argv:
        argv += ["--no-progress", "--out", tmp_path / "scaling"]
    code, _, err = call([command, "--quick", *argv] if command != "gradcheck"
                        else [command, *argv], capsys)
    assert_usage_error(code, err, command, option, *says)
    assert not (tmp_path / "scaling.partial").exists()


@pytest.mark.parametrize("command", ["train", "gradcheck", "scaling", "bench"])
def test_an_unavailable_cuda_is_the_same_usage_error_everywhere(tmp_path, capsys, no_work,
                                                                monkeypatch, command):
    monkeypatch.setattr(backend, "cuda_status", lambda: (False, "no GPU here"))
    argv = {"train": [*FAST, "--out", tmp_path / "run"], "gradcheck": [],
            "scaling": ["--quick", "--out", tmp_path / "run"], "bench": ["--quick"]}[command]
    code, _, err = call([command, *argv, "--device", "cuda"], capsys)
    assert_usage_error(code, err, command, "--device", "no GPU here", "--device cpu")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_bench_with_nothing_that_can_run_here_says_why(capsys, no_work, monkeypatch):
    from minattn.tools.bench import cases

    monkeypatch.setattr(cases, "_torch", lambda: None)  # as on a machine without PyTorch
    code, _, err = call(["bench", "--quick", "--impl", "torch-sdpa,torch-math"], capsys)
    assert_usage_error(code, err, "bench", "--impl", "torch-sdpa: PyTorch is not installed",
                       "torch-math: PyTorch")


def test_bench_checks_its_output_can_be_written_before_timing(tmp_path, capsys, no_work):
    if sys.platform == "linux":  # /proc refuses new files, even to root
        code, _, err = call(["bench", "--quick", "--out", "/proc/minattn/bench.json"], capsys)
        assert_usage_error(code, err, "bench", "--out", "cannot be written", "/proc")
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root may write in a read-only folder
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            code, _, err = call(["bench", "--quick", "--out", locked / "b.json"], capsys)
        finally:
            locked.chmod(0o755)
        assert_usage_error(code, err, "bench", "--out", "cannot be written")


def test_bench_writes_strict_json_whole(tmp_path):
    path = tmp_path / "bench.json"
    runs.write_atomic(path, runs.dumps({"rows": [{"ms": np.float32("nan")}]}, indent=1,
                                       default=str))
    assert json.loads(path.read_text(), parse_constant=_no_constants) == {"rows": [{"ms": None}]}
    assert not list(tmp_path.glob("*.tmp"))


# -- run folders: whose they are -------------------------------------------------------------


def test_a_folder_minattn_did_not_write_is_refused_untouched(tmp_path, capsys, no_work):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("two years of work")
    for command, extra in (("train", FAST), ("scaling", ["--quick", "--no-progress"])):
        code, _, err = call([command, *extra, "--out", mine], capsys)
        assert_usage_error(code, err, command, "--out", str(mine), "did not write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # nothing renamed or made
    assert (mine / "thesis.tex").read_text() == "two years of work"


def test_a_foreign_partial_folder_is_refused(tmp_path, capsys, no_work):
    partial = tmp_path / "scaling.partial"
    partial.mkdir()
    (partial / "data.csv").write_text("1,2")
    code, _, err = call(["scaling", "--quick", "--out", tmp_path / "scaling"], capsys)
    assert_usage_error(code, err, "scaling", "--out", "scaling.partial", "did not write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scaling.partial"]


def test_out_dot_is_refused_when_it_holds_files(tmp_path, capsys, monkeypatch, no_work):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    code, _, err = call(["train", *FAST, "--out", "."], capsys)
    assert_usage_error(code, err, "train", "--out", "did not write")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_the_current_folder_is_never_moved_aside(tmp_path, capsys, monkeypatch, no_work):
    run = tmp_path / "run"
    runs.claim(run, "train")  # a run folder of minattn's, the user standing in it
    monkeypatch.chdir(run)
    code, _, err = call(["train", *FAST, "--out", "."], capsys)
    assert_usage_error(code, err, "train", "--out", "current folder")
    assert sorted(os.listdir(tmp_path)) == ["run"]
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)  # scaling replaces its --out at the end, even an empty one
    code, _, err = call(["scaling", "--quick", "--no-progress", "--out", "."], capsys)
    assert_usage_error(code, err, "scaling", "--out", "current folder")
    assert sorted(os.listdir(tmp_path)) == ["empty", "run"]


def test_folders_of_minattn_are_known_with_or_without_the_marker(tmp_path):
    new, old, other, empty = (tmp_path / n for n in ("new", "old", "other", "empty"))
    runs.claim(new, "train")
    old.mkdir()
    (old / T.CHECKPOINT).write_bytes(b"")  # a train run of an earlier version
    other.mkdir()
    (other / "config.json").write_text("{}")
    empty.mkdir()
    assert runs.written_by_minattn(new, "train") and runs.written_by_minattn(old, "train")
    assert not runs.written_by_minattn(new, "scaling")  # marked by train, not scaling
    assert not runs.written_by_minattn(other) and not runs.written_by_minattn(empty)
    moved = runs.claim(old, "train")
    assert (moved / T.CHECKPOINT).exists() and os.listdir(old) == [runs.MARKER]
    assert runs.claim(empty, "train") is None


# -- run folders: one run at a time ------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_lock_refuses_a_second_run(tmp_path, capsys, no_work):
    other = os.getppid()  # a live process that is not this one
    for command, extra in (("train", FAST), ("scaling", ["--quick", "--no-progress"])):
        lock = tmp_path / f"{command}.lock"
        lock.write_text(f"{other}\n")
        code, _, err = call([command, *extra, "--out", tmp_path / command], capsys)
        assert_usage_error(code, err, command, "--out", "in use by another minattn run",
                           f"pid {other}")
        assert lock.read_text() == f"{other}\n"  # the other run's lock is left alone
        assert not (tmp_path / command).exists()
        assert not (tmp_path / f"{command}.partial").exists()


def test_a_stale_lock_is_taken_over_and_removed_at_the_end(tmp_path, capsys, monkeypatch):
    lock = tmp_path / "run.lock"
    lock.write_text(f"{_dead_pid()}\n")
    seen = []
    batch = loop.train_batch

    def watching(task, config, step):
        seen.append(lock.read_text().strip())
        return batch(task, config, step)

    monkeypatch.setattr(loop, "train_batch", watching)
    code, _, err = call(["train", *FAST, "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    assert set(seen) == {str(os.getpid())}  # held by this run while it trained
    assert not lock.exists()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text(),
                      parse_constant=_no_constants)["step"] == 6


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), runs.RunLock(tmp_path / "run"):
        assert (tmp_path / "run.lock").read_text() == f"{os.getpid()}\n"
        raise RuntimeError("boom")
    assert not (tmp_path / "run.lock").exists()


# -- corrupt checkpoints and configs -------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_checkpoint_is_one_line_naming_it(tmp_path, capsys, damage):
    out = tmp_path / "run"
    assert call(["train", *FAST, "--stop-after", "3", "--out", out], capsys)[0] == 0
    ckpt = out / T.CHECKPOINT
    data = ckpt.read_bytes()
    ckpt.write_bytes({"garbage": b"not a checkpoint at all", "truncated": data[:len(data) // 2],
                      "empty": b""}[damage])
    code, _, err = call(["train", *FAST, "--resume", "--out", out], capsys)
    assert_usage_error(code, err, "train", "--resume", str(ckpt), "cannot be read",
                       "run without --resume")
    with pytest.raises(T.checkpoints.CheckpointError, match="cannot be read"):
        T.load_checkpoint(ckpt)


def test_resume_with_other_settings_or_no_checkpoint_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert call(["train", *FAST, "--stop-after", "3", "--out", out], capsys)[0] == 0
    code, _, err = call(["train", *FAST, "--lr", "0.5", "--resume", "--out", out], capsys)
    assert_usage_error(code, err, "train", "--resume", "other settings", "lr")
    (out / T.CHECKPOINT).unlink()  # stopped before its first checkpoint
    code, _, err = call(["train", *FAST, "--resume", "--out", out], capsys)
    assert_usage_error(code, err, "train", "--resume", "before its first checkpoint")


def test_a_corrupt_scaling_config_or_checkpoint_is_one_line_naming_it(tmp_path, capsys,
                                                                      monkeypatch):
    from minattn.experiments import suite

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "scaling"
    args = ["scaling", "--quick", "--no-progress", "--only", "1,5", "--out", out]
    monkeypatch.setattr(suite.BY_NUMBER[5], "run", interrupt)
    assert call(args, capsys)[0] == 130
    monkeypatch.undo()
    partial = tmp_path / "scaling.partial"
    checkpoint = partial / "checkpoints" / "experiment1.json"
    checkpoint.write_text('[{"experiment": 1, "d": 1')  # cut off mid-write
    code, _, err = call([*args, "--resume"], capsys)
    assert_usage_error(code, err, "scaling", "--resume", str(checkpoint), "delete it")
    (partial / "config.json").write_text("{not json")
    code, _, err = call([*args, "--resume"], capsys)
    assert_usage_error(code, err, "scaling", "--resume", str(partial / "config.json"),
                       "run without --resume")


# -- strict JSON, and no run that goes on to NaN ---------------------------------------------------


def _no_constants(name):
    raise AssertionError(f"{name} in JSON: not strict")


def test_json_is_strict_with_nan_as_null(tmp_path):
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float32("nan"),
            "d": (np.int64(3), None)}
    text = runs.dumps(data)
    assert json.loads(text, parse_constant=_no_constants) == \
        {"a": None, "b": [None, None, 1.5], "c": None, "d": [3, None]}
    runs.write_json(tmp_path / "r.json", data)
    T.checkpoints._write_json(tmp_path / "m.json", data)
    for name in ("r.json", "m.json"):
        assert json.loads((tmp_path / name).read_text(), parse_constant=_no_constants) \
            == json.loads(text)


def test_training_that_diverges_stops_before_the_nan_step(tmp_path):
    def poison(step, model):
        if step == 4:  # the checkpoint of step 3 is written; step 5 sees NaN weights
            model.tok_emb.weight.data[...] = np.nan

    config = dataclasses.replace(T.quick(T.TrainConfig()), steps=6, eval_every=3,
                                 checkpoint_every=3)
    with pytest.raises(loop.TrainingDiverged, match="diverged at step 5.*step 3"):
        T.train(config, tmp_path, progress=False, on_step=poison)
    meta, _ = T.load_checkpoint(tmp_path / T.CHECKPOINT)
    assert meta["step"] == 3 and not (tmp_path / "metrics.json").exists()


def test_the_command_reports_divergence_in_one_line(tmp_path, capsys, monkeypatch):
    build = loop.build

    def poisoned(config, task):
        model, opt = build(config, task)
        model.tok_emb.weight.data[...] = np.nan
        return model, opt

    monkeypatch.setattr(loop, "build", poisoned)
    code, _, err = call(["train", *FAST, "--out", tmp_path / "run"], capsys)
    assert code == 1 and "Traceback" not in err
    (message,) = [line for line in err.splitlines() if line.strip()]
    assert message.startswith("minattn train: error: training diverged at step 1")
    assert not (tmp_path / "run" / "metrics.json").exists()


# -- Ctrl-C twice ------------------------------------------------------------------------------


def test_a_second_ctrl_c_stops_at_once_in_one_line(tmp_path, capsys, monkeypatch):
    before = signal.getsignal(signal.SIGINT)
    batch = loop.train_batch

    def press_twice(task, config, step):
        if step == 4:  # inside step 5: the first asks to stop, the second stops now
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return batch(task, config, step)

    monkeypatch.setattr(loop, "train_batch", press_twice)
    out = tmp_path / "run"
    code, _, err = call(["train", *FAST, "--out", out], capsys)
    assert code == 130 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("Ctrl-C: finishing this step")  # said at the first press
    assert lines[1:] == [f"minattn train: stopped at once by Ctrl-C; the last checkpoint in "
                         f"{out} is kept: continue with --resume"]
    assert T.load_checkpoint(out / T.CHECKPOINT)[0]["step"] == 3
    assert signal.getsignal(signal.SIGINT) is before and not (tmp_path / "run.lock").exists()
    monkeypatch.undo()
    assert call(["train", *FAST, "--resume", "--out", out], capsys)[0] == 0


# -- end to end, in a fresh process: no traceback ever reaches the user --------------------------


def _minattn(*args, code=None, timeout=120):
    command = [sys.executable, "-m", "minattn", *map(str, args)] if code is None else \
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_usage_errors_end_to_end(tmp_path):
    done = _minattn("train", "--steps", "0", "--out", tmp_path / "run")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == ("minattn train: error: argument --steps: expected "
                                            "a whole number of 1 or more, got '0'")
    done = _minattn("bench", "--quick", "--out", tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr and not done.stdout
    assert "argument --out" in done.stderr.splitlines()[-1]


def test_a_second_ctrl_c_end_to_end(tmp_path):
    done = _minattn(tmp_path / "run", code="""
        import os, signal, sys
        from minattn.tools import cli
        from minattn.tools.train import loop
        batch = loop.train_batch
        def press_twice(task, config, step):
            if step == 2:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
            return batch(task, config, step)
        loop.train_batch = press_twice
        sys.exit(cli.main(["train", "--quick", "--quiet", "--no-figures", "--steps", "6",
                           "--out", sys.argv[1]]))
        """)
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("minattn train: stopped at once")
