"""ExcessMTL, robust multi-task learning with excess risks (He et al. 2024, "Robust Multi-Task
Learning with Excess Risks").

Task weights move towards the tasks that are furthest from their own optimum, measured by an
estimate of each task's excess risk rather than by its loss (which also holds the irreducible
noise of a task's labels). The excess risk of task t is estimated by the second-order
approximation g_t^T H_t^-1 g_t, with the diagonal of H_t taken from AdaGrad's accumulator:
  h_t <- h_t + g_t^2 (the state),   e_t = sum_p g_tp^2 / sqrt(h_tp + 1e-7).
The first step only records e^0 = e; after it each estimate is divided by its first value
(so tasks with different loss scales compare), and the weights take one exponentiated-gradient
step of size `step_size` on the simplex: w <- w exp(step_size e / e^0), normalised to sum to T.
The weights multiply the task losses for every parameter, as in the reference.

Differences from the reference implementation (the authors' code, via LibMTL): the weights are
kept as logarithms and normalised by a softmax, the same update without overflow of exp when
estimates are large; a task whose first estimate is 0 (a vanished gradient) has ratio 0 instead
of a division by zero. The reference uses the per-parameter gradients of the whole shared model,
as here. Schedules: joint only.
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

ADAGRAD_EPS = 1e-7  # inside the square root, as in the reference


@dataclass
class ExcessMTLConfig:
    name: str = "excessmtl"
    step_size: float = dynamic(0.01)  # exponentiated-gradient step on the weights (robust_step_size)


class ExcessMTLState(NamedTuple):
    squares: jax.Array  # (T, P) AdaGrad accumulator of squared gradients
    first: jax.Array  # (T,) the first step's excess-risk estimates
    log_weights: jax.Array  # (T,)
    step: jax.Array  # int32


def excess_risks(squared: jax.Array, squares: jax.Array) -> jax.Array:
    """e_t = g_t^T diag(sqrt(h_t + eps))^-1 g_t (T,), from the squared gradients g_t^2."""
    return jnp.sum(squared * jax.lax.rsqrt(squares + ADAGRAD_EPS), axis=1)


def build(cfg: ExcessMTLConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.step_size >= 0:
        raise bad("method.step_size", cfg.step_size, "a number >= 0")

    def init(num_tasks: int, grad_dim: int) -> ExcessMTLState:
        zeros = jnp.zeros((num_tasks,), jnp.float32)
        return ExcessMTLState(jnp.zeros((num_tasks, grad_dim), jnp.float32), zeros, zeros,
                              jnp.zeros((), jnp.int32))

    def update(losses, grads, state, key, hparams):
        squared = grads**2
        squares = state.squares + squared
        risks = excess_risks(squared, squares)
        started = state.step > 0
        first = jnp.where(started, state.first, risks)
        ratio = jnp.where(first > 0, risks / jnp.where(first > 0, first, 1.0), 0.0)
        log_weights = state.log_weights + jnp.where(started, hparams["step_size"] * ratio, 0.0)
        log_weights = log_weights - jnp.max(log_weights)  # keeps the logarithms bounded
        weights = losses.shape[0] * jax.nn.softmax(log_weights)
        new_state = ExcessMTLState(squares, first, log_weights, state.step + 1)
        return MethodOutput(weights.astype(losses.dtype), None, new_state, {"excess": ratio})

    return Method(Needs.SHARED_GRADS, init, update, schedules=("joint",))


METHODS.register("excessmtl", Entry(ExcessMTLConfig, build))
