"""``minattn train``: a tiny decoder-only transformer on toy tasks that need attention.

Tasks (token ids; ``|`` is the delimiter token):

- ``reverse``: ``x1 .. xn | xn .. x1``; the model reads the first half and must write it
  backwards, so position n+j has to look back at position n-1-j: attention's job;
- ``copy``:    ``x1 .. xn | x1 .. xn``, the same with the order kept;
- ``chars``:   next-character prediction on a small public-domain text shipped in
  ``minattn/data`` (held-out: its last tenth).

The loss and the accuracy count only the positions that have an answer (the second
half for reverse and copy). ``--compare-scaling`` trains the same model from the same
seeds with ``scale=None`` (1/sqrt(d)) and ``scale=1.0`` (unscaled; ``--scales`` adds
``1/d``) and reports loss, accuracy, steps to the target, the gradient norms of the
attention projections and the attention entropy over training.

Reproducibility and resuming: every random draw of step t comes from (seed, t): the
batch from ``numpy.random.default_rng([seed, 0, t])``, dropout from minattn's generator
reseeded at each step. A checkpoint (model, optimizer state, step, history, the seed that
the random state derives from) is written atomically every ``--checkpoint-every`` steps,
at Ctrl-C and at the end, so ``--resume`` continues an interrupted run to exactly the
parameters an uninterrupted run reaches: bit for bit on the CPU; on a GPU up to float
rounding, as two uninterrupted GPU runs (the embedding's scatter-add uses atomics there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import backend, core, nn, optim
from . import functional as F
from .experiments.storage import set_aside

CHECKPOINT = "checkpoint.npz"
TEXT = Path(__file__).parent / "data" / "public_domain.txt"


# -- configuration ------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything that decides a run's result (so a checkpoint records it whole)."""

    task: str = "reverse"  # reverse | copy | chars
    seq_len: int = 16  # symbols to reverse or copy; context length / 2 for chars
    num_symbols: int = 10  # alphabet of reverse and copy (plus the delimiter)
    text: str | None = None  # chars: a UTF-8 text file (default: the shipped one)
    embed_dim: int = 64
    num_heads: int = 4
    num_layers: int = 2
    mlp_ratio: float = 4
    positions: str = "learned"
    dropout: float = 0.0
    scale: float | None = None  # None: 1/sqrt(head_dim); 1.0: unscaled
    impl: str | None = None  # attention implementation (None: the default for the device)
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decay from lr to lr * min_lr_ratio
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 25
    eval_size: int = 512
    target: float = 0.99  # held-out token accuracy that counts as solved
    checkpoint_every: int = 200
    device: str | None = None
    dtype: str = "float32"

    def label(self) -> str:
        return scale_label(self.scale)


def scale_label(scale) -> str:
    return "1/sqrt(d)" if scale is None else f"{scale:g}"


def parse_scale(text: str, head_dim: int) -> float | None:
    """'none' -> None (1/sqrt(d)); '1' -> 1.0; '1/d' -> 1/head_dim; any float."""
    text = text.strip().lower()
    if text in ("none", "default", "1/sqrt(d)"):
        return None
    if text == "1/d":
        return 1.0 / head_dim
    return float(text)


def quick(config: TrainConfig) -> TrainConfig:
    """A few steps of a small model: seconds, for tests and smoke runs."""
    return dataclasses.replace(config, seq_len=min(config.seq_len, 6), embed_dim=32,
                               num_heads=2, num_layers=1, steps=30, batch_size=16, warmup=5,
                               eval_every=10, eval_size=64, checkpoint_every=10)


# -- tasks: every batch is a function of (seed, step) ---------------------------------------------


class SequenceTask:
    """reverse / copy: ``x | f(x)`` with x uniform over ``num_symbols`` symbols."""

    def __init__(self, config: TrainConfig):
        self.kind, self.n, self.symbols = config.task, config.seq_len, config.num_symbols
        self.delimiter = self.symbols  # the last token id
        self.vocab_size = self.symbols + 1
        self.max_len = 2 * self.n  # inputs drop the last token of x | f(x)
        self.answer_start = self.n  # input position n (the delimiter) predicts f(x)[0]
        self.vocab = [str(i) if i < 10 else chr(ord("a") + i - 10) for i in range(self.symbols)]
        self.vocab.append("|")

    def sample(self, rng, batch: int):
        """(inputs, targets), both (batch, 2n) int64: targets are inputs shifted by one."""
        x = rng.integers(0, self.symbols, size=(batch, self.n))  # (B, n)
        answer = x[:, ::-1] if self.kind == "reverse" else x
        delim = np.full((batch, 1), self.delimiter)
        seq = np.concatenate([x, delim, answer], axis=1)  # (B, 2n + 1)
        return seq[:, :-1], seq[:, 1:]

    def decode(self, ids) -> list[str]:
        return [self.vocab[int(i)] for i in ids]


class CharTask:
    """Next-character prediction on a text; the last tenth is held out."""

    def __init__(self, config: TrainConfig):
        path = Path(config.text) if config.text else TEXT
        text = path.read_text(encoding="utf-8")
        self.vocab = sorted(set(text))
        self.vocab_size = len(self.vocab)
        ids = np.array([self.vocab.index(c) for c in text], dtype=np.int64)
        split = int(0.9 * len(ids))
        self.train_ids, self.eval_ids = ids[:split], ids[split:]
        self.max_len = 2 * config.seq_len
        self.answer_start = 0
        if len(self.eval_ids) <= self.max_len + 1:
            raise ValueError(f"text {path} is too short ({len(ids)} characters) for a "
                             f"context of {self.max_len}")

    def sample(self, rng, batch: int, held_out: bool = False):
        ids = self.eval_ids if held_out else self.train_ids
        starts = rng.integers(0, len(ids) - self.max_len - 1, size=batch)
        windows = np.stack([ids[s:s + self.max_len + 1] for s in starts])  # (B, L + 1)
        return windows[:, :-1], windows[:, 1:]

    def decode(self, ids) -> list[str]:
        return [repr(self.vocab[int(i)])[1:-1] or " " for i in ids]


def make_task(config: TrainConfig):
    if config.task in ("reverse", "copy"):
        return SequenceTask(config)
    if config.task == "chars":
        return CharTask(config)
    raise ValueError(f"unknown task {config.task!r}: expected reverse, copy or chars")


def train_batch(task, config: TrainConfig, step: int):
    return task.sample(np.random.default_rng([config.seed, 0, step]), config.batch_size)


def eval_batch(task, config: TrainConfig):
    rng = np.random.default_rng([config.seed, 1])
    if isinstance(task, CharTask):
        return task.sample(rng, config.eval_size, held_out=True)
    return task.sample(rng, config.eval_size)


# -- the model, the loss, the schedule ------------------------------------------------------------


def build(config: TrainConfig, task):
    """Model and optimizer, initialised from the seed alone (so scales share their start)."""
    backend.manual_seed(config.seed)
    model = nn.Transformer(task.vocab_size, task.max_len, config.embed_dim, config.num_heads,
                           config.num_layers, positions=config.positions, scale=config.scale,
                           mlp_ratio=config.mlp_ratio, dropout=config.dropout,
                           impl=config.impl, device=config.device, dtype=config.dtype)
    decay = [p for name, p in model.named_parameters() if p.ndim >= 2 and "emb" not in name]
    rest = [p for name, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in name)]
    opt = optim.AdamW([{"params": decay}, {"params": rest, "weight_decay": 0.0}],
                      lr=config.lr, weight_decay=config.weight_decay)
    return model, opt


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio: a function of the step only."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def loss_and_accuracy(model, task, inputs, targets, need_weights=False):
    """Cross-entropy and token accuracy over the answer positions; (loss, acc, maps)."""
    device = model.tok_emb.weight.device
    idx = core.tensor(inputs, device=device)
    out = model(idx, need_weights=need_weights)
    logits, maps = out if need_weights else (out, None)
    s = task.answer_start
    answer = logits[:, s:] if s else logits  # (B, A, V)
    target = backend.as_array(np.ascontiguousarray(targets[:, s:]), device=device)  # (B, A)
    loss = F.cross_entropy(answer.reshape(-1, task.vocab_size), target.reshape(-1))
    correct = answer.data.argmax(axis=-1) == target  # (B, A)
    return loss, correct, maps


def attention_entropy(maps, answer_start: int) -> list[float]:
    """Mean over heads, batch and answer rows of -sum_j p_j log p_j, one value per layer."""
    values = []
    for probs in maps:
        p = backend.to_numpy(probs.data if isinstance(probs, core.Tensor) else probs)
        p = p[..., answer_start:, :]  # (B, H, A, S)
        logp = np.log(np.where(p > 0, p, 1.0))
        values.append(float(-(p * logp).sum(axis=-1).mean()))
    return values


def attention_grad_norms(model) -> dict:
    """||grad|| of each layer's attention projections, query/key and value/output apart."""
    norms = {}
    for i, block in enumerate(model.blocks):
        for group, names in (("qk", ("q_proj", "k_proj")), ("vo", ("v_proj", "out_proj"))):
            params = [p for name, p in block.attn.named_parameters()
                      if name.split(".")[0] in names]
            norms[f"layer{i}.{group}"] = nn.utils.grad_norm(params)
    return norms


@core.no_grad()
def evaluate(model, task, config: TrainConfig, greedy: bool = False) -> dict:
    """Held-out loss, token accuracy, sequence accuracy and attention entropy."""
    model.eval()
    inputs, targets = eval_batch(task, config)
    losses, corrects, entropies = [], [], []
    for lo in range(0, len(inputs), 256):
        loss, correct, maps = loss_and_accuracy(model, task, inputs[lo:lo + 256],
                                                targets[lo:lo + 256], need_weights=True)
        losses.append(loss.item() * len(correct))
        corrects.append(backend.to_numpy(correct))
        entropies.append(attention_entropy(maps, task.answer_start))
    correct = np.concatenate(corrects)
    result = {"loss": sum(losses) / len(correct), "token_acc": float(correct.mean()),
              "seq_acc": float(correct.all(axis=1).mean()),
              "attn_entropy": np.mean(entropies, axis=0).tolist()}
    if greedy and isinstance(task, SequenceTask):
        result["greedy_seq_acc"] = greedy_accuracy(model, task, inputs, targets)
    model.train()
    return result


@core.no_grad()
def greedy_accuracy(model, task, inputs, targets) -> float:
    """Sequences whose whole answer comes out right when the model feeds on its own output."""
    device = model.tok_emb.weight.device
    seq = inputs[:, :task.answer_start + 1].copy()  # x and the delimiter
    for _ in range(task.n):
        logits = model(core.tensor(seq, device=device))  # (B, t, V)
        nxt = backend.to_numpy(logits.data[:, -1].argmax(axis=-1))  # (B,)
        seq = np.concatenate([seq, nxt[:, None]], axis=1)
    answer = seq[:, task.answer_start + 1:]
    return float((answer == targets[:, task.answer_start:]).all(axis=1).mean())


# -- checkpoints ---------------------------------------------------------------------------------


def save_checkpoint(path: Path, model, opt, step: int, config: TrainConfig, state: dict) -> None:
    """Everything to continue exactly: written to a temp file in the same folder, then
    os.replace'd, so a crash mid-write leaves the previous checkpoint intact."""
    arrays = {f"model/{k}": v.numpy() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    scalars = {}
    for i, entry in opt_state["state"].items():
        for k, v in entry.items():
            if hasattr(v, "shape"):
                arrays[f"optim/{i}/{k}"] = backend.to_numpy(v)
            else:
                scalars.setdefault(str(i), {})[k] = v
    meta = {"step": step, "config": dataclasses.asdict(config),
            "param_groups": opt_state["param_groups"], "optim_scalars": scalars,
            "rng": {"scheme": "every draw of step t derives from (seed, t)",
                    "seed": config.seed, "next_step": step},
            **state}
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _publish(tmp: str, path: Path) -> None:
    """Move a finished temp file into place, with the permissions a plain open() gives
    (mkstemp makes it owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> tuple[dict, dict]:
    """(meta, arrays) of a checkpoint written by ``save_checkpoint``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    return meta, arrays


def restore(model, opt, meta: dict, arrays: dict) -> None:
    model.load_state_dict({k[len("model/"):]: v for k, v in arrays.items()
                           if k.startswith("model/")})
    state: dict = {}
    for k, v in arrays.items():
        if k.startswith("optim/"):
            _, i, name = k.split("/", 2)
            state.setdefault(int(i), {})[name] = v
    for i, entry in meta["optim_scalars"].items():
        state.setdefault(int(i), {}).update(entry)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g
              for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


# -- the training loop ---------------------------------------------------------------------------


class _StopFlag:
    """First Ctrl-C: finish the current step, checkpoint, stop. A second one: stop now."""

    def __init__(self):
        self.requested = False
        self._installed = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        except ValueError:  # not the main thread: leave Ctrl-C alone
            pass
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._installed:
            # None: the handler before was not set from Python, so it cannot be put back;
            # Python's own (KeyboardInterrupt) beats leaving this one to swallow a Ctrl-C
            previous = signal.default_int_handler if self._previous is None else self._previous
            signal.signal(signal.SIGINT, previous)


def _progress(total: int, initial: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=True)


def train(config: TrainConfig, out: Path, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, on_step=None, log=print) -> dict:
    """Train one model; return its metrics (also written to ``out/metrics.json``).

    ``stop_after``: stop after that many steps of this call, with a checkpoint (as if
    interrupted). ``on_step(step, model)`` is called after every step (tests use it to
    simulate a crash).
    """
    out = Path(out)
    ckpt = out / CHECKPOINT
    task = make_task(config)
    model, opt = build(config, task)
    step, state = 0, {"history": [], "evals": [], "train_time_s": 0.0, "time_to_target_s": None,
                      "steps_to_target": None}
    if resume and ckpt.exists():
        meta, arrays = load_checkpoint(ckpt)
        saved = TrainConfig(**meta["config"])
        if saved != config:
            diff = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(saved).items()
                    if getattr(config, k) != v}
            raise ValueError(f"--resume: the checkpoint in {out} was made with other settings "
                             f"(saved, now): {diff}; resume with the same settings or use "
                             "another --out")
        restore(model, opt, meta, arrays)
        step = meta["step"]
        state = {k: meta[k] for k in state}
        log(f"resuming {out} at step {step} of {config.steps}")
    elif resume:
        log(f"no checkpoint in {out}: starting from step 0")

    bar = _progress(config.steps, step, progress, f"{config.task} scale={config.label()}")
    started, this_call = time.perf_counter() - state["train_time_s"], 0
    last_line = time.perf_counter()
    with _StopFlag() as stop:
        while step < config.steps:
            backend.manual_seed(config.seed * 1_000_003 + step)  # dropout of step t: (seed, t)
            inputs, targets = train_batch(task, config, step)
            for group in opt.param_groups:
                group["lr"] = learning_rate(config, step)
            loss, correct, _ = loss_and_accuracy(model, task, inputs, targets)
            opt.zero_grad()
            loss.backward()
            attn_norms = attention_grad_norms(model)
            total_norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip) \
                if config.grad_clip else nn.utils.grad_norm(model.parameters())
            opt.step()
            step += 1
            this_call += 1
            record = {"step": step, "loss": loss.item(), "acc": float(correct.mean()),
                      "lr": opt.param_groups[0]["lr"], "grad_norm": total_norm, **attn_norms}
            state["history"].append(record)
            if step % config.eval_every == 0 or step == config.steps:
                state["train_time_s"] = time.perf_counter() - started
                ev = {"step": step, **evaluate(model, task, config),
                      "time_s": state["train_time_s"]}
                state["evals"].append(ev)
                if state["steps_to_target"] is None and ev["token_acc"] >= config.target:
                    state["steps_to_target"] = step
                    state["time_to_target_s"] = ev["time_s"]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['acc']:.3f}",
                                held_out=f"{state['evals'][-1]['token_acc']:.3f}"
                                if state["evals"] else "-")
            elif progress and (time.perf_counter() - last_line > 5 or step == config.steps):
                last_line = time.perf_counter()
                held = f" held-out acc {state['evals'][-1]['token_acc']:.3f}" \
                    if state["evals"] else ""
                log(f"step {step}/{config.steps} loss {record['loss']:.4f} "
                    f"acc {record['acc']:.3f}{held}")
            if on_step is not None:
                on_step(step, model)
            interrupted = stop.requested or (stop_after is not None and this_call >= stop_after)
            if step % config.checkpoint_every == 0 or step == config.steps or interrupted:
                state["train_time_s"] = time.perf_counter() - started
                save_checkpoint(ckpt, model, opt, step, config, state)
            if interrupted:
                break
    if bar is not None:
        bar.close()
    if step < config.steps:
        log(f"stopped at step {step} of {config.steps}; checkpoint in {ckpt}: continue with "
            "--resume")
        return {"config": dataclasses.asdict(config), "step": step, "finished": False, **state}

    final = evaluate(model, task, config, greedy=True)
    result = {"config": dataclasses.asdict(config), "step": step, "finished": True,
              "final": final, "device": backend.device_of(model.tok_emb.weight.data), **state}
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "metrics.json", result)
    result["model"], result["task"] = model, task
    return result


def _write_json(path: Path, data) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    _publish(tmp, path)


# -- reports and figures -------------------------------------------------------------------------


def summary_row(result: dict) -> dict:
    final, config = result["final"], result["config"]
    history = result["history"]
    # the norm of all layers' q and k projection gradients together: sqrt(sum of squares)
    qk = [math.sqrt(sum(v**2 for k, v in h.items() if k.endswith(".qk"))) for h in history]
    return {"scale": scale_label(config["scale"]), "final_loss": final["loss"],
            "token_acc": final["token_acc"], "seq_acc": final["seq_acc"],
            "greedy_seq_acc": final.get("greedy_seq_acc"),
            "steps_to_target": result["steps_to_target"],
            "time_to_target_s": result["time_to_target_s"],
            "train_time_s": result["train_time_s"],
            "attn_qk_grad_norm_mean": float(np.mean(qk)) if qk else None,
            "attn_qk_grad_norm_last100": float(np.mean(qk[-100:])) if qk else None,
            "attn_entropy_final": final["attn_entropy"]}


def format_table(rows: list[dict], target: float) -> str:
    head = (f"{'scale':<10} {'loss':>8} {'tok acc':>8} {'seq acc':>8} {'greedy':>7} "
            f"{'steps to ' + format(target, '.0%'):>13} {'time':>8} {'|dQK| mean':>10} "
            f"{'entropy (per layer)':<20}")
    lines = [head, "-" * len(head)]
    for r in rows:
        greedy = "-" if r["greedy_seq_acc"] is None else f"{r['greedy_seq_acc']:.3f}"
        steps = "not reached" if r["steps_to_target"] is None else str(r["steps_to_target"])
        ent = " ".join(f"{e:.2f}" for e in r["attn_entropy_final"])
        lines.append(f"{r['scale']:<10} {r['final_loss']:>8.4f} {r['token_acc']:>8.4f} "
                     f"{r['seq_acc']:>8.3f} {greedy:>7} {steps:>13} "
                     f"{r['train_time_s']:>7.1f}s {r['attn_qk_grad_norm_mean']:>10.3g} {ent:<20}")
    return "\n".join(lines)


def write_figures(out: Path, results: list[dict], log=print) -> list[Path]:
    """Training curves (all runs) and the attention maps of each run's final model."""
    from . import viz

    try:
        viz.require_matplotlib()
    except ImportError as exc:
        log(f"no figures: {exc}")
        return []
    paths = [out / "training_curves.png"]
    viz.training_curves({scale_label(r["config"]["scale"]): r for r in results},
                        path=paths[0], target=results[0]["config"]["target"])
    for r in results:
        model, task = r["model"], r["task"]
        inputs, _ = eval_batch(task, TrainConfig(**r["config"]))
        with core.no_grad():
            model.eval()
            _, maps = model(core.tensor(inputs[:1], device=model.tok_emb.weight.device),
                            need_weights=True)
            model.train()
        tokens = task.decode(inputs[0])
        name = "attention_" + _slug(scale_label(r["config"]["scale"]))
        for i, probs in enumerate(maps):
            path = out / f"{name}_layer{i}.png"
            viz.attention_maps(probs.data[0], tokens, path=path,
                               title=f"layer {i}, scale {scale_label(r['config']['scale'])}")
            paths.append(path)
        paths += gradient_figures(out, r)
    return paths


def gradient_figures(out: Path, result: dict) -> list[Path]:
    """P, dP and dS of head 0 in every layer of a run's final model, for one held-out
    sequence and its loss: where the trained model's gradient flows, and where a saturated
    softmax stops it (viz.plot_attention_gradients)."""
    from . import viz

    model, task = result["model"], result["task"]
    config = TrainConfig(**result["config"])
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
    label = scale_label(config.scale)
    paths = []
    for i, attn in enumerate(attns):
        rec, attn.recorded = attn.recorded, None
        if rec["attn_mask"] is not None or rec["heads"].grad is None:
            continue  # a mask is not drawn; no gradient reached this layer
        path = out / f"gradients_{_slug(label)}_layer{i}.png"
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


# -- the command -------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    d = TrainConfig()
    parser.add_argument("--task", choices=["reverse", "copy", "chars"], default=d.task)
    parser.add_argument("--seq-len", type=int, default=d.seq_len,
                        help="symbols to reverse or copy (chars: half the context)")
    parser.add_argument("--num-symbols", type=int, default=d.num_symbols,
                        help="alphabet size of reverse and copy")
    parser.add_argument("--text", default=None, help="chars: a UTF-8 text file "
                        "(default: the public-domain text shipped with minattn)")
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--warmup", type=int, default=d.warmup)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip,
                        help="max gradient norm (0: no clipping)")
    parser.add_argument("--embed-dim", type=int, default=d.embed_dim)
    parser.add_argument("--num-heads", type=int, default=d.num_heads)
    parser.add_argument("--num-layers", type=int, default=d.num_layers)
    parser.add_argument("--positions", choices=["learned", "sinusoidal"], default=d.positions)
    parser.add_argument("--dropout", type=float, default=d.dropout)
    parser.add_argument("--scale", default="none",
                        help="attention scale: none (1/sqrt(d)), 1 (unscaled), 1/d, or a number")
    parser.add_argument("--impl", choices=["composed", "fused", "flash"], default=None,
                        help="attention implementation (default: the device's fastest)")
    parser.add_argument("--compare-scaling", action="store_true",
                        help="train with each of --scales from the same seeds and compare")
    parser.add_argument("--scales", default="none,1",
                        help="scales for --compare-scaling, comma-separated (e.g. none,1,1/d)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--eval-every", type=int, default=d.eval_every)
    parser.add_argument("--eval-size", type=int, default=d.eval_size)
    parser.add_argument("--target", type=float, default=d.target,
                        help="held-out token accuracy that counts as reached")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the default)")
    parser.add_argument("--dtype", default=d.dtype, help="float32 (default) or float64")
    parser.add_argument("--out", default="results/train", help="output folder")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out (same settings)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many steps, with a checkpoint (as if interrupted)")
    parser.add_argument("--quick", action="store_true", help="a few steps of a small model")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args, scale=None) -> TrainConfig:
    config = TrainConfig(task=args.task, seq_len=args.seq_len, num_symbols=args.num_symbols,
                         text=args.text, embed_dim=args.embed_dim, num_heads=args.num_heads,
                         num_layers=args.num_layers, positions=args.positions,
                         dropout=args.dropout, impl=args.impl, steps=args.steps,
                         batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                         weight_decay=args.weight_decay, grad_clip=args.grad_clip,
                         seed=args.seed, eval_every=args.eval_every, eval_size=args.eval_size,
                         target=args.target, checkpoint_every=args.checkpoint_every,
                         device=args.device, dtype=args.dtype)
    if args.quick:  # the quick sizes, except where an option was given another value
        defaults = TrainConfig()
        given = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                 if getattr(config, f.name) != getattr(defaults, f.name)}
        config = dataclasses.replace(quick(defaults), **given)
    head_dim = config.embed_dim // config.num_heads
    return dataclasses.replace(config, scale=parse_scale(scale or args.scale, head_dim))


def run(args) -> int:
    out = Path(args.out)
    if not args.resume and out.exists() and any(out.iterdir()):
        moved = set_aside(out)  # an earlier run is kept whole, never overwritten
        print(f"{out} held an earlier run: moved it to {moved} (use --resume to continue one)")
    scales = args.scales.split(",") if args.compare_scaling else [args.scale]
    results = []
    for scale in scales:
        config = config_from_args(args, scale)
        run_out = out / ("scale-" + _slug(config.label())) if args.compare_scaling else out
        print(f"training {config.task} (length {config.seq_len}) with attention scale "
              f"{config.label()}, {config.steps} steps -> {run_out}")
        result = train(config, run_out, resume=args.resume, progress=not args.quiet,
                       stop_after=args.stop_after)
        if not result["finished"]:
            return 130 if args.stop_after is None else 0
        results.append(result)
        final = result["final"]
        reached = "not reached" if result["steps_to_target"] is None else \
            f"reached at step {result['steps_to_target']} " \
            f"({result['time_to_target_s']:.1f} s)"
        print(f"held-out token accuracy {final['token_acc']:.4f} (target {config.target:.0%} "
              f"{reached}), loss {final['loss']:.4f}, trained {result['train_time_s']:.1f} s")
    rows = [summary_row(r) for r in results]
    print(format_table(rows, results[0]["config"]["target"]))
    if args.compare_scaling:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "comparison.json", {"rows": rows, "runs": [
            str(out / ("scale-" + _slug(scale_label(r["config"]["scale"])))) for r in results]})
    if not args.no_figures:
        for path in write_figures(out, results):
            print(f"wrote {path}")
    return 0
