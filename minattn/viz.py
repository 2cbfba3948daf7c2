"""Pictures: attention maps, the gradient maps of one attention row-set, training curves,
and the computational graph of a tensor as Graphviz DOT text.

matplotlib is optional and imported only inside the plotting functions (``import
minattn.viz`` never pulls it in); without it they raise an ImportError that says how to
install it. ``to_dot`` and ``attention_gradients`` need nothing beyond NumPy.

>>> import minattn as ma
>>> x = ma.randn(2, 3, requires_grad=True)
>>> print(ma.viz.to_dot((x @ x.T).softmax(axis=-1)))   # then: dot -Tpng graph.dot -o graph.png
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np

from . import backend
from .core import Tensor

# -- matplotlib, lazily ---------------------------------------------------------------------------


def require_matplotlib():
    """pyplot, or an ImportError naming the fix. Where nobody chose a backend (no MPLBACKEND,
    pyplot not yet imported), the file-only Agg one, which needs no display; a backend the
    user or a notebook chose (Jupyter's inline one, say) is kept, so figures show there."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("minattn.viz needs matplotlib for figures: pip install matplotlib "
                          "(or pip install minattn[plot])") from None
    if "MPLBACKEND" not in os.environ and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg", force=False)  # figures go to files; no display needed
    import matplotlib.pyplot as plt

    return plt


def _host(x) -> np.ndarray:
    """A NumPy copy of a Tensor, backend array or nested list."""
    if isinstance(x, Tensor):
        x = x.data
    return backend.to_numpy(x) if backend.is_cupy_array(x) or isinstance(x, np.ndarray) \
        else np.asarray(x)


def _finish(fig, path):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


# -- attention maps --------------------------------------------------------------------------------


def attention_maps(probs, tokens=None, key_tokens=None, title=None, path=None):
    """One heat map per head of attention weights (H, L, S) (or one map (L, S)), with the
    query tokens down the side and the key tokens along the top. Returns the Figure.

    >>> out, weights = mha(x, is_causal=True, need_weights=True)   # (B, H, L, S)
    >>> attention_maps(weights[0], tokens=list("hello"), path="attention.png")
    """
    plt = require_matplotlib()
    probs = _host(probs)
    if probs.ndim == 2:
        probs = probs[None]
    if probs.ndim != 3:
        raise ValueError(f"attention_maps expects weights of shape (H, L, S) or (L, S), got "
                         f"{probs.shape}")
    H, L, S = probs.shape
    key_tokens = tokens if key_tokens is None else key_tokens
    cols = math.ceil(math.sqrt(H))  # 4 heads: 2 x 2
    rows = math.ceil(H / cols)
    size = max(2.5, 0.22 * max(L, S))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.axis("off")
            continue
        im = ax.imshow(probs[h], cmap="viridis", vmin=0.0, vmax=max(float(probs[h].max()), 1e-9))
        ax.set_title(f"head {h}", fontsize=10)
        if tokens is not None:
            ax.set_yticks(range(L), [str(t) for t in tokens][:L], fontsize=9)
        if key_tokens is not None:
            ax.set_xticks(range(S), [str(t) for t in key_tokens][:S], fontsize=9)
        ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
        ax.set_xlabel("key", fontsize=9)
        ax.set_ylabel("query", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


def attention_gradients(q, k, v, dout, scale=None, is_causal: bool = False) -> dict:
    """The backward pass of one attention row-set, written out (float64, on the host):

        S = scale * q k^T (+ causal mask)   P = softmax(S)   O = P v
        dP = dO v^T       dS = P * (dP - rowsum(dP * P))
        dq = scale * dS k     dk = scale * dS^T q     dv = P^T dO

    q (L, E), k (S, E), v (S, Ev), dout (L, Ev): one head of one sequence. Returns the
    dict of S, P, O, dP, dS, dq, dk, dv as NumPy arrays.
    """
    q, k, v, dout = (_host(a).astype(np.float64) for a in (q, k, v, dout))
    if q.ndim != 2 or k.ndim != 2 or v.ndim != 2 or dout.ndim != 2:
        raise ValueError(f"attention_gradients works on one row-set: q (L, E), k (S, E), "
                         f"v (S, Ev), dout (L, Ev); got {q.shape}, {k.shape}, {v.shape}, "
                         f"{dout.shape} (pick one batch element and head first)")
    L, S = q.shape[0], k.shape[0]
    if k.shape[1] != q.shape[1] or v.shape[0] != S or dout.shape != (L, v.shape[1]):
        raise ValueError(f"attention_gradients: shapes do not fit: q {q.shape}, k {k.shape}, "
                         f"v {v.shape}, dout {dout.shape}")
    scale = 1 / math.sqrt(q.shape[1]) if scale is None else float(scale)
    scores = scale * q @ k.T  # (L, S)
    if is_causal:
        scores = np.where(np.tril(np.ones((L, S), dtype=bool)), scores, -np.inf)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = e / e.sum(axis=-1, keepdims=True)  # (L, S)
    dprobs = dout @ v.T  # (L, S)
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))  # (L, S)
    return {"S": scores, "P": probs, "O": probs @ v, "dP": dprobs, "dS": dscores,
            "dq": scale * dscores @ k, "dk": scale * dscores.T @ q, "dv": probs.T @ dout}


def plot_attention_gradients(q, k, v, dout, scale=None, is_causal: bool = False, tokens=None,
                             key_tokens=None, title=None, path=None, stacked: bool = False):
    """P beside the gradient maps dP and dS (see ``attention_gradients``), panels (a) to
    (c); ``stacked`` puts them one under the other, to read in a narrow column (a docs
    page). dS is small where P is near 0 or 1: a saturated softmax passes no gradient."""
    plt = require_matplotlib()
    maps = attention_gradients(q, k, v, dout, scale, is_causal)
    key_tokens = tokens if key_tokens is None else key_tokens
    L, S = maps["P"].shape
    size = max(3.0, 0.25 * max(L, S))
    shape, figsize = ((3, 1), (size + 1.5, 3 * size)) if stacked else \
        ((1, 3), (3 * size + 1.5, size))
    fig, axes = plt.subplots(*shape, figsize=figsize)
    panels = [("(a) P = softmax(S)", maps["P"], "viridis", 0.0, 1.0)]
    for name, label in (("dP", "(b) dP = dO V^T"), ("dS", "(c) dS = P * (dP - rowsum(dP * P))")):
        m = maps[name]
        bound = max(float(np.abs(m[np.isfinite(m)]).max(initial=0.0)), 1e-12)
        panels.append((label, m, "RdBu_r", -bound, bound))
    for ax, (label, m, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(label, fontsize=10)
        if tokens is not None:
            ax.set_yticks(range(L), [str(t) for t in tokens][:L], fontsize=9)
        if key_tokens is not None:
            ax.set_xticks(range(S), [str(t) for t in key_tokens][:S], fontsize=9)
        ax.set_xlabel("key", fontsize=9)
        ax.set_ylabel("query", fontsize=9)
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        bar.ax.tick_params(labelsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


# -- training curves -------------------------------------------------------------------------------


def _smooth(values, window: int):
    values = np.asarray(values, dtype=float)
    if len(values) < window or window <= 1:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[:window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def training_curves(runs, path=None, target=None, title=None):
    """Training loss, held-out accuracy, attention q/k gradient norm and attention entropy
    over the steps, one line per run. ``runs``: a result of ``minattn.tools.train.train`` (dict
    with "history" and "evals") or a dict label -> such results."""
    plt = require_matplotlib()
    from matplotlib.ticker import LogFormatter

    if "history" in runs:
        runs = {"run": runs}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    (ax_loss, ax_acc), (ax_grad, ax_ent) = axes
    for label, r in runs.items():
        hist, evals = r["history"], r["evals"]
        steps = [h["step"] for h in hist]
        window = max(1, len(hist) // 50)
        ax_loss.plot(steps, _smooth([h["loss"] for h in hist], window), label=label)
        if evals:
            ax_acc.plot([e["step"] for e in evals], [e["token_acc"] for e in evals],
                        marker=".", label=label)
            ax_ent.plot([e["step"] for e in evals],
                        [float(np.mean(e["attn_entropy"])) for e in evals], marker=".",
                        label=label)
        qk = [math.sqrt(sum(v**2 for k, v in h.items() if k.endswith(".qk"))) for h in hist]
        ax_grad.plot(steps, _smooth(qk, window), label=label)
    if target is not None:
        ax_acc.axhline(target, color="gray", linestyle=":", label=f"target {target:.0%}")
    ax_loss.set(title="(a) training loss (answer positions)", xlabel="step", yscale="log")
    ax_acc.set(title="(b) held-out token accuracy", xlabel="step", ylim=(0, 1.01))
    ax_grad.set(title="(c) gradient norm of the attention q/k projections", xlabel="step",
                yscale="log")
    ax_ent.set(title="(d) attention entropy (nats, answer rows)", xlabel="step")
    for ax in (ax_loss, ax_grad):  # 2.5 and 0.01, not 2.5 x 10^0 and 10^-2
        ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
        ax.tick_params(which="both", labelsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


# -- the graph as DOT ------------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(t: Tensor, params=None, max_nodes: int = 5000) -> str:
    """The computational graph behind ``t`` as Graphviz DOT text: one ellipse per op (its
    Function's class name), one box per tensor (name or role, shape, dtype); edges run
    from inputs to ops to outputs. ``params``: a Module, or a dict name -> tensor, to name
    the leaves. Render it with ``dot -Tsvg graph.dot -o graph.svg``.

    Call it **before** ``backward()``: backward frees each op's saved inputs as it goes
    (unless ``retain_graph=True``), and with them the graph; on a freed graph to_dot raises.

    >>> print(to_dot(model(x), params=model))
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"to_dot expects a Tensor, got {type(t).__name__}")
    names = {}
    if params is not None:
        items = params.named_parameters() if hasattr(params, "named_parameters") \
            else params.items()
        names = {id(p): name for name, p in items}
    lines = ["digraph minattn {", "  node [fontname=Helvetica, fontsize=10];",
             "  edge [arrowsize=0.6];"]
    seen, stack, count = {id(t)}, [t], 0
    while stack:
        x = stack.pop()
        count += 1
        if count > max_nodes:
            raise ValueError(f"to_dot: the graph has more than {max_nodes} tensors; raise "
                             "max_nodes to draw it anyway")
        shape = str(x.shape) if x.shape else "scalar"
        if id(x) in names:
            role, style = names[id(x)], 'style=filled, fillcolor="#cfe2ff"'
        elif x._ctx is None:
            role, style = ("input" if x.requires_grad else "constant"), \
                ('style=filled, fillcolor="#e8f5e9"' if x.requires_grad else "style=dashed")
        else:
            role, style = "", "style=solid"
        if x is t:
            role, style = ("output\n" + role).strip(), 'style="filled,bold", fillcolor="#fff3cd"'
        label = f"{role}\n{shape} {x.dtype}".strip()
        lines.append(f"  t{id(x)} [shape=box, label={_quote(label)}, {style}];")
        fn = x._ctx
        if fn is None:
            continue
        inputs = getattr(fn, "inputs", None)
        if inputs is None:
            raise RuntimeError(f"to_dot: the graph behind this tensor was freed by backward() "
                               f"(at {type(fn).__name__}); call to_dot before backward, or "
                               "use backward(retain_graph=True)")
        lines.append(f"  f{id(fn)} [shape=ellipse, label={_quote(type(fn).__name__)}, "
                     'style=filled, fillcolor="#eeeeee"];')
        lines.append(f"  f{id(fn)} -> t{id(x)};")
        for inp in inputs:
            lines.append(f"  t{id(inp)} -> f{id(fn)};")
            if id(inp) not in seen:
                seen.add(id(inp))
                stack.append(inp)
    lines.append("}")
    return "\n".join(lines)
