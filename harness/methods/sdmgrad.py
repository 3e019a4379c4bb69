"""SDMGrad, stochastic direction-oriented multi-objective gradient descent (Xiao et al. 2023,
"Direction-oriented Multi-objective Learning: Simple and Provable Stochastic Algorithms").

MGDA regularised towards a target direction, the mean gradient g0:
  w = argmin_{w in simplex} 1/2 ||G^T w||^2 + lambda g0 . G^T w,
  d = (G^T w + lambda g0) / (1 + lambda),
so lambda = 0 is MGDA and large lambda the mean gradient. The inner problem gets `iters` steps
of projected gradient descent with momentum (step `inner_lr`, momentum 0.5; the reference's SGD
has step 5) on the Gram matrix divided by the squared mean gradient norm, warm-started from the
previous step's w (the state). The Gram matrix is estimated without bias from two independent samples, G1 G2^T:
here the current step's gradients and the previous step's (kept in the state; on the first step
the current ones twice). Task-specific parameters get their plain gradients (weights 1); the
diagnostic "w" records the weights.

Differences from the reference implementation (the authors' code, via LibMTL): the reference
draws three batches per step (two for G1 G2^T, one for the direction); the trainer draws one,
so the previous step's gradients stand in for the second sample and the current ones give the
direction. The inner step is a config value (dynamic): the reference's 5 is far above 2 / (the
largest eigenvalue of that matrix, T or more), so its iterates bounce between vertices of the
simplex and where they stop after `iters` steps can turn on rounding; a step below 1 / (the sum
of squared gradient norms over the squared mean norm) converges. Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic
from harness.methods.solvers import project_simplex
from harness.schema import Entry

INNER_MOMENTUM = 0.5  # the reference's SGD on the weights
SCALE_EPS = 1e-8


@dataclass
class SDMGradConfig:
    name: str = "sdmgrad"
    lamda: float = dynamic(0.3)  # pull towards the mean gradient: 0 MGDA, large -> the mean
    iters: int = 20  # projected-gradient steps on the weights per update
    inner_lr: float = dynamic(5.0)  # their step size (the reference's)


class TwoSampleState(NamedTuple):
    """The weights (T,), the previous step's gradients (T, P) and the step count."""

    weights: jax.Array
    previous: jax.Array
    step: jax.Array


def two_sample_init(num_tasks: int, grad_dim: int) -> TwoSampleState:
    """Equal weights 1/T, no previous gradients yet."""
    return TwoSampleState(jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32),
                          jnp.zeros((num_tasks, grad_dim), jnp.float32), jnp.zeros((), jnp.int32))


def cross_gram(grads: jax.Array, state: TwoSampleState) -> jax.Array:
    """G1 G2^T (T, T): G1 the previous step's gradients (the current ones on the first step),
    G2 the current ones."""
    return jnp.where(state.step > 0, state.previous @ grads.T, grads @ grads.T)


def direction_weights(cross: jax.Array, start: jax.Array, lamda: jax.Array, lr: jax.Array, iters: int) -> jax.Array:
    """w after `iters` momentum steps from `start` on 1/2 w^T K w + lamda mean(K) . w, K = G1 G2^T
    over its mean squared diagonal."""
    diag = jnp.maximum(jnp.diag(cross), 0.0)
    k = cross / (jnp.mean(jnp.sqrt(diag)) ** 2 + SCALE_EPS)
    pull = lamda * jnp.mean(k, axis=1)

    def step(_, carry):
        w, velocity = carry
        velocity = INNER_MOMENTUM * velocity + k @ w + pull
        return project_simplex(w - lr * velocity), velocity

    # unrolled (up to 20 at a time): each step is a few (T,)-sized operations, cheaper fused than looped
    return jax.lax.fori_loop(0, iters, step, (start, jnp.zeros_like(start)), unroll=min(iters, 20))[0]


def build(cfg: SDMGradConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.lamda >= 0:
        raise bad("method.lamda", cfg.lamda, "a number >= 0")
    if not cfg.inner_lr > 0:
        raise bad("method.inner_lr", cfg.inner_lr, "a number > 0")
    if cfg.iters < 1:
        raise bad("method.iters", cfg.iters, "an integer >= 1")

    def update(losses, grads, state, key, hparams):
        lamda = hparams["lamda"]
        w = direction_weights(cross_gram(grads, state), state.weights, lamda, hparams["inner_lr"], cfg.iters)
        direction = ((w + lamda / losses.shape[0]) / (1.0 + lamda)) @ grads
        new_state = TwoSampleState(w, grads, state.step + 1)
        return MethodOutput(jnp.ones_like(losses), direction, new_state, {"w": w})

    return Method(Needs.SHARED_GRADS, two_sample_init, update, schedules=("joint",))


METHODS.register("sdmgrad", Entry(SDMGradConfig, build))
