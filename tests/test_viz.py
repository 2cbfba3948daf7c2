"""Pictures: the graph as DOT, the attention gradient maps (against autograd), and the
figures (written to PNG files when matplotlib is installed)."""

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minattn as ma
import minattn.functional as F
from minattn import viz


def f64(*shape, requires_grad=True):
    return ma.randn(*shape, dtype="float64", requires_grad=requires_grad)


# -- to_dot ----------------------------------------------------------------------------------------


def test_to_dot_names_ops_shapes_and_parameters():
    layer = ma.nn.Linear(3, 4)
    x = ma.randn(2, 3)
    out = layer(x).softmax(axis=-1)
    dot = viz.to_dot(out, params=layer)
    assert dot.startswith("digraph minattn {") and dot.rstrip().endswith("}")
    for op in ("MatMul", "Transpose", "Add", "Softmax"):
        assert f'label="{op}"' in dot
    assert "weight\\n(4, 3) float32" in dot and "bias\\n(4,) float32" in dot
    assert "output\\n(2, 4) float32" in dot
    assert "constant\\n(2, 3) float32" in dot  # x does not require grad
    # one edge from each op to its output and one from each input to the op
    assert dot.count("->") == 4 + (1 + 2 + 2 + 1)


def test_to_dot_draws_fan_out_once_per_use():
    x = ma.randn(3, requires_grad=True)
    dot = viz.to_dot(x * x + x)
    node = re.search(r"(t\d+) \[shape=box, label=\"input", dot).group(1)
    assert dot.count(f"{node} -> ") == 3  # x feeds Mul twice and Add once
    assert dot.count(f"{node} [") == 1  # but is one node


def test_to_dot_refuses_a_freed_graph_and_works_with_retain_graph():
    x = ma.randn(2, 2, requires_grad=True)
    y = (x @ x).tanh()
    y.backward(ma.ones(2, 2), retain_graph=True)
    assert "Tanh" in viz.to_dot(y)
    y.backward(ma.ones(2, 2))
    with pytest.raises(RuntimeError, match="freed by backward.*before backward"):
        viz.to_dot(y)


def test_to_dot_of_a_leaf_and_of_a_transformer():
    assert viz.to_dot(ma.randn(3)).count("[shape=box") == 1
    model = ma.nn.Transformer(vocab_size=5, max_len=4, embed_dim=8, num_heads=2, num_layers=1)
    dot = viz.to_dot(model(ma.tensor([[1, 2, 3]])), params=model)
    assert "blocks.0.attn.q_proj.weight" in dot and "LayerNormFunction" in dot
    assert "EmbeddingFunction" in dot
    with pytest.raises(TypeError, match="Tensor"):
        viz.to_dot(np.zeros(3))


def test_to_dot_is_valid_graphviz_when_dot_is_installed(tmp_path):
    import shutil

    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    x = ma.randn(2, 3, requires_grad=True)
    (tmp_path / "g.dot").write_text(viz.to_dot((x @ x.T).softmax()))
    subprocess.run(["dot", "-Tsvg", str(tmp_path / "g.dot"), "-o", str(tmp_path / "g.svg")],
                   check=True)


# -- attention gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("is_causal, scale", [(False, None), (True, None), (False, 1.0)])
def test_attention_gradients_match_autograd(is_causal, scale):
    L, S, E, Ev = 4, 4, 3, 2
    q, k, v = f64(L, E), f64(S, E), f64(S, Ev)
    dout = np.random.default_rng(0).normal(size=(L, Ev))
    maps = viz.attention_gradients(q, k, v, dout, scale=scale, is_causal=is_causal)

    # autograd through the composed attention: scores as a leaf, so its gradient is dS
    s = 1 / np.sqrt(E) if scale is None else scale
    scores = ma.tensor(s * q.numpy() @ k.numpy().T, requires_grad=True)
    masked = ma.where(np.tril(np.ones((L, S), bool)), scores, -np.inf) if is_causal else scores
    probs = F.softmax(masked, axis=-1)
    probs.retain_grad()
    (probs @ v).backward(dout)
    np.testing.assert_allclose(maps["P"], probs.numpy(), rtol=1e-12)
    np.testing.assert_allclose(maps["dP"], probs.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(maps["dS"], scores.grad.numpy(), rtol=1e-10, atol=1e-13)

    v.grad = None  # the check above sent a gradient into v already
    out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=scale,
                                         impl="composed")
    out.backward(dout)
    np.testing.assert_allclose(maps["O"], out.numpy(), rtol=1e-12)
    for name, t in (("dq", q), ("dk", k), ("dv", v)):
        np.testing.assert_allclose(maps[name], t.grad.numpy(), rtol=1e-10, atol=1e-13,
                                   err_msg=name)
    np.testing.assert_allclose(maps["dS"].sum(axis=-1), 0, atol=1e-12)  # rows of dS sum to 0


def test_attention_gradients_check_shapes():
    with pytest.raises(ValueError, match="one row-set"):
        viz.attention_gradients(f64(2, 4, 3), f64(4, 3), f64(4, 2), np.ones((4, 2)))
    with pytest.raises(ValueError, match="do not fit"):
        viz.attention_gradients(f64(4, 3), f64(5, 3), f64(4, 2), np.ones((4, 2)))


# -- figures ---------------------------------------------------------------------------------------


def test_importing_viz_does_not_import_matplotlib():
    code = "import sys, minattn; minattn.viz.to_dot; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        viz.attention_maps(np.eye(3))


@pytest.fixture
def plt():
    plt = pytest.importorskip("matplotlib.pyplot")
    yield plt
    plt.close("all")


def test_attention_maps_writes_a_png(plt, tmp_path):
    mha = ma.nn.MultiHeadAttention(8, num_heads=4)
    _, weights = mha(ma.randn(1, 5, 8), is_causal=True, need_weights=True)
    fig = viz.attention_maps(weights[0], tokens=list("hello"), path=tmp_path / "a.png",
                             title="causal")
    assert (tmp_path / "a.png").stat().st_size > 1000
    axes = [ax for ax in fig.axes if ax.get_title().startswith("head")]
    assert len(axes) == 4
    assert [t.get_text() for t in axes[0].get_yticklabels()] == list("hello")
    with pytest.raises(ValueError, match=r"\(H, L, S\)"):
        viz.attention_maps(np.ones((1, 2, 3, 3)))


def test_plot_attention_gradients_writes_a_png(plt, tmp_path):
    fig = viz.plot_attention_gradients(f64(4, 3), f64(4, 3), f64(4, 2), np.ones((4, 2)),
                                       is_causal=True, tokens=list("abcd"),
                                       path=tmp_path / "g.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("(a) P =") and titles[1].startswith("(b) dP =")
    assert titles[2].startswith("(c) dS =")
    assert (tmp_path / "g.png").stat().st_size > 1000
    wide, tall = fig.get_size_inches()
    stacked = viz.plot_attention_gradients(f64(4, 3), f64(4, 3), f64(4, 2), np.ones((4, 2)),
                                           tokens=list("abcd"), stacked=True)
    assert wide > tall and stacked.get_size_inches()[1] > stacked.get_size_inches()[0]
    images = [ax for ax in stacked.axes if ax.get_images()]
    assert [ax.get_position().y0 for ax in images] == sorted(
        (ax.get_position().y0 for ax in images), reverse=True), "one panel under the other"


def test_training_curves_writes_a_png(plt, tmp_path):
    history = [{"step": s, "loss": 2.0 / s, "layer0.qk": 0.1, "layer0.vo": 0.2}
               for s in range(1, 101)]
    evals = [{"step": s, "token_acc": s / 100, "attn_entropy": [1.0, 2.0]}
             for s in range(10, 101, 10)]
    run = {"history": history, "evals": evals}
    viz.training_curves(run, path=tmp_path / "one.png")
    viz.training_curves({"sqrt": run, "unscaled": run}, path=tmp_path / "two.png", target=0.99)
    assert (tmp_path / "one.png").exists() and (tmp_path / "two.png").exists()


def test_a_backend_the_user_chose_is_kept(tmp_path):
    """viz picks the file-only Agg backend only where nobody chose one: in a notebook (or
    with MPLBACKEND set) the figures must reach the chosen backend, to be shown."""
    pytest.importorskip("matplotlib")
    code = ("import matplotlib, minattn as ma, numpy as np\n"
            "from minattn import viz\n"
            "q = ma.tensor(np.eye(3))\n"
            "viz.plot_attention_gradients(q, q, q, ma.tensor(np.ones((3, 3))))\n"
            "print(matplotlib.get_backend())\n")
    run = functools.partial(subprocess.run, [sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    chosen = run(env={**env, "MPLBACKEND": "svg"})
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.split()[-1].lower() == "svg"
    default = run(env=env)
    assert default.returncode == 0, default.stderr
    assert default.stdout.split()[-1].lower() == "agg"
