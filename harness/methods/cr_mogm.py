"""CR-MOGM, correlation-reduced stochastic multi-objective gradient manipulation (Zhou et al.
2022, "On the Convergence of Stochastic Multi-Objective Gradient Manipulation and Beyond").

A wrapper around any gradient method whose update combines the task gradients (MGDA, Nash-MTL,
CAGrad, PCGrad, ...: the `wrapped` method, run with its default settings). With stochastic
gradients the weights lambda^_k such a method picks are correlated with the batch's gradients,
which biases the update; CR-MOGM smooths them over steps,
  lambda_k = alpha lambda^_k + (1 - alpha) lambda_(k-1)   (lambda_1 = lambda^_1),
and moves along sum_t lambda_k,t g_t. lambda is kept in the state next to the wrapped method's
own. lambda^ is the wrapped method's weights when it returns none but weights, and otherwise the
weights that express its direction as a combination of the gradients (least squares on the
cosine matrix, so gradient norms spread over many orders of magnitude cost no accuracy; a
vanished gradient gets weight 0). lambda weights the task losses for every parameter, as
MGDA's do.

Differences from the reference: the paper analyses a decaying alpha_k; here alpha is a constant
(dynamic, default 0.5 is our choice). The wrapped method's dynamic values are its defaults.
Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic
from harness.methods.solvers import cosines, gram, per_gradient
from harness.schema import Entry, dynamic_values


@dataclass
class CRMOGMConfig:
    name: str = "cr_mogm"
    wrapped: str = "mgda"  # the gradient method whose weights are smoothed
    alpha: float = dynamic(0.5)  # weight of the new weights in the moving average


class CRMOGMState(NamedTuple):
    wrapped: Any  # the wrapped method's state
    lam: jax.Array  # (T,) the smoothed weights
    step: jax.Array  # int32


def combination_weights(grads: jax.Array, direction: jax.Array) -> jax.Array:
    """w (T,) with G^T w nearest to `direction` (least squares, least norm)."""
    c, norms = cosines(gram(grads))
    projections = jnp.where(norms > 0, grads @ direction / jnp.where(norms > 0, norms, 1.0), 0.0)
    return per_gradient(jnp.linalg.pinv(c, hermitian=True) @ projections, norms)


def build(cfg: CRMOGMConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if cfg.wrapped == "cr_mogm" or cfg.wrapped not in METHODS:
        valid = [n for n in METHODS.names() if n != "cr_mogm"]
        raise bad("method.wrapped", cfg.wrapped, f"a gradient method: one of {', '.join(valid)}")
    entry = METHODS.get(cfg.wrapped)
    inner_cfg = entry.schema()
    inner = entry.build(inner_cfg, tasks)
    if inner.needs is Needs.LOSSES:
        raise bad("method.wrapped", cfg.wrapped, "a method that combines task gradients (this one weights losses)")
    if "joint" not in inner.schedules:
        raise bad("method.wrapped", cfg.wrapped, "a method that works with schedule joint")
    inner_hp = {k: jnp.asarray(v) for k, v in dynamic_values(inner_cfg).items()}
    if not 0 < cfg.alpha <= 1:
        raise bad("method.alpha", cfg.alpha, "a number in (0, 1]")

    def init(num_tasks: int, grad_dim: int) -> CRMOGMState:
        return CRMOGMState(inner.init(num_tasks, grad_dim), jnp.zeros((num_tasks,), jnp.float32),
                           jnp.zeros((), jnp.int32))

    def update(losses, grads, state, key, hparams):
        out = inner.update(losses, grads, state.wrapped, key, inner_hp)
        fresh = out.weights if out.direction is None else combination_weights(grads, out.direction)
        alpha = jnp.where(state.step > 0, hparams["alpha"], 1.0)
        lam = (alpha * fresh + (1.0 - alpha) * state.lam).astype(losses.dtype)
        return MethodOutput(lam, None, CRMOGMState(out.state, lam, state.step + 1), {"fresh": fresh})

    return Method(inner.needs, init, update, schedules=("joint",))


METHODS.register("cr_mogm", Entry(CRMOGMConfig, build))
