"""GradNorm (Chen et al. 2018, "GradNorm: Gradient Normalization for Adaptive Loss Balancing in
Deep Multitask Networks").

Weights w_t (start at 1, kept in the state) balance the training rates of the tasks. With g_t the
gradient of L_t on the last shared layer W: G_t = w_t ||g_t||, Gbar = mean_t G_t,
r_t = (L_t / L_t(0)) / mean_j (L_j / L_j(0)), and
  L_grad = sum_t |G_t - stop_grad(Gbar r_t^alpha)|.
The network is trained on sum_t w_t L_t with the current weights; then w takes one Adam step (its
own learning rate `lr`) on grad_w L_grad and is renormalised to sum to T. L_t(0) is captured on
the first step.

Differences from the reference implementation: w is floored at 1e-4 before renormalising, so a
weight pushed below zero by a large step cannot flip a task's loss. Schedules: joint only (it
balances the gradients that are summed into one update).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic
from harness.methods.solvers import EPS
from harness.schema import Entry


@dataclass
class GradNormConfig:
    name: str = "gradnorm"
    alpha: float = dynamic(1.5)  # strength of the pull towards equal training rates
    lr: float = dynamic(0.025)  # Adam learning rate of the weights


class GradNormState(NamedTuple):
    weights: jax.Array  # (T,) summing to T
    opt_state: optax.OptState
    initial_losses: jax.Array  # (T,) L_t(0)
    step: jax.Array  # int32


def balance_loss(weights: jax.Array, grad_norms: jax.Array, rates: jax.Array, alpha: jax.Array) -> jax.Array:
    """L_grad, given ||g_t|| and the relative inverse training rates r_t."""
    weighted = weights * grad_norms
    target = jax.lax.stop_gradient(jnp.mean(weighted) * rates**alpha)
    return jnp.sum(jnp.abs(weighted - target))


def build(cfg: GradNormConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.alpha >= 0:
        raise bad("method.alpha", cfg.alpha, "a number >= 0")
    if not cfg.lr > 0:
        raise bad("method.lr", cfg.lr, "a number > 0")

    def init(num_tasks: int, grad_dim: int) -> GradNormState:
        weights = jnp.ones((num_tasks,), jnp.float32)
        return GradNormState(weights, optax.adam(1.0).init(weights), jnp.ones_like(weights), jnp.zeros((), jnp.int32))

    def update(losses, grads, state, key, hparams):
        num_tasks = losses.shape[0]
        initial = jnp.where(state.step == 0, losses, state.initial_losses)
        ratio = losses / jnp.maximum(initial, EPS)
        rates = ratio / jnp.maximum(jnp.mean(ratio), EPS)
        grad_norms = jnp.sqrt(jnp.sum(grads**2, axis=1))
        direction = jax.grad(balance_loss)(state.weights, grad_norms, rates, hparams["alpha"])
        step, opt_state = optax.adam(hparams["lr"]).update(direction, state.opt_state)
        weights = jnp.maximum(state.weights + step, 1e-4)
        weights = num_tasks * weights / jnp.sum(weights)
        new_state = GradNormState(weights, opt_state, initial, state.step + 1)
        return MethodOutput(state.weights, None, new_state, {"weighted_grad_norm": state.weights * grad_norms})

    return Method(Needs.LAST_SHARED_GRADS, init, update, schedules=("joint",))


METHODS.register("gradnorm", Entry(GradNormConfig, build))
