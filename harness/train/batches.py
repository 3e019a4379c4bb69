"""The batch of a step, and the distillation teachers' outputs on it.

Every key derives from the run key by the step (and the task), so a task sees the same batches
alone or among other tasks, and a run cut into pieces is the same run.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from harness.data.base import Dataset, Split, own_inputs, task_inputs
from harness.models.base import Model
from harness.models.layers import task_tag
from harness.train.losses import Teaching


def make_draw(tasks: Sequence[str], batch_size: int, train_size: int,
              task_rows: dict[str, int] | None) -> Callable:
    """(data, key, step) -> (x, y).

    task_rows None: one batch of `batch_size` rows for all tasks. Otherwise each task draws its
    own batch from its first task_rows[t] rows (default: all) with its own key stream, and x
    stacks the T batches in task order (the losses read their own block). Where each task has
    its own inputs (harness.data.base.Split), a task's block comes from its own."""
    names = list(tasks)
    B = batch_size
    if task_rows is None:
        def draw(data: Dataset, key: jax.Array, step):
            idx = jax.random.randint(jax.random.fold_in(key, step), (B,), 0, train_size)
            return data.train.x[idx], {n: data.train.y[n][idx] for n in names}
        return draw
    rows = [task_rows.get(n, train_size) for n in names]

    def draw_blocks(data: Dataset, key: jax.Array, step):
        step_key = jax.random.fold_in(key, step)
        idx = {n: jax.random.randint(jax.random.fold_in(step_key, task_tag(n)), (B,), 0, r)
               for n, r in zip(names, rows)}
        x = jnp.concatenate([task_inputs(data.train, n)[idx[n]] for n in names])
        return x, {n: data.train.y[n][idx[n]] for n in names}
    return draw_blocks


def draw_rows(split: Split, key: jax.Array, batch_size: int,
              tasks: Sequence[str] = ()) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`batch_size` rows of a split, drawn uniformly with replacement: (x, y). Where each task
    has its own inputs, each of `tasks` draws `batch_size` of its own rows (the key folded with
    its tag) and x stacks the blocks in that order."""
    if not own_inputs(split):
        idx = jax.random.randint(key, (batch_size,), 0, split.x.shape[0])
        return split.x[idx], {n: v[idx] for n, v in split.y.items()}
    idx = {n: jax.random.randint(jax.random.fold_in(key, task_tag(n)), (batch_size,), 0, split.y[n].shape[0])
           for n in tasks}
    return jnp.concatenate([split.x[n][i] for n, i in idx.items()]), {n: split.y[n][i] for n, i in idx.items()}


def make_teaching(teachers: dict[str, Model] | None, tasks: Sequence[str], batch_size: int,
                  blocks: bool) -> Callable[[dict, jax.Array], Teaching | None]:
    """(hparams, x) -> the teachers' outputs on the rows each task's loss reads (constants to
    the student), with the dynamic weight and temperature; None without teachers."""
    names, B = list(tasks), batch_size

    def teaching(hp: dict, x: jax.Array) -> Teaching | None:
        if teachers is None:
            return None
        outputs = {}
        for i, n in enumerate(names):
            rows = x[i * B:(i + 1) * B] if blocks else x
            outputs[n] = jax.lax.stop_gradient(teachers[n].apply(hp["teachers"][n], rows)[n])
        return Teaching(outputs, hp["distill"]["weight"], hp["distill"]["temperature"])

    return teaching
