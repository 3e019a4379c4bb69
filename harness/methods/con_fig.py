"""ConFIG, conflict-free inverse gradients (Liu et al. 2024, "ConFIG: Towards Conflict-free
Training of Physics Informed Neural Networks").

With unit gradients u_t = g_t / ||g_t||, the direction x = U^+ 1 (the least-norm x with
u_t . x = 1 for every task) has the same positive projection on every task; the update keeps its
unit direction x / ||x|| and takes as length the sum of the task gradients' projections on it:
d = (sum_t g_t . x / ||x||) x / ||x||. Computed from the Gram matrix only: x = sum_t beta_t u_t
with beta = C^+ 1 for the cosine matrix C (U^+ = U^T (U U^T)^+). A vanished gradient has a zero
unit vector and drops out, as in the reference. Task-specific parameters get their plain
gradients.

Differences from the reference implementations (the authors' code and TorchJD): the
pseudo-inverse of the T x T cosine matrix instead of that of the T x P matrix of unit gradients
(the same x); equal task weights only. Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.methods.solvers import EPS, cosines, gram, per_gradient
from harness.schema import Entry


@dataclass
class ConFIGConfig:
    name: str = "con_fig"


def config_weights(grads: jax.Array) -> jax.Array:
    """The weights w (T,) with d = w^T G."""
    c, norms = cosines(gram(grads))
    beta = jnp.linalg.pinv(c, hermitian=True) @ jnp.where(norms > 0, 1.0, 0.0)
    x_norm = jnp.sqrt(jnp.maximum(beta @ c @ beta, 0.0))
    length = norms @ (c @ beta) / jnp.maximum(x_norm, EPS)  # sum_t g_t . x / ||x||
    unit = per_gradient(beta, norms)  # x = unit^T G
    return length * unit / jnp.maximum(x_norm, EPS)


def build(cfg: ConFIGConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    def update(losses, grads, state, key, hparams):
        return MethodOutput(jnp.ones_like(losses), config_weights(grads) @ grads, state, {})

    return Method(Needs.SHARED_GRADS, no_state, update, schedules=("joint",))


METHODS.register("con_fig", Entry(ConFIGConfig, build))
