"""The masked update: one optimiser state per parameter group, and a step moves only the groups
whose tasks are active.

Groups: each task's own parameters, and the shared parameters (one group, or one per shared
group of a task tree, `Model.shared_groups`). `optax.partition` keeps a state per group; under a
masked schedule a group none of whose tasks is active gets a zero update and keeps its state
(so its parameters and moments come back bit-identical), and with per-task moments the shared
groups keep one optimiser state per task. The learning rate is applied afterwards from the
global step (harness.train.optim).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax

from harness.train.schedules import Schedule, select


def per_task_moments(tx: optax.GradientTransformation, num_tasks: int) -> optax.GradientTransformationExtraArgs:
    """`tx` with one state per task, stacked on a leading axis; an update uses and replaces the
    state of the active task (`active`: a one-hot (T,)), as one optimiser per task would."""
    def init(params):
        return jax.tree.map(lambda leaf: jnp.stack([leaf] * num_tasks), tx.init(params))

    def update(updates, state, params=None, *, active, **extra):
        a = jnp.argmax(active)
        updates, state_a = tx.update(updates, jax.tree.map(lambda st: st[a], state), params)
        return updates, jax.tree.map(lambda st, new: st.at[a].set(new), state, state_a)

    return optax.GradientTransformationExtraArgs(init, update)


def gated(tx: optax.GradientTransformation, users: jax.Array) -> optax.GradientTransformationExtraArgs:
    """`tx` on steps where one of the task indices `users` is active; on other steps a zero
    update and the state unchanged."""
    tx = optax.with_extra_args_support(tx)

    def update(updates, state, params=None, *, active, **extra):
        new_updates, new_state = tx.update(updates, state, params, active=active, **extra)
        on = jnp.max(active[users]) > 0
        return select(on, new_updates, jax.tree.map(jnp.zeros_like, new_updates)), select(on, new_state, state)

    return optax.GradientTransformationExtraArgs(tx.init, update)


def make_update(tx: optax.GradientTransformation, schedule: Schedule, tasks: Sequence[str],
                shared_groups: dict[str, tuple[str, ...]] | None) -> optax.GradientTransformationExtraArgs:
    """The optimiser of the whole params tree {"shared", "tasks"}: `update(grads, state, params,
    active=mask)`. Task groups are gated by their own task, shared groups by the tasks using
    them (a shared trunk serving every task moves whenever any task is active)."""
    names = list(tasks)
    shared = per_task_moments(tx, len(names)) if schedule.per_task_state else tx

    def policy(base, users):
        return gated(base, jnp.asarray(users)) if schedule.masked and users is not None else base

    transforms = {f"task/{n}": policy(tx, [i]) for i, n in enumerate(names)}
    if shared_groups is None:
        transforms["shared"] = policy(shared, None)
        shared_labels: Any = "shared"
    else:
        transforms.update({f"shared/{g}": policy(shared, [names.index(n) for n in users])
                           for g, users in shared_groups.items()})
        shared_labels = {g: f"shared/{g}" for g in shared_groups}
    labels = {"shared": shared_labels, "tasks": {n: f"task/{n}" for n in names}}
    return optax.partition(transforms, labels)


def apply_updates(params: Any, updates: Any, lr: jax.Array) -> Any:
    """params - lr * updates (the directions come without the learning rate)."""
    return jax.tree.map(lambda p, u: p - lr * u, params, updates)


def group_state(opt: Any, group: str) -> Any:
    """The optimiser state of one parameter group of a Carry's `opt`: "shared", "shared/<group>"
    (task trees) or "task/<name>"; leaves of other groups are absent."""
    return opt.inner_states[group].inner_state
