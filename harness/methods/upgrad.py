"""UPGrad, unconflicting projection of gradients (Quinton & Rey 2024, "Jacobian Descent for
Multi-Objective Optimization").

Each g_t is projected onto the dual cone of the task gradients {d : g_s . d >= 0 for all s}, and
the projections are averaged (equal preferences 1/T, as in the reference). By the paper's
Proposition 1 the projection of sum_s u_s g_s is sum_s v_s g_s with v = argmin_{v >= u} v^T M v,
so everything runs on the Gram matrix: one box-constrained QP per task (u = e_t / T), solved by
cyclic coordinate descent for `iters` sweeps (solvers.lower_bounded_qp). The result conflicts
with no task (d . g_t >= 0). With two tasks the projection of g_1 is PCGrad's g_1', so UPGrad is
PCGrad / 2. Task-specific parameters get their plain gradients, as in the reference's
multi-task backward.

Differences from the reference implementation (torchjd): a fixed-iteration coordinate descent
instead of the quadprog solver; the Gram matrix is normalised by its trace as there, with a
1e-6 I regulariser instead of 1e-4. Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.methods.solvers import EPS, gram, lower_bounded_qp
from harness.schema import Entry

RIDGE = 1e-6


@dataclass
class UPGradConfig:
    name: str = "upgrad"
    iters: int = 100  # coordinate-descent sweeps of each projection


def upgrad_weights(grads: jax.Array, iters: int) -> jax.Array:
    """The weights w (T,) with d = w^T G, the mean of the projected gradients."""
    m = gram(grads)
    num_tasks = m.shape[0]
    m = m / (jnp.trace(m) + EPS) + RIDGE * jnp.eye(num_tasks, dtype=m.dtype)
    v = lower_bounded_qp(m, jnp.eye(num_tasks, dtype=m.dtype) / num_tasks, iters)
    return v.sum(axis=0)


def build(cfg: UPGradConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if cfg.iters < 1:
        raise bad("method.iters", cfg.iters, "an integer >= 1")

    def update(losses, grads, state, key, hparams):
        direction = upgrad_weights(grads, cfg.iters) @ grads
        return MethodOutput(jnp.ones_like(losses), direction, state, {})

    return Method(Needs.SHARED_GRADS, no_state, update, schedules=("joint",))


METHODS.register("upgrad", Entry(UPGradConfig, build))
