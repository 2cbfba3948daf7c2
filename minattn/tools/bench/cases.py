"""The cases of ``minattn bench``: every implementation, minattn's and PyTorch's, as a Case.

Which implementations exist on each device, the environment each runs in, the inputs,
which can run on this machine, and the agreement check before anything is timed.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ... import backend
from .harness import Case, _rss_growth_mib, _torch, _tracemalloc_mib

CPU_IMPLS = ("composed", "fused", "fused-numpy", "flash-ref", "flash-numba", "torch-sdpa",
             "torch-math")
CUDA_IMPLS = ("composed", "fused", "flash-ref", "flash-ref-1024", "flash-cupy", "torch-sdpa",
              "torch-math")
MINATTN_IMPLS = {"composed": "composed", "fused": "fused", "fused-numpy": "fused",
                 "flash-ref": "flash", "flash-ref-1024": "flash", "flash-numba": "flash",
                 "flash-cupy": "flash"}
# the kernels each case runs with (ma.kernels.use); every other case runs with "fast"
CASE_KERNELS = {"flash-ref": "reference", "flash-ref-1024": "reference",
                "fused-numpy": "numpy"}


@contextlib.contextmanager
def _case_kernels(name: str):
    """ma.kernels.use(CASE_KERNELS[name], else "fast") while the case runs (and flash's tile
    sizes for flash-ref-1024)."""
    from ... import kernels
    from ...attention import flash

    tiles = flash.BLOCK_Q, flash.BLOCK_K
    if name == "flash-ref-1024":
        flash.BLOCK_Q = flash.BLOCK_K = 1024
    try:
        with kernels.use(CASE_KERNELS.get(name, "fast")):
            yield
    finally:
        flash.BLOCK_Q, flash.BLOCK_K = tiles


# -- the cases: one (forward, forward+backward) pair of closures per implementation ------------


def _minattn_case(name: str, arrays: dict, device: str, scale: float) -> Case:
    import minattn as ma
    import minattn.functional as F

    impl = MINATTN_IMPLS[name]
    consts = [ma.tensor(arrays[n], device=device) for n in ("q", "k", "v")]
    leaves = [ma.tensor(arrays[n], device=device, requires_grad=True) for n in ("q", "k", "v")]
    dout = backend.as_array(arrays["dout"], device=device)

    def forward():
        with _case_kernels(name), ma.no_grad():
            return F.scaled_dot_product_attention(*consts, scale=scale, impl=impl)

    def forward_backward():
        for t in leaves:
            t.grad = None
        with _case_kernels(name):
            out = F.scaled_dot_product_attention(*leaves, scale=scale, impl=impl)
            out.backward(dout)
        return out, [t.grad for t in leaves]

    if device == "cuda":
        def peak(fn):
            pool = backend._import_cupy().get_default_memory_pool()
            before = pool.used_bytes()
            fn()
            return max(0.0, (pool.total_bytes() - before) / 2**20)  # pool growth: an upper bound
        how = "cupy pool growth"
    else:
        peak, how = _tracemalloc_mib, "tracemalloc"
    return Case(name, forward, forward_backward, peak, how)


def _torch_case(name: str, arrays: dict, device: str, scale: float) -> Case:
    torch = _torch()
    dev = "cuda" if device == "cuda" else "cpu"
    consts = [torch.tensor(arrays[n], device=dev) for n in ("q", "k", "v")]
    leaves = [torch.tensor(arrays[n], device=dev, requires_grad=True) for n in ("q", "k", "v")]
    dout = torch.tensor(arrays["dout"], device=dev)

    def attend(q, k, v):
        if name == "torch-sdpa":
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)
        probs = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)  # (B, H, L, S)
        return probs @ v

    def forward():
        with torch.no_grad():
            return attend(*consts)

    def forward_backward():
        for t in leaves:
            t.grad = None
        out = attend(*leaves)
        out.backward(dout)
        return out, [t.grad for t in leaves]

    if device == "cuda":
        def peak(fn):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            fn()
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - before) / 2**20
        how = "torch.cuda peak"
    else:
        peak, how = _rss_growth_mib, "RSS growth"
    return Case(name, forward, forward_backward, peak, how)


def make_case(name: str, arrays: dict, device: str, scale: float) -> Case:
    if name.startswith("torch"):
        return _torch_case(name, arrays, device, scale)
    return _minattn_case(name, arrays, device, scale)


def _to_numpy(x):
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return x.numpy()  # a minattn Tensor


def unavailable(name: str, device: str) -> str | None:
    """Why implementation ``name`` cannot run on ``device`` here (None: it can)."""
    if name.startswith("torch"):
        torch = _torch()
        if torch is None:
            return "PyTorch is not installed (`pip install torch` adds the reference)"
        if device == "cuda" and not torch.cuda.is_available():
            return "this PyTorch has no CUDA"
    if name == "flash-numba":
        from ...kernels import numba_math

        if device != "cpu":
            return "numba's kernels run on the CPU"
        if not numba_math.available():
            return "numba is not available (`minattn info` says why)"
    if name == "flash-cupy" and device != "cuda":
        return "CuPy's kernels run on cuda"
    return None


def _names(device: str, wanted=None) -> list[str]:
    """The device's list, or the asked names, checked to be known."""
    names = list(CUDA_IMPLS if device == "cuda" else CPU_IMPLS) if wanted is None else wanted
    unknown = [n for n in names if n not in CPU_IMPLS + CUDA_IMPLS]
    if unknown:
        raise SystemExit(f"minattn bench: unknown --impl {', '.join(unknown)}; choose from "
                         f"{', '.join(dict.fromkeys(CPU_IMPLS + CUDA_IMPLS))}")
    return names


def available_impls(device: str, wanted=None) -> list[str]:
    """The implementations to run: the device's list (or the asked ones) that can run here."""
    return [n for n in _names(device, wanted) if unavailable(n, device) is None]


def skipped_impls(device: str, wanted=None) -> dict[str, str]:
    """The device's (or the asked) implementations that cannot run here, each with why."""
    why = {n: unavailable(n, device) for n in _names(device, wanted)}
    return {n: reason for n, reason in why.items() if reason is not None}


def make_inputs(B, H, L, E, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((B, H, L, E)).astype(np.float32)
            for n in ("q", "k", "v", "dout")}


def check_agreement(impls, device) -> dict:
    """Every implementation's output and gradients against the first one's, on a small case."""
    arrays = make_inputs(1, 2, 96, 32, seed=1)
    results = {}
    for name in impls:
        case = make_case(name, arrays, device, 32**-0.5)
        out, grads = case.forward_backward()
        results[name] = [_to_numpy(out)] + [_to_numpy(g) for g in grads]
    first = impls[0]
    return {name: max(float(np.abs(a - b).max()) for a, b in zip(res, results[first]))
            for name, res in results.items()}


def _memory_gib(name: str, B: int, H: int, L: int) -> float:
    """What the (L, S) arrays of an implementation take, roughly (float32)."""
    per = {"composed": 8, "fused": 3, "fused-numpy": 3, "torch-math": 4}.get(name, 0)
    return per * B * H * L * L * 4 / 2**30
