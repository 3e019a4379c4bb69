"""Auto-Lambda (Liu, Johns & Davison 2022, "Auto-Lambda: Disentangling Dynamic Task
Relationships"; reference code github.com/lorenmt/auto-lambda, `auto_lambda.py`).

Task weights w are learned by a one-step lookahead: every `update_every` steps,
  theta' = theta - alpha * grad_theta sum_t w_t L_t^train(theta)    (the virtual step)
  w <- Adam(meta_lr) step on  d/dw sum_t L_t^val(theta')
with alpha the trainer's learning rate at that step, L^train on this step's batch and L^val on a
batch of validation rows; the network descends sum_t w_t L_t^train. The weights are neither
clamped nor normalised, as in the reference (with a small meta_lr they stay near their start).

The hypergradient is exact: JAX differentiates through the virtual step (a Hessian-vector
product of the training loss), where the reference approximates that product by a central finite
difference around theta (eps = 0.01 / ||grad_theta' L^val||). The exact one costs one more
backward pass of the same size and has no step-size error; for the harness's models it is cheap.

Other differences from the reference code: the virtual step is a plain gradient step (the
reference adds SGD's momentum buffer and weight decay, as its optimiser is SGD), so with Adam or
another adaptive optimiser alpha * gradient is not the step the optimiser will take. Every task
is primary (the reference can restrict the validation loss to a subset). The weights start at
`init_weight` = 1, the harness's scale for loss weights (the reference starts at 0.1).

Fair comparison: the meta batch comes from the *validation* split, the one the harness holds out
for selection, so the validation rows also train the weights (the paper's formulation; the
reference trainers draw it from a reshuffled copy of the training set). Under `protocol=tuned`
the selection therefore reads a split this method has already fitted its weights to.
Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Lookahead, Method, MethodOutput, Needs, dynamic
from harness.schema import Entry


@dataclass
class AutoLambdaConfig:
    name: str = "auto_lambda"
    meta_lr: float = dynamic(1e-4)  # Adam learning rate of the task weights (the reference's dense default)
    init_weight: float = dynamic(1.0)  # every task weight at the first step
    update_every: int = 1  # steps between weight updates (the reference: every step)


class AutoLambdaState(NamedTuple):
    offset: jax.Array  # (T,) weights - init_weight
    opt_state: optax.OptState


def hypergradient(weights: jax.Array, params, train_losses: Callable, val_losses: Callable,
                  alpha: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(d/dw sum_t L_t^val(theta - alpha grad_theta sum_t w_t L_t^train(theta)), that validation
    loss), exactly, by differentiating through the virtual step."""
    def meta_loss(w):
        g = jax.grad(lambda p: jnp.dot(w, train_losses(p)))(params)
        ahead = jax.tree.map(lambda p, gp: p - alpha * gp, params, g)
        return jnp.sum(val_losses(ahead))

    loss, grad = jax.value_and_grad(meta_loss)(weights)
    return grad, loss


def build(cfg: AutoLambdaConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.meta_lr > 0:
        raise bad("method.meta_lr", cfg.meta_lr, "a number > 0")
    if not cfg.init_weight > 0:
        raise bad("method.init_weight", cfg.init_weight, "a number > 0")
    if not (isinstance(cfg.update_every, int) and cfg.update_every >= 1):
        raise bad("method.update_every", cfg.update_every, "an integer >= 1 (steps between weight updates)")

    def init(num_tasks: int, grad_dim: int) -> AutoLambdaState:
        offset = jnp.zeros((num_tasks,), jnp.float32)
        return AutoLambdaState(offset, optax.adam(1.0).init(offset))

    def update(losses, grads, state, key, hparams):
        return MethodOutput(hparams["init_weight"] + state.offset, None, state, {})

    def prepare(state: AutoLambdaState, ahead: Lookahead, key, hparams):
        weights = hparams["init_weight"] + state.offset

        def meta_step(state):
            grad, _ = hypergradient(weights, ahead.params, ahead.train_losses, ahead.val_losses, ahead.lr)
            step, opt_state = optax.adam(hparams["meta_lr"]).update(grad, state.opt_state)
            return AutoLambdaState(state.offset + step, opt_state)

        if cfg.update_every > 1:  # the step is unbatched, so under vmap this stays a branch
            state = jax.lax.cond(ahead.step % cfg.update_every == 0, meta_step, lambda st: st, state)
        else:
            state = meta_step(state)
        return state, None, {}

    return Method(Needs.LOSSES, init, update, schedules=("joint",), prepare=prepare)


METHODS.register("auto_lambda", Entry(AutoLambdaConfig, build))
