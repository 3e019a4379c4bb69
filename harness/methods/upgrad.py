"""UPGrad, unconflicting projection of gradients (Quinton & Rey 2024, "Jacobian Descent for
Multi-Objective Optimization").

Each g_t is projected onto the dual cone of the task gradients {d : g_s . d >= 0 for all s}, and
the projections are averaged (equal preferences 1/T, as in the reference). By the paper's
Proposition 1 the projection of sum_s u_s g_s is sum_s v_s g_s with v = argmin_{v >= u} v^T M v, so
everything runs on the Gram matrix: one box-constrained QP per task (u = e_t / T), solved exactly
by an active-set method in a few steps (solvers.lower_bounded_qp, at most `iters` steps). The dual
cone does not change when a gradient is rescaled, so the QPs are solved on the cosine matrix of the
gradients and mapped back: gradient norms spread over many orders of magnitude cost no accuracy,
and a vanished gradient drops out of the constraints. The result conflicts with no task
(d . g_t >= 0). With two tasks the projection of g_1 is PCGrad's g_1', so UPGrad is PCGrad / 2.
Task-specific parameters get their plain gradients, as in the reference's multi-task backward.

Differences from the reference implementation (torchjd): a Lawson-Hanson active-set method instead
of the quadprog solver, on the cosine matrix without regulariser instead of the Gram matrix
normalised by its trace plus 1e-4 I (there a task whose squared norm is below 1e-4 of the trace
loses its constraint to the regulariser, and with more tasks than parameters the regulariser moves
the answer by up to 1e-2 of the gradient norms). Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.methods.solvers import cosines, gram, lower_bounded_qp, per_gradient
from harness.schema import Entry


@dataclass
class UPGradConfig:
    name: str = "upgrad"
    iters: int = 200  # most active-set steps of each projection (it stops when exact)


def upgrad_weights(grads: jax.Array, iters: int) -> jax.Array:
    """The weights w (T,) with d = w^T G, the mean of the projected gradients."""
    c, norms = cosines(gram(grads))
    num_tasks = c.shape[0]
    eye = jnp.eye(num_tasks, dtype=c.dtype)
    # row t: the projection of u_t / T (u_t = g_t / ||g_t||) as weights of the unit gradients;
    # the projection is positively homogeneous, so that of g_t / T is ||g_t|| times it
    v = lower_bounded_qp(c, eye / num_tasks, iters)
    unit_weights = norms @ v
    return per_gradient(unit_weights, norms)


def build(cfg: UPGradConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if cfg.iters < 1:
        raise bad("method.iters", cfg.iters, "an integer >= 1")

    def update(losses, grads, state, key, hparams):
        direction = upgrad_weights(grads, cfg.iters) @ grads
        return MethodOutput(jnp.ones_like(losses), direction, state, {})

    return Method(Needs.SHARED_GRADS, no_state, update, schedules=("joint",))


METHODS.register("upgrad", Entry(UPGradConfig, build))
