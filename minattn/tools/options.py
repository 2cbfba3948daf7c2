"""What the ``minattn`` command accepts: each option's check, done before any work.

A bad value is a usage error, as argparse gives for an unknown option: the usage line, one
line ``minattn CMD: error: argument --opt: what was wrong and what is allowed``, exit
status 2, never a traceback. The checks of one value are argparse ``type=`` functions
(``positive_int``, ``existing_file``, ``out_folder``, ...); the checks that need several
options, or the disk (a busy run folder, nothing to resume), raise ``UsageError``, which
``cli.main`` prints the same way.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")  # what training and its checks are sound in


class UsageError(Exception):
    """A bad command line found after parsing; ``cli.main`` prints it as argparse does."""

    def __init__(self, option: str, message: str):
        super().__init__(f"argument {option}: {message}")
        self.option = option


# -- numbers ---------------------------------------------------------------------------------


def _whole(text: str, allowed: str, ok) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
    return value


def _real(text: str, allowed: str, ok) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and ok(value)):  # nan and inf are never a setting
        raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _whole(text, "a whole number of 1 or more", lambda n: n >= 1)


def nonnegative_int(text: str) -> int:
    return _whole(text, "a whole number of 0 or more", lambda n: n >= 0)


def positive_float(text: str) -> float:
    return _real(text, "a number above 0", lambda x: x > 0)


def nonnegative_float(text: str) -> float:
    return _real(text, "a number of 0 or more", lambda x: x >= 0)


def fraction(text: str) -> float:
    """In (0, 1]: a share that can be reached, such as a target accuracy."""
    return _real(text, "a number above 0 and at most 1", lambda x: 0 < x <= 1)


def probability(text: str) -> float:
    """In [0, 1): a dropout rate (1 would drop everything)."""
    return _real(text, "a number from 0 up to (not including) 1", lambda x: 0 <= x < 1)


# -- files and folders ------------------------------------------------------------------------


def existing_file(text: str) -> str:
    path = Path(text)
    if not path.is_file():
        why = "is a folder" if path.is_dir() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text!r} {why}: expected a file to read")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be read (permission denied)")
    return text


def _can_write_in(folder: Path) -> bool:
    """Whether a new file can be made in folder: tried, since permission bits say nothing
    on a read-only mount, and everything to root."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".minattn-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def _check_writable(path: Path, text: str) -> None:
    """The nearest folder that exists on the way to path must be one we can write in."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} cannot be made: {str(parent)!r} is a file")
    if not _can_write_in(parent):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be written: no permission to write "
                                         f"in {str(parent)!r}")


def out_folder(text: str) -> str:
    """A folder to write a run into: new, or a folder (never a file) we can write in, in a
    folder we can write in too (the run's lock and partial folder go next to it, and an
    earlier run in it is renamed there)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got ''")
    path = Path(os.path.abspath(text))
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file: expected a folder")
    if path.is_dir() and not _can_write_in(path):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be written: no permission to "
                                         "write in it")
    _check_writable(path, text)
    return text


def out_file(text: str) -> str:
    """A file to write: not a folder, in a folder that exists or can be made, writable."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file name, got ''")
    path = Path(os.path.abspath(text))
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder: expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be written: no permission")
    _check_writable(path, text)
    return text


# -- lists -----------------------------------------------------------------------------------


def comma_list(item, example: str):
    """A type for 'a,b,c': each part checked by item (which raises ArgumentTypeError); at
    least one part; no part twice."""

    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or not all(parts):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list such as "
                                             f"{example}, got {text!r}")
        values = [item(p) for p in parts]
        if len(set(map(str, values))) < len(values):
            raise argparse.ArgumentTypeError(f"{text!r} names one entry twice")
        return values

    return parse


def check_device(device, option: str = "--device") -> str:
    """The device a run will use (None: the default), checked usable before any work."""
    from .. import backend

    where = "" if device is not None else " (the default, from MINATTN_DEVICE)"
    try:
        return backend.check_device(device if device is not None else backend.default_device())
    except ValueError as exc:  # only MINATTN_DEVICE can name an unknown one here
        raise UsageError(option, f"{exc}{where}; choose from {', '.join(DEVICES)}") from None
    except RuntimeError as exc:
        raise UsageError(option, f"{exc}{where}; use --device cpu") from None
