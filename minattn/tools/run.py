"""``minattn run SCRIPT.py [ARGS...]``: a PyTorch script, unchanged, on minattn.

The script runs as ``python SCRIPT.py ARGS...`` would run it (as ``__main__``, with
``sys.argv = [SCRIPT.py, ARGS...]`` and its folder first on ``sys.path``), except that
``import torch`` and its submodules are served by minattn (``minattn.pytorch``). A name
minattn lacks fails where the script first uses it: ``minattn has no torch.nn.Conv2d; see
the PyTorch page of the docs``. The script's own error is its usual traceback (exit status
1), its ``sys.exit(n)`` is the exit status; a script that is not there, or not a ``.py``
file, is a usage error (exit status 2) before anything runs.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback

from .. import pytorch
from .options import existing_file


def python_script(text: str) -> str:
    """A readable ``.py`` file (argparse ``type=``)."""
    existing_file(text)
    if not text.endswith(".py"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Python script: expected a .py file")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Run a PyTorch script unchanged, with `import torch` (torch.nn, "
                          "torch.nn.functional, torch.optim, ...) served by minattn.")
    parser.add_argument("script", type=python_script, metavar="SCRIPT.py",
                        help="the PyTorch script to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="the script's own arguments, passed on as sys.argv[1:]")


def run(args) -> int:
    """Run ``args.script`` with the torch shim installed; 1 if it raised, else 0."""
    return run_script(args.script, args.args)


def run_script(script: str, argv=()) -> int:
    """``python SCRIPT ARGV...`` with ``import torch`` served by minattn; everything it
    changed in this process (the shim, ``sys.argv``, ``sys.path``, the modules of its own
    folder) is put back afterwards, so that tests can call it in-process."""
    path = os.path.abspath(script)
    folder = os.path.dirname(path)
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    modules_before = set(sys.modules)
    sys.argv = [script, *argv]
    sys.path.insert(0, folder)
    pytorch.install()
    try:
        runpy.run_path(path, run_name="__main__")
    except Exception as exc:  # SystemExit and Ctrl-C pass through, as from python itself
        _print_script_traceback(exc, path)
        return 1
    finally:
        pytorch.uninstall()
        sys.argv, sys.path[:] = saved_argv, saved_path
        for name in set(sys.modules) - modules_before:  # the script's own modules
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file.startswith(folder + os.sep) and not name.startswith("minattn"):
                del sys.modules[name]
    return 0


def _print_script_traceback(exc: BaseException, path: str) -> None:
    """The traceback python would print: from the script's first frame on (runpy's and
    minattn's frames above it are left out)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != path:
        tb = tb.tb_next
    sys.stdout.flush()  # what the script printed comes first, as it happened
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
