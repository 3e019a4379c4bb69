"""GradVac, gradient vaccine (Wang et al. 2021, "Gradient Vaccine: Investigating and Improving
Multi-task Optimization in Massively Multilingual Models").

PCGrad generalised to a target similarity: the state keeps, for every ordered pair (i, j), an
exponential moving average phi_hat_ij of the cosine similarity of g_i' and g_j (start 0). For
each task i, visiting the others in a random order from `key`: phi = cos(g_i', g_j); if
phi < phi_hat_ij, add to g_i' the multiple of the ORIGINAL g_j that raises the similarity to
phi_hat_ij,
  ||g_i'|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / (||g_j|| sqrt(1 - phi_hat^2));
then phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi (at every visit, as in the paper and in
LibMTL). The shared parameters move along sum_i g_i'; task-specific parameters get their plain
gradients.

The multiple is ||g_i'|| / ||g_j|| * sin(theta - theta_hat) / sin(theta_hat) with the angles
theta = arccos phi, theta_hat = arccos phi_hat: it grows without bound as the target tends to 1
(turning g_i' parallel to g_j takes an infinite multiple), which happens once two tasks have
agreed for a while and the average rounds to 1. The target used in the correction is therefore
capped at 0.999 (sin(theta_hat) >= 0.045), so one correction adds at most about 22 ||g_i'||.

Differences from the reference implementations: one group (the whole shared model), LibMTL's
default, rather than per-layer targets; the cap above where LibMTL adds 1e-8 to the
denominator (multiples up to ~1e8 once the target rounds to 1). Default beta 0.5, LibMTL's
default.
Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic
from harness.methods.solvers import EPS
from harness.schema import Entry

MAX_TARGET = 0.999  # bounds the correction multiple; see the module docstring


@dataclass
class GradVacConfig:
    name: str = "gradvac"
    beta: float = dynamic(0.5)  # EMA rate of the target similarities


def vaccinate(grads: jax.Array, targets: jax.Array, beta: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(the corrected gradients g_i' (T, P), the new targets phi_hat (T, T))."""
    num_tasks = grads.shape[0]
    norms = jnp.sqrt(jnp.sum(grads**2, axis=1))

    def one_task(i, row, k):
        def visit(carry, j):
            g, row = carry
            g_norm = jnp.sqrt(g @ g)
            phi = jnp.clip(g @ grads[j] / (g_norm * norms[j] + EPS), -1.0, 1.0)
            target = jnp.minimum(row[j], MAX_TARGET)
            root = jnp.sqrt(1.0 - target**2)
            coef = g_norm * (target * jnp.sqrt(1.0 - phi**2) - phi * root) / (norms[j] * root + EPS)
            other = j != i
            g = g + jnp.where(other & (phi < target), coef, 0.0) * grads[j]
            row = row.at[j].set(jnp.where(other, (1 - beta) * row[j] + beta * phi, row[j]))
            return (g, row), None

        (g, row), _ = jax.lax.scan(visit, (grads[i], row), jax.random.permutation(k, num_tasks))
        return g, row

    return jax.vmap(one_task)(jnp.arange(num_tasks), targets, jax.random.split(key, num_tasks))


def build(cfg: GradVacConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not 0 < cfg.beta <= 1:
        raise bad("method.beta", cfg.beta, "a number in (0, 1]")

    def init(num_tasks: int, grad_dim: int) -> jax.Array:
        return jnp.zeros((num_tasks, num_tasks), jnp.float32)

    def update(losses, grads, state, key, hparams):
        corrected, targets = vaccinate(grads, state, hparams["beta"], key)
        return MethodOutput(jnp.ones_like(losses), corrected.sum(axis=0), targets, {})

    return Method(Needs.SHARED_GRADS, init, update, schedules=("joint",))


METHODS.register("gradvac", Entry(GradVacConfig, build))
