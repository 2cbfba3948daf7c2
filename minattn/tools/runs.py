"""Where a run writes, so that no run destroys another (``minattn scaling``, ``minattn train``).

A scaling run writes into ``DIR.partial``: one checkpoint file per finished experiment (in
``checkpoints/``), then the figures, results.json and report.md. Only when everything is
written does the folder move to ``DIR``; a ``DIR`` already there is first renamed
``DIR-<timestamp>``. An
interrupted run leaves ``DIR.partial`` behind; ``--resume`` picks it up and skips the
experiments whose checkpoints are there. A leftover ``DIR.partial`` found by a run
without ``--resume`` is set aside as ``DIR.partial-<timestamp>``, never deleted.
``minattn train`` sets an earlier run in its ``--out`` aside the same way (``set_aside``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class ResumeError(RuntimeError):
    """--resume found nothing to resume, or a run made with other settings."""


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that it is either complete or absent, never half written."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


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
    """The temporary folder of one run, its checkpoints, and the final move into place."""

    def __init__(self, out, config: dict, resume: bool = False, say=print):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.config = config
        self.say = say
        if resume:
            self._resume()
        else:
            if self.partial.exists():
                moved = set_aside(self.partial)
                say(f"an interrupted run was left in {self.partial}; set aside as {moved} "
                    "(next time, --resume continues it)")
            self.partial.mkdir(parents=True)
            write_json(self.partial / "config.json", config)

    def _resume(self) -> None:
        if not (self.partial / "config.json").exists():
            raise ResumeError(f"--resume: no interrupted run in {self.partial}; run without "
                              "--resume to start one")
        saved = json.loads((self.partial / "config.json").read_text())
        if saved != self.config:
            changed = sorted(k for k in set(saved) | set(self.config)
                             if saved.get(k) != self.config.get(k))
            raise ResumeError(f"--resume: the run in {self.partial} was started with other "
                              f"settings ({', '.join(changed)}: {[saved.get(k) for k in changed]}"
                              f" then, {[self.config.get(k) for k in changed]} now)")
        done = sorted(self.finished())
        self.say(f"resuming the run in {self.partial}"
                 + (f" (experiments {', '.join(map(str, done))} already done)" if done else ""))

    def _checkpoint(self, number: int) -> Path:
        return self.partial / "checkpoints" / f"experiment{number}.json"

    def finished(self) -> list[int]:
        """Numbers of the experiments whose checkpoints are written."""
        return [int(p.stem.removeprefix("experiment"))
                for p in (self.partial / "checkpoints").glob("experiment*.json")]

    def load(self, number: int) -> list[dict] | None:
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

        The checkpoints go first: results.json, written by then, holds all their rows.
        """
        for path in self.partial.glob("checkpoints/*.json"):
            path.unlink()
        if (self.partial / "checkpoints").exists():
            (self.partial / "checkpoints").rmdir()
        if self.out.exists():
            moved = set_aside(self.out)
            self.say(f"the earlier run in {self.out} was kept as {moved}")
        self.partial.rename(self.out)
        return self.out
