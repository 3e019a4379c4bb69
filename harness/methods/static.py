"""Static weighting: L = sum_t w_t L_t with fixed weights from the config.

The classic multi-task tutorials use hand-set weights such as (0.5, 0.5) or (1.0, 0.5). The
weights are a dynamic value, so a weight sweep is one batched program.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.schema import Entry


@dataclass
class StaticConfig:
    name: str = "static"
    # One non-negative weight per task, in the dataset's task order; None means all 1.
    weights: Optional[list[float]] = field(default=None, metadata={"dynamic": True})


def check(cfg: StaticConfig, tasks: tuple[TaskSpec, ...]) -> None:
    if cfg.weights is None:
        return
    names = ", ".join(t.name for t in tasks)
    w = list(cfg.weights)
    if len(w) != len(tasks):
        raise bad("method.weights", w, f"one weight per task ({len(tasks)}: {names})")
    if any(not (x >= 0) for x in w) or sum(w) <= 0:
        raise bad("method.weights", w, "non-negative weights, not all zero")


def build(cfg: StaticConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    check(cfg, tasks)

    def update(losses, grads, state, key, hparams):
        weights = hparams.get("weights", jnp.ones_like(losses))
        return MethodOutput(jnp.broadcast_to(weights, losses.shape), None, state, {})

    return Method(Needs.LOSSES, no_state, update)


METHODS.register("static", Entry(StaticConfig, build))
