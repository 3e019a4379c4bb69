"""Dynamic validation weighting, after the classic Keras multi-task tutorials that adjust loss
weights in a callback at the end of each epoch.

After each evaluation (on_eval), the task lagging on validation gets `step` more weight and
every other task `step` less; the weights are then projected onto {min_weight <= w_t <=
max_weight, sum_t w_t = T} (the clip and the renormalisation at once, so both hold). Between
evaluations the weights stay constant. "Lagging" depends on `compare`:
  score  the lowest validation score (as in the tutorial; needs comparable metrics, e.g. two
         accuracies)
  gain   the lowest relative improvement since the first evaluation, (s - s0) / |s0|, which
         also works for mixed metrics; the first evaluation only records s0.
Nothing changes when all tasks tie. Schedules: joint and alternate (the weight rescales a lone
task's loss by how far it lags).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic
from harness.methods.solvers import EPS
from harness.schema import Entry

COMPARES = ("score", "gain")


@dataclass
class ValidationWeightingConfig:
    name: str = "validation_weighting"
    step: float = dynamic(0.1)  # weight moved per evaluation
    min_weight: float = dynamic(0.1)
    max_weight: float = dynamic(1.9)
    compare: str = "score"  # score | gain


class ValidationState(NamedTuple):
    weights: jax.Array  # (T,) summing to T
    first_scores: jax.Array  # (T,) scores at the first evaluation
    evaluations: jax.Array  # int32


def project_capped(v: jax.Array, total: float, lo: jax.Array, hi: jax.Array, iters: int = 60) -> jax.Array:
    """Euclidean projection onto {lo <= w <= hi, sum w = total}: w = clip(v - tau, lo, hi) with
    tau found by bisection (sum is monotone in tau)."""
    def bisect(_, bounds):
        a, b = bounds
        tau = 0.5 * (a + b)
        over = jnp.sum(jnp.clip(v - tau, lo, hi)) > total
        return jnp.where(over, tau, a), jnp.where(over, b, tau)

    a, b = jax.lax.fori_loop(0, iters, bisect, (jnp.min(v) - hi, jnp.max(v) - lo))
    return jnp.clip(v - 0.5 * (a + b), lo, hi)


def build(cfg: ValidationWeightingConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.step > 0:
        raise bad("method.step", cfg.step, "a number > 0")
    if not 0 <= cfg.min_weight <= 1:
        raise bad("method.min_weight", cfg.min_weight, "a number in [0, 1] (the weights average 1)")
    if not cfg.max_weight >= 1:
        raise bad("method.max_weight", cfg.max_weight, "a number >= 1 (the weights average 1)")
    if cfg.compare not in COMPARES:
        raise bad("method.compare", cfg.compare, f"one of {', '.join(COMPARES)}")

    def init(num_tasks: int, grad_dim: int) -> ValidationState:
        return ValidationState(jnp.ones((num_tasks,), jnp.float32), jnp.zeros((num_tasks,), jnp.float32),
                               jnp.zeros((), jnp.int32))

    def update(losses, grads, state, key, hparams):
        return MethodOutput(state.weights, None, state, {})

    def on_eval(state, val_scores, hparams):
        first = jnp.where(state.evaluations == 0, val_scores, state.first_scores)
        lag = val_scores if cfg.compare == "score" else (val_scores - first) / (jnp.abs(first) + EPS)
        lagging = jax.nn.one_hot(jnp.argmin(lag), lag.shape[0], dtype=state.weights.dtype)
        moved = state.weights + hparams["step"] * (2 * lagging - 1)
        moved = project_capped(moved, lag.shape[0], hparams["min_weight"], hparams["max_weight"])
        weights = jnp.where(jnp.max(lag) > jnp.min(lag), moved, state.weights)
        return ValidationState(weights, first, state.evaluations + 1)

    return Method(Needs.LOSSES, init, update, on_eval=on_eval)


METHODS.register("validation_weighting", Entry(ValidationWeightingConfig, build))
