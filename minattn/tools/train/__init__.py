"""``minattn train``: a tiny decoder-only transformer on toy tasks that need attention.

Tasks (token ids; ``|`` is the delimiter token):

- ``reverse``: ``x1 .. xn | xn .. x1``; the model reads the first half and must write it
  backwards, so position n+j has to look back at position n-1-j: attention's job;
- ``copy``:    ``x1 .. xn | x1 .. xn``, the same with the order kept;
- ``chars``:   next-character prediction on a small public-domain text shipped in
  ``minattn/data`` (held-out: its last tenth).

The loss and the accuracy count only the positions that have an answer (the second
half for reverse and copy). ``--compare-scaling`` trains the same model from the same
seeds with the scales ``sqrt`` (1/sqrt(d), ``scale=None``) and ``unscaled`` (1,
``scale=1.0``), or those of ``--scales`` (``linear`` is 1/d, a number is itself), and
reports loss, accuracy, steps to the target, the gradient norms of the attention
projections and the attention entropy over training.

Reproducibility and resuming: every random draw of step t comes from (seed, t): the
batch from ``numpy.random.default_rng([seed, 0, t])``, dropout from minattn's generator
reseeded at each step. A checkpoint (model, optimizer state, step, history, the seed that
the random state derives from) is written atomically every ``--checkpoint-every`` steps,
at Ctrl-C and at the end, so ``--resume`` continues an interrupted run to exactly the
parameters an uninterrupted run reaches: bit for bit on the CPU; on a GPU up to float
rounding, as two uninterrupted GPU runs (the embedding's scatter-add uses atomics there).

The code, by concern: ``tasks`` (the toy tasks and their batches), ``config``
(``TrainConfig``, the attention scale), ``loop`` (model, loss, evaluation, the training
loop), ``checkpoints`` (atomic save, load, restore), ``report`` (the table and the figures)
and ``command`` (the command-line options and ``run``).
"""

from .checkpoints import CHECKPOINT, load_checkpoint, restore, save_checkpoint
from .command import add_arguments, config_from_args, run
from .config import SCALE_NAMES, TrainConfig, parse_scale, quick, scale_label, scale_name
from .loop import (
    attention_entropy,
    attention_grad_norms,
    build,
    evaluate,
    greedy_accuracy,
    learning_rate,
    loss_and_accuracy,
    train,
)
from .report import format_table, gradient_figures, summary_row, write_figures
from .tasks import TEXT, CharTask, SequenceTask, eval_batch, make_task, train_batch

__all__ = ["CHECKPOINT", "SCALE_NAMES", "TEXT", "CharTask", "SequenceTask", "TrainConfig",
           "add_arguments", "attention_entropy", "attention_grad_norms", "build",
           "config_from_args", "eval_batch", "evaluate", "format_table", "gradient_figures",
           "greedy_accuracy", "learning_rate", "load_checkpoint", "loss_and_accuracy",
           "make_task", "parse_scale", "quick", "restore", "run", "save_checkpoint",
           "scale_label", "scale_name", "summary_row", "train", "train_batch", "write_figures"]
