"""scaled_dot_product_attention at its edges, against PyTorch's math path, forward and backward.

In the spirit of PyTorch's OpInfo tests: hypothesis draws the cases, every implementation runs
them (composed, fused, flash with its compiled kernels, and flash's plain NumPy reference under
``ma.kernels.use("reference")``), and each must give what
``torch.nn.functional.scaled_dot_product_attention`` gives with the math backend: the output
and the three gradients for a random upstream gradient (never ``out.sum()``, whose gradient
through a softmax is 0).

The cases: L != S, E != Ev, batch axes that broadcast, small and empty dimensions; float64,
float32 and float16 (which PyTorch computes in float32, as minattn does); no mask, boolean,
causal and float masks, fills of -1e9 (masked_fill's usual value) and finfo(dtype).min (Hugging
Face's), rows with every key masked; scales None, 1 and 1e6 (unscaled attention of large
scores); large values, and NaN or inf entries. Where PyTorch gives NaN, so must minattn; where
PyTorch is finite, minattn must be finite and close: per-dtype tolerances, relative to each
entry and to the size that the entry's formula gives (for dq and dk that includes the scale,
since their rounding grows with it), times the size of the scores (two roundings of a score
s differ by about eps |s|, and the softmax passes that on).

minattn's documented promise: a row that every key is masked out of (all -inf, all False, or
no keys at all) gives zeros, output and gradient, never NaN. PyTorch 2.13 gives zeros there
too; those rows are checked to be exactly zero as well (with finite inputs: a NaN that reaches
the row, as 0 * NaN through the values, stays NaN, as in PyTorch).
"""

import numpy as np
import pytest

import minattn as ma
import minattn.functional as F

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

pytestmark = pytest.mark.torch

IMPLS = [("composed", "fast"), ("fused", "fast"), ("flash", "fast"), ("flash", "reference")]
# (rtol, eps): each entry within rtol of PyTorch's, or within eps times the size of the result
TOL = {np.float64: (1e-9, 1e-12), np.float32: (2e-5, 2e-6), np.float16: (2e-3, 2e-5)}
MASKS = ["none", "bool", "causal", "float", "-1e9", "finfo.min"]


# -- running both sides -------------------------------------------------------------------------


def pytorch(case):
    """(out, dq, dk, dv) from PyTorch's math path, as NumPy arrays."""
    q, k, v = (torch.tensor(case[n], requires_grad=True) for n in "qkv")
    mask = None if case["mask"] is None else torch.tensor(case["mask"])
    with sdpa_kernel(SDPBackend.MATH):
        out = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=case["is_causal"], scale=case["scale"])
    out.backward(torch.tensor(case["dout"]))
    return tuple(t.detach().numpy() for t in (out, q.grad, k.grad, v.grad))


def minattn(case, impl, kernels="fast"):
    """(out, dq, dk, dv) from minattn's implementation ``impl`` under ``kernels``."""
    with ma.kernels.use(kernels), np.errstate(all="ignore"):  # NaN and inf inputs may warn
        q, k, v = (ma.tensor(case[n], requires_grad=True) for n in "qkv")
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=case["mask"],
                                             is_causal=case["is_causal"], scale=case["scale"],
                                             impl=impl)
        out.backward(case["dout"])
        return out.numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()


def sizes(case):
    """The size each result's formula gives it, from the inputs (their finite entries):
    |out| <= max|v|; dv = P^T dout sums over L rows; dq = scale dS k and dk = scale dS^T q
    with |dS| <= |dP| + |D| <= 2 Ev max|dout| max|v|; and the size of the scores without
    the mask, |scale q.k| <= |scale| E max|q| max|k|."""
    def big(x):
        x = np.asarray(x, np.float64)
        x = x[np.isfinite(x)]
        return float(np.abs(x).max()) if x.size else 0.0

    q, k, v, dout = (case[n] for n in ("q", "k", "v", "dout"))
    L, E, Ev = q.shape[-2], q.shape[-1], v.shape[-1]
    scale = case["scale"] if case["scale"] is not None else (1 / np.sqrt(E) if E else 1.0)
    ds = 2 * Ev * big(dout) * big(v)
    return (big(v), abs(scale) * ds * max(1, case["S"]) * big(k),
            abs(scale) * ds * max(1, L) * big(q), max(1, L) * big(dout)), \
        abs(scale) * E * big(q) * big(k)


def fully_masked_rows(case):
    """Boolean (..., L) of the rows that every key is masked out of, broadcast to out's shape
    without its last axis; None if there are none."""
    L, S = case["q"].shape[-2], case["S"]
    batch = np.broadcast_shapes(*(case[n].shape[:-2] for n in "qkv"))
    mask = case["mask"]
    if S == 0:
        return np.ones((*batch, L), bool)
    if mask is None:
        return None
    dead = ~mask.any(axis=-1) if mask.dtype == bool else (mask == -np.inf).all(axis=-1)
    return np.broadcast_to(dead, np.broadcast_shapes(dead.shape, (*batch, L)))


def check(case, got, want, label="", score_size=None):
    """got against PyTorch's want: NaN exactly where PyTorch has NaN, the same infinities,
    close elsewhere; fully masked rows exactly 0 where the inputs are finite. ``score_size``
    overrides the size of the scores, for cases built so that their rounding does not count
    (one-hot rows, exact scores)."""
    rtol, eps = TOL[case["dtype"]]
    result_sizes, scores = sizes(case)
    eps *= 1 + (scores if score_size is None else score_size)
    for name, g, w, size in zip(("out", "dq", "dk", "dv"), got, want, result_sizes):
        msg = f"{label} {name}"
        assert g.shape == w.shape and g.dtype == w.dtype, (msg, g.shape, w.shape, g.dtype)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{msg}: NaN pattern")
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol,
                                   atol=eps * size, equal_nan=True, err_msg=msg)
    dead = fully_masked_rows(case)
    finite = all(np.isfinite(case[n]).all() for n in "qkv")
    if dead is not None and finite:
        out, dq = got[0], got[1]
        assert (out[np.broadcast_to(dead, out.shape[:-1])] == 0).all(), label
        assert (dq[_dead_in_all(dead, dq.shape[:-1])] == 0).all(), label


def _dead_in_all(dead, shape):
    """dead (*batch, L) reduced to shape (q's, without E): a row of dq sums over the batch
    axes that q was broadcast along, so it is 0 when the row is dead in every one of them."""
    dead = dead.all(axis=tuple(range(dead.ndim - len(shape))))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and dead.shape[i] != 1)
    return np.broadcast_to(dead.all(axis=axes, keepdims=True), shape)


def check_all(case, score_size=None):
    want = pytorch(case)
    for impl, kernels in IMPLS:
        check(case, minattn(case, impl, kernels), want, f"{impl} ({kernels})", score_size)


# -- the cases ----------------------------------------------------------------------------------


def make_case(rng, dtype, q_shape, k_shape, v_shape, mask="none", mask_shape=None,
              scale=None, values="normal", dead_rows=0):
    """One case: q, k, v, dout, the mask (None, bool or float in dtype), is_causal, scale.

    ``values``: "normal"; "large" (q and k times 30, v times 100); or "nan", "+inf", "-inf":
    one entry of q, k, v or of a float mask set to it. ``dead_rows``: rows of the mask with
    every key masked (False, -inf, or the fill)."""
    q = rng.standard_normal(q_shape)
    k = rng.standard_normal(k_shape)
    v = rng.standard_normal(v_shape)
    if values == "large":
        q, k, v = 30 * q, 30 * k, 100 * v
    L, S = q_shape[-2], k_shape[-2]
    batch = np.broadcast_shapes(q_shape[:-2], k_shape[:-2], v_shape[:-2])
    dout = rng.standard_normal((*batch, L, v_shape[-1]))
    attn_mask = None
    shape = mask_shape if mask_shape is not None else (L, S)
    fill = {"bool": False, "float": -np.inf, "-1e9": -1e9,
            "finfo.min": np.finfo(dtype).min}.get(mask)  # what a masked key gets
    if mask == "bool":
        attn_mask = rng.random(shape) < 0.7
    elif mask == "float":
        attn_mask = np.where(rng.random(shape) < 0.2, fill, rng.standard_normal(shape))
    elif mask in ("-1e9", "finfo.min"):
        attn_mask = np.where(rng.random(shape) < 0.3, fill, 0.0)
    if attn_mask is not None and attn_mask.size:
        for _ in range(dead_rows):  # a row that every key is masked out of
            attn_mask[tuple(rng.integers(0, n) for n in shape[:-1])] = fill
    with np.errstate(over="ignore"):  # -1e9 is -inf in float16, as in a float16 mask
        arrays = dict(q=q.astype(dtype), k=k.astype(dtype), v=v.astype(dtype),
                      dout=dout.astype(dtype))
        if attn_mask is not None and attn_mask.dtype != bool:
            attn_mask = attn_mask.astype(dtype)
    # (not with empty inputs: then PyTorch 2.13 spreads a NaN in q over its whole output, an
    # artifact of how it keeps the graph of an empty product)
    if values in ("nan", "+inf", "-inf") and all(arrays[n].size for n in "qkv"):
        bad = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf}[values]
        names = list("qkv")
        if attn_mask is not None and attn_mask.dtype != bool and attn_mask.size:
            names.append("mask")
        name = names[rng.integers(len(names))]
        target = attn_mask if name == "mask" else arrays[name]
        target[tuple(rng.integers(0, n) for n in target.shape)] = bad
    return dict(arrays, mask=attn_mask, is_causal=mask == "causal", scale=scale, dtype=dtype,
                S=S)


@st.composite
def cases(draw, max_len=12, max_dim=6):
    """A case for make_case: shapes (batch axes that broadcast, each input keeping some of
    them), a dtype, a mask, a scale and the kind of values."""
    batch = draw(st.lists(st.integers(0, 3), max_size=2))
    L, S = draw(st.integers(0, max_len)), draw(st.integers(0, max_len))
    E, Ev = draw(st.integers(0, max_dim)), draw(st.integers(0, max_dim))

    def keep_some(full):  # fewer leading axes, and 1 for some of the rest
        full = full[draw(st.integers(0, len(full))):]
        return tuple(n if draw(st.booleans()) else 1 for n in full)

    shapes = [(*keep_some(batch), L, E), (*keep_some(batch), S, E)]
    shapes.append((*shapes[1][:-2], S, Ev) if draw(st.booleans()) else
                  (*keep_some(batch), S, Ev))
    mask = draw(st.sampled_from(MASKS))  # broadcastable to the scores (..., L, S)
    out_batch = np.broadcast_shapes(*(shape[:-2] for shape in shapes))
    mask_shape = (*keep_some(out_batch), draw(st.sampled_from([L, 1])), S)
    return dict(dtype=draw(st.sampled_from([np.float64, np.float32, np.float16])),
                q_shape=shapes[0], k_shape=shapes[1], v_shape=shapes[2], mask=mask,
                mask_shape=mask_shape, scale=draw(st.sampled_from([None, 1.0, 0.3, 1e6])),
                values=draw(st.sampled_from(["normal", "normal", "large", "nan", "+inf",
                                             "-inf"])),
                dead_rows=draw(st.integers(0, 2)), seed=draw(st.integers(0, 2**32 - 1)))


def run_drawn(spec):
    spec = dict(spec)
    rng = np.random.default_rng(spec.pop("seed"))
    case = make_case(rng, **spec)
    try:
        want = pytorch(case)
    except RuntimeError:  # a shape PyTorch does not take (minattn may)
        hypothesis.reject()
    for impl, kernels in IMPLS:
        check(case, minattn(case, impl, kernels), want, f"{impl} ({kernels}) {spec}")


@given(spec=cases())
@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
def test_every_implementation_matches_pytorch(spec):
    run_drawn(spec)


@pytest.mark.slow
@given(spec=cases(max_len=300, max_dim=40))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_implementation_matches_pytorch_at_block_sizes(spec):
    """Lengths past the flash blocks (64 queries, 128 keys) and past the row kernels' size
    threshold, so that every compiled twin runs."""
    run_drawn(spec)


# -- the issues, one by one ---------------------------------------------------------------------


@pytest.mark.parametrize("fill", ["-1e9", "finfo.min"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
def test_rows_of_a_large_fill(fill, dtype):
    """masked_fill(-1e9) and finfo.min masks with rows that are all fill: PyTorch gives the
    uniform average over the keys (every score rounds to the fill), and its gradients. The
    flash backward recomputes p = exp((s - m) - log l): with a float32 log-sum-exp
    m + log l at |m| ~ 1e9 (a step of 64) log l was lost and dq was off by O(10)."""
    rng = np.random.default_rng(3)
    case = make_case(rng, dtype, (4, 128, 64), (4, 160, 64), (4, 160, 64), fill, (4, 128, 160),
                     dead_rows=20)
    check_all(case)


def test_a_large_offset_keeps_the_softmax():
    """Scores near 1e6 with small differences (a float mask of 1e6 + n / 16, every one exact in
    float32; q = 0): the softmax of the differences. Scaled to base 2 before the max is taken
    off, 1e6 log2(e) rounds to a step of 1/8, and the probabilities move by 10%."""
    rng = np.random.default_rng(4)
    case = make_case(rng, np.float32, (2, 70, 8), (2, 90, 8), (2, 90, 8))
    case["q"][:] = 0
    case["mask"] = (1e6 + rng.integers(0, 48, (70, 90)) / 16).astype(np.float32)
    check_all(case, score_size=0)  # exact scores


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_unscaled_large_scores(dtype):
    """scale = 1e6 (unscaled attention of large scores, near one-hot): a float32 log-sum-exp
    rounded m + log l by up to 1/4, and p at the max by up to 28%."""
    rng = np.random.default_rng(5)
    case = make_case(rng, dtype, (2, 100, 8), (2, 130, 8), (2, 130, 6), scale=1e6)
    check_all(case, score_size=0)  # one-hot rows: rounding the scores moves no probability


@pytest.mark.parametrize("like", ["random", "self"])
def test_float16_is_computed_in_float32(like):
    """float16 with E = 4096 and scale 1: PyTorch computes in float32, so a score above 65504
    (q = k, |q|^2 > 65504) is no overflow, and row sums keep their digits. float16 fused and
    composed attention overflowed to inf/NaN there, and were 0.025 off below it."""
    rng = np.random.default_rng(6)
    std = 4.0 if like == "self" else 1.0
    case = make_case(rng, np.float16, (1, 130, 4096), (1, 130, 4096), (1, 130, 64), scale=1.0)
    case["q"] = (std * rng.standard_normal((1, 130, 4096))).astype(np.float16)
    if like == "self":
        case["k"] = case["q"].copy()  # the diagonal scores |q_i|^2 ~ 65536 > 65504
    for impl in ("composed", "fused", "flash", None):  # None picks fused here
        got = minattn(case, impl)
        assert all(np.isfinite(g).all() and g.dtype == np.float16 for g in got), impl
    check_all(case, score_size=0)  # float32 scores: their rounding is far below float16's


NAN_CASES = {  # name: (where, value, mask, rows that every key is masked out of)
    "NaN in a query": ("q", np.nan, "none", 0),
    "NaN in a key": ("k", np.nan, "none", 0),
    "NaN in a value": ("v", np.nan, "none", 0),
    "NaN in a later key, causal": ("k_last", np.nan, "causal", 0),
    "NaN in a later value, causal": ("v_last", np.nan, "causal", 0),
    "NaN in a float mask": ("mask", np.nan, "float", 0),
    "+inf in a float mask": ("mask", np.inf, "float", 0),
    "NaN in a key, rows fully masked": ("k", np.nan, "bool", 3),
    "+inf in a key": ("k", np.inf, "none", 0),
    "-inf in a key": ("k", -np.inf, "none", 0),
}


@pytest.mark.parametrize("name", list(NAN_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_nan_is_never_hidden(name, dtype):
    """NaN (and inf) inputs give PyTorch's NaN pattern in the output and every gradient. A NaN
    score makes its row NaN also where masked (NaN - inf is NaN), and a NaN value reaches every
    output row through the zero probabilities that multiply it (0 * NaN is NaN); so a NaN
    past the diagonal still counts when is_causal, and dk, dv are NaN wherever PyTorch's
    are (composed and flash used to return finite ones)."""
    where, value, mask, dead_rows = NAN_CASES[name]
    rng = np.random.default_rng(7)
    case = make_case(rng, dtype, (2, 70, 8), (2, 150, 8), (2, 150, 5), mask, (2, 70, 150),
                     dead_rows=dead_rows)
    if where == "mask":
        case["mask"][1, 10, 20] = value
    elif where in ("k_last", "v_last"):
        case[where[0]][1, -1, 2] = value  # a key no query but the last sees
    else:
        case[where][1, 5, 2] = value
    check_all(case)


SHAPES = {  # q, k, v
    "no queries": ((2, 0, 3), (2, 5, 3), (2, 5, 4)),
    "no keys": ((2, 4, 3), (2, 0, 3), (2, 0, 4)),
    "no features": ((2, 4, 0), (2, 5, 0), (2, 5, 4)),
    "no value features": ((2, 4, 3), (2, 5, 3), (2, 5, 0)),
    "no batch": ((0, 4, 3), (0, 5, 3), (0, 5, 4)),
    "one of each": ((1, 1, 1), (1, 1, 1), (1, 1, 1)),
    "2-d": ((4, 3), (5, 3), (5, 2)),
    "broadcast batch": ((2, 3, 4, 3), (1, 3, 5, 3), (2, 1, 5, 2)),
    "keys for every head": ((2, 3, 4, 3), (5, 3), (5, 2)),
}


@pytest.mark.parametrize("mask", ["none", "bool", "causal"])
@pytest.mark.parametrize("shapes", list(SHAPES))
def test_small_and_empty_shapes(shapes, mask):
    rng = np.random.default_rng(8)
    q_shape, k_shape, v_shape = SHAPES[shapes]
    mask_shape = (q_shape[-2], k_shape[-2])
    case = make_case(rng, np.float64, q_shape, k_shape, v_shape, mask, mask_shape, dead_rows=1)
    check_all(case)
