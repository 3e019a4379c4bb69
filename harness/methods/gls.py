"""Geometric loss strategy: minimise the geometric mean of the task losses, (prod_t L_t)^(1/T)
(Chennupati et al. 2019, "MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss
Strategy for Multi-Task Learning").

Its gradient is sum_t w_t grad L_t with w_t = (prod_i L_i)^(1/T) / (T L_t), so the method returns
those weights (computed in log space; losses floored at 1e-12): a task with a small loss gets a
large weight, which makes the update invariant to rescaling any one loss. The reference
implementation backpropagates the geometric mean itself; the gradient is the same.
Schedules: joint and alternate (the weight rescales a lone task's loss by the others' level).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.schema import Entry


@dataclass
class GLSConfig:
    name: str = "gls"


def geometric_weights(losses: jax.Array) -> jax.Array:
    """w_t = d/dL_t of (prod_i L_i)^(1/T)."""
    logs = jnp.log(jnp.maximum(losses, 1e-12))
    return jnp.exp(jnp.mean(logs) - logs) / losses.shape[0]


def build(cfg: GLSConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    def update(losses, grads, state, key, hparams):
        return MethodOutput(geometric_weights(losses), None, state, {})

    return Method(Needs.LOSSES, no_state, update)


METHODS.register("gls", Entry(GLSConfig, build))
