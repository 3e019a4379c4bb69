"""STCH, smooth Tchebycheff scalarisation (Lin et al. 2024, "Smooth Tchebycheff Scalarization for
Multi-Objective Optimization").

Minimises mu * log sum_t exp(f_t / mu), a smooth maximum of the task objectives f_t that tends to
the Tchebycheff scalarisation max_t f_t as mu -> 0 and to the mean plus a constant as mu grows.
Its gradient weights the task losses by w_t = T softmax(f / mu)_t df_t/dL_t (times T, as in the
reference, so that equal objectives give weight 1 each). transform:
  log  f_t = log(L_t / L_t^0), the objective of the authors' multi-task code (via LibMTL): each
       loss relative to its reference level L_t^0, so the tasks are compared on a common scale;
       w_t = T softmax(f / mu)_t / L_t.
  raw  f_t = L_t, the paper's formula with unit preferences and ideal point 0 (losses are >= 0).
Schedules: joint only (it trades the tasks off against each other within a step).

Differences from the reference implementation: the reference level L^0 is the loss of the first
step (kept in the state), where the reference averages the losses over a warm-up epoch spent
minimising sum_t log L_t; no warm-up phase. Losses are floored at 1e-20 inside the logarithm, as
there.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic
from harness.schema import Entry

TRANSFORMS = ("log", "raw")
FLOOR = 1e-20


@dataclass
class STCHConfig:
    name: str = "stch"
    mu: float = dynamic(1.0)  # smoothing: small -> max_t f_t, large -> the mean
    transform: str = "log"  # log | raw


def stch_weights(losses: jax.Array, reference: jax.Array, mu: jax.Array, transform: str) -> jax.Array:
    """w_t = d/dL_t of T mu logsumexp(f / mu), for the objectives f of `transform`."""
    num_tasks = losses.shape[0]
    if transform == "raw":
        return num_tasks * jax.nn.softmax(losses / mu)
    safe = jnp.maximum(losses, FLOOR)
    f = jnp.log(safe / jnp.maximum(reference, FLOOR))
    return num_tasks * jax.nn.softmax(f / mu) / safe


def build(cfg: STCHConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if cfg.transform not in TRANSFORMS:
        raise bad("method.transform", cfg.transform, f"one of {', '.join(TRANSFORMS)}")
    if not cfg.mu > 0:
        raise bad("method.mu", cfg.mu, "a number > 0")

    def init(num_tasks: int, grad_dim: int) -> jax.Array:
        return jnp.zeros((num_tasks,), jnp.float32)  # L^0; 0 until the first step

    def update(losses, grads, state, key, hparams):
        reference = jnp.where(state > 0, state, losses)
        weights = stch_weights(losses, reference, hparams["mu"], cfg.transform)
        return MethodOutput(weights, None, reference, {})

    return Method(Needs.LOSSES, init, update, schedules=("joint",))


METHODS.register("stch", Entry(STCHConfig, build))
