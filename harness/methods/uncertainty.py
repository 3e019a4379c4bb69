"""Uncertainty weighting (Kendall et al. 2018, "Multi-Task Learning Using Uncertainty to Weigh
Losses for Scene Geometry and Semantics").

Learns s_t = log sigma_t^2 and minimises sum_t 0.5 * (exp(-s_t) L_t + s_t), the regression form,
for every task as the common implementations do. The network gets weights 0.5 exp(-s_t); s
is updated in the method state by Adam with its own learning rate `lr`, on the gradient
0.5 (1 - exp(-s_t) L_t), so exp(s_t) tracks the task's loss level: a noisier task gets a larger
sigma and a smaller weight. The initial s (`init_log_var`, 0 or -0.5 in the common
implementations) is dynamic: the state holds s - init_log_var.

Differences from the reference implementations: s has its own Adam instead of sharing the
model's optimiser. Schedules: joint and alternate (the weight rescales a lone task's loss by its
own noise level).
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


@dataclass
class UncertaintyConfig:
    name: str = "uncertainty"
    lr: float = dynamic(1e-3)  # Adam learning rate of s
    init_log_var: float = dynamic(0.0)  # s at the first step


class UncertaintyState(NamedTuple):
    offset: jax.Array  # s - init_log_var
    opt_state: optax.OptState


def build(cfg: UncertaintyConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.lr > 0:
        raise bad("method.lr", cfg.lr, "a number > 0")

    def init(num_tasks: int, grad_dim: int) -> UncertaintyState:
        offset = jnp.zeros((num_tasks,), jnp.float32)
        return UncertaintyState(offset, optax.adam(1.0).init(offset))

    def update(losses, grads, state, key, hparams):
        log_var = hparams["init_log_var"] + state.offset
        precision = jnp.exp(-log_var)
        step, opt_state = optax.adam(hparams["lr"]).update(0.5 * (1.0 - precision * losses), state.opt_state)
        new_state = UncertaintyState(state.offset + step, opt_state)
        return MethodOutput(0.5 * precision, None, new_state, {"log_var": log_var})

    return Method(Needs.LOSSES, init, update)


METHODS.register("uncertainty", Entry(UncertaintyConfig, build))
