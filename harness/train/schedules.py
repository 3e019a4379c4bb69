"""Which tasks train at each step, and whose parameters a step may move.

joint: every task every step. alternate (Godwin 2016, "Multi-task learning in TensorFlow"): one
task per step, chosen by a coin flip (uniform), round robin, or in proportion to dataset size.
A schedule hands the trainer a selector and a masking policy; the trainer never asks its name.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp


class Schedule(NamedTuple):
    """select(key, step) -> active mask (T,) float32 over the run's tasks.
    masked: a step leaves the parameters and optimiser state of inactive tasks (and of shared
        groups none of whose tasks is active) bit-identical; False: everything moves every step.
    per_task_state: shared parameters keep one set of optimiser moments per task, as with one
        optimiser per task; the active task's set is used and updated (one active task a step).
    """

    select: Callable[[jax.Array, jax.Array], jax.Array]
    masked: bool = False
    per_task_state: bool = False


def make_schedule(name: str, sampling: str, optimizer_state: str, draw: Sequence[str],
                  sizes: Sequence[int], tasks: Sequence[str]) -> Schedule:
    """The schedule of a run over `tasks`. The draw may be over more tasks than the run trains
    (`draw`, with their train row counts `sizes`): a single-task baseline matched to an
    alternate run draws as that run does and keeps its own tasks' entries."""
    if name == "joint":
        return Schedule(lambda key, step: jnp.ones((len(tasks),), jnp.float32))
    pick = jnp.asarray([list(draw).index(n) for n in tasks])
    selector = make_selector(sampling, tuple(sizes))
    return Schedule(lambda key, step: selector(key, step)[pick], masked=True,
                    per_task_state=optimizer_state == "per_task")


def make_selector(sampling: str, sizes: tuple[int, ...]) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """(key, step) -> a one-hot (T,) over the drawn tasks: uniform, round robin, or proportional
    to the tasks' train row counts."""
    num_tasks = len(sizes)
    if sampling == "round_robin":
        return lambda key, step: jax.nn.one_hot(step % num_tasks, num_tasks)
    logits = jnp.log(jnp.asarray(sizes, jnp.float32)) if sampling == "proportional" else jnp.zeros(num_tasks)
    return lambda key, step: jax.nn.one_hot(jax.random.categorical(key, logits), num_tasks)


def select(flag: jax.Array, new: Any, old: Any) -> Any:
    """Leafwise `new if flag else old`; the old leaves come back bit-identical."""
    return jax.tree.map(lambda n, o: jnp.where(flag, n, o), new, old)
