"""``minattn train`` on the command line: its options, and ``run``.

``run`` checks everything before it trains (each option as it is parsed; then the options
together, the device, the text, the output folder and, with ``--resume``, every
checkpoint), then trains one model, or with ``--compare-scaling`` one per scale from the
same seeds, prints the table, and writes the metrics and figures to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .. import runs
from ..options import (
    DEVICES,
    DTYPES,
    UsageError,
    check_device,
    comma_list,
    existing_file,
    fraction,
    nonnegative_float,
    nonnegative_int,
    out_folder,
    positive_float,
    positive_int,
    probability,
)
from .checkpoints import CHECKPOINT, CheckpointError, _write_json, load_checkpoint, saved_config
from .config import (
    TrainConfig,
    canonical_scale,
    deprecated_scale,
    legacy_folder_name,
    parse_scale,
    quick,
)
from .loop import QUIET_EVERY_FRACTION, QUIET_EVERY_S, TrainingDiverged, train
from .report import _slug, format_table, summary_row, write_figures
from .tasks import make_task


def _scale_type(option: str):
    """An attention scale as typed (sqrt, unscaled, linear, 0.5), checked now and given back
    in today's words; read once d is known. An old spelling (none, 1/d, ...) is still read,
    with one line on stderr naming the new word."""

    def check(text: str) -> str:
        try:
            parse_scale(canonical_scale(text), head_dim=1)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        note = deprecated_scale(text)
        if note is not None:
            print(f"minattn train: warning: {option} {note}", file=sys.stderr, flush=True)
        return canonical_scale(text)

    return check


scale_option = _scale_type("--scale")
scale_list = comma_list(_scale_type("--scales"), "sqrt,unscaled,linear")
DEFAULT_SCALES = ["sqrt", "unscaled"]  # what --compare-scaling trains without --scales


def add_arguments(parser) -> None:
    """Every option, with its default in its help (a test holds --help to that)."""
    d, q = TrainConfig(), quick(TrainConfig())

    def default(name: str) -> str:  # None in args means "not given" (see config_from_args)
        return f"(default: {getattr(d, name)}; {getattr(q, name)} with --quick)"

    add = parser.add_argument
    add("--task", choices=["reverse", "copy", "chars"], default=d.task,
        help="reverse or copy a sequence of symbols, or predict the next character of a text "
             "(default: %(default)s)")
    add("--seq-len", type=positive_int, default=None,
        help=f"symbols to reverse or copy; chars: half the context {default('seq_len')}")
    add("--num-symbols", type=positive_int, default=d.num_symbols,
        help="alphabet size of reverse and copy (default: %(default)s)")
    add("--text", type=existing_file, default=None,
        help="chars: a UTF-8 text file (default: the public-domain text shipped with minattn)")
    add("--steps", type=positive_int, default=None,
        help=f"optimizer steps {default('steps')}")
    add("--batch-size", type=positive_int, default=None,
        help=f"sequences per step {default('batch_size')}")
    add("--lr", type=positive_float, default=d.lr,
        help="peak learning rate of AdamW, reached after --warmup and decayed by a cosine to "
             f"{d.min_lr_ratio:g} x it (default: %(default)s)")
    add("--warmup", type=nonnegative_int, default=None,
        help=f"steps of linear warm-up {default('warmup')}")
    add("--weight-decay", type=nonnegative_float, default=d.weight_decay,
        help="AdamW weight decay of the weight matrices (default: %(default)s)")
    add("--grad-clip", type=nonnegative_float, default=d.grad_clip,
        help="max gradient norm, 0 for no clipping (default: %(default)s)")
    add("--embed-dim", type=positive_int, default=None,
        help=f"model width {default('embed_dim')}")
    add("--num-heads", type=positive_int, default=None,
        help=f"attention heads, a divisor of --embed-dim {default('num_heads')}")
    add("--num-layers", type=positive_int, default=None,
        help=f"transformer blocks {default('num_layers')}")
    add("--positions", choices=["learned", "sinusoidal"], default=d.positions,
        help="position embeddings (default: %(default)s)")
    add("--dropout", type=probability, default=d.dropout,
        help="dropout rate, from 0 up to (not including) 1 (default: %(default)s)")
    add("--scale", type=scale_option, default=None,
        help="attention scale c in softmax(c q.k): sqrt (1/sqrt(d)), unscaled (1), linear "
             "(1/d), or a number above 0; the old spellings none (which meant sqrt here), "
             "default, 1/sqrt(d) and 1/d are read with a deprecation notice (default: sqrt)")
    add("--impl", choices=["composed", "fused", "flash"], default=None,
        help="attention implementation (default: the device's fastest)")
    add("--compare-scaling", action="store_true",
        help="train with each of --scales from the same seeds and compare (default: off)")
    add("--scales", type=scale_list, default=None,
        help="scales for --compare-scaling, comma-separated, e.g. sqrt,unscaled,linear "
             f"(default: {','.join(DEFAULT_SCALES)})")
    add("--seed", type=nonnegative_int, default=d.seed,
        help="seed of the weights, the batches and dropout (default: %(default)s)")
    add("--eval-every", type=positive_int, default=None,
        help=f"steps between held-out evaluations {default('eval_every')}")
    add("--eval-size", type=positive_int, default=None,
        help=f"held-out sequences {default('eval_size')}")
    add("--target", type=fraction, default=d.target,
        help="held-out token accuracy that counts as reached, above 0 and at most 1 "
             "(default: %(default)s)")
    add("--checkpoint-every", type=positive_int, default=None,
        help=f"steps between checkpoints {default('checkpoint_every')}")
    add("--device", choices=DEVICES, default=None,
        help="cpu or cuda (default: MINATTN_DEVICE, else cpu)")
    add("--dtype", choices=DTYPES, default=d.dtype,
        help="float32 or float64 (default: %(default)s)")
    add("--out", type=out_folder, default="results/train", metavar="DIR",
        help="output folder; an earlier run there is kept, renamed DIR-<timestamp>; a folder "
             "minattn did not write is refused (default: %(default)s)")
    add("--resume", action="store_true",
        help="continue from the checkpoint in --out, with the same settings (default: off)")
    add("--stop-after", type=positive_int, default=None,
        help="stop after this many steps, with a checkpoint, as if interrupted (default: "
             "none, run to --steps)")
    add("--quick", action="store_true",
        help="a few steps of a small model, in seconds (default: off)")
    add("--no-figures", action="store_true", help="skip the PNG figures (default: off)")
    add("--quiet", action="store_true",
        help=f"no progress bar: a line (step, loss, accuracy, time) every "
             f"{QUIET_EVERY_FRACTION * 100:.0f}%% of the steps or {QUIET_EVERY_S:g} s, "
             "whichever comes first (default: off)")


def config_from_args(args, scale=None) -> TrainConfig:
    """The settings of one run: the options given, the rest from TrainConfig (or, with
    --quick, from quick(TrainConfig())). An option left out is None in args, so one given
    at its default value still beats --quick."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if f.name != "scale" and getattr(args, f.name, None) is not None}
    config = dataclasses.replace(quick(TrainConfig()) if args.quick else TrainConfig(),
                                 **given)
    if config.embed_dim % config.num_heads:
        width = f"{config.embed_dim}" + (" (--quick's)" if args.embed_dim is None
                                         and args.quick else "")
        divisors = [h for h in range(1, config.embed_dim + 1) if config.embed_dim % h == 0]
        raise UsageError("--num-heads", f"{config.num_heads} heads do not divide the model "
                                        f"width --embed-dim {width}; choose one of "
                                        f"{', '.join(map(str, divisors[:8]))}"
                                        f"{', ...' if len(divisors) > 8 else ''}")
    head_dim = config.embed_dim // config.num_heads
    return dataclasses.replace(config, scale=parse_scale(scale or args.scale or "sqrt",
                                                         head_dim))


def plan(args) -> list[tuple[TrainConfig, Path]]:
    """The runs asked for, as (config, folder), with every option checked together.

    Raises UsageError for what one option's check cannot see: options that do not go
    together, a device that is not here, a text that cannot serve, a scale named twice.
    """
    if args.scales is not None and not args.compare_scaling:
        raise UsageError("--scales", "is read only with --compare-scaling; add it, or give "
                                     "one --scale")
    if args.compare_scaling and args.scale is not None:
        raise UsageError("--scale", "--compare-scaling trains each of --scales; name the "
                                    "scales there, e.g. --scales sqrt,unscaled")
    if args.text is not None and args.task != "chars":
        raise UsageError("--text", f"only --task chars reads a text (this is --task "
                                   f"{args.task})")
    out = Path(args.out)
    if args.compare_scaling:
        planned = []
        for scale in args.scales or DEFAULT_SCALES:
            config = config_from_args(args, scale)
            planned.append((config, run_folder(out, config, args.resume)))
        labels = [config.label() for config, _ in planned]
        if len(set(labels)) < len(labels):
            raise UsageError("--scales", f"{','.join(args.scales)} names one scale twice "
                                         f"({', '.join(labels)} at this head size)")
    else:
        planned = [(config_from_args(args, args.scale), out)]
    config = planned[0][0]
    check_device(config.device)
    if config.task == "chars":  # the text is read now, so that a bad one stops nothing
        try:
            make_task(config)
        except UnicodeDecodeError as exc:
            raise UsageError("--text", f"{args.text} is not UTF-8 text ({exc.reason} at "
                                       f"byte {exc.start})") from None
        except OSError as exc:
            raise UsageError("--text", f"{args.text} cannot be read ({exc.strerror})") from None
        except ValueError as exc:
            raise UsageError("--seq-len" if args.text is None else "--text",
                             f"{exc}; use a smaller --seq-len"
                             + ("" if args.text is None else " or a longer text")) from None
    return planned


def run_folder(out: Path, config: TrainConfig, resume: bool = False) -> Path:
    """Where one run of --compare-scaling goes: out/scale-<word> (scale-sqrt, scale-unscaled,
    scale-linear, scale-0p5); --resume also finds a run saved under the earlier names
    (scale-1_sqrtd, scale-1, scale-0p0625)."""
    folder = out / ("scale-" + _slug(config.scale_name()))
    legacy = out / legacy_folder_name(config.scale)
    if resume and not folder.exists() and legacy.is_dir():
        return legacy
    return folder


def check_resume(out: Path, planned) -> None:
    """--resume needs a run of minattn train in out, with a checkpoint of these settings."""
    if not out.is_dir() or not runs.written_by_minattn(out, "train"):
        raise UsageError("--resume", f"no run to resume in {out}; run without --resume to "
                                     "start one")
    found = [(config, o / CHECKPOINT) for config, o in planned if (o / CHECKPOINT).exists()]
    if not found:
        raise UsageError("--resume", f"the run in {out} stopped before its first checkpoint "
                                     f"({CHECKPOINT}); run without --resume to start again")
    for config, path in found:
        try:
            saved = saved_config(load_checkpoint(path)[0], path)
        except CheckpointError as exc:
            raise UsageError("--resume", str(exc)) from None
        if saved != config:
            diff = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(saved).items()
                    if getattr(config, k) != v}
            raise UsageError("--resume", f"the checkpoint {path} was made with other settings "
                                         f"(saved, now): {diff}; resume with the same "
                                         "settings, or use another --out")


def run(args) -> int:
    planned = plan(args)
    out = Path(args.out)
    if args.resume:
        check_resume(out, planned)
    with runs.RunLock(out):  # one run at a time in out, from here to the end
        if not args.resume:
            moved = runs.claim(out, "train")  # an earlier run is kept whole, never overwritten
            if moved is not None:
                print(f"{out} held an earlier run: moved it to {moved} (use --resume to "
                      "continue one)")
        try:
            return _train_all(args, planned, out)
        except (TrainingDiverged, CheckpointError) as exc:  # a step gave NaN, or a checkpoint
            print(f"minattn train: error: {exc}", file=sys.stderr)  # loaded but did not fit
            return 1
        except KeyboardInterrupt:  # a second Ctrl-C in training, or one outside it
            print(f"\nminattn train: stopped at once by Ctrl-C; the last checkpoint in {out} "
                  "is kept: continue with --resume", file=sys.stderr)
            return 130


def _train_all(args, planned, out: Path) -> int:
    results, folders = [], []
    for config, run_out in planned:
        print(f"training {config.task} (length {config.seq_len}) with attention scale "
              f"{config.label()}, {config.steps} steps -> {run_out}")
        result = train(config, run_out, resume=args.resume,
                       progress="quiet" if args.quiet else True,
                       stop_after=args.stop_after)
        if not result["finished"]:
            return 130 if args.stop_after is None else 0
        results.append(result)
        folders.append(str(run_out))
        final = result["final"]
        reached = "not reached" if result["steps_to_target"] is None else \
            f"reached at step {result['steps_to_target']} " \
            f"({result['time_to_target_s']:.1f} s)"
        print(f"held-out token accuracy {final['token_acc']:.4f} (target {config.target:.0%} "
              f"{reached}), loss {final['loss']:.4f}, trained {result['train_time_s']:.1f} s")
    rows = [summary_row(r) for r in results]
    print(format_table(rows, results[0]["config"]["target"]))
    if args.compare_scaling:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "comparison.json", {"rows": rows, "runs": folders})
    if not args.no_figures:
        for path in write_figures(out, results):
            print(f"wrote {path}")
    return 0
