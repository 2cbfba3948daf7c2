"""What ``minattn train`` shows after training: summary rows, the table, the figures.

The figures are the training curves of all runs, each final model's attention maps, and
P, dP and dS of every layer (where the gradient flows through the trained softmax).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ... import core
from .config import TrainConfig
from .loop import loss_and_accuracy
from .tasks import eval_batch


def label_of(result: dict) -> str:
    """The scale of a run (a result, or metrics.json read back, of this version or an
    earlier one) as printed: 'sqrt (1/sqrt(d))', 'unscaled (1)', 'linear (1/d)', '0.5'."""
    return TrainConfig.from_dict(result["config"]).label()


def name_of(result: dict) -> str:
    """The scale's word, for file names: 'sqrt', 'unscaled', 'linear' or the number."""
    return TrainConfig.from_dict(result["config"]).scale_name()


def summary_row(result: dict) -> dict:
    final, history = result["final"], result["history"]
    # the norm of all layers' q and k projection gradients together: sqrt(sum of squares)
    qk = [math.sqrt(sum(v**2 for k, v in h.items() if k.endswith(".qk"))) for h in history]
    # "scale" as metrics.json saves it: the word that --scale takes and `minattn scaling`'s
    # results.json uses, or the number when it has none
    saved = TrainConfig.from_dict(result["config"]).to_dict()["scale"]
    return {"scale": saved, "scale_label": label_of(result), "final_loss": final["loss"],
            "token_acc": final["token_acc"], "seq_acc": final["seq_acc"],
            "greedy_seq_acc": final.get("greedy_seq_acc"),
            "steps_to_target": result["steps_to_target"],
            "time_to_target_s": result["time_to_target_s"],
            "train_time_s": result["train_time_s"],
            "attn_qk_grad_norm_mean": float(np.mean(qk)) if qk else None,
            "attn_qk_grad_norm_last100": float(np.mean(qk[-100:])) if qk else None,
            "attn_entropy_final": final["attn_entropy"]}


def format_table(rows: list[dict], target: float) -> str:
    w = max([10] + [len(r["scale_label"]) for r in rows])  # the column fits the longest label
    head = (f"{'scale':<{w}} {'loss':>8} {'tok acc':>8} {'seq acc':>8} {'greedy':>7} "
            f"{'steps to ' + format(target, '.0%'):>13} {'time':>8} {'|dQK| mean':>10} "
            f"{'entropy (per layer)':<20}")
    lines = [head, "-" * len(head)]
    for r in rows:
        greedy = "-" if r["greedy_seq_acc"] is None else f"{r['greedy_seq_acc']:.3f}"
        steps = "not reached" if r["steps_to_target"] is None else str(r["steps_to_target"])
        ent = " ".join(f"{e:.2f}" for e in r["attn_entropy_final"])
        lines.append(f"{r['scale_label']:<{w}} {r['final_loss']:>8.4f} {r['token_acc']:>8.4f} "
                     f"{r['seq_acc']:>8.3f} {greedy:>7} {steps:>13} "
                     f"{r['train_time_s']:>7.1f}s {r['attn_qk_grad_norm_mean']:>10.3g} {ent:<20}")
    return "\n".join(lines)


def write_figures(out: Path, results: list[dict], log=print) -> list[Path]:
    """Training curves (all runs) and the attention maps of each run's final model."""
    from ... import viz

    try:
        viz.require_matplotlib()
    except ImportError as exc:
        log(f"no figures: {exc}")
        return []
    paths = [out / "training_curves.png"]
    viz.training_curves({label_of(r): r for r in results},
                        path=paths[0], target=results[0]["config"]["target"])
    for r in results:
        model, task = r["model"], r["task"]
        inputs, _ = eval_batch(task, TrainConfig.from_dict(r["config"]))
        with core.no_grad():
            model.eval()
            _, maps = model(core.tensor(inputs[:1], device=model.tok_emb.weight.device),
                            need_weights=True)
            model.train()
        tokens = task.decode(inputs[0])
        name = "attention_" + _slug(name_of(r))
        for i, probs in enumerate(maps):
            path = out / f"{name}_layer{i}.png"
            viz.attention_maps(probs.data[0], tokens, path=path,
                               title=f"layer {i}, scale {label_of(r)}")
            paths.append(path)
        paths += gradient_figures(out, r)
    return paths


def gradient_figures(out: Path, result: dict) -> list[Path]:
    """P, dP and dS of head 0 in every layer of a run's final model, for one held-out
    sequence and its loss: where the trained model's gradient flows, and where a saturated
    softmax stops it (viz.plot_attention_gradients)."""
    from ... import viz

    model, task = result["model"], result["task"]
    config = TrainConfig.from_dict(result["config"])
    inputs, targets = eval_batch(task, config)
    attns = [block.attn for block in model.blocks]
    model.eval()
    for attn in attns:
        attn.record = True
    try:
        loss, _, _ = loss_and_accuracy(model, task, inputs[:1], targets[:1])
        loss.backward()  # fills each recorded heads.grad with dO
    finally:
        model.train()
        for attn in attns:
            attn.record = False
    tokens = task.decode(inputs[0])
    label, name = label_of(result), name_of(result)
    paths = []
    for i, attn in enumerate(attns):
        rec, attn.recorded = attn.recorded, None
        if rec["attn_mask"] is not None or rec["heads"].grad is None:
            continue  # a mask is not drawn; no gradient reached this layer
        path = out / f"gradients_{_slug(name)}_layer{i}.png"
        viz.plot_attention_gradients(
            rec["q"].data[0, 0], rec["k"].data[0, 0], rec["v"].data[0, 0],
            rec["heads"].grad.data[0, 0], scale=rec["scale"], is_causal=rec["is_causal"],
            tokens=tokens, path=path, title=f"layer {i}, head 0, scale {label}")
        paths.append(path)
    for p in model.parameters():
        p.grad = None  # the figure's backward pass is not training
    return paths


def _slug(text: str) -> str:
    return text.replace("/", "_").replace("(", "").replace(")", "").replace(".", "p")
