"""The training of ``minattn train``: model, loss, schedule, evaluation and the loop.

``train`` runs one model to the end (or to Ctrl-C, or ``stop_after`` steps), checkpointing
as it goes and resuming from a checkpoint to the parameters an uninterrupted run reaches.
A step whose loss or gradient is not finite stops it (``TrainingDiverged``) before the
optimizer takes it, so no NaN reaches the parameters, the checkpoint or the metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ... import backend, core, nn, optim
from ... import functional as F
from .checkpoints import (
    CHECKPOINT,
    CheckpointError,
    _write_json,
    load_checkpoint,
    restore,
    save_checkpoint,
    saved_config,
)
from .config import TrainConfig
from .tasks import SequenceTask, eval_batch, make_task, train_batch

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


# -- the training loop ---------------------------------------------------------------------------


class TrainingDiverged(RuntimeError):
    """A step's loss or gradient norm was NaN or infinite: training stopped before it."""

    def __init__(self, step: int, loss: float, grad_norm: float, out: Path, saved: int | None):
        kept = f"the checkpoint of step {saved} in {out} is kept" if saved is not None \
            else "no checkpoint was written"
        super().__init__(f"training diverged at step {step} (loss {loss:g}, gradient norm "
                         f"{grad_norm:g}); {kept}; try a lower --lr, a longer --warmup or "
                         "--grad-clip 1")
        self.step = step


class _StopFlag:
    """First Ctrl-C: finish the current step, checkpoint, stop. A second one: stop now, by
    KeyboardInterrupt from wherever the program is (the command turns it into one line and
    exit status 130; a checkpoint being written is left whole or not at all)."""

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
        print("\nCtrl-C: finishing this step and saving a checkpoint (Ctrl-C again stops at "
              "once)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._installed:
            # None: the handler before was not set from Python, so it cannot be put back;
            # Python's own (KeyboardInterrupt) beats leaving this one to swallow a Ctrl-C
            previous = signal.default_int_handler if self._previous is None else self._previous
            signal.signal(signal.SIGINT, previous)


# --quiet: a line when either has passed since the last one, so a fast run says ten lines
# and a slow one is never silent for more than a minute
QUIET_EVERY_S = 60.0
QUIET_EVERY_FRACTION = 0.1


def _progress(total: int, initial: int, enabled, desc: str):
    if enabled is not True:  # False: nothing; "quiet": the sparse lines of train
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=True)


def _line_due(progress, steps: int, seconds: float, steps_since: int, last: bool) -> bool:
    """Whether a progress line is due: quiet, after QUIET_EVERY_S seconds or a tenth of the
    steps, whichever comes first; else every 5 s, and at the last step."""
    if progress == "quiet":
        return seconds >= QUIET_EVERY_S or steps_since >= math.ceil(QUIET_EVERY_FRACTION * steps)
    return seconds > 5 or last


def train(config: TrainConfig, out: Path, resume: bool = False, progress=True,
          stop_after: int | None = None, on_step=None, log=print,
          clock=time.perf_counter) -> dict:
    """Train one model; return its metrics (also written to ``out/metrics.json``).

    ``progress``: True, a progress bar (tqdm; without it a line every 5 s); ``"quiet"``, a
    line each time QUIET_EVERY_FRACTION of the steps or QUIET_EVERY_S seconds have passed
    since the last, whichever comes first; False, nothing. ``stop_after``: stop after that
    many steps of this call, with a checkpoint (as if interrupted). ``on_step(step, model)``
    is called after every step (tests use it to simulate a crash). ``clock``: seconds, for
    the times measured and the progress lines (tests give one they control).
    """
    out = Path(out)
    ckpt = out / CHECKPOINT
    task = make_task(config)
    model, opt = build(config, task)
    step, state = 0, {"history": [], "evals": [], "train_time_s": 0.0, "time_to_target_s": None,
                      "steps_to_target": None}
    saved_step = None
    if resume and ckpt.exists():
        meta, arrays = load_checkpoint(ckpt)
        saved = saved_config(meta, ckpt)
        if saved != config:
            diff = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(saved).items()
                    if getattr(config, k) != v}
            raise ValueError(f"--resume: the checkpoint in {out} was made with other settings "
                             f"(saved, now): {diff}; resume with the same settings or use "
                             "another --out")
        try:
            restore(model, opt, meta, arrays)
            step = saved_step = int(meta["step"])
            state = {k: meta[k] for k in state}
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"the checkpoint {ckpt} does not fit this model "
                                  f"({type(exc).__name__}: {exc}); run without --resume to "
                                  "start again (the folder is set aside, not deleted)") from None
        log(f"resuming {out} at step {step} of {config.steps}")
    elif resume:
        log(f"no checkpoint in {out}: starting from step 0")

    bar = _progress(config.steps, step, progress, f"{config.task} scale={config.scale_name()}")
    started, this_call = clock() - state["train_time_s"], 0
    last_line, last_line_step = clock(), step
    if progress == "quiet":
        log(f"quiet: a line every {QUIET_EVERY_FRACTION:.0%} of the steps or "
            f"{QUIET_EVERY_S:g} s, whichever comes first; every step's metrics go to "
            f"{out / 'metrics.json'} at the end")
    # the bar is closed however the loop ends (a diverged step, a second Ctrl-C, a crash)
    closing = contextlib.closing(bar) if bar is not None else contextlib.nullcontext()
    with _StopFlag() as stop, closing:
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
            loss_value = loss.item()
            if not (math.isfinite(loss_value) and math.isfinite(total_norm)):
                raise TrainingDiverged(step + 1, loss_value, total_norm, out, saved_step)
            opt.step()
            step += 1
            this_call += 1
            record = {"step": step, "loss": loss_value, "acc": float(correct.mean()),
                      "lr": opt.param_groups[0]["lr"], "grad_norm": total_norm, **attn_norms}
            state["history"].append(record)
            if step % config.eval_every == 0 or step == config.steps:
                state["train_time_s"] = clock() - started
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
            elif progress and _line_due(progress, config.steps, clock() - last_line,
                                        step - last_line_step, step == config.steps):
                last_line, last_line_step = clock(), step
                held = f" held-out acc {state['evals'][-1]['token_acc']:.3f}" \
                    if state["evals"] else ""
                log(f"step {step}/{config.steps} loss {record['loss']:.4f} "
                    f"acc {record['acc']:.3f}{held}, {clock() - started:.0f} s")
            if on_step is not None:
                on_step(step, model)
            interrupted = stop.requested or (stop_after is not None and this_call >= stop_after)
            if step % config.checkpoint_every == 0 or step == config.steps or interrupted:
                state["train_time_s"] = clock() - started
                save_checkpoint(ckpt, model, opt, step, config, state)
                saved_step = step
            if interrupted:
                break
    if step < config.steps:
        log(f"stopped at step {step} of {config.steps}; checkpoint in {ckpt}: continue with "
            "--resume")
        return {"config": config.to_dict(), "step": step, "finished": False, **state}

    final = evaluate(model, task, config, greedy=True)
    result = {"config": config.to_dict(), "step": step, "finished": True,
              "final": final, "device": backend.device_of(model.tok_emb.weight.data), **state}
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "metrics.json", result)
    result["model"], result["task"] = model, task
    return result
