"""What every experiment shares: the scalings, the sweep over d, seeded data, statistics,
and the record of an experiment (its parts, sizes, table, figure and write-up).

Data are drawn on the host from NumPy generators seeded by (seed, experiment, d), so a
result depends only on its own seed, never on what ran before it (a resumed run or a
subset of the sweep gives the very same numbers), and CPU and GPU runs see the same
draws. The arrays then move to the device, where the math runs through ``xp``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import warnings
from dataclasses import dataclass

import numpy as np

from .. import backend, kernels

SCALINGS = ("sqrt", "unscaled", "linear")  # c = 1/sqrt(d), c = 1, c = 1/d
D_VALUES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
SCALING_LABELS = {"sqrt": "1/sqrt(d) (standard)", "unscaled": "1 (unscaled)",
                  "linear": "1/d (over-scaled)"}
OLD_NAMES = {"none": "unscaled"}  # what c = 1 was called before the one vocabulary
RENAMED = ('scaling "none" is now called "unscaled" (c = 1); beware that `minattn train` used '
           '"none" for the default 1/sqrt(d), which is "sqrt" here')


def scaling_name(scaling: str, warn: bool = True) -> str:
    """The current name of a scaling: the old "none" becomes "unscaled" (with a
    DeprecationWarning when ``warn``); every other name is returned as it is."""
    if scaling in OLD_NAMES:
        if warn:
            warnings.warn(RENAMED, DeprecationWarning, stacklevel=3)
        return OLD_NAMES[scaling]
    return scaling


def scaling_names(scalings) -> tuple[str, ...]:
    """scaling_name of each, checked: a tuple of names from SCALINGS."""
    names = tuple(scaling_name(s) for s in scalings)
    for s in names:
        if s not in SCALINGS:
            raise ValueError(f"unknown scaling {s!r}: expected one of {SCALINGS}")
    return names


def upgrade_rows(rows: list[dict]) -> list[dict]:
    """Rows saved by an earlier minattn, with today's names: "scaling": "none" becomes
    "unscaled". New dicts; the rows given (and any file they came from) are left alone."""
    return [dict(r, scaling=OLD_NAMES[r["scaling"]]) if r.get("scaling") in OLD_NAMES
            else r for r in rows]


def scale_for(scaling: str, d: int) -> float:
    """The factor on q.k: 1/sqrt(d) for "sqrt", 1 for "unscaled", 1/d for "linear"."""
    scaling = scaling_name(scaling)
    if scaling == "sqrt":
        return 1 / math.sqrt(d)
    if scaling == "unscaled":
        return 1.0
    if scaling == "linear":
        return 1 / d
    raise ValueError(f"unknown scaling {scaling!r}: expected one of {SCALINGS}")


PLAIN_KERNELS_WHY = (
    "numba's row softmax and its backward (the fast CPU kernels) round the last bit of some "
    "float64 results differently when freshly compiled and when loaded from numba's on-disk "
    "cache, so a gradient check about the last bits would differ between a first run and the "
    "next; the plain NumPy twins give the same bits on every run")


def plain_kernels() -> str:
    """The kernels for an experiment whose rows must come out bit for bit the same on every
    run: the NumPy twins ("numpy"), or the plain reference when that is already in use."""
    return "reference" if kernels.mode() == "reference" else "numpy"


def on_plain_kernels(fn):
    """fn, run with ``kernels.use(plain_kernels())``: its rows are the same on every run."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with kernels.use(plain_kernels()):
            return fn(*args, **kwargs)

    return run


def generator(experiment: int, d: int, seed: int) -> np.random.Generator:
    """An independent random stream for one (experiment, d, seed)."""
    return np.random.default_rng([seed, experiment, d])


def normal(rng: np.random.Generator, shape, device: str = "cpu", dtype="float64"):
    """Standard normal samples drawn on the host, as a backend array on ``device``."""
    return backend.to_device(rng.standard_normal(shape).astype(dtype), device)


def draw_qkv(experiment: int, d: int, seed: int, n_queries: int, n_keys: int,
             value_dim: int | None = None, dout: bool = False, device: str = "cpu") -> tuple:
    """Unit-normal (q, k), then v when ``value_dim`` is given, then a random upstream gradient
    dout when ``dout`` is set, drawn in this order from the stream of (experiment, d, seed).

    q (L, d), k (n, d), v (n, dv), dout (L, dv): L = n_queries, n = n_keys, dv = value_dim.
    The order is fixed so that adding v or dout never changes the q and k that come first.
    """
    rng = generator(experiment, d, seed)
    q = normal(rng, (n_queries, d), device)  # (L, d), unit-variance entries
    k = normal(rng, (n_keys, d), device)  # (n, d)
    if value_dim is None:
        return q, k
    v = normal(rng, (n_keys, value_dim), device)  # (n, dv)
    if not dout:
        return q, k, v
    return q, k, v, normal(rng, (n_queries, value_dim), device)  # dout (L, dv)


def softmax_rows(scores):
    """(probs, shifted, log_z): softmax over the last axis, computed after subtracting the
    row max; ``shifted = scores - max`` and ``log_z = log sum exp(shifted)``."""
    xp = backend.get_array_module(scores)
    shifted = scores - scores.max(axis=-1, keepdims=True)  # (..., n), max entry 0
    e = xp.exp(shifted)  # (..., n), in (0, 1]
    z = e.sum(axis=-1, keepdims=True)  # (..., 1), in [1, n]
    return e / z, shifted, xp.log(z[..., 0])


def row_norms(x):
    """Euclidean norm of every row (last axis), as a host NumPy array."""
    xp = backend.get_array_module(x)
    return backend.to_numpy(xp.sqrt((x * x).sum(axis=-1)))


def quantiles(values, name: str) -> dict:
    """Median, mean and the 10th, 25th, 75th and 90th percentiles of a host array, under
    ``name_median``, ``name_mean``, ``name_p10``, ..."""
    values = np.asarray(values, dtype=np.float64).ravel()
    p10, p25, p50, p75, p90 = np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {f"{name}_median": float(p50), f"{name}_mean": float(values.mean()),
            f"{name}_p10": float(p10), f"{name}_p25": float(p25), f"{name}_p75": float(p75),
            f"{name}_p90": float(p90)}


def scalings_in(rows) -> list[str]:
    """The scalings present in rows, in the order of SCALINGS."""
    present = {r["scaling"] for r in rows}
    return [s for s in SCALINGS if s in present]


def make_row(experiment: int, d: int, scaling: str, dtype: str, seed=None, **values) -> dict:
    """One result row: the keys the issue names first, then the metrics as plain floats."""
    row = {"experiment": experiment, "d": int(d), "scaling": scaling, "dtype": str(dtype)}
    if seed is not None:
        row["seed"] = int(seed)
    for key, value in values.items():
        row[key] = _plain(value)
    return row


def quiet_overflow(xp):
    """Silence NumPy's overflow and invalid-value warnings where they are expected (a softmax
    without max subtraction, a training run that diverges); CuPy does not warn."""
    errstate = getattr(xp, "errstate", None)
    return errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore") \
        if errstate else contextlib.nullcontext()


def tick(progress, n: int = 1) -> None:
    """Report n finished units of work to the progress callback, if there is one."""
    if progress is not None:
        progress(n)


def _plain(value):
    """JSON-friendly: NumPy scalars become Python numbers, NaN and infinities become None."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


# -- an experiment: what runs, at which sizes, and what is made from its rows ---------------------


@dataclass
class Part:
    """One experiment function with its quick and full parameters."""

    fn: object
    quick: dict
    full: dict
    loops: tuple = ("d_values", "seeds")  # the parameters whose product counts the work

    def params(self, quick: bool) -> dict:
        return dict(self.quick if quick else self.full)

    def units(self, quick: bool) -> int:
        """How many times the function will call its progress callback."""
        params = {name: p.default for name, p in inspect.signature(self.fn).parameters.items()}
        params.update(self.params(quick))
        counts = []
        for name in self.loops:
            value = params[name]
            counts.append(sum(len(v) for v in value.values()) // len(value)
                          if isinstance(value, dict) else len(value))
        return math.prod(counts)


@dataclass
class Experiment:
    """One experiment of ``minattn scaling``: the parts that compute its rows, and the
    functions that turn its rows into a table (``table(rows, markdown)``), a figure
    (``figure(plt, rows)``), a report section (``section(rows)``) and key numbers
    (``key_numbers(rows)``: (what, measured, expected, holds) rows)."""

    number: int
    slug: str
    title: str  # the header on the terminal
    heading: str  # the heading of its section in report.md
    parts: list
    table: object
    figure: object
    figure_file: str
    figure_note: str  # the figure's alt text in report.md
    section: object
    key_numbers: object
    plain_kernels_why: str = ""  # why it runs on the NumPy twins (plain_kernels); "": as set

    def kernels(self) -> str:
        """The kernels its rows are computed with: "fast", "numpy" or "reference"."""
        return plain_kernels() if self.plain_kernels_why else kernels.mode()

    def units(self, quick: bool) -> int:
        return sum(part.units(quick) for part in self.parts)

    def run(self, quick: bool, device: str = "cpu", progress=None) -> list[dict]:
        rows = []  # an experiment on plain kernels has its functions wrapped (on_plain_kernels)
        for part in self.parts:
            rows += part.fn(**part.params(quick), device=device, progress=progress)
        return rows
