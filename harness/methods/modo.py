"""MoDo, multi-objective gradient with double sampling (Chen et al. 2023, "Three-Way Trade-Off
in Multi-Objective Learning: Optimization, Generalization and Conflict-Avoidance").

Stochastic MGDA with one projected-gradient step on the weights per training step, the Gram
matrix estimated without bias from two independent samples of the gradients:
  lambda <- Proj_simplex(lambda - gamma (G1 G2^T lambda + rho lambda)),   d = G^T lambda.
Here G1 is the previous step's gradients (kept in the state with lambda; on the first step the
current ones), G2 and G the current step's. lambda sums to 1, so d is on the scale of one task's
gradient. Task-specific parameters get their plain gradients (weights 1), as in the reference;
the diagnostic "lambda" records the weights.

Differences from the reference implementation (the authors' code, via LibMTL): the reference
draws three batches per step (two for the Gram estimate, one for the direction) and averages the
task-specific gradients over the three; the trainer draws one batch, so the previous step's
gradients are the second sample. gamma acts on the raw Gram matrix as there, so its scale
depends on the gradients' (the default 1e-3 is the reference's). Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic
from harness.methods.sdmgrad import TwoSampleState, cross_gram, two_sample_init
from harness.methods.solvers import project_simplex
from harness.schema import Entry


@dataclass
class MoDoConfig:
    name: str = "modo"
    gamma: float = dynamic(0.001)  # step size of the weights lambda
    rho: float = dynamic(0.1)  # L2 regularisation of lambda


def build(cfg: MoDoConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.gamma > 0:
        raise bad("method.gamma", cfg.gamma, "a number > 0")
    if not cfg.rho >= 0:
        raise bad("method.rho", cfg.rho, "a number >= 0")

    def update(losses, grads, state, key, hparams):
        lam = state.weights
        pulled = cross_gram(grads, state) @ lam + hparams["rho"] * lam
        lam = project_simplex(lam - hparams["gamma"] * pulled)
        new_state = TwoSampleState(lam, grads, state.step + 1)
        return MethodOutput(jnp.ones_like(losses), lam @ grads, new_state, {"lambda": lam})

    return Method(Needs.SHARED_GRADS, two_sample_init, update, schedules=("joint",))


METHODS.register("modo", Entry(MoDoConfig, build))
