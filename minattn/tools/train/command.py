"""``minattn train`` on the command line: its options, and ``run``.

``run`` trains one model, or with ``--compare-scaling`` one per scale from the same seeds,
prints the table, and writes the metrics and figures to ``--out``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..runs import set_aside
from .checkpoints import _write_json
from .config import TrainConfig, parse_scale, quick, scale_label
from .loop import train
from .report import _slug, format_table, summary_row, write_figures


def add_arguments(parser) -> None:
    d = TrainConfig()
    parser.add_argument("--task", choices=["reverse", "copy", "chars"], default=d.task)
    parser.add_argument("--seq-len", type=int, default=d.seq_len,
                        help="symbols to reverse or copy (chars: half the context)")
    parser.add_argument("--num-symbols", type=int, default=d.num_symbols,
                        help="alphabet size of reverse and copy")
    parser.add_argument("--text", default=None, help="chars: a UTF-8 text file "
                        "(default: the public-domain text shipped with minattn)")
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--warmup", type=int, default=d.warmup)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip,
                        help="max gradient norm (0: no clipping)")
    parser.add_argument("--embed-dim", type=int, default=d.embed_dim)
    parser.add_argument("--num-heads", type=int, default=d.num_heads)
    parser.add_argument("--num-layers", type=int, default=d.num_layers)
    parser.add_argument("--positions", choices=["learned", "sinusoidal"], default=d.positions)
    parser.add_argument("--dropout", type=float, default=d.dropout)
    parser.add_argument("--scale", default="none",
                        help="attention scale: none (1/sqrt(d)), 1 (unscaled), 1/d, or a number")
    parser.add_argument("--impl", choices=["composed", "fused", "flash"], default=None,
                        help="attention implementation (default: the device's fastest)")
    parser.add_argument("--compare-scaling", action="store_true",
                        help="train with each of --scales from the same seeds and compare")
    parser.add_argument("--scales", default="none,1",
                        help="scales for --compare-scaling, comma-separated (e.g. none,1,1/d)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--eval-every", type=int, default=d.eval_every)
    parser.add_argument("--eval-size", type=int, default=d.eval_size)
    parser.add_argument("--target", type=float, default=d.target,
                        help="held-out token accuracy that counts as reached")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the default)")
    parser.add_argument("--dtype", default=d.dtype, help="float32 (default) or float64")
    parser.add_argument("--out", default="results/train", help="output folder")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out (same settings)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many steps, with a checkpoint (as if interrupted)")
    parser.add_argument("--quick", action="store_true", help="a few steps of a small model")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args, scale=None) -> TrainConfig:
    config = TrainConfig(task=args.task, seq_len=args.seq_len, num_symbols=args.num_symbols,
                         text=args.text, embed_dim=args.embed_dim, num_heads=args.num_heads,
                         num_layers=args.num_layers, positions=args.positions,
                         dropout=args.dropout, impl=args.impl, steps=args.steps,
                         batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                         weight_decay=args.weight_decay, grad_clip=args.grad_clip,
                         seed=args.seed, eval_every=args.eval_every, eval_size=args.eval_size,
                         target=args.target, checkpoint_every=args.checkpoint_every,
                         device=args.device, dtype=args.dtype)
    if args.quick:  # the quick sizes, except where an option was given another value
        defaults = TrainConfig()
        given = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                 if getattr(config, f.name) != getattr(defaults, f.name)}
        config = dataclasses.replace(quick(defaults), **given)
    head_dim = config.embed_dim // config.num_heads
    return dataclasses.replace(config, scale=parse_scale(scale or args.scale, head_dim))


def run(args) -> int:
    out = Path(args.out)
    if not args.resume and out.exists() and any(out.iterdir()):
        moved = set_aside(out)  # an earlier run is kept whole, never overwritten
        print(f"{out} held an earlier run: moved it to {moved} (use --resume to continue one)")
    scales = args.scales.split(",") if args.compare_scaling else [args.scale]
    results = []
    for scale in scales:
        config = config_from_args(args, scale)
        run_out = out / ("scale-" + _slug(config.label())) if args.compare_scaling else out
        print(f"training {config.task} (length {config.seq_len}) with attention scale "
              f"{config.label()}, {config.steps} steps -> {run_out}")
        result = train(config, run_out, resume=args.resume, progress=not args.quiet,
                       stop_after=args.stop_after)
        if not result["finished"]:
            return 130 if args.stop_after is None else 0
        results.append(result)
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
        _write_json(out / "comparison.json", {"rows": rows, "runs": [
            str(out / ("scale-" + _slug(scale_label(r["config"]["scale"])))) for r in results]})
    if not args.no_figures:
        for path in write_figures(out, results):
            print(f"wrote {path}")
    return 0
