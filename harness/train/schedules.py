"""Which tasks train at each step, and masked updates so a task step moves only what it owns.

joint: every task every step. alternate (Godwin 2016, "Multi-task learning in TensorFlow"): one
task per step, chosen by a coin flip (uniform), round robin, or in proportion to dataset size.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from harness.config import ScheduleConfig


def make_selector(cfg: ScheduleConfig, sizes: tuple[int, ...]) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """(key, step) -> active mask (T,) float32: all ones (joint) or a one-hot (alternate)."""
    num_tasks = len(sizes)
    if cfg.name == "joint":
        return lambda key, step: jnp.ones((num_tasks,), jnp.float32)
    if cfg.sampling == "round_robin":
        return lambda key, step: jax.nn.one_hot(step % num_tasks, num_tasks)
    logits = jnp.log(jnp.asarray(sizes, jnp.float32)) if cfg.sampling == "proportional" else jnp.zeros(num_tasks)
    return lambda key, step: jax.nn.one_hot(jax.random.categorical(key, logits), num_tasks)


def select(flag: jax.Array, new: Any, old: Any) -> Any:
    """Leafwise `new if flag else old`; the old leaves come back bit-identical."""
    return jax.tree.map(lambda n, o: jnp.where(flag, n, o), new, old)
