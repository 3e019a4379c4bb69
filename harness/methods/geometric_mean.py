"""Geometric-mean scalarisation with preferences: minimise T prod_t L_t^(p_t), the weighted
geometric mean of the task losses (p on the simplex), times T.

Its gradient is sum_t w_t grad L_t with w_t = T p_t G / L_t, G = prod_i L_i^(p_i): a task's
weight is inversely proportional to its loss, so rescaling any one loss leaves the update
unchanged, and the preferences p trace the trade-off between tasks as the weights of a linear
scalarisation do (p = `preferences` normalised to sum 1; none means equal). With equal
preferences this is `gls` (Chennupati et al. 2019) times T, the scale of equal weighting (w = 1
when all losses are equal). The weights are computed in log space; losses are floored at 1e-12.
The preferences are a dynamic value, so a sweep over them is one batched program.
Schedules: joint and alternate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.schema import Entry

FLOOR = 1e-12


@dataclass
class GeometricMeanConfig:
    name: str = "geometric_mean"
    # One non-negative preference per task, in the dataset's task order; None means equal.
    preferences: Optional[list[float]] = field(default=None, metadata={"dynamic": True})


def geometric_mean_weights(losses: jax.Array, preferences: jax.Array) -> jax.Array:
    """w_t = d/dL_t of T prod_i L_i^(p_i), p = preferences / sum(preferences)."""
    p = preferences / jnp.sum(preferences)
    logs = jnp.log(jnp.maximum(losses, FLOOR))
    return losses.shape[0] * p * jnp.exp(jnp.sum(p * logs) - logs)


def build(cfg: GeometricMeanConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if cfg.preferences is not None:
        p = list(cfg.preferences)
        if len(p) != len(tasks):
            raise bad("method.preferences", p, f"one preference per task ({len(tasks)})")
        if any(not (x >= 0) for x in p) or sum(p) <= 0:
            raise bad("method.preferences", p, "non-negative preferences, not all zero")

    def update(losses, grads, state, key, hparams):
        preferences = jnp.broadcast_to(hparams.get("preferences", jnp.ones_like(losses)), losses.shape)
        return MethodOutput(geometric_mean_weights(losses, preferences).astype(losses.dtype), None, state, {})

    return Method(Needs.LOSSES, no_state, update)


METHODS.register("geometric_mean", Entry(GeometricMeanConfig, build))
