"""CAGrad, conflict-averse gradient descent (Liu et al. 2021, "Conflict-Averse Gradient Descent for
Multi-task Learning").

g0 = mean_t g_t. The direction maximises the worst task improvement min_t g_t . d within the ball
||d - g0|| <= c ||g0||; its dual is w* = argmin over the simplex of g_w . g0 + c ||g0|| ||g_w||
with g_w = sum_t w_t g_t, and then d = g0 + (c ||g0|| / ||g_w||) g_w, rescaled by 1 / (1 + c^2)
(rescale "1+c^2", the reference's multi-task code) or 1 / (1 + c) (rescale "1+c", its toy code). c
= 0 gives the mean gradient. Task-specific parameters get their plain gradients (weights 1), as in
the reference.

Differences from the reference implementation: the inner problem is solved by projected gradient
descent on the simplex with a parallel step-size search, until a step moves no weight by more than
1e-5 or after `iters` steps (solvers.minimize_on_simplex), instead of scipy's SLSQP. Schedules:
joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic, no_state
from harness.methods.solvers import EPS, gram, minimize_on_simplex, normalised
from harness.schema import Entry

RESCALES = ("1+c^2", "1+c")


@dataclass
class CAGradConfig:
    name: str = "cagrad"
    c: float = dynamic(0.4)  # radius of the ball around the mean gradient, relative to its norm
    rescale: str = "1+c^2"  # 1+c^2 | 1+c
    iters: int = 500  # most projected-gradient steps of the inner problem (it stops on convergence)


def cagrad_direction(grads: jax.Array, c: jax.Array, rescale: str, iters: int) -> jax.Array:
    """The CAGrad direction (P,) for gradients (T, P) and radius c."""
    num_tasks = grads.shape[0]
    m = normalised(gram(grads))  # the optimal w is invariant to the scale of M
    mean = jnp.full((num_tasks,), 1.0 / num_tasks, grads.dtype)
    g0_norm = jnp.sqrt(jnp.maximum(mean @ m @ mean, 0.0) + EPS)  # rounding can make it slightly negative

    def dual(w):
        return w @ (m @ mean) + c * g0_norm * jnp.sqrt(jnp.maximum(w @ m @ w, 0.0) + EPS)

    w = minimize_on_simplex(dual, mean, iters)
    lam = c * g0_norm / jnp.sqrt(jnp.maximum(w @ m @ w, 0.0) + EPS)
    d = (mean + lam * w) @ grads
    return d / (1 + c**2 if rescale == "1+c^2" else 1 + c)


def build(cfg: CAGradConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.c >= 0:
        raise bad("method.c", cfg.c, "a number >= 0")
    if cfg.rescale not in RESCALES:
        raise bad("method.rescale", cfg.rescale, f"one of {', '.join(RESCALES)}")
    if cfg.iters < 1:
        raise bad("method.iters", cfg.iters, "an integer >= 1")

    def update(losses, grads, state, key, hparams):
        direction = cagrad_direction(grads, hparams["c"], cfg.rescale, cfg.iters)
        return MethodOutput(jnp.ones_like(losses), direction, state, {})

    return Method(Needs.SHARED_GRADS, no_state, update, schedules=("joint",))


METHODS.register("cagrad", Entry(CAGradConfig, build))
