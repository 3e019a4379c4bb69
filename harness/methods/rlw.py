"""Random loss weighting (Lin et al. 2022, "Reasonable Effectiveness of Random Weighting: A
Litmus Test for Multi-Task Learning").

Fresh weights from `key` every step, rescaled to sum to T. distribution:
  normal     softmax(z), z ~ N(0, I) (the reference implementation's choice)
  uniform    u / sum(u), u ~ U(0, 1)
  dirichlet  Dirichlet(1, ..., 1)
  bernoulli  one task, chosen uniformly, gets all the weight (the paper's constrained Bernoulli)
Schedules: joint only (it randomises the mix of tasks inside one step; the "bernoulli" variant
is itself a random alternating schedule).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.schema import Entry

DISTRIBUTIONS = ("normal", "uniform", "dirichlet", "bernoulli")


@dataclass
class RLWConfig:
    name: str = "rlw"
    distribution: str = "normal"  # normal | uniform | dirichlet | bernoulli


def sample_weights(key: jax.Array, num_tasks: int, distribution: str) -> jax.Array:
    """Random weights (T,) on the simplex."""
    if distribution == "normal":
        return jax.nn.softmax(jax.random.normal(key, (num_tasks,)))
    if distribution == "uniform":
        u = jax.random.uniform(key, (num_tasks,), minval=1e-6)
        return u / jnp.sum(u)
    if distribution == "dirichlet":
        return jax.random.dirichlet(key, jnp.ones((num_tasks,)))
    return jax.nn.one_hot(jax.random.randint(key, (), 0, num_tasks), num_tasks)


def build(cfg: RLWConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if cfg.distribution not in DISTRIBUTIONS:
        raise bad("method.distribution", cfg.distribution, f"one of {', '.join(DISTRIBUTIONS)}")

    def update(losses, grads, state, key, hparams):
        num_tasks = losses.shape[0]
        weights = num_tasks * sample_weights(key, num_tasks, cfg.distribution).astype(losses.dtype)
        return MethodOutput(weights, None, state, {})

    return Method(Needs.LOSSES, no_state, update, schedules=("joint",))


METHODS.register("rlw", Entry(RLWConfig, build))
