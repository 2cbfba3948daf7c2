"""The checks and array layouts that the numba and the CUDA kernels share.

Both take the flash references' arguments, q (N, L, E), k (N, S, E), v (N, S, Ev) and a
bias broadcastable to (N, L, S), and both compute in a working dtype (float32 for float16
and float32, float64 for float64). The row kernels read C-ordered (R, C) rows of the last
axis and write into the caller's array when its layout allows.
"""

from __future__ import annotations

from .. import backend


def work_dtype(op: str, q, k, v, array_type, library: str):
    """The dtype the kernels compute in, after checking that q, k, v are float arrays of
    ``array_type`` (numpy.ndarray or cupy.ndarray)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, array_type):
            raise TypeError(f"{op}: the {library} kernels take {library} arrays; {name} is a "
                            f"{type(x).__module__}.{type(x).__name__}")
    if not all(x.dtype.kind == "f" for x in (q, k, v)):
        raise TypeError(f"{op}: flash attention needs float arrays, got q {q.dtype}, "
                        f"k {k.dtype}, v {v.dtype}")
    return backend.work_dtype(backend.np.result_type(q.dtype, k.dtype, v.dtype))


def check_shapes(op: str, q, k, v) -> None:
    """q, k, v must be (N, L, E), (N, S, E), (N, S, Ev)."""
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        raise ValueError(f"{op}: q, k, v must be 3-D (N, L, E), (N, S, E), (N, S, Ev); got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    if not (q.shape[0] == k.shape[0] == v.shape[0] and q.shape[2] == k.shape[2]
            and k.shape[1] == v.shape[1]):
        raise ValueError(f"{op}: shapes q {q.shape}, k {k.shape}, v {v.shape} do not fit "
                         "(N, L, E), (N, S, E), (N, S, Ev)")


def check_saved(out, stat, dout, N: int, L: int, Ev: int) -> None:
    """flash_backward's out and dout must be (N, L, Ev) and a row statistic (m or log l) (N, L)."""
    if out.shape != (N, L, Ev) or dout.shape != (N, L, Ev) or stat.shape != (N, L):
        raise ValueError(f"flash_backward: out {out.shape}, dout {dout.shape} and the row "
                         f"statistics {stat.shape} must be (N, L, Ev) = {(N, L, Ev)} and (N, L)")


def bias_view(bias, N: int, L: int, S: int, dtype):
    """bias broadcast to (N, L, S) in dtype without a copy of that size, or None."""
    if bias is None:
        return None
    xp = backend.get_array_module(bias)
    bias = xp.asarray(bias)
    if bias.ndim > 3:
        raise ValueError(f"bias must have at most 3 axes (N, L, S), got shape {bias.shape}")
    try:
        return xp.broadcast_to(bias.astype(dtype, copy=False), (N, L, S))
    except ValueError:
        raise ValueError(f"bias of shape {bias.shape} does not broadcast to (N, L, S) = "
                         f"{(N, L, S)}") from None


# -- rows of the last axis, for the row kernels -------------------------------------------------


def rows(*arrays) -> list:
    """The arrays as C-ordered (R, C) rows of their last axis (C = 1 for a 0-d array), in the
    working dtype of the first (copies only where an array is not that already)."""
    xp = backend.get_array_module(arrays[0])
    work = backend.work_dtype(arrays[0].dtype)
    C = arrays[0].shape[-1] if arrays[0].ndim else 1
    return [xp.ascontiguousarray(a, dtype=work).reshape(-1, C) for a in arrays]


def rows_out(out, work):
    """(where a row kernel writes, whether that is ``out`` itself) for a 2-D working array
    ``work`` (R, C): out viewed as (R, C) when it is C-ordered in work's dtype (in place, or
    straight into the caller's array), else a new array like work."""
    if out is not None and out.dtype == work.dtype and out.flags.c_contiguous:
        return out.reshape(work.shape), True
    return backend.get_array_module(work).empty_like(work), False


def rows_result(result, into: bool, out, like):
    """A row kernel's (R, C) ``result`` as the caller asked for it: in ``out`` when given
    (copied there unless the kernel wrote there already, see rows_out), else in the shape
    and dtype of ``like``."""
    if into:
        return out
    if out is None:
        return result.reshape(like.shape).astype(like.dtype, copy=False)
    out[...] = result.reshape(out.shape)
    return out
