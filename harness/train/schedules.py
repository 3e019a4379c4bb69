"""Which tasks train at each step, and whose parameters a step may move.

joint: every task every step. alternate (Godwin 2016, "Multi-task learning in TensorFlow"): one
task per step, chosen by a coin flip (uniform), round robin, in proportion to dataset size, or
by active sampling (Sharma et al. 2017, harness.methods.active_weighting). A schedule hands the trainer a
selector, its state and a masking policy; the trainer never asks its name.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from harness.methods.active_weighting import active_probabilities


def no_state() -> tuple[()]:
    """The state of a schedule that keeps none: an empty pytree."""
    return ()


class Schedule(NamedTuple):
    """select(key, step, state) -> active mask (T,) float32 over the run's tasks.
    masked: a step leaves the parameters and optimiser state of inactive tasks (and of shared
        groups none of whose tasks is active) bit-identical; False: everything moves every step.
    per_task_state: shared parameters keep one set of optimiser moments per task, as with one
        optimiser per task; the active task's set is used and updated (one active task a step).
    init() -> state, carried in the training state (`()` for the stateless schedules, so their
        runs are what they were before schedules had state).
    on_eval: optional `(state, val_scores (T,), hparams) -> state` after each evaluation inside
        the compiled run (val_scores oriented higher-is-better; hparams: the schedule config's
        dynamic fields).
    diagnostics: optional `state -> {name: (T,)}`, recorded in the curves like a method's.
    """

    select: Callable[[jax.Array, jax.Array, Any], jax.Array]
    masked: bool = False
    per_task_state: bool = False
    init: Callable[[], Any] = no_state
    on_eval: Callable[[Any, jax.Array, dict], Any] | None = None
    diagnostics: Callable[[Any], dict] | None = None


def make_schedule(name: str, sampling: str, optimizer_state: str, draw: Sequence[str],
                  sizes: Sequence[int], tasks: Sequence[str], lower_is_better: Sequence[bool] = ()) -> Schedule:
    """The schedule of a run over `tasks`. The draw may be over more tasks than the run trains
    (`draw`, with their train row counts `sizes`): a single-task baseline matched to an
    alternate run draws as that run does and keeps its own tasks' entries. `lower_is_better`
    (per task of the run) orients active sampling's targets."""
    if name == "joint":
        return Schedule(lambda key, step, state: jnp.ones((len(tasks),), jnp.float32))
    per_task = optimizer_state == "per_task"
    if sampling == "active":
        return make_active(tasks, lower_is_better, per_task)
    pick = jnp.asarray([list(draw).index(n) for n in tasks])
    selector = make_selector(sampling, tuple(sizes))
    return Schedule(lambda key, step, state: selector(key, step)[pick], masked=True, per_task_state=per_task)


def make_selector(sampling: str, sizes: tuple[int, ...]) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """(key, step) -> a one-hot (T,) over the drawn tasks: uniform, round robin, or proportional
    to the tasks' train row counts."""
    num_tasks = len(sizes)
    if sampling == "round_robin":
        return lambda key, step: jax.nn.one_hot(step % num_tasks, num_tasks)
    logits = jnp.log(jnp.asarray(sizes, jnp.float32)) if sampling == "proportional" else jnp.zeros(num_tasks)
    return lambda key, step: jax.nn.one_hot(jax.random.categorical(key, logits), num_tasks)


def make_active(tasks: Sequence[str], lower_is_better: Sequence[bool], per_task: bool) -> Schedule:
    """Alternate with active sampling: the state is the sampling distribution (T,), uniform until
    the first evaluation, then `active_probabilities` of the latest validation scores against
    the targets (hparams "targets" in the metrics' own units, "temperature")."""
    num_tasks = len(tasks)
    if len(lower_is_better) != num_tasks:
        raise ValueError("active sampling needs each task's metric direction (lower_is_better)")
    signs = jnp.asarray([-1.0 if low else 1.0 for low in lower_is_better], jnp.float32)

    def init():
        return jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)

    def select_task(key, step, probs):
        return jax.nn.one_hot(jax.random.categorical(key, jnp.log(probs)), num_tasks)

    def on_eval(probs, val_scores, hparams):
        return active_probabilities(val_scores, signs * hparams["targets"], hparams["temperature"])

    return Schedule(select_task, masked=True, per_task_state=per_task, init=init, on_eval=on_eval,
                    diagnostics=lambda probs: {"sample_prob": probs})


def select(flag: jax.Array, new: Any, old: Any) -> Any:
    """Leafwise `new if flag else old`; the old leaves come back bit-identical."""
    return jax.tree.map(lambda n, o: jnp.where(flag, n, o), new, old)
