"""``minattn gradcheck``: every op's backward against central differences, as one table.

Each case is (name, function, input shapes). Inputs are float64 normals from a fixed
seed; ``log``/``sqrt`` get positive inputs. The tables here, ``CASES`` (the primitive ops),
``ATTENTION_CASES`` (softmax, cross-entropy, attention) and ``LAYER_CASES`` (the layers'
own ops), are what the command and the test suite run, so a new op is covered once it is
listed here.
"""

from __future__ import annotations

import numpy as np

from .. import backend, core
from ..functional import cross_entropy, log_softmax, scaled_dot_product_attention, softmax
from ..gradcheck import gradcheck_report
from ..nn.functional_nn import embedding, gelu, layer_norm, layer_norm_composed
from .options import DEVICES, check_device, nonnegative_int


def _positive(shape, rng):
    return rng.uniform(0.5, 2.0, size=shape)


CASES = [
    ("add (broadcast)", lambda a, b: a + b, [(3, 4), (4,)]),
    ("sub (broadcast)", lambda a, b: a - b, [(3, 1), (1, 4)]),
    ("mul (broadcast)", lambda a, b: a * b, [(2, 3, 4), (3, 1)]),
    ("div", lambda a, b: a / b, [(3, 4), ("positive", (3, 4))]),
    ("pow (scalar exponent)", lambda a: a**3, [(3, 4)]),
    ("pow (tensor exponent)", lambda a, b: a**b, [("positive", (3, 4)), (3, 4)]),
    ("neg", lambda a: -a, [(5,)]),
    ("exp", lambda a: a.exp(), [(3, 4)]),
    ("log", lambda a: a.log(), [("positive", (3, 4))]),
    ("sqrt", lambda a: a.sqrt(), [("positive", (3, 4))]),
    ("tanh", lambda a: a.tanh(), [(3, 4)]),
    ("sum (axis)", lambda a: a.sum(axis=1), [(3, 4, 2)]),
    ("mean (keepdims)", lambda a: a.mean(axis=-1, keepdims=True), [(3, 4)]),
    ("max (axis)", lambda a: a.max(axis=0), [(4, 3)]),
    ("matmul (batched, broadcast)", lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),
    ("matmul (1-D)", lambda a, b: a @ b, [(4,), (2, 4, 3)]),
    ("reshape", lambda a: a.reshape(4, 3), [(3, 4)]),
    ("transpose", lambda a: a.transpose(2, 0, 1), [(2, 3, 4)]),
    ("swapaxes", lambda a: a.swapaxes(-1, -2), [(2, 3, 4)]),
    ("getitem (slice)", lambda a: a[1:, ::2], [(3, 4)]),
    ("getitem (repeated index)", lambda a: a[[0, 2, 0]], [(3, 4)]),
]


def make_inputs(shapes, seed: int = 0, device=None) -> list:
    rng = np.random.default_rng(seed)
    inputs = []
    for shape in shapes:
        positive = isinstance(shape[0], str)
        data = _positive(shape[1], rng) if positive else rng.standard_normal(shape)
        inputs.append(core.tensor(data, dtype="float64", requires_grad=True, device=device))
    return inputs


# -- softmax, cross-entropy, attention (minattn.functional) ------------------------------------

_CLASSES = [2, 0, 4, 1]  # cross_entropy targets for logits of shape (4, 5)
_MASK = [[True, True, False, True, False],  # (L=3, S=5); the middle row sees no key at all
         [False, False, False, False, False],
         [True, False, True, True, True]]


def _sdpa_case(impl: str):
    def fn(q, k, v):
        mask = backend.as_array(_MASK, device=q.device)
        return scaled_dot_product_attention(q, k, v, attn_mask=mask, impl=impl)

    return (f"sdpa {impl} (mask, masked row)", fn, [(2, 3, 4), (2, 5, 4), (2, 5, 3)])


ATTENTION_CASES = [
    ("softmax (axis=-1)", lambda x: softmax(x, axis=-1), [(3, 5)]),
    ("softmax (axis=0)", lambda x: softmax(x, axis=0), [(4, 3, 2)]),
    ("log_softmax (axis=-1)", lambda x: log_softmax(x, axis=-1), [(3, 5)]),
    ("log_softmax (axis=1)", lambda x: log_softmax(x, axis=1), [(2, 4, 3)]),
    ("cross_entropy", lambda x: cross_entropy(
        x, backend.as_array(_CLASSES, device=x.device)), [(4, 5)]),
    _sdpa_case("composed"),
    _sdpa_case("fused"),
    _sdpa_case("flash"),
    ("sdpa flash (causal, L != S)", lambda q, k, v: scaled_dot_product_attention(
        q, k, v, is_causal=True, scale=0.7, impl="flash"), [(3, 4), (5, 4), (5, 2)]),
]


# -- the layers' own ops (minattn.nn.functional_nn) ----------------------------------------------

LAYER_CASES = [
    ("layer_norm (hand-written)", lambda x, w, b: layer_norm(x, 5, w, b), [(3, 5), (5,), (5,)]),
    ("layer_norm (composed)", lambda x, w, b: layer_norm_composed(x, 5, w, b),
     [(3, 5), (5,), (5,)]),
    ("gelu (erf)", lambda x: gelu(x), [(3, 4)]),
    ("gelu (tanh)", lambda x: gelu(x, approximate="tanh"), [(3, 4)]),
    ("embedding (repeated rows)", lambda w: embedding([[0, 2], [2, 2]], w), [(4, 3)]),
]


# -- PyTorch's views and shapes (ops/shape.py) ---------------------------------------------------

from ..ops import shape as _shape  # noqa: E402 - here, beside the cases that use it

SHAPE_CASES: list = [
    ("transpose (two dims swap)", lambda a: a.transpose(0, 2), [(2, 3, 4)]),
    ("transpose (2-D, PyTorch's swap)", lambda a: a.transpose(0, 1), [(3, 4)]),
    ("permute", lambda a: a.permute(2, 0, 1), [(2, 3, 4)]),
    ("t", lambda a: a.t(), [(3, 4)]),
    ("mT", lambda a: a.mT, [(2, 3, 4)]),
    ("view (-1 inferred)", lambda a: a.view(4, -1), [(3, 4)]),
    ("unsqueeze", lambda a: a.unsqueeze(-2), [(3, 4)]),
    ("squeeze (dims, one not 1)", lambda a: a.squeeze((1, 2)), [(3, 1, 4)]),
    ("flatten (1, 2)", lambda a: a.flatten(1, 2), [(2, 3, 4)]),
    ("unflatten", lambda a: a.unflatten(1, (2, -1)), [(2, 6)]),
    ("contiguous (of a transpose)", lambda a: a.t().contiguous(), [(3, 4)]),
    ("expand (stretched, new leading)", lambda a: a.expand(2, 3, 4), [(3, 1)]),
    ("expand_as", lambda a, b: a.expand_as(b) * b, [(1, 4), (3, 4)]),
    ("repeat", lambda a: a.repeat(2, 1, 3), [(2, 3)]),
    ("repeat_interleave (int, dim)", lambda a: a.repeat_interleave(2, dim=1), [(2, 3)]),
    ("repeat_interleave (counts)", lambda a: a.repeat_interleave([2, 0, 3], dim=0), [(3, 2)]),
    ("repeat_interleave (flattened)", lambda a: a.repeat_interleave(3), [(2, 2)]),
    ("narrow", lambda a: a.narrow(1, 1, 2), [(3, 4)]),
    ("split (sections)", lambda a: a.split([1, 3], dim=1), [(2, 4)]),
    ("split (size, last shorter)", lambda a: a.split(2), [(5, 2)]),
    ("chunk", lambda a: a.chunk(3, dim=-1), [(2, 5)]),
    ("unbind", lambda a: a.unbind(1), [(2, 3)]),
    ("flip", lambda a: a.flip(0, -1), [(3, 4)]),
    ("cat (dim 1)", lambda a, b: _shape.cat([a, b, a], dim=1), [(2, 3), (2, 1)]),
    ("stack (dim -1)", lambda a, b: _shape.stack([a, b], dim=-1), [(2, 3), (2, 3)]),
]


# -- selection, math and the reductions PyTorch has (ops/select.py, elementwise, reduce, matmul) --

_MASK_35 = np.array([[True, False, False, True, False], [False] * 5, [True] * 5])


SELECT_CASES = [
    ("masked_fill", lambda a: a.masked_fill(backend.as_array(_MASK_35, device=a.device), -2.0),
     [(3, 5)]),
    ("gather (repeated index)", lambda a: a.gather(1, backend.as_array(
        [[0, 0, 2], [4, 1, 1], [3, 3, 3]], device=a.device)), [(3, 5)]),
    ("index_select", lambda a: a.index_select(0, backend.as_array([2, 0, 2], device=a.device)),
     [(3, 4)]),
    ("tril (diagonal=-1)", lambda a: a.tril(-1), [(2, 4, 4)]),
    ("triu", lambda a: a.triu(), [(4, 3)]),
    ("topk", lambda a: a.topk(2, dim=-1).values, [(3, 5)]),
    ("sort (descending)", lambda a: a.sort(dim=0, descending=True).values, [(4, 3)]),
    ("max (dim): values", lambda a: a.max(dim=1).values, [(3, 5)]),
    ("min (dim, keepdim)", lambda a: a.min(0, keepdim=True).values, [(3, 5)]),
    ("amax (two dims)", lambda a: a.amax(dim=(0, 2)), [(2, 3, 4)]),
    ("var (unbiased)", lambda a: a.var(dim=1), [(3, 5)]),
    ("std (correction=0)", lambda a: a.std(dim=-1, correction=0, keepdim=True), [(3, 5)]),
    ("logsumexp", lambda a: a.logsumexp(1), [(3, 5)]),
    ("sin", lambda a: a.sin(), [(3, 4)]),
    ("cos", lambda a: a.cos(), [(3, 4)]),
    ("log1p", lambda a: a.log1p(), [("positive", (3, 4))]),
    ("sigmoid", lambda a: a.sigmoid(), [(3, 4)]),
    ("clamp", lambda a: a.clamp(min=-0.5, max=0.7), [(4, 5)]),
    ("maximum (broadcast)", lambda a, b: a.maximum(b), [(3, 4), (4,)]),
    ("minimum", lambda a, b: a.minimum(b), [(3, 4), (3, 4)]),
    ("bmm", lambda a, b: a.bmm(b), [(2, 3, 4), (2, 4, 2)]),
    ("einsum (q k^T per head)", lambda q, k: _einsum("bhqd,bhkd->bhqk", q, k),
     [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ("einsum (summed alone)", lambda a, b: _einsum("ij,jk->i", a, b), [(3, 4), (4, 2)]),
]


def _einsum(spec, *operands):
    from ..ops import einsum
    return einsum(spec, *operands)


# -- the layers and losses of nn.functional -------------------------------------------------------

def _nn_cases() -> list:
    from .. import functional as F

    classes = [[2, -1, 0], [4, 1, -1]]  # (N=2, d1=3) class targets, -1 ignored
    return [
        ("sigmoid", lambda x: F.sigmoid(x * 3), [(3, 4)]),
        ("silu", lambda x: F.silu(x * 3), [(3, 4)]),
        ("logsigmoid", lambda x: F.logsigmoid(x * 3), [(3, 4)]),
        ("pad (grow)", lambda x: F.pad(x, (1, 2, 0, 1), value=0.5), [(2, 3)]),
        ("pad (grow and crop)", lambda x: F.pad(x, (-1, 2, 1, -1)), [(2, 3, 4)]),
        ("cross_entropy (N, C, d1), smoothing", lambda x: F.cross_entropy(
            x, backend.as_array(classes, device=x.device), ignore_index=-1,
            label_smoothing=0.2), [(2, 5, 3)]),
        ("cross_entropy (probabilities)", lambda x, t: F.cross_entropy(x, F.softmax(t, dim=1)),
         [(3, 4), (3, 4)]),
        ("mse_loss", lambda x, y: F.mse_loss(x, y), [(3, 4), (3, 4)]),
        ("bce_with_logits (pos_weight)", lambda x, t: F.binary_cross_entropy_with_logits(
            x * 3, F.sigmoid(t),
            pos_weight=backend.as_array([0.5, 2.0, 1.0, 3.0], device=x.device)),
         [(3, 4), (3, 4)]),
        ("linear", lambda x, w, b: F.linear(x, w, b), [(2, 3), (4, 3), (4,)]),
    ]


NN_CASES: list = _nn_cases()


# -- in-place ops and item assignment (core.py) ---------------------------------------------------

def _setitem(x, v):
    y = x * 1.0
    y[1:3] = v  # (2, 3) rows from a (3,) value
    return y


def _copy(x, v):
    y = x * 1.0
    y.copy_(v)
    return y


INPLACE_CASES = [
    ("setitem", _setitem, [(4, 3), (3,)]),
    ("copy_", _copy, [(2, 3), (3,)]),
    ("remainder", lambda a, b: a % (b * b + 0.5), [(3, 4), (3, 4)]),
    ("clone", lambda x: x.clone(), [(3,)]),
]


def all_cases() -> list:
    """The primitive ops, then softmax, cross-entropy and attention, then the layers, then the
    PyTorch surface: views, selection and math, nn.functional, in-place ops."""
    return (CASES + ATTENTION_CASES + LAYER_CASES + SHAPE_CASES + SELECT_CASES + NN_CASES
            + INPLACE_CASES)


def run_all(seed: int = 0, device=None) -> list[dict]:
    rows = []
    for name, fn, shapes in all_cases():
        report = gradcheck_report(fn, make_inputs(shapes, seed, device))
        for c in report.checks:
            rows.append({"op": name, "input": c.index, "shape": c.shape, "mode": c.mode,
                         "max_abs_error": c.max_abs_error, "max_rel_error": c.max_rel_error,
                         "passed": c.passed})
    return rows


def format_table(rows) -> str:
    head = f"{'op':<32} {'in':>2}  {'shape':<14} {'mode':<11} {'max abs err':>11} " \
           f"{'max rel err':>11}  ok"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['op']:<32} {r['input']:>2}  {str(r['shape']):<14} {r['mode']:<11} "
                     f"{r['max_abs_error']:>11.2e} {r['max_rel_error']:>11.2e}  "
                     f"{'yes' if r['passed'] else 'NO'}")
    failed = sum(not r["passed"] for r in rows)
    lines.append(f"{len(rows) - failed} passed, {failed} failed (float64, central differences, "
                 "random upstream gradients)")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed of the random inputs (0 or more)")
    parser.add_argument("--device", choices=DEVICES, default=None,
                        help="cpu or cuda (default: MINATTN_DEVICE, else cpu)")


def run(args) -> int:
    rows = run_all(args.seed, check_device(args.device))
    print(format_table(rows))
    return 0 if all(r["passed"] for r in rows) else 1
