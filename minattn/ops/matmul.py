"""Batched, broadcasting matrix product with NumPy's rules for 1-D operands."""

from __future__ import annotations

import math

from .. import backend
from ..core import Function, Tensor, _as_tensors
from .arithmetic import check_broadcast, unbroadcast


def _rows(x):
    """x (..., n) as one matrix (rows, n) of all its leading axes."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])  # (not -1: fails for empty x)


def _product(a, b):
    """a @ b; a stack of matrices times one matrix becomes one 2-D product (one BLAS call,
    where NumPy would loop over the stack, slowly when b is a transposed view)."""
    if a.ndim > 2 and b.ndim == 2:
        return (_rows(a) @ b).reshape(*a.shape[:-1], b.shape[-1])
    return a @ b


def _t(x):
    """x with its last two axes swapped (a view)."""
    return x.swapaxes(-1, -2)


# --8<-- [start:at_b]
def at_b(a, b):
    """a^T b over the last two axes: (..., n, k) and (..., n, m) -> (..., k, m).

    Computed as (b^T a)^T when a is the wider one, so that the smaller operand is the one
    transposed: CuPy copies a transposed operand of a batched product into a contiguous
    array first (at (L, S) = 4096^2 that would be the whole probability matrix), and NumPy
    measured faster that way too (docs/performance.md, "Transposed products").
    """
    return _t(_t(b) @ a) if a.shape[-1] > b.shape[-1] else _t(a) @ b
# --8<-- [end:at_b]


def a_bt(a, b):
    """a b^T over the last two axes: (..., n, m) and (..., k, m) -> (..., n, k); as
    (b a^T)^T when b is the taller one (see at_b)."""
    return _t(b @ _t(a)) if b.shape[-2] > a.shape[-2] else a @ _t(b)


class MatMul(Function):
    def saved_inputs(self, inputs):  # da reads b's values, db reads a's
        a, b = inputs
        return [t for t, other in ((a, b), (b, a)) if other.requires_grad]

    # --8<-- [start:matmul_op]
    def forward(self, a, b):
        self.a, self.b = a, b
        return _product(a, b)

    def backward(self, dout):
        # out = a @ b, out_ij = sum_k a_ik b_kj  =>  da = dout @ b^T, db = a^T @ dout,
        # each summed over the batch axes that broadcasting stretched.
        # A 1-D a is a row (1, k) and a 1-D b a column (k, 1); put back the axis
        # that the product dropped so the 2-D formulas apply unchanged.
        xp = backend.get_array_module(dout)
        a = self.a[None, :] if self.a.ndim == 1 else self.a  # (..., n, k)
        b = self.b[:, None] if self.b.ndim == 1 else self.b  # (..., k, m)
        if self.b.ndim == 1:
            dout = xp.expand_dims(dout, -1)
        if self.a.ndim == 1:
            dout = xp.expand_dims(dout, -2)  # dout: (..., n, m)
        da = db = None
        stack = a.ndim > 2 and b.ndim == 2  # a stack of matrices times one matrix
        if self.needs_input_grad[0]:
            da = _product(dout, b.T) if stack else a_bt(dout, b)  # (..., n, k)
            da = unbroadcast(da, a.shape).reshape(self.a.shape)
        if self.needs_input_grad[1]:
            if stack:  # the sum over the stack is one 2-D product
                db = _rows(a).T @ _rows(dout)  # (k, m)
            else:
                db = unbroadcast(at_b(a, dout), b.shape)  # (..., k, m)
            db = db.reshape(self.b.shape)
        return da, db
    # --8<-- [end:matmul_op]


def matmul(a, b) -> Tensor:
    """a @ b over the last two axes, broadcasting the others (``numpy.matmul`` rules)."""
    a, b = _as_tensors([a, b], "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes "
                         f"{a.shape} and {b.shape} (use * for scalars)")
    k_a, k_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match: the last "
                         f"axis of a ({k_a}) must equal the "
                         f"{'only' if b.ndim == 1 else 'second-to-last'} axis of b ({k_b})")
    if a.ndim > 2 and b.ndim > 2:
        check_broadcast("matmul (batch axes)", a.shape[:-2], b.shape[:-2])
    return MatMul.apply(a, b)


def bmm(a, b) -> Tensor:
    """Batched matrix product of (B, n, k) and (B, k, m) -> (B, n, m), as ``torch.bmm``
    (no broadcasting: both are 3-D with one batch size)."""
    a, b = _as_tensors([a, b], "bmm")
    if a.ndim != 3 or b.ndim != 3:
        raise RuntimeError(f"bmm: both operands must be 3-D, got shapes {a.shape} and "
                           f"{b.shape} (use matmul to broadcast)")
    if a.shape[0] != b.shape[0]:
        raise RuntimeError(f"bmm: batch sizes differ: {a.shape} and {b.shape}")
    return matmul(a, b)


class Einsum(Function):
    """out = einsum(spec, *operands): products of the operands summed over the letters that
    the output does not keep."""

    def forward(self, *arrays):
        self.arrays = arrays
        return backend.get_array_module(*arrays).einsum(self.spec, *arrays)

    def backward(self, dout):
        # out[o] = sum over the other letters of prod_j x_j[s_j]  =>
        #   dx_i[s_i] = sum over the letters not in s_i of dout[o] prod_{j != i} x_j[s_j]:
        # the same kind of einsum, with dout as an operand and s_i as the output. A letter of
        # s_i that appears nowhere else was summed inside x_i alone: dx_i is constant along it.
        xp = backend.get_array_module(dout)
        grads = []
        for i, sub in enumerate(self.subs):
            if not self.needs_input_grad[i]:
                grads.append(None)
                continue
            others = [s for j, s in enumerate(self.subs) if j != i]
            arrays = [a for j, a in enumerate(self.arrays) if j != i]
            seen = set(self.out) | set("".join(others))
            kept = "".join(c for c in sub if c in seen or c == ".")
            spec = ",".join([self.out, *others]) + "->" + kept
            g = xp.einsum(spec, dout, *arrays)
            grads.append(xp.broadcast_to(_insert_axes(g, sub, kept), self.arrays[i].shape))
        return tuple(grads)


def _insert_axes(g, sub: str, kept: str):
    """g over the letters ``kept`` (a subsequence of ``sub``), with a size-1 axis for each
    letter of ``sub`` it lacks, so that it broadcasts to the operand's shape."""
    letters = sub.replace("...", ".")
    missing = [k for k, c in enumerate(letters) if c not in kept.replace("...", ".")]
    if not missing:
        return g
    ellipsis = g.ndim - len(kept.replace("...", ""))  # axes standing for "..."
    positions = []
    for k in missing:  # the axis index in the full operand, "..." expanded
        before = letters[:k]
        positions.append(len(before.replace(".", "")) + (ellipsis if "." in before else 0))
    return backend.get_array_module(g).expand_dims(g, tuple(positions))


def _parse_einsum(spec: str, operands) -> tuple[list[str], str]:
    spec = spec.replace(" ", "")
    ins, arrow, out = spec.partition("->")
    subs = ins.split(",")
    if len(subs) != len(operands):
        raise ValueError(f"einsum: {spec!r} names {len(subs)} operand(s) but {len(operands)} "
                         "were given")
    for sub, x in zip(subs, operands):
        letters = sub.replace("...", "")
        if len(set(letters)) != len(letters):
            raise ValueError(f"einsum: {spec!r}: a letter repeated inside one operand ({sub!r}, "
                             "a diagonal or trace) is not supported by minattn's einsum")
        if not letters.isalpha() and letters:
            raise ValueError(f"einsum: {spec!r}: subscripts must be letters (and ...)")
        if "..." not in sub and len(letters) != x.ndim:
            raise ValueError(f"einsum: {sub!r} names {len(letters)} axes but the operand has "
                             f"shape {x.shape}")
    if not arrow:  # implicit output: the letters that appear once, in alphabetical order
        counts = {}
        for c in "".join(s.replace("...", "") for s in subs):
            counts[c] = counts.get(c, 0) + 1
        out = ("..." if any("..." in s for s in subs) else "") + "".join(
            sorted(c for c, n in counts.items() if n == 1))
    batch = {x.shape[:x.ndim - len(s.replace("...", ""))] for s, x in zip(subs, operands)
             if "..." in s}
    if len(batch) > 1:
        raise ValueError(f"einsum: {spec!r}: the '...' axes differ between operands "
                         f"({sorted(batch)}); minattn's einsum does not broadcast them")
    return subs, out


def einsum(spec: str, *operands) -> Tensor:
    """Einstein summation, as ``torch.einsum``: ``einsum("bhqd,bhkd->bhqk", q, k)`` is
    q @ k^T per batch and head. Letters and ``...``; no letter twice in one operand."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    tensors = _as_tensors(operands, "einsum")
    subs, out = _parse_einsum(spec, tensors)
    full = ",".join(subs) + "->" + out
    return Einsum.apply(*tensors, spec=full, subs=subs, out=out)


__all__ = ["bmm", "einsum", "matmul"]
TENSOR_METHODS = {"bmm": bmm, "matmul": matmul}
