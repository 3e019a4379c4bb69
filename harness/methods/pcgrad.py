"""PCGrad, projecting conflicting gradients (Yu et al. 2020, "Gradient Surgery for Multi-Task
Learning").

For each task i: g_i' = g_i; for every other task j in a random order, if g_i' . g_j < 0 then
g_i' -= (g_i' . g_j / ||g_j||^2) g_j, always against the ORIGINAL g_j. The shared parameters
move along sum_i g_i'; task-specific parameters get their plain gradients (weights 1).

Differences from the reference implementations: they visit every task, g_i itself included (a
no-op unless g_i' has turned against g_i), in one shuffled order (TensorFlow original) or one per
task (PyTorch port); here each task draws its own order from `key` and skips itself.
Schedules: joint only (with one active task there is nothing to project).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.methods.solvers import EPS
from harness.schema import Entry


@dataclass
class PCGradConfig:
    name: str = "pcgrad"


def project_conflicts(grads: jax.Array, key: jax.Array) -> jax.Array:
    """The projected gradients g_i' (T, P), each task visiting the others in a random order."""
    num_tasks = grads.shape[0]
    sq_norms = jnp.sum(grads**2, axis=1)

    def one_task(i, k):
        def visit(g, j):
            dot = g @ grads[j]
            coef = jnp.where((j != i) & (dot < 0), dot / (sq_norms[j] + EPS), 0.0)
            return g - coef * grads[j], None

        g, _ = jax.lax.scan(visit, grads[i], jax.random.permutation(k, num_tasks))
        return g

    return jax.vmap(one_task)(jnp.arange(num_tasks), jax.random.split(key, num_tasks))


def build(cfg: PCGradConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    def update(losses, grads, state, key, hparams):
        direction = project_conflicts(grads, key).sum(axis=0)
        return MethodOutput(jnp.ones_like(losses), direction, state, {})

    return Method(Needs.SHARED_GRADS, no_state, update, schedules=("joint",))


METHODS.register("pcgrad", Entry(PCGradConfig, build))
