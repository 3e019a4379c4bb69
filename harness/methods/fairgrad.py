"""FairGrad, fair resource allocation in multi-task learning (Ban & Ji 2024, "Fair Resource
Allocation in Multi-Task Learning").

The update d = sum_t w_t g_t with w > 0 solving (M w)_t = w_t^(-1/alpha) for every task
(M = G G^T): the alpha-fair allocation of the "resource" g_t . d among the tasks. alpha = 1 is
proportional fairness (w_t (M w)_t = 1, the Nash-MTL solution), alpha -> 0 the utilitarian sum,
large alpha max-min fairness. Every task gains: g_t . d = w_t^(-1/alpha) > 0. The equation is the
optimality condition of the strictly convex problem min_{w > 0} 1/2 w^T M w - sum_t phi(w_t) with
phi'(w) = w^(-1/alpha); it is solved by Newton steps with a search over step sizes 1, 1/2, ...
that keeps w > 0 and shrinks the equation's residual, on the cosine matrix (see fair_weights).
w weights the task losses for every parameter, as in the reference.

Differences from the reference implementation (the authors' code, via LibMTL): scipy's
least_squares from w = 1/T with bounds w >= 0 there; here Newton steps until the residual of the
rescaled equation is below 1e-5 or after `iters` steps. A task whose gradient vanishes has no
solution (w_t would grow without bound); it gets weight 0 and the others solve the allocation
among themselves. The diagnostic "residual" is max_t |w_t^(1/alpha) (M w)_t - 1| over the tasks
in the allocation. Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic, no_state
from harness.methods.solvers import cosines, gram, iterate
from harness.schema import Entry

STEPS = 2.0 ** -jnp.arange(30)  # the step sizes the backtracking search tries at once


@dataclass
class FairGradConfig:
    name: str = "fairgrad"
    alpha: float = dynamic(1.0)  # fairness: 1 proportional (Nash-MTL), larger -> max-min
    iters: int = 50  # most Newton steps (it stops on convergence)


def fair_weights(m: jax.Array, alpha: jax.Array, iters: int) -> jax.Array:
    """w (T,) with (M w)_t = w_t^(-1/alpha); 0 for vanished gradients.

    With M = D C D (D the gradient norms, C the cosine matrix) and b = D w the equation reads
    (C b)_t = c_t b_t^(-1/alpha) with c_t = n_t^(1/alpha - 1): on the cosine matrix the gradient
    norms enter only through c, raised to a power that is 0 at alpha = 1 (Nash-MTL) and small
    near it, so norms spread over many orders of magnitude stay within float32's reach. c is
    divided by k, its geometric mean, and the solution scaled back: b = k^(alpha / (alpha + 1)) b~.
    """
    c, norms = cosines(m)
    alive = norms > 0
    log_c = (1.0 / alpha - 1.0) * jnp.log(jnp.where(alive, norms, 1.0))
    log_k = jnp.sum(jnp.where(alive, log_c, 0.0)) / jnp.maximum(jnp.sum(alive), 1)
    # vanished tasks decouple in c (zero row, unit diagonal) and are zeroed at the end
    coef = jnp.where(alive, jnp.exp(log_c - log_k), 1.0)

    def equation(b):
        return c @ b - coef * b ** (-1.0 / alpha)

    def residual(b):
        return jnp.max(jnp.abs(equation(b)))

    def newton(b):
        grad = equation(b)
        step = jnp.linalg.solve(c + jnp.diag(coef * b ** (-1.0 / alpha - 1.0) / alpha), grad)
        candidates = b[None] - STEPS[:, None] * step[None]
        positive = jnp.all(candidates > 0, axis=1)
        # merit: the size of the equation's residual (the Newton step is a descent direction for
        # it), which float32 resolves to the end, unlike the objective's last digits
        merit = jax.vmap(lambda x: jnp.sum(equation(x) ** 2))(jnp.where(positive[:, None], candidates, 1.0))
        merit = jnp.where(positive, merit, jnp.inf)
        best = jnp.argmin(merit)
        return jnp.where(merit[best] < jnp.sum(grad**2), candidates[best], b)

    b = iterate(newton, residual, jnp.ones_like(norms), iters) * jnp.exp(log_k * alpha / (alpha + 1.0))
    return jnp.where(alive, b / jnp.where(alive, norms, 1.0), 0.0)


def build(cfg: FairGradConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.alpha > 0:
        raise bad("method.alpha", cfg.alpha, "a number > 0")
    if cfg.iters < 1:
        raise bad("method.iters", cfg.iters, "an integer >= 1")

    def update(losses, grads, state, key, hparams):
        m = gram(grads)
        alpha = hparams["alpha"]
        w = fair_weights(m, alpha, cfg.iters)
        balance = jnp.where(w > 0, w, 1.0) ** (1.0 / alpha) * (m @ w)
        residual = jnp.max(jnp.where(w > 0, jnp.abs(balance - 1.0), 0.0))
        return MethodOutput(w, None, state, {"residual": residual})

    return Method(Needs.SHARED_GRADS, no_state, update, schedules=("joint",))


METHODS.register("fairgrad", Entry(FairGradConfig, build))
