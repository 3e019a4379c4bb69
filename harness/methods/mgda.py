"""MGDA, the multiple-gradient descent algorithm (Sener & Koltun 2018, "Multi-Task Learning as
Multi-Objective Optimization").

alpha* = argmin over the simplex of ||sum_t alpha_t g_t||^2, where g_t is task t's gradient divided
by a normaliser: none | l2 (its norm) | loss (its loss) | loss+ (loss times norm). Two tasks:
closed form; more: pairwise Frank-Wolfe steps from the best pair with exact line search, until the
duality gap is below 1e-5 or after `iters` steps (see solvers.min_norm_simplex). As in the
reference, alpha then weights the raw task losses: the direction is sum_t alpha_t g_t with the
unnormalised g_t, and the task-specific parameters get the same weights. With normaliser "none" the
direction is the min-norm point of the convex hull, so it conflicts with no task (d . g_t >= 0).

Differences from the reference implementation: pairwise steps (which can take weight off a task)
instead of its plain Frank-Wolfe steps, which need thousands of iterations for 1e-3 accuracy with
four or more conflicting tasks; a duality-gap stop instead of a stop on a small change; the exact
line-search step is clipped instead of being replaced by 0.999 / 0.001 at the ends. Default
normaliser "none" (the reference's training script defaults to "loss+"). Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.methods.solvers import EPS, gram, min_norm_simplex
from harness.schema import Entry

NORMALISERS = ("none", "l2", "loss", "loss+")


@dataclass
class MGDAConfig:
    name: str = "mgda"
    normaliser: str = "none"  # none | l2 | loss | loss+
    iters: int = 1000  # most pairwise Frank-Wolfe steps for more than two tasks (it stops on convergence)


def check(normaliser: str, iters: int) -> None:
    if normaliser not in NORMALISERS:
        raise bad("method.normaliser", normaliser, f"one of {', '.join(NORMALISERS)}")
    if iters < 1:
        raise bad("method.iters", iters, "an integer >= 1")


def min_norm_weights(losses: jax.Array, grads: jax.Array, normaliser: str, iters: int) -> jax.Array:
    """The MGDA weights alpha (T,) of the normalised gradients."""
    norms = jnp.sqrt(jnp.sum(grads**2, axis=1))
    scale = {"none": jnp.ones_like(norms), "l2": norms, "loss": losses, "loss+": losses * norms}[normaliser]
    return min_norm_simplex(gram(grads / (scale[:, None] + EPS)), iters)


def build(cfg: MGDAConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    check(cfg.normaliser, cfg.iters)

    def update(losses, grads, state, key, hparams):
        alpha = min_norm_weights(losses, grads, cfg.normaliser, cfg.iters)
        return MethodOutput(alpha, alpha @ grads, state, {})

    return Method(Needs.SHARED_GRADS, no_state, update, schedules=("joint",))


METHODS.register("mgda", Entry(MGDAConfig, build))
