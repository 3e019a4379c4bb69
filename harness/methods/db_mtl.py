"""DB-MTL, dual balancing (Lin et al. 2023, "Dual-Balancing for Multi-Task Learning").

Loss-scale balancing: every task trains on log L_t, whose gradient g_t / L_t does not change when
L_t is multiplied by a constant. Gradient-magnitude balancing: an exponential moving average of
those log-loss gradients, u_t <- beta_k u_t + (1 - beta_k) g_t / L_t with beta_k = beta / k^sigma
at step k (u starts at 0), is rescaled to the largest norm among the tasks,
  d = sum_t (max_s ||u_s|| / ||u_t||) u_t,
so every task contributes a vector of the same length and the largest one sets the step size.
The task-specific parameters get the gradients of their own log-loss (weights 1 / L_t).

Differences from the reference implementation (LibMTL's DB_MTL, defaults beta = 0.9, sigma = 0,
1e-8 added to the losses and to the norms, no bias correction of the average): the same
arithmetic, but the gradient of log L_t is formed from the gradient of L_t by the chain rule
(g_t / (L_t + 1e-8)) instead of a backward pass through the logarithm; identical up to rounding.
Schedules: joint only (the balancing compares the tasks of one step).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic
from harness.schema import Entry

FLOOR = 1e-8  # added to the losses before the logarithm and to the norms, as in the reference


@dataclass
class DBMTLConfig:
    name: str = "db_mtl"
    beta: float = dynamic(0.9)  # weight of the past in the gradient average
    beta_sigma: float = dynamic(0.0)  # decay of that weight: beta_k = beta / k^sigma


class DBMTLState(NamedTuple):
    average: jax.Array  # (T, P) moving average of the log-loss gradients
    step: jax.Array  # int32, updates done so far


def balance(average: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(d, scales): every row of `average` rescaled to the largest row norm, summed."""
    norms = jnp.sqrt(jnp.sum(average**2, axis=1))
    scales = jnp.max(norms) / (norms + FLOOR)
    return scales @ average, scales


def build(cfg: DBMTLConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not 0.0 <= cfg.beta < 1.0:
        raise bad("method.beta", cfg.beta, "a number in [0, 1)")
    if not cfg.beta_sigma >= 0:
        raise bad("method.beta_sigma", cfg.beta_sigma, "a number >= 0")

    def init(num_tasks: int, grad_dim: int) -> DBMTLState:
        return DBMTLState(jnp.zeros((num_tasks, grad_dim), jnp.float32), jnp.zeros((), jnp.int32))

    def update(losses, grads, state, key, hparams):
        step = state.step + 1
        inverse = 1.0 / (losses + FLOOR)
        log_grads = grads * inverse[:, None]
        beta_k = hparams["beta"] / step.astype(grads.dtype) ** hparams["beta_sigma"]
        average = log_grads + beta_k * (state.average - log_grads)
        direction, scales = balance(average)
        return MethodOutput(inverse, direction, DBMTLState(average, step), {"scales": scales})

    return Method(Needs.SHARED_GRADS, init, update, schedules=("joint",))


METHODS.register("db_mtl", Entry(DBMTLConfig, build))
