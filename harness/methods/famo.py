"""FAMO, fast adaptive multitask optimization (Liu et al. 2023, "FAMO: Fast Adaptive Multitask
Optimization").

Task logits xi (state, start 0), z = softmax(xi). The network descends
sum_t z_t log L_t / c with c = sum_t z_t / L_t, i.e. weights w_t = z_t / (c L_t): a combination of
the log-loss gradients, so the update does not depend on the scale of any one loss. After a step,
with delta_t = log L_t(before) - log L_t(after) the decrease of each log-loss, the logits take
one Adam step (learning rate `lr`, L2 coefficient `gamma`) on J_softmax(xi)^T delta: a task whose
log-loss fell more than the z-weighted average loses weight, so all log-losses fall at similar rates.

Differences from the reference implementation: it re-evaluates the losses on the same batch
after the step; here delta compares the previous step's losses (kept in the state) with this
step's, on the next batch, so the logits lag one step and see batch noise. The weights are
scaled to sum to T (the reference's sum to 1), the scale of equal weighting; minimum losses are
taken as 0 as in the reference's default. Schedules: joint only (the logit update reads the
effect of one step taken on the weighted mix of every task).
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
from harness.schema import Entry

FLOOR = 1e-8  # added to the losses before the logarithm, as in the reference


@dataclass
class FAMOConfig:
    name: str = "famo"
    lr: float = dynamic(0.025)  # Adam learning rate of the logits
    gamma: float = dynamic(0.01)  # L2 regularisation of the logits


class FAMOState(NamedTuple):
    logits: jax.Array  # (T,)
    opt_state: optax.OptState
    previous_losses: jax.Array  # (T,)
    step: jax.Array  # int32


def logit_optimizer(lr: jax.Array, gamma: jax.Array) -> optax.GradientTransformation:
    """Adam with coupled L2 regularisation (torch's Adam weight_decay)."""
    return optax.chain(optax.add_decayed_weights(gamma), optax.adam(lr))


def build(cfg: FAMOConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.lr > 0:
        raise bad("method.lr", cfg.lr, "a number > 0")
    if not cfg.gamma >= 0:
        raise bad("method.gamma", cfg.gamma, "a number >= 0")

    def init(num_tasks: int, grad_dim: int) -> FAMOState:
        logits = jnp.zeros((num_tasks,), jnp.float32)
        opt_state = logit_optimizer(1.0, 0.0).init(logits)
        return FAMOState(logits, opt_state, jnp.ones_like(logits), jnp.zeros((), jnp.int32))

    def update(losses, grads, state, key, hparams):
        decrease = jnp.log(state.previous_losses + FLOOR) - jnp.log(losses + FLOOR)
        _, vjp = jax.vjp(jax.nn.softmax, state.logits)
        opt = logit_optimizer(hparams["lr"], hparams["gamma"])
        step, opt_state = opt.update(vjp(decrease)[0], state.opt_state, state.logits)
        started = state.step > 0
        logits = jnp.where(started, state.logits + step, state.logits)
        opt_state = jax.tree.map(lambda new, old: jnp.where(started, new, old), opt_state, state.opt_state)
        z = jax.nn.softmax(logits)
        inverse = z / (losses + FLOOR)
        weights = losses.shape[0] * inverse / jnp.sum(inverse)
        new_state = FAMOState(logits, opt_state, losses, state.step + 1)
        return MethodOutput(weights, None, new_state, {"z": z})

    return Method(Needs.LOSSES, init, update, schedules=("joint",))


METHODS.register("famo", Entry(FAMOConfig, build))
