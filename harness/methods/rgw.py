"""RGW, random gradient weighting (Lin et al. 2022, "Reasonable Effectiveness of Random
Weighting: A Litmus Test for Multi-Task Learning", Algorithm 2).

The shared parameters move along sum_t lambda_t g_t with fresh random weights lambda from `key`
every step, drawn as in RLW (harness.methods.rlw: normal = softmax of a standard normal,
uniform, dirichlet, bernoulli) and rescaled to sum to T. Unlike RLW, which weights the losses,
only the shared gradients are weighted: task-specific parameters get their plain gradients
(weights 1), so each head learns at its own pace while the shared trunk sees a random mix. The
diagnostic "lambda" records the random weights.

Differences from the reference implementations: TorchJD's Random aggregator (the normal variant,
weights summing to 1) weights the rows of the Jacobian it is given; here the weights sum to T,
the scale of equal weighting, and the other distributions of the paper are a config choice.
Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.methods.rlw import DISTRIBUTIONS, sample_weights
from harness.schema import Entry


@dataclass
class RGWConfig:
    name: str = "rgw"
    distribution: str = "normal"  # normal | uniform | dirichlet | bernoulli


def build(cfg: RGWConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if cfg.distribution not in DISTRIBUTIONS:
        raise bad("method.distribution", cfg.distribution, f"one of {', '.join(DISTRIBUTIONS)}")

    def update(losses, grads, state, key, hparams):
        num_tasks = losses.shape[0]
        lam = num_tasks * sample_weights(key, num_tasks, cfg.distribution).astype(grads.dtype)
        return MethodOutput(jnp.ones_like(losses), lam @ grads, state, {"lambda": lam})

    return Method(Needs.SHARED_GRADS, no_state, update, schedules=("joint",))


METHODS.register("rgw", Entry(RGWConfig, build))
