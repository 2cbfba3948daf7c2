"""Real PyTorch programs run on minattn unchanged and give PyTorch's numbers.

Each program in ``tests/pytorch_programs/`` writes everything it computes to an ``.npz``
named by its one argument. PyTorch runs them all in one process (``import torch`` is paid
once); minattn runs each as ``python -m minattn run PROGRAM OUT.npz``, the way a user would.
Then every array is compared: floats with rtol = atol = 1e-5 (the programs are float32, and
each is tuned so that float32 rounding stays well inside that: see their docstrings),
integers (token ids, argmax) exactly. A failure names the program and the first key that
differs.
"""

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS_DIR = ROOT / "tests" / "pytorch_programs"
PROGRAMS = {
    "seed_snippet": PROGRAMS_DIR / "seed_snippet.py",
    "polynomial_fit": PROGRAMS_DIR / "polynomial_fit.py",
    "mha_usage": PROGRAMS_DIR / "mha_usage.py",
    "functional_attention": PROGRAMS_DIR / "functional_attention.py",
    "nanogpt": PROGRAMS_DIR / "nanogpt" / "nanogpt_driver.py",
}
NANOGPT_MODEL = PROGRAMS_DIR / "nanogpt" / "model.py"
NANOGPT_SHA256 = "a1526372b028f93f45a72645b98b47b1a517d8b32cccc296ad7c7d72b420f5c1"
RTOL = ATOL = 1e-5
TIMEOUT = 120

# Runs each program as ``python PROGRAM OUT.npz`` would, one after the other in one process:
# sys.argv as the program sees it, its own folder first on sys.path, run as __main__.
TORCH_RUNNER = """
import os, runpy, sys, traceback
for program, out in zip(sys.argv[1::2], sys.argv[2::2]):
    sys.argv = [program, out]
    sys.path.insert(0, os.path.dirname(program))
    try:
        runpy.run_path(program, run_name="__main__")
    except BaseException:
        traceback.print_exc()
        print("FAILED:", program, file=sys.stderr)
    sys.path.pop(0)
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _available(name: str) -> bool:
    return name != "nanogpt" or NANOGPT_MODEL.exists()


@pytest.fixture(scope="module")
def torch_results(tmp_path_factory):
    """name -> the .npz that PyTorch wrote (or the error it gave), for every program."""
    if importlib.util.find_spec("torch") is None:  # as pytest.importorskip, without paying
        pytest.skip("PyTorch is not installed")    # for an import that only the child uses
    folder = tmp_path_factory.mktemp("torch")
    names = [name for name in PROGRAMS if _available(name)]
    args = []
    for name in names:
        args += [str(PROGRAMS[name]), str(folder / f"{name}.npz")]
    run = subprocess.run([sys.executable, "-c", TORCH_RUNNER, *args], capture_output=True,
                         text=True, timeout=TIMEOUT, env=_env(), cwd=ROOT)
    results = {}
    for name in names:
        path = folder / f"{name}.npz"
        results[name] = path if path.exists() else _tail(run.stdout + run.stderr)
    return results


def _minattn_result(name: str, folder: Path) -> Path:
    out = folder / f"{name}.npz"
    run = subprocess.run([sys.executable, "-m", "minattn", "run", str(PROGRAMS[name]),
                          str(out)], capture_output=True, text=True, timeout=TIMEOUT,
                         env=_env(), cwd=ROOT)
    if run.returncode != 0 or not out.exists():
        pytest.fail(f"`minattn run {PROGRAMS[name].relative_to(ROOT)}` failed "
                    f"(exit {run.returncode}):\n{_tail(run.stdout + run.stderr)}")
    return out


def first_mismatch(expected: dict, actual: dict) -> str | None:
    """A sentence about the first key (in sorted order) where ``actual`` differs, or None."""
    missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    if missing or extra:
        return f"keys differ: missing {missing[:5]}, unexpected {extra[:5]}"
    for key in sorted(expected):
        want, got = np.asarray(expected[key]), np.asarray(actual[key])
        if want.shape != got.shape:
            return f"{key}: shape {got.shape}, PyTorch {want.shape}"
        if want.dtype.kind in "biu" or got.dtype.kind in "biu":
            if want.dtype.kind != got.dtype.kind or not np.array_equal(want, got):
                return f"{key}: {got.dtype} {got.ravel()[:8]}, PyTorch {want.dtype} " \
                       f"{want.ravel()[:8]}"
            continue
        want64, got64 = want.astype(np.float64), got.astype(np.float64)
        bad = ~np.isclose(got64, want64, rtol=RTOL, atol=ATOL, equal_nan=True)
        if bad.any():
            where = tuple(int(i) for i in np.unravel_index(np.argmax(bad), bad.shape))
            err = np.abs(got64 - want64)
            return (f"{key}: {bad.sum()} of {bad.size} elements differ, first at {where}: "
                    f"{float(got64[where])!r} vs PyTorch {float(want64[where])!r}; max abs "
                    f"error {np.nanmax(err):.3g}")
    return None


def test_first_mismatch_names_the_key():
    base = {"a": np.ones(3, np.float32), "b": np.arange(3)}
    assert first_mismatch(base, dict(base)) is None
    assert first_mismatch(base, {**base, "a": base["a"] * (1 + 1e-6)}) is None
    assert first_mismatch(base, {**base, "a": np.array([1, 1.001, 1], np.float32)}) \
        .startswith("a: 1 of 3 elements differ, first at (1,)")
    assert first_mismatch(base, {**base, "b": np.array([0, 2, 1])}).startswith("b:")
    assert first_mismatch(base, {**base, "b": np.arange(3.0)}).startswith("b:")
    assert first_mismatch(base, {"a": base["a"]}).startswith("keys differ: missing ['b']")


def test_nanogpt_model_is_verbatim():
    if not NANOGPT_MODEL.exists():
        pytest.skip("tests/pytorch_programs/nanogpt/model.py is absent: see SOURCE.md")
    assert hashlib.sha256(NANOGPT_MODEL.read_bytes()).hexdigest() == NANOGPT_SHA256


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_program_matches_pytorch(name, torch_results, tmp_path):
    if not _available(name):
        pytest.skip("tests/pytorch_programs/nanogpt/model.py is absent: see SOURCE.md")
    reference = torch_results[name]
    if not isinstance(reference, Path):
        pytest.fail(f"the program fails under PyTorch itself:\n{reference}")
    with np.load(reference) as expected, np.load(_minattn_result(name, tmp_path)) as actual:
        mismatch = first_mismatch(dict(expected), dict(actual))
    assert mismatch is None, f"{name} on minattn differs from PyTorch: {mismatch}"
