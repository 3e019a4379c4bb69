"""What the compiled program is made of: the parts the planner built (model, method, schedule,
teachers) and the static settings; what it hands back: a Trainer of pure functions and the
training state it threads through."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from harness.data.base import TaskSpec
from harness.methods.base import Method
from harness.models.base import Model
from harness.train.optim import Optimizer
from harness.train.schedules import Schedule


class Parts(NamedTuple):
    """tasks: the task specs, in the order of every (T,) array.
    teachers: task -> the Model of its single-task baseline, whose outputs on each batch are the
        distillation targets (their parameters arrive in hparams["teachers"]); None: no
        distillation."""

    model: Model
    method: Method
    tasks: tuple[TaskSpec, ...]
    schedule: Schedule
    teachers: dict[str, Model] | None = None


class Settings(NamedTuple):
    """The static choices of a run. task_rows: None, every task trains on all `train_size` rows
    and a step draws one batch for all tasks; or task -> n_t, each task trains on its first n_t
    rows and draws its own batch. diagnostics / affinity: gradient probes per step (cosines and
    norms; TAG lookahead affinity). standardize_targets: regression losses on standardised
    targets (metrics stay in the targets' units). eval_batch: evaluation in chunks of that many rows
(harness.train.evaluation.evaluate_in_chunks); None, a split at once."""

    steps: int
    eval_every: int
    batch_size: int
    train_size: int
    input_dim: int
    optimizer: Optimizer = Optimizer()
    task_rows: dict[str, int] | None = None
    diagnostics: bool = False
    affinity: bool = False
    standardize_targets: bool = True
    eval_batch: int | None = None  # evaluate in chunks of this many rows (None: a split at once)
    augment: bool = False  # dense training batches scale-cropped and flipped (harness.train.augment)
    # Each task has its own inputs (harness.data.base.Split): the validation rows a method looks
    # ahead on come in one block per task, as the training rows do (task_rows holds every task).
    own_inputs: bool = False

    @property
    def num_chunks(self) -> int:
        return self.steps // self.eval_every


class Carry(NamedTuple):
    """The training state: parameters, optimiser state, method state, the first step with a
    non-finite loss (-1 while healthy), and the schedule's state (`()` unless it keeps one)."""

    params: Any
    opt: Any
    method: Any
    diverged_at: jax.Array
    schedule: Any = ()


class Trainer(NamedTuple):
    """init(key, hparams) -> Carry.
    run_chunks(carry, key, hparams, data, first, count) -> (carry, curves (count, ...)):
        evaluation windows first..first+count-1 (for checkpointed runs in pieces).
    train(key, hparams, data) -> outputs: the curves {"val", "test", "val_loss", "train_loss",
        "weights": (E, T); "grad_cos", "conflict", "affinity": (E, T, T) and "grad_norm" (E, T)
        when probed; "diagnostics": name -> (E,) or (E, T), the method's; with eval_batch,
        "secondary": split -> "<task>.<metric>" -> (E,), the tasks' secondary metrics}, "diverged_at" (int32)
        and "final" (the last Carry).
    num_chunks: E, the number of evaluation windows."""

    init: Callable
    run_chunks: Callable
    train: Callable
    num_chunks: int
