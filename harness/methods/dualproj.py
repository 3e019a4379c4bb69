"""DualProj: the mean gradient projected onto the dual cone of the task gradients (Quinton & Rey
2024, "Jacobian Descent for Multi-Objective Optimization", the DualProj aggregator of TorchJD).

d = argmin ||d - g0||^2 subject to g_t . d >= 0 for every t, with g0 = mean_t g_t: the nearest
direction to the mean that conflicts with no task. By the paper's Proposition 1, d = v^T G with
v = argmin_{v >= 1/T} v^T M v, a box-constrained QP on the Gram matrix. As in upgrad.py it is
solved exactly by the active-set method of solvers.lower_bounded_qp on the cosine matrix (the
dual cone does not change when a gradient is rescaled), so a vanished gradient drops out and
gradient norms spread over many orders of magnitude cost no accuracy. UPGrad projects every
g_t / T and averages; DualProj projects their mean once, so it is cheaper and, unlike UPGrad,
leaves the mean untouched whenever it already conflicts with no task. Task-specific parameters
get their plain gradients.

Differences from the reference implementation (torchjd): the active-set method instead of
quadprog, on the cosine matrix without regulariser instead of the trace-normalised Gram matrix
plus 1e-4 I. Schedules: joint only.
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
class DualProjConfig:
    name: str = "dualproj"
    iters: int = 200  # most active-set steps of the projection (it stops when exact)


def dualproj_weights(grads: jax.Array, iters: int) -> jax.Array:
    """The weights w (T,) with d = w^T G, the projection of the mean gradient."""
    c, norms = cosines(gram(grads))
    # the mean gradient in unit-gradient coordinates: sum_t (||g_t|| / T) u_t
    v = lower_bounded_qp(c, norms[None, :] / c.shape[0], iters)[0]
    return per_gradient(v, norms)


def build(cfg: DualProjConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if cfg.iters < 1:
        raise bad("method.iters", cfg.iters, "an integer >= 1")

    def update(losses, grads, state, key, hparams):
        direction = dualproj_weights(grads, cfg.iters) @ grads
        return MethodOutput(jnp.ones_like(losses), direction, state, {})

    return Method(Needs.SHARED_GRADS, no_state, update, schedules=("joint",))


METHODS.register("dualproj", Entry(DualProjConfig, build))
