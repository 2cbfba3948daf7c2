"""What the numba kernels share (kernels/numba_math.py): the vectorizable exp2, a clear error
without numba, and NUMBA_DISABLE_JIT=1 running the very same kernels as plain Python."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minattn.kernels import numba_math

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


@pytest.mark.parametrize("dtype, tol", [(np.float32, 2e-7), (np.float64, 4e-16)],
                         ids=["float32", "float64"])
def test_vectorized_exp2_is_accurate_over_the_whole_range(numba_kernels, dtype, tol):
    import numba

    numba_math.compiler()  # registers _exp2 with numba

    @numba.njit
    def exp2_all(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = numba_math._exp2(x[i])
        return out

    info = np.finfo(dtype)
    x = np.linspace(info.minexp, info.maxexp - 1, 100001).astype(dtype)
    np.testing.assert_allclose(exp2_all(x), np.exp2(x.astype(np.float64)), rtol=tol)
    below = np.array([-np.inf, info.minexp - 1, -1e6], dtype)
    np.testing.assert_array_equal(exp2_all(below), 0)  # 2^-inf = 0 and no denormals


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp2_as_plain_python_is_the_same_function(dtype):
    """The helpers are plain NumPy code too (what NUMBA_DISABLE_JIT=1 runs)."""
    x = np.linspace(-20, 20, 101).astype(dtype)
    got = np.array([numba_math._exp2(v) for v in x])
    assert got.dtype == dtype
    np.testing.assert_allclose(got, np.exp2(x.astype(np.float64)), rtol=4 * np.finfo(dtype).eps)


def test_missing_numba_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
    ok, why = numba_math.numba_status()
    assert not ok and "numba" in why and "pip install minattn[fast]" in why
    with pytest.raises(RuntimeError, match="numba kernels cannot run: numba is not installed"):
        numba_math.compiler.__wrapped__()  # what every kernel calls first (uncached here)


def test_numba_status_names_the_version_and_threading_layer(numba_kernels):
    import numba

    ok, why = numba_math.numba_status()
    assert ok and numba.__version__ in why and "threading layer" in why
    assert numba_math.available()


@pytest.mark.slow
def test_kernels_run_as_python_with_numba_disable_jit(numba_kernels):
    """NUMBA_DISABLE_JIT=1 runs the same kernel code as plain Python (how one debugs it)."""
    script = textwrap.dedent("""
        import numpy as np
        import numba
        from kernel_oracles import dense_attention, dense_grads, make_case
        from minattn.kernels import numba_flash, numba_rows
        assert numba.config.DISABLE_JIT
        rng = np.random.default_rng(0)
        for causal, mask in ((False, "bias"), (True, None)):
            q, k, v, dout, bias = make_case(rng, 2, 5, 7, 3, 2, np.float64, mask)
            out, lse = numba_flash.flash_forward(q, k, v, 0.6, bias, causal, 2, 3)
            grads = numba_flash.flash_backward(q, k, v, out, lse, dout, 0.6, bias, causal, 2, 3)
            err = np.abs(out - dense_attention(q, k, v, 0.6, bias, causal)[0]).max()
            for g, w in zip(grads, dense_grads(q, k, v, dout, 0.6, bias, causal)):
                err = max(err, np.abs(g - w).max())
            assert err < 1e-12, err
        y = numba_rows.softmax_forward(np.array([[1.0, 2.0], [-np.inf, -np.inf]], np.float32),
                                       empty_rows="zero")
        assert abs(y[0, 1] - 1 / (1 + np.exp(-1))) < 1e-6 and (y[1] == 0).all()
        print("ok", err)
    """)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=os.pathsep.join([ROOT, HERE]))
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")
