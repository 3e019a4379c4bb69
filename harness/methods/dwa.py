"""Dynamic weight average (Liu et al. 2019, "End-to-End Multi-Task Learning with Attention").

w_t = T exp(r_t / temp) / sum_i exp(r_i / temp) with r_t = Lbar_t(k-1) / Lbar_t(k-2), the ratio of
the mean training losses of the last two completed windows; w = 1 during the first two windows.
A task whose loss falls slowly (r_t near 1 or above) gains weight.

Differences from the reference implementation: windows of `window` steps replace epochs, so the
weights do not depend on the dataset size. Schedules: joint and alternate (a weight rescales a
lone task's loss by how slowly it falls).
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


@dataclass
class DWAConfig:
    name: str = "dwa"
    window: int = 100  # steps per window (the paper's epoch)
    temp: float = dynamic(2.0)  # softmax temperature


class DWAState(NamedTuple):
    step: jax.Array  # int32, steps taken
    running: jax.Array  # (T,) sum of the losses in the current window
    last: jax.Array  # (T,) mean loss of the last completed window
    before_last: jax.Array  # (T,) mean loss of the window before it


def build(cfg: DWAConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if cfg.window < 1:
        raise bad("method.window", cfg.window, "an integer >= 1")
    if not cfg.temp > 0:
        raise bad("method.temp", cfg.temp, "a number > 0")

    def init(num_tasks: int, grad_dim: int) -> DWAState:
        zeros = jnp.zeros((num_tasks,), jnp.float32)
        return DWAState(jnp.zeros((), jnp.int32), zeros, zeros, zeros)

    def update(losses, grads, state, key, hparams):
        ratio = state.last / jnp.maximum(state.before_last, EPS)
        soft = losses.shape[0] * jax.nn.softmax(ratio / hparams["temp"])
        weights = jnp.where(state.step // cfg.window >= 2, soft, jnp.ones_like(losses))
        running = state.running + losses
        closes = (state.step + 1) % cfg.window == 0
        new_state = DWAState(
            state.step + 1,
            jnp.where(closes, 0.0, running),
            jnp.where(closes, running / cfg.window, state.last),
            jnp.where(closes, state.last, state.before_last),
        )
        return MethodOutput(weights, None, new_state, {})

    return Method(Needs.LOSSES, init, update)


METHODS.register("dwa", Entry(DWAConfig, build))
