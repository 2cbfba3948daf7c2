"""The one switch, ``ma.kernels.use`` (and ``MINATTN_KERNELS``, read once at import): what
each setting lets run, and what ``scaled_dot_product_attention(impl=None)`` picks.

- "fast": the fastest twin for each array (numba on the CPU where installed, CUDA on a GPU);
- "numpy": no compiled CPU kernels: the NumPy twins (blocks of rows, threads) only;
- "reference": no twin and no threads of minattn's: the plain array code a student reads.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import minattn as ma
import minattn.functional as F
from minattn import attention as A
from minattn import backend
from minattn.attention import flash
from minattn.kernels import choice, numba_flash, numba_math, numba_rows, rows, threads
from minattn.ops.softmax import softmax_rows, softmax_rows_backward

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIG = np.zeros((300, 300))  # past rows.MIN_FAST: the row twins apply
Q = np.zeros((1, 2, 2))


@pytest.fixture
def restore_mode():
    """Whatever a test sets with ``ma.kernels.use(...)`` as a call is undone after it."""
    before = ma.kernels.mode()
    yield before
    ma.kernels.use(before)


# -- the switch itself ----------------------------------------------------------------------------


def test_use_as_a_call_sets_the_kernels_from_then_on(restore_mode):
    assert restore_mode == "fast"  # the default (MINATTN_KERNELS unset in the tests)
    ma.kernels.use("numpy")
    assert ma.kernels.mode() == "numpy"
    ma.kernels.use("reference")
    assert ma.kernels.mode() == "reference"


def test_use_as_a_context_manager_restores_on_exit(restore_mode):
    with ma.kernels.use("reference"):
        assert ma.kernels.mode() == "reference"
        with ma.kernels.use("numpy") as inner:
            assert ma.kernels.mode() == "numpy" and isinstance(inner, ma.kernels.use)
        assert ma.kernels.mode() == "reference"
    assert ma.kernels.mode() == "fast"
    with pytest.raises(ZeroDivisionError), ma.kernels.use("numpy"):  # and on an error
        1 / 0  # noqa: B018
    assert ma.kernels.mode() == "fast"


def test_the_kernels_fixture_sets_the_switch(kernels):
    assert ma.kernels.mode() == kernels


@pytest.mark.parametrize("name", ["fastest", "Fast", "numba", "", None])
def test_a_bad_name_is_a_value_error_naming_the_choices(restore_mode, name):
    with pytest.raises(ValueError, match="expected one of fast, numpy, reference"):
        ma.kernels.use(name)
    assert ma.kernels.mode() == "fast"  # unchanged


def _mode_in_a_fresh_process(value):
    env = {k: v for k, v in os.environ.items() if k != "MINATTN_KERNELS"}
    if value is not None:
        env["MINATTN_KERNELS"] = value
    return subprocess.run([sys.executable, "-c", "import minattn; print(minattn.kernels.mode())"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value, mode", [(None, "fast"), ("", "fast"), ("numpy", "numpy"),
                                         (" Reference ", "reference")])
def test_MINATTN_KERNELS_sets_the_kernels_at_import(value, mode):
    done = _mode_in_a_fresh_process(value)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == mode


def test_a_bad_MINATTN_KERNELS_is_a_clear_error_at_import():
    done = _mode_in_a_fresh_process("fastest")
    assert done.returncode != 0
    assert "ValueError: MINATTN_KERNELS='fastest': expected one of fast, numpy, reference" \
        in done.stderr


def test_environment_variables_set_after_import_change_nothing(monkeypatch):
    """MINATTN_KERNELS is read once, and the old per-kernel switches are gone."""
    before = (ma.kernels.mode(), choice.flash_pair("fast", Q), rows.kind(BIG))
    for name in ("MINATTN_KERNELS", "MINATTN_FLASH_KERNELS", "MINATTN_ROW_KERNELS"):
        monkeypatch.setenv(name, "reference")
    assert (ma.kernels.mode(), choice.flash_pair("fast", Q), rows.kind(BIG)) == before
    assert ma.kernels.twin(softmax_rows, BIG) is not None


# -- what each setting lets run -------------------------------------------------------------------


def test_reference_has_no_twins_and_plain_numpy():
    with ma.kernels.use("reference"):
        assert ma.kernels.twin(softmax_rows, BIG) is None
        assert ma.kernels.twin(softmax_rows_backward, BIG, BIG) is None
        assert ma.kernels.twin(flash.flash_forward, Q, Q, Q, 1.0) is None
        assert ma.kernels.twin(flash.flash_backward, Q, Q, Q, Q, Q[..., 0], Q, 1.0) is None
        assert ma.kernels.array_module(BIG) is np
        assert ma.kernels.array_module(Q, BIG) is np
        x = np.random.default_rng(0).standard_normal(BIG.shape)
        np.testing.assert_array_equal(ma.kernels.run(softmax_rows, x), softmax_rows(x))


@pytest.mark.parametrize("mode", ["fast", "numpy"])
def test_the_other_settings_give_numpy_on_threads(mode):
    with ma.kernels.use(mode):
        assert isinstance(ma.kernels.array_module(BIG), threads.ThreadedNumPy)
        assert ma.kernels.twin(softmax_rows, BIG) is not None
        assert ma.kernels.twin(softmax_rows_backward, BIG, BIG) is not None


def test_a_function_without_a_twin_runs_itself(kernels):
    assert ma.kernels.twin(np.exp, BIG) is None
    np.testing.assert_array_equal(ma.kernels.run(np.exp, Q), np.exp(Q))
    assert ma.kernels.twin(softmax_rows, np.zeros((3, 4))) is None  # too small to pay


@pytest.mark.parametrize("mode", ["numpy", "reference"])
def test_numpy_and_reference_run_no_numba_kernel(monkeypatch, rng, mode):
    """Every numba kernel replaced by one that fails: softmax, fused and flash attention,
    forward and backward, still run."""
    def fail(*args, **kwargs):
        raise AssertionError("a numba kernel ran")

    for module, name in ((numba_rows, "softmax_forward"), (numba_rows, "softmax_backward"),
                         (numba_flash, "flash_forward"), (numba_flash, "flash_backward")):
        monkeypatch.setattr(module, name, fail)
    with ma.kernels.use(mode):
        assert rows.kind(BIG, mode=mode) == mode
        assert choice.flash_pair(mode, Q) is None
        assert ma.kernels.twin(flash.flash_forward, Q, Q, Q, 1.0) is None
        x = ma.tensor(rng.standard_normal((300, 257)), requires_grad=True)
        F.softmax(x).sum().backward()
        q = ma.tensor(rng.standard_normal((2, 300, 8)), requires_grad=True)  # 180000 scores
        for impl in ("fused", "flash", None):
            F.scaled_dot_product_attention(q, q, q, impl=impl).sum().backward()
    assert np.isfinite(x.grad.numpy()).all() and np.isfinite(q.grad.numpy()).all()


def test_fast_takes_the_numba_kernels_where_installed(numba_kernels, monkeypatch):
    assert choice.flash_pair("fast", Q) == (numba_flash.flash_forward, numba_flash.flash_backward)
    assert ma.kernels.twin(flash.flash_forward, Q, Q, Q, 1.0) is numba_flash.flash_forward
    assert ma.kernels.twin(flash.flash_backward, Q, Q, Q, Q, Q[..., 0], Q, 1.0) \
        is numba_flash.flash_backward
    assert rows.kind(BIG) == "numba"
    monkeypatch.setattr(numba_math, "available", lambda: False)  # no numba: the references
    assert choice.flash_pair("fast", Q) is None
    assert ma.kernels.twin(flash.flash_forward, Q, Q, Q, 1.0) is None
    assert rows.kind(BIG) == "numpy"


def test_cupy_arrays_get_the_cuda_flash_kernels_unless_reference(monkeypatch):
    from minattn.kernels import cuda_flash

    monkeypatch.setattr(backend, "is_cupy_array", lambda x: True)
    monkeypatch.setattr(backend, "is_numpy_array", lambda x: False)
    pair = (cuda_flash.flash_forward, cuda_flash.flash_backward)
    assert choice.flash_pair("fast", Q) == choice.flash_pair("numpy", Q) == pair
    assert choice.flash_pair("reference", Q) is None


# -- what impl=None runs: kernels.fastest_attention -----------------------------------------------


def test_fastest_attention_on_the_cpu(kernels):
    small, large = ma.randn(2, 3).data, ma.randn(4, 1024, 8).data
    fastest = ma.kernels.fastest_attention
    assert fastest(large, 1024, 0.5) == "fused"  # dropout needs the probabilities
    assert fastest(small, 3, 0.0) == "fused"  # too small for tiles to pay off
    compiled = choice.flash_pair(kernels, large) is not None  # numba, and only under "fast"
    assert compiled == (kernels == "fast" and numba_math.available())
    assert fastest(large, 1024, 0.0) == ("flash" if compiled else "fused")
    assert fastest(large, 1024, 0.0, needs_grad=True) == ("flash" if compiled else "fused")


def test_fastest_attention_pays_for_tiles_from_flash_min_scores(numba_kernels):
    q = np.zeros((1, 256, 8))
    fastest = ma.kernels.fastest_attention
    assert fastest(q, choice.FLASH_MIN_SCORES // 256) == "flash"  # 256 * S = the threshold
    assert fastest(q, choice.FLASH_MIN_SCORES // 256 - 1) == "fused"


def test_fastest_attention_on_the_gpu(monkeypatch):
    """fused for training while its (L, S) arrays fit in free GPU memory, else flash (checked
    here with the device's answers stood in for)."""
    q = ma.randn(4, 1024, 8).data  # 4 * 1024 * 1024 scores: 16 MiB per float32 (L, S) array
    fastest = ma.kernels.fastest_attention
    monkeypatch.setattr(backend, "is_cupy_array", lambda x: True)
    monkeypatch.setattr(backend, "gpu_memory_available", lambda: 2**30)
    assert fastest(q, 1024, 0.0, needs_grad=True) == "fused"
    assert fastest(q, 1024, 0.0, needs_grad=False) == "flash"  # forward only
    assert fastest(q, 1024, 0.5) == "fused"  # dropout
    monkeypatch.setattr(backend, "gpu_memory_available", lambda: 60 * 2**20)  # < 4 x 16 MiB
    assert choice.FUSED_GPU_ARRAYS == 4
    assert fastest(q, 1024, 0.0, needs_grad=True) == "flash"


def test_impl_none_asks_whether_a_backward_pass_will_follow(monkeypatch):
    seen = []
    monkeypatch.setattr(ma.kernels, "fastest_attention",
                        lambda q, S, p, needs_grad: seen.append(needs_grad) or "fused")
    q = ma.randn(1, 4, 3)
    F.scaled_dot_product_attention(q, q, q)
    F.scaled_dot_product_attention(q, q, ma.randn(1, 4, 3, requires_grad=True))
    with ma.no_grad():
        F.scaled_dot_product_attention(q, q, ma.randn(1, 4, 3, requires_grad=True))
    assert seen == [False, True, False]
    assert A.kernels is ma.kernels  # (the attention module asks the switch, not a copy)
