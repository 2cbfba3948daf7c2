"""``minattn scaling``: run the experiments, print their tables, write the report.

    minattn scaling --quick            # seconds: what `make demo` and the tests run
    minattn scaling                    # the full sweep: a few minutes on two cores
    minattn scaling --resume           # continue a run that was interrupted
    minattn scaling --only 1,2,5       # a subset of the experiments

Everything goes to ``--out`` (default results/scaling): report.md, one PNG per
experiment, results.json (every row) and config.json (the settings of the run).
"""

from __future__ import annotations

import argparse
import sys
import time

from ..experiments import BY_NUMBER, EXPERIMENTS, make_figures, markdown_report, terminal_table
from ..experiments.common import upgrade_rows
from .options import DEVICES, check_device, comma_list, out_folder
from .runs import FolderError, RunFolder, RunLock, write_atomic, write_json


def _experiment_number(text: str) -> int:
    if not text.isdigit() or int(text) not in BY_NUMBER:
        raise argparse.ArgumentTypeError(f"no experiment {text!r}; they are numbered 1 to "
                                         f"{len(EXPERIMENTS)}, e.g. 1,2,5")
    return int(text)


experiment_list = comma_list(_experiment_number, "1,2,5")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="a small version that runs in seconds")
    parser.add_argument("--out", default="results/scaling", metavar="DIR", type=out_folder,
                        help="output folder (default: results/scaling); an earlier run "
                             "there is kept, renamed DIR-<timestamp>; a folder minattn did "
                             "not write is refused")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in DIR.partial")
    parser.add_argument("--train", action=argparse.BooleanOptionalAction, default=None,
                        help="run experiment 6, training sensitivity (default: on for the "
                             "full run, off for --quick)")
    parser.add_argument("--only", default=None, metavar="LIST", type=experiment_list,
                        help=f"comma-separated experiment numbers (1 to {len(EXPERIMENTS)}), "
                             "e.g. 1,2,5")
    parser.add_argument("--device", default="cpu", choices=DEVICES,
                        help="where the arrays live (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _chosen(args) -> list[int]:
    numbers = [e.number for e in EXPERIMENTS]
    if args.only is not None:  # checked as it was parsed (experiment_list)
        numbers = sorted(set(args.only))
    if args.train is False or (args.train is None and args.quick and not args.only):
        numbers = [n for n in numbers if n != 6]  # training is opt-in for --quick
    elif args.train and 6 not in numbers:
        numbers.append(6)
    return numbers


class Progress:
    """A progress bar over all units of work: tqdm when installed, else a plain counter."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.bar, self.enabled = total, 0, None, enabled
        self.start = time.perf_counter()
        self.label = ""
        if not enabled:
            return
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", file=sys.stderr, leave=False,
                            dynamic_ncols=True)
        except ImportError:
            self.bar = None

    def describe(self, label: str) -> None:
        self.label = label
        if self.bar is not None:
            self.bar.set_description(label)

    def __call__(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
        else:
            elapsed = time.perf_counter() - self.start
            print(f"\r[{self.done:>4}/{self.total}] {self.label} ({elapsed:.0f} s)", end="",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print("\r" + " " * 70 + "\r", end="", file=sys.stderr, flush=True)

    def write(self, text: str) -> None:
        """Print above the bar."""
        if self.bar is not None:
            self.bar.write(text)
        else:
            if self.enabled:
                print("\r" + " " * 70 + "\r", end="", file=sys.stderr, flush=True)
            print(text, flush=True)


def run(args) -> int:
    numbers = _chosen(args)
    quick = bool(args.quick)
    # Which kernels compute each experiment's rows (kernels.use), and why some run on the
    # plain NumPy twins: a resumed run must use the same ones.
    config = {"quick": quick, "experiments": numbers, "device": args.device,
              "kernels": {str(n): BY_NUMBER[n].kernels() for n in numbers},
              "plain_kernels_why": {str(n): BY_NUMBER[n].plain_kernels_why for n in numbers
                                    if BY_NUMBER[n].plain_kernels_why}}
    check_device(args.device)  # these raise UsageError, before any work
    with RunLock(args.out):
        folder = RunFolder(args.out, config, resume=args.resume)
        return _run(args, numbers, quick, config, folder)


def _run(args, numbers, quick, config, folder) -> int:
    todo = [BY_NUMBER[n] for n in numbers]
    # Rows saved by an earlier minattn may call c = 1 "none": read as "unscaled" (the
    # checkpoint files themselves are not rewritten).
    done = {n: upgrade_rows(folder.load(n)) for n in folder.finished()}
    total = sum(e.units(quick) for e in todo if e.number not in done)
    # A bar only on a terminal: in a log, the \r redraws would be noise.
    progress = Progress(total, enabled=not args.no_progress and sys.stderr.isatty())
    rows, timings = [], {}
    print(f"minattn scaling{' --quick' if quick else ''}: experiments "
          f"{', '.join(map(str, numbers))} -> {folder.partial}", flush=True)
    try:
        for experiment in todo:
            header = f"\n== {experiment.number}. {experiment.title} =="
            if experiment.number in done:
                mine = done[experiment.number]
                progress.write(header + " (from the interrupted run)")
            else:
                progress.describe(f"{experiment.number}. {experiment.slug}")
                start = time.perf_counter()
                mine = experiment.run(quick, device=args.device, progress=progress)
                timings[experiment.number] = time.perf_counter() - start
                folder.save(experiment.number, mine)
                progress.write(header + f" ({timings[experiment.number]:.1f} s)")
            progress.write(terminal_table(experiment.number, mine))
            rows += mine
    except KeyboardInterrupt:
        progress.close()
        print(f"\ninterrupted: finished experiments are kept in {folder.partial}; "
              "continue with --resume", file=sys.stderr)
        return 130
    progress.close()

    figures = make_figures(rows, folder.partial, say=print)
    write_json(folder.path("results.json"), rows)
    write_atomic(folder.path("report.md"), markdown_report(rows, figures, config, timings))
    try:
        out = folder.finish()
    except FolderError as exc:
        print(f"minattn scaling: {exc}", file=sys.stderr)
        return 1
    print(f"\nreport: {out / 'report.md'}")
    print(f"figures: {', '.join(str(out / f) for f in figures.values()) or 'none'}")
    print(f"rows: {out / 'results.json'} ({len(rows)} rows)")
    return 0
