"""The ``minattn`` command: info, gradcheck, scaling, bench, train, run.

Each subcommand lives in its own module of ``minattn.tools``; this file only wires them to
argparse. A subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int``.

Errors on the command line never end in a traceback: argparse's own (and the ``type=``
checks of ``options``) exit with status 2 as they parse; a ``UsageError`` that ``run`` raises
before any work is printed the same way (status 2); Ctrl-C that reaches this far is one
line and status 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .options import UsageError

SUBCOMMANDS = {
    "info": ("minattn.tools.info", "backends, devices, kernels and versions found"),
    "gradcheck": ("minattn.tools.gradcheck", "every op's gradient check, as a table"),
    "scaling": ("minattn.tools.scaling", "the scaling experiment: why attention divides by "
                                         "sqrt(d)"),
    "bench": ("minattn.tools.bench.command", "attention implementations against each other "
                                             "and PyTorch"),
    "train": ("minattn.tools.train.command", "a tiny transformer on a toy task, scaled "
                                             "against unscaled"),
    "run": ("minattn.tools.run", "a PyTorch script, unchanged, with `import torch` served by "
                                 "minattn"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="minattn", description="Backpropagation through attention, by hand.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parsers = {name: sub.add_parser(name, help=help_text, description=help_text)
               for name, (_, help_text) in SUBCOMMANDS.items()}
    # Import only the chosen subcommand's module, so `minattn info` stays fast; a first
    # pass without -h finds which one, so that `minattn train --help` lists its options.
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("command", nargs="?", choices=SUBCOMMANDS)
    chosen, _ = first.parse_known_args(argv)
    if chosen.command is not None:
        module = importlib.import_module(SUBCOMMANDS[chosen.command][0])
        module.add_arguments(parsers[chosen.command])
    args = parser.parse_args(argv)
    if args.command != "info":  # the commands that compute: OpenBLAS's idle threads sleep
        from ..kernels import blas  # at once, instead of spinning on the cores numba is using

        blas.short_spin_wait()
    try:
        return module.run(args) or 0
    except UsageError as exc:
        parsers[args.command].print_usage(sys.stderr)
        print(f"minattn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C in training, or one where none is handled
        print(f"\nminattn {args.command}: interrupted", file=sys.stderr)
        return 130
