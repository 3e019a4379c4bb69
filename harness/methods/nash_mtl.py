"""Nash-MTL, multi-task learning as a bargaining game (Navon et al. 2022).

The update d = sum_t alpha_t g_t with alpha > 0 solving alpha_t (M alpha)_t = 1 for all t (M = G
G^T): the Nash bargaining solution, which always has ||d||^2 = T. With D = diag(M) and C = D^-1/2 M
D^-1/2 (the cosine matrix), alpha = D^-1/2 beta where beta_t (C beta)_t = 1, so the solver never
sees the gradient norms. That equation is the optimality condition of the strictly convex,
self-concordant problem min_{beta > 0} 1/2 beta^T C beta - sum_t log beta_t, solved by damped
Newton steps (step 1 / (1 + lambda) with the Newton decrement lambda while lambda > 1/4, full steps
after: they stay in beta > 0 and converge quadratically), warm-started from the previous step's
beta kept in the state. alpha weights the task losses for every parameter, as in the reference, so
no separate direction is returned.

Differences from the reference implementation: it runs up to 20 CCCP iterations of cvxpy/ECOS on M
scaled by its Frobenius norm, with early stopping, and keeps the previous alpha when the solver
fails; here a fixed number of Newton steps on the cosine matrix plus 1e-6 I. A task whose gradient
vanishes (norm below 1e-10 of the largest) has no stake in the bargaining: it gets weight 0 and the
others solve the game among themselves (the equation has no solution for it: alpha_t would grow
without bound). When zero lies in the convex hull of the gradients there is no solution either; the
weights then grow large but stay finite. The reference also clips the shared gradient norm to 1
(use optim.clip_norm for that). The diagnostic "residual" is max_t |alpha_t (M alpha)_t - 1| over
the tasks in the game. Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs
from harness.methods.solvers import cosines, gram
from harness.schema import Entry

RIDGE = 1e-6


@dataclass
class NashMTLConfig:
    name: str = "nash_mtl"
    iters: int = 20  # Newton steps per update


def bargaining_weights(m: jax.Array, start: jax.Array, iters: int) -> tuple[jax.Array, jax.Array]:
    """(alpha, beta): alpha_t (M alpha)_t = 1, and beta = D^1/2 alpha, the next call's warm start
    (`start`; zeros mean none). Vanished gradients get alpha_t = beta_t = 0."""
    c, norms = cosines(m)
    alive = norms > 0
    c = c + RIDGE * jnp.eye(m.shape[0], dtype=m.dtype)
    beta = jnp.where(start > 0, start, 1.0)

    def newton(_, b):
        grad = c @ b - 1.0 / b
        step = jnp.linalg.solve(c + jnp.diag(1.0 / b**2), grad)
        decrement = jnp.sqrt(jnp.maximum(grad @ step, 0.0))
        return b - jnp.where(decrement > 0.25, 1.0 / (1.0 + decrement), 1.0) * step

    # a vanished task decouples in c (zero row, unit diagonal): its beta solves b^2 = 1 on its
    # own and is then set to 0
    beta = jnp.where(alive, jax.lax.fori_loop(0, iters, newton, beta), 0.0)
    return jnp.where(alive, beta / jnp.where(alive, norms, 1.0), 0.0), beta


def build(cfg: NashMTLConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if cfg.iters < 1:
        raise bad("method.iters", cfg.iters, "an integer >= 1")

    def init(num_tasks: int, grad_dim: int) -> jax.Array:
        return jnp.zeros((num_tasks,), jnp.float32)

    def update(losses, grads, state, key, hparams):
        m = gram(grads)
        alpha, alpha_hat = bargaining_weights(m, state, cfg.iters)
        residual = jnp.max(jnp.where(alpha > 0, jnp.abs(alpha * (m @ alpha) - 1.0), 0.0))
        return MethodOutput(alpha, None, alpha_hat, {"residual": residual})

    return Method(Needs.SHARED_GRADS, init, update, schedules=("joint",))


METHODS.register("nash_mtl", Entry(NashMTLConfig, build))
