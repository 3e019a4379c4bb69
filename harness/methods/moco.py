"""MoCo, multi-objective gradient correction (Fernando et al. 2023, "Mitigating Gradient Bias in
Multi-objective Learning: A Provably Convergent Approach").

Stochastic MGDA is biased: the min-norm weights of one batch's gradients are not those of the
expected gradients. MoCo tracks the gradients instead of using them raw. The state holds
Y (T, P), an exponential average of the per-task gradients, and weights lambda on the simplex:
  Y <- Y - beta_k (Y - G~),        G~_t = L_t g_t / ||g_t|| (as in the authors' code)
  lambda <- Proj_simplex(lambda - gamma_k (Y Y^T + rho I) lambda)
  d = Y^T lambda,
with the step sizes beta_k = beta / k^beta_sigma and gamma_k = gamma / k^gamma_sigma at step
k = 1, 2, ... . lambda is one projected-gradient step on MGDA's min-norm problem per training
step, so the weights move slowly and average out batch noise. Task-specific parameters get their
plain gradients (weights 1), as in the reference; the diagnostic "lambda" records the weights.

Differences from the reference implementation (the authors' code, via LibMTL): lambda is
projected onto the simplex, as in the paper's algorithm, where that code applies a softmax to
lambda - gamma_k (...) lambda (a different map onto the simplex, which never reaches a vertex).
Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic
from harness.methods.solvers import EPS, project_simplex
from harness.schema import Entry


@dataclass
class MoCoConfig:
    name: str = "moco"
    beta: float = dynamic(0.5)  # step size of the gradient tracking Y
    beta_sigma: float = dynamic(0.5)  # its decay: beta / k^beta_sigma
    gamma: float = dynamic(0.1)  # step size of the weights lambda
    gamma_sigma: float = dynamic(0.5)  # its decay: gamma / k^gamma_sigma
    rho: float = dynamic(0.0)  # L2 regularisation of lambda


class MoCoState(NamedTuple):
    tracked: jax.Array  # (T, P) Y
    lam: jax.Array  # (T,) lambda
    step: jax.Array  # int32, steps taken so far


def build(cfg: MoCoConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    for field, value in [("beta", cfg.beta), ("gamma", cfg.gamma)]:
        if not 0 < value:
            raise bad(f"method.{field}", value, "a number > 0")
    if not cfg.beta <= 1:
        raise bad("method.beta", cfg.beta, "a number in (0, 1]")
    for field, value in [("beta_sigma", cfg.beta_sigma), ("gamma_sigma", cfg.gamma_sigma), ("rho", cfg.rho)]:
        if not value >= 0:
            raise bad(f"method.{field}", value, "a number >= 0")

    def init(num_tasks: int, grad_dim: int) -> MoCoState:
        return MoCoState(jnp.zeros((num_tasks, grad_dim), jnp.float32),
                         jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32), jnp.zeros((), jnp.int32))

    def update(losses, grads, state, key, hparams):
        k = (state.step + 1).astype(grads.dtype)
        beta = hparams["beta"] / k ** hparams["beta_sigma"]
        gamma = hparams["gamma"] / k ** hparams["gamma_sigma"]
        norms = jnp.sqrt(jnp.sum(grads**2, axis=1, keepdims=True))
        scaled = grads / (norms + EPS) * losses[:, None]
        tracked = state.tracked - beta * (state.tracked - scaled)
        m = tracked @ tracked.T + hparams["rho"] * jnp.eye(losses.shape[0], dtype=grads.dtype)
        lam = project_simplex(state.lam - gamma * (m @ state.lam))
        new_state = MoCoState(tracked, lam, state.step + 1)
        return MethodOutput(jnp.ones_like(losses), lam @ tracked, new_state, {"lambda": lam})

    return Method(Needs.SHARED_GRADS, init, update, schedules=("joint",))


METHODS.register("moco", Entry(MoCoConfig, build))
