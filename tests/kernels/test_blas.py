"""kernels/blas.py: BLAS thread counts and OpenBLAS's idle spin; and numba's OpenMP start
leaves the program's OpenMP settings alone."""

import os
import subprocess
import sys
import textwrap

import numpy as np

from minattn.kernels import blas


def test_single_thread_restores_the_thread_counts():
    controls = blas.thread_controls()
    before = [get() for get, _ in controls]
    with blas.single_thread():
        assert all(get() == 1 for get, _ in controls)
    assert [get() for get, _ in controls] == before


def test_a_spin_the_user_chose_is_left_alone(monkeypatch):
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "12")
    assert blas.short_spin_wait() == 0
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "12"
    assert blas.spin_status() == "2^12 cycles"


def test_short_spin_wait_keeps_blas_working():
    """In a fresh process: OpenBLAS's threads stop and start again, and products stay right."""
    code = textwrap.dedent("""
        import os
        os.environ.pop("OPENBLAS_THREAD_TIMEOUT", None)
        import numpy as np
        from minattn.kernels import blas
        a = np.random.default_rng(0).standard_normal((400, 300))
        before = a @ a.T
        changed = blas.short_spin_wait()
        assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == blas.SPIN_EXPONENT
        for _ in range(3):
            assert np.array_equal(a @ a.T, before)
        print(changed)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 0  # 0 where NumPy's BLAS is not OpenBLAS


def test_the_kernels_leave_openmp_settings_alone(numba_kernels):
    """OMP_WAIT_POLICY belongs to the program: numba may share its OpenMP runtime with
    PyTorch, whose speed depends on it."""
    code = textwrap.dedent("""
        import os
        os.environ.pop("OMP_WAIT_POLICY", None)
        import numpy as np
        from minattn.kernels import numba_flash, numba_rows
        numba_rows.softmax_forward(np.zeros((4, 5)))
        q = np.zeros((1, 3, 2))
        numba_flash.flash_forward(q, q, q, 1.0)  # a parallel kernel: numba's threads start
        assert "OMP_WAIT_POLICY" not in os.environ
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    from minattn.kernels import numba_rows

    np.testing.assert_allclose(numba_rows.softmax_forward(np.zeros((2, 4))), 0.25)
