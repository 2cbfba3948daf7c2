"""Checkpoints of ``minattn train``: written atomically, loaded, restored exactly.

A checkpoint holds the model, the optimizer's state, the step, the history and the seed
that every random draw derives from; files are written to a temp file and then moved into
place (``_publish``), so a crash mid-write leaves the previous one intact. A file that is
not a whole checkpoint is a ``CheckpointError`` naming it and what to do. The JSON inside
(and metrics.json) is strict: NaN and Infinity are written as null (``runs.dumps``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ... import backend
from ..runs import dumps
from .config import TrainConfig

CHECKPOINT = "checkpoint.npz"
_FIX = "run without --resume to start again (the folder is set aside, not deleted)"


class CheckpointError(ValueError):
    """A file that is not a whole checkpoint of ``minattn train``."""


def save_checkpoint(path: Path, model, opt, step: int, config: TrainConfig, state: dict) -> None:
    """Everything to continue exactly: written to a temp file in the same folder, then
    os.replace'd, so a crash mid-write leaves the previous checkpoint intact."""
    arrays = {f"model/{k}": v.numpy() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    scalars = {}
    for i, entry in opt_state["state"].items():
        for k, v in entry.items():
            if hasattr(v, "shape"):
                arrays[f"optim/{i}/{k}"] = backend.to_numpy(v)
            else:
                scalars.setdefault(str(i), {})[k] = v
    meta = {"step": step, "config": config.to_dict(),
            "param_groups": opt_state["param_groups"], "optim_scalars": scalars,
            "rng": {"scheme": "every draw of step t derives from (seed, t)",
                    "seed": config.seed, "next_step": step},
            **state}
    arrays["meta"] = np.array(dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _publish(tmp: str, path: Path) -> None:
    """Move a finished temp file into place, with the permissions a plain open() gives
    (mkstemp makes it owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> tuple[dict, dict]:
    """(meta, arrays) of a checkpoint written by ``save_checkpoint``; CheckpointError if the
    file is not one (truncated, overwritten, from elsewhere)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
        missing = {"step", "config", "param_groups", "optim_scalars"} - set(meta)
        if missing:
            raise KeyError(f"no {', '.join(sorted(missing))} in its metadata")
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"the checkpoint {path} cannot be read ({type(exc).__name__}: "
                              f"{exc}); {_FIX}") from None
    return meta, arrays


def saved_config(meta: dict, path: Path) -> TrainConfig:
    """The settings a checkpoint was made with (by this version or an earlier one)."""
    try:
        return TrainConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:  # settings this version does not have
        raise CheckpointError(f"the checkpoint {path} was made with settings this minattn "
                              f"does not know ({exc}); {_FIX}") from None


def restore(model, opt, meta: dict, arrays: dict) -> None:
    model.load_state_dict({k[len("model/"):]: v for k, v in arrays.items()
                           if k.startswith("model/")})
    state: dict = {}
    for k, v in arrays.items():
        if k.startswith("optim/"):
            _, i, name = k.split("/", 2)
            state.setdefault(int(i), {})[name] = v
    for i, entry in meta["optim_scalars"].items():
        state.setdefault(int(i), {}).update(entry)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g
              for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def _write_json(path: Path, data) -> None:
    """Strict JSON (NaN and Infinity as null), written whole or not at all."""
    text = dumps(data, indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
