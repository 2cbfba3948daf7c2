"""Where a run writes, so that no run destroys another (``minattn scaling``, ``minattn train``).

A scaling run writes into ``DIR.partial``: one checkpoint file per finished experiment (in
``checkpoints/``), then the figures, results.json and report.md. Only when everything is
written does the folder move to ``DIR``; a ``DIR`` already there is first renamed
``DIR-<timestamp>``. An
interrupted run leaves ``DIR.partial`` behind; ``--resume`` picks it up and skips the
experiments whose checkpoints are there. A leftover ``DIR.partial`` found by a run
without ``--resume`` is set aside as ``DIR.partial-<timestamp>``, never deleted.
``minattn train`` sets an earlier run in its ``--out`` aside the same way (``claim``).

Three promises keep a user's results safe:

- one run at a time per ``DIR``: ``RunLock`` holds ``DIR.lock`` (the pid of its run) while
  the run is alive and removes it at the end; a second run into ``DIR`` is refused while
  that pid lives, and a lock left by a dead process is taken over;
- only minattn's own folders are ever moved: each run folder holds ``MARKER`` (folders of
  earlier versions are known by their files, ``written_by_minattn``); a non-empty folder
  that minattn did not write is refused, never renamed;
- the JSON is strict (RFC 8259): NaN and +-Infinity, which JSON has no literal for, are
  written as ``null`` (``strict``), so any JSON reader can load the files.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from .options import UsageError

MARKER = ".minattn-run.json"  # in every run folder that minattn made
# the files that mark a run folder written before MARKER existed (one set per command)
LEGACY = {"train": [("checkpoint.npz",), ("comparison.json",)],
          "scaling": [("config.json", "results.json"), ("config.json", "report.md")]}


class ResumeError(UsageError):
    """--resume found nothing to resume, or a run made with other settings."""

    def __init__(self, message: str):
        super().__init__("--resume", message)


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that it is either complete or absent, never half written."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def strict(data):
    """data with NaN and +-Infinity as None (JSON's null) and NumPy scalars as Python's."""
    if isinstance(data, dict):
        return {k: strict(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict(v) for v in data]
    if isinstance(data, np.generic):
        data = data.item()
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def dumps(data, **kwargs) -> str:
    """Strict JSON: NaN and Infinity become null (never the literals JSON does not have)."""
    return json.dumps(strict(data), allow_nan=False, **kwargs)


def write_json(path: Path, data) -> None:
    write_atomic(path, dumps(data, indent=1) + "\n")


def read_json(path: Path, what: str, fix: str):
    """A JSON file written by minattn; a file that is not gives one line naming it and fix."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError("--resume", f"{what} {path} cannot be read ({type(exc).__name__}: "
                                     f"{exc}); {fix}") from None


# -- whose folder is it ---------------------------------------------------------------------


def mark(folder: Path, command: str) -> None:
    """Mark folder as a run folder of minattn (the one thing that lets minattn move it)."""
    write_json(Path(folder) / MARKER, {"command": command, "pid": os.getpid(), "started":
                                       datetime.datetime.now().isoformat(timespec="seconds")})


def written_by_minattn(folder: Path, command: str | None = None) -> bool:
    """Whether folder is a run folder of minattn (of that command, when given)."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.is_file():
        try:
            made_by = json.loads(marker.read_text()).get("command")
        except (OSError, ValueError, AttributeError):
            made_by = None
        return command is None or made_by in (None, command)
    signatures = LEGACY.get(command, []) if command else sum(LEGACY.values(), [])
    return any(all((folder / name).exists() for name in files) for files in signatures)


def is_empty(folder: Path) -> bool:
    return not any(Path(folder).iterdir())


def check_movable(path: Path, command: str, option: str = "--out") -> None:
    """Refuse, before any work, a path that a run would have to move aside but must not:
    a non-empty folder minattn did not write, or the current folder (or one above it)."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise UsageError(option, f"{path} is a file: expected a folder")
    if is_empty(path):
        return
    if not written_by_minattn(path, command):
        raise UsageError(option, f"{path} holds files that minattn did not write; minattn "
                                 "moves aside only its own runs: choose a new or empty folder")
    refuse_current(path, option)


def refuse_current(path: Path, option: str = "--out") -> None:
    """The current folder (or one above it) is never moved: the shell stands in it."""
    here = Path.cwd().resolve()
    if Path(path).resolve() in (here, *here.parents):
        raise UsageError(option, f"{path} is the current folder (or holds it), and would be "
                                 "moved for the new run: choose a folder inside it, "
                                 f"e.g. {Path(path) / 'run'}")


def claim(out: Path, command: str) -> Path | None:
    """Make out the (empty, marked) folder of a new run; an earlier minattn run there is set
    aside first and its new name returned. check_movable refuses what must not move."""
    out = Path(out)
    check_movable(out, command)
    moved = set_aside(out) if out.exists() and not is_empty(out) else None
    out.mkdir(parents=True, exist_ok=True)
    mark(out, command)
    return moved


# -- one run at a time ------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return True  # cannot tell: assume alive, the safe side
    return True


class RunLock:
    """``DIR.lock`` next to ``DIR``, holding this process's pid while the run is alive.

    Next to the folder, not in it: the folder itself may be set aside or moved into place
    while the run holds the lock. A lock whose pid no longer runs is stale and taken over.
    """

    def __init__(self, out: Path, option: str = "--out"):
        out = Path(os.path.abspath(out))  # "." and "a/.." have a name this way
        self.path = out.with_name(out.name + ".lock")
        self.option = option
        self.held = False

    def _holder(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None  # gone, or half written by a process that died: not a live holder

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)  # out's parent, checked writable
        for _ in range(3):  # a stale lock is removed, then made again exclusively
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except PermissionError as exc:
                raise UsageError(self.option, f"cannot make the lock {self.path} "
                                              f"({exc.strerror}): choose a folder you can "
                                              "write in") from None
            except FileExistsError:
                pid = self._holder()
                if pid is not None and pid != os.getpid() and _alive(pid):
                    out = self.path.with_name(self.path.name.removesuffix(".lock"))
                    raise UsageError(self.option, f"{out} is in use by another minattn run "
                                                  f"(pid {pid}, lock {self.path}); wait for "
                                                  "it to end, or choose another folder") from None
                # stale: its process is gone. (Two runs that find the same stale lock at the
                # same instant could both take it; they are started by hand, seconds apart.)
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            self.held = True
            return
        raise UsageError(self.option, f"could not take the lock {self.path}: another run "
                                      "keeps making it; try again")

    def release(self) -> None:
        if self.held and self._holder() == os.getpid():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.held = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def set_aside(path: Path) -> Path:
    """Rename path to path-<timestamp> (or path-<timestamp>-2, ...), keeping it whole."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    target = path.with_name(f"{path.name}-{stamp}")
    n = 2
    while target.exists():
        target = path.with_name(f"{path.name}-{stamp}-{n}")
        n += 1
    path.rename(target)
    return target


class RunFolder:
    """The temporary folder of one run, its checkpoints, and the final move into place.

    Every refusal (a foreign folder in the way, nothing to resume, a corrupt file) comes
    from the constructor, before the run does any work.
    """

    def __init__(self, out, config: dict, resume: bool = False, say=print,
                 command: str = "scaling"):
        self.out = Path(os.path.abspath(out))  # "." and "a/.." have a name this way
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.config = config
        self.command = command
        self.say = say
        self._rows: dict[int, list] = {}
        refuse_current(self.out)  # finish() moves the run into place, replacing the folder
        check_movable(self.out, command)
        if resume:
            self._resume()
        else:
            if self.partial.exists() and not (self.partial.is_dir() and is_empty(self.partial)):
                if not self._ours(self.partial):
                    raise UsageError("--out", f"{self.partial} (where this run would be "
                                              "written) holds files that minattn did not "
                                              "write: move it away, or choose another --out")
                moved = set_aside(self.partial)
                say(f"an interrupted run was left in {self.partial}; set aside as {moved} "
                    "(next time, --resume continues it)")
            self.partial.mkdir(parents=True, exist_ok=True)
            mark(self.partial, command)
            write_json(self.partial / "config.json", config)

    def _ours(self, folder: Path) -> bool:
        # a DIR.partial of an earlier version holds config.json from its first moment
        return written_by_minattn(folder, self.command) or (folder / "config.json").is_file()

    def _resume(self) -> None:
        config_file = self.partial / "config.json"
        if not config_file.is_file():
            raise ResumeError(f"no interrupted run in {self.partial}; run without "
                              "--resume to start one")
        saved = read_json(config_file, "the run's settings",
                          "run without --resume (the interrupted run is set aside, not deleted)")
        if not isinstance(saved, dict):
            raise ResumeError(f"the run's settings {config_file} are not minattn's (a JSON "
                              f"object); run without --resume (the interrupted run is set "
                              "aside, not deleted)")
        if saved != self.config:
            changed = sorted(k for k in set(saved) | set(self.config)
                             if saved.get(k) != self.config.get(k))
            raise ResumeError(f"the run in {self.partial} was started with other "
                              f"settings ({', '.join(changed)}: {[saved.get(k) for k in changed]}"
                              f" then, {[self.config.get(k) for k in changed]} now)")
        for number in self.finished():  # read now: a corrupt one is refused before any work
            path = self._checkpoint(number)
            rows = read_json(path, "the checkpoint", f"delete it and --resume again "
                                                     f"(experiment {number} then runs again)")
            if not isinstance(rows, list):
                raise ResumeError(f"the checkpoint {path} holds no rows; delete it and "
                                  f"--resume again (experiment {number} then runs again)")
            self._rows[number] = rows
        done = sorted(self.finished())
        self.say(f"resuming the run in {self.partial}"
                 + (f" (experiments {', '.join(map(str, done))} already done)" if done else ""))

    def _checkpoint(self, number: int) -> Path:
        return self.partial / "checkpoints" / f"experiment{number}.json"

    def finished(self) -> list[int]:
        """Numbers of the experiments whose checkpoints are written."""
        names = (p.stem.removeprefix("experiment")
                 for p in (self.partial / "checkpoints").glob("experiment*.json"))
        return [int(n) for n in names if n.isdigit()]

    def load(self, number: int) -> list[dict] | None:
        if number in self._rows:
            return self._rows[number]
        path = self._checkpoint(number)
        return json.loads(path.read_text()) if path.exists() else None

    def save(self, number: int, rows: list[dict]) -> None:
        self._checkpoint(number).parent.mkdir(exist_ok=True)
        write_json(self._checkpoint(number), rows)

    def path(self, name: str) -> Path:
        """Where a file of this run goes while the run is in progress."""
        return self.partial / name

    def finish(self) -> Path:
        """Move the finished run into place; an earlier run there is renamed, not replaced.

        The checkpoints go first: results.json, written by then, holds all their rows. A
        folder that minattn did not write, found in the way now, is left alone (FolderError).
        """
        if self.out.exists() and not (self.out.is_dir() and is_empty(self.out)) \
                and not written_by_minattn(self.out, self.command):
            raise FolderError(f"{self.out} was filled by something else during the run; it is "
                              f"left alone, and this run is complete in {self.partial}")
        for path in self.partial.glob("checkpoints/*.json"):
            path.unlink()
        if (self.partial / "checkpoints").exists():
            (self.partial / "checkpoints").rmdir()
        if self.out.is_dir() and is_empty(self.out):
            self.out.rmdir()
        elif self.out.exists():
            moved = set_aside(self.out)
            self.say(f"the earlier run in {self.out} was kept as {moved}")
        self.partial.rename(self.out)
        return self.out


class FolderError(RuntimeError):
    """A folder a finished run must move into place is not minattn's to move."""
