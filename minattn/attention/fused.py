"""Attention as one op with a hand-written backward over the materialized probabilities.

Forward, with P~ the probabilities after dropout (P~ = P when there is none; ``dropped``
in the code, docs/symbols.md):

    S = scale * Q K^T + bias      P = softmax(S)      P~ = P * keep      O = P~ V

What is saved for backward, and why: Q, K, V (the matmuls need them), P (the softmax
backward needs its *output*), and the dropout mask. The scores S are not saved: the softmax
backward never needs them, so keeping S would cost a second (..., L, S) array for nothing.

Backward, from the upstream dO:

    dV = P~^T dO                       dP~ = dO V^T         dP = dP~ * keep
    dS = P * (dP - rowsum(dP * P))     dQ = scale * dS K    dK = scale * dS^T Q

Masked positions have P = 0, hence dS = 0; a fully masked row has P = 0 everywhere, so its
output and every gradient it feeds are 0, never NaN. A NaN or +inf score makes its row NaN,
as in PyTorch (softmax_rows gives NaN for it).

float16 inputs are computed in float32 (backend.work_dtype) and the output rounded back to
float16, as PyTorch's math path does: a float16 score overflows at 65504, and float16 row
sums lose digits. The gradients are computed in float32 too and handed back in float16.

The two row-wise steps are the Softmax op's own formulas, ``softmax_rows`` and
``softmax_rows_backward`` of ops/softmax.py, run in place through ``kernels.run``: on the CPU
their fast twins give every core a share of the rows (a numba kernel, or NumPy in
cache-sized blocks), where whole-array NumPy passes would run one after another on one core.
"""

from __future__ import annotations

from .. import backend, kernels
from ..core import Function
from ..ops.arithmetic import unbroadcast
from ..ops.matmul import at_b
from ..ops.softmax import softmax_rows, softmax_rows_backward
from .masks import causal_bias


class FusedAttention(Function):
    """O = (softmax(scale * Q K^T + bias) * keep) V, with dQ, dK, dV by hand.

    ``apply(q, k, v, scale=..., bias=None, is_causal=False, keep=None)``: q (..., L, E),
    k (..., S, E), v (..., S, Ev) with broadcasting batch axes; ``bias`` an array that
    broadcasts to (..., L, S); ``keep`` the dropout mask divided by 1 - p, or None.
    """

    def forward(self, q, k, v):
        # Each (..., L, S) step works in place on one array: at long sequences a fresh array
        # costs as much as the arithmetic (the allocator hands back new, unfaulted pages).
        xp = backend.get_array_module(q)
        dtype, work = q.dtype, backend.work_dtype(q.dtype)  # float16 is computed in float32
        q, k, v = (x.astype(work, copy=False) for x in (q, k, v))
        if self.keep is not None:
            self.keep = self.keep.astype(work, copy=False)
        bias = causal_bias(q.shape[-2], k.shape[-2], work, xp) if self.is_causal \
            else self.bias
        if bias is not None:
            bias = bias.astype(work, copy=False)
        # scale q (L, E), not the scores (L, S): a pass over the smaller array
        # --8<-- [start:fused_forward]
        probs = (q * self.scale) @ k.swapaxes(-1, -2)  # (..., L, S): scores, then probs
        if bias is not None:
            probs = _into(xp.add, probs, bias)  # -inf where masked; may add batch axes that v has
        # P = softmax(S) row by row, in place; a fully masked row (all -inf) gets P = 0
        probs = kernels.run(softmax_rows, probs, out=probs, empty_rows="zero")  # (..., L, S)
        dropped = probs if self.keep is None else probs * self.keep  # (..., L, S)
        self.q, self.k, self.v, self.probs = q, k, v, probs  # not the scores: never needed
        return (dropped @ v).astype(dtype, copy=False)  # (..., L, Ev)
        # --8<-- [end:fused_forward]

    # --8<-- [start:fused_backward]
    def backward(self, dout):
        # O = P~ V, P~ = P * keep  =>  dV = P~^T dO, dP~ = dO V^T, dP = dP~ * keep
        # P = softmax(S)           =>  dS = P * (dP - rowsum(dP * P))   (softmax backward)
        # S = scale * Q K^T        =>  dQ = scale * dS K, dK = scale * dS^T Q
        # then sum each gradient over the batch axes its input was broadcast along
        # (in the working dtype; the engine casts them to the inputs' dtype).
        q, k, v, probs, keep = self.q, self.k, self.v, self.probs, self.keep
        dout = dout.astype(q.dtype, copy=False)  # float16 -> float32
        dropped = probs if keep is None else probs * keep  # (..., L, S)
        dv = at_b(dropped, dout)  # (..., S, Ev) = P~^T dO, as (dO^T P~)^T (see at_b)
        xp = backend.get_array_module(dout)
        dscores = dout @ v.swapaxes(-1, -2)  # (..., L, S): dP~, then dP, then dS in place
        if keep is not None:
            dscores = _into(xp.multiply, dscores, keep)
        if probs.shape != dscores.shape:  # v had batch axes that the scores did not
            probs = xp.broadcast_to(probs, dscores.shape)  # (..., L, S), a view
        # dS = P * (dP - rowsum(dP * P)), in place
        dscores = kernels.run(softmax_rows_backward, probs, dscores, out=dscores)  # (..., L, S)
        dq = (dscores @ k) * self.scale  # (..., L, E)
        dk = at_b(dscores, q * self.scale)  # (..., S, E) = scale dS^T Q
        return unbroadcast(dq, q.shape), unbroadcast(dk, k.shape), unbroadcast(dv, v.shape)
    # --8<-- [end:fused_backward]


def _into(op, a, b):
    """op(a, b) (an xp ufunc), written into a when the result has a's shape."""
    if backend.np.broadcast_shapes(a.shape, b.shape) != a.shape:
        return op(a, b)
    return op(a, b, out=a)


def fused_attention(q, k, v, scale: float, bias=None, is_causal: bool = False, keep=None):
    """O = softmax(scale * q k^T + bias) v as one FusedAttention op (a Tensor)."""
    return FusedAttention.apply(q, k, v, scale=scale, bias=bias, is_causal=is_causal, keep=keep)
