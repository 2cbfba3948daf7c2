"""Per-op overhead on small arrays, the cost that the PyTorch surface (promotion, version
counters, node-keyed backward) adds to every op: best of 5 timeit runs, microseconds.

Run with PYTHONPATH=<a checkout> (MINATTN_KERNELS=numpy) once per tree and compare.
"""
import timeit

import minattn as ma

a = ma.randn(16, 16, requires_grad=True)
b = ma.randn(16, 16)
n = 20000
for stmt in ["a * 1.01", "a + b", "a.tanh()", "ma.Tensor(b.data)"]:
    t = min(timeit.repeat(stmt, globals=globals(), number=n, repeat=5)) / n * 1e6
    print(f"{stmt:>20}: {t:.2f} us")
y = (a * 1.01 + 0.1).tanh()
g = ma.ones(16, 16)
runs = timeit.repeat("y.backward(g, retain_graph=True)", globals=globals(), number=2000,
                     repeat=5)
print(f"backward of 3 ops: {min(runs) / 2000 * 1e6:.2f} us")
