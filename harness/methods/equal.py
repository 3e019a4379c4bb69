"""Equal weighting (unitary scalarisation): L = sum_t L_t.

A strong baseline: Kurin et al. 2022, "In Defense of the Unitary Scalarization for Deep
Multi-Task Learning"; Xin et al. 2022, "Do Current Multi-Task Optimization Methods in Deep
Learning Even Help?".
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.schema import Entry


@dataclass
class EqualConfig:
    name: str = "equal"


def build(cfg: EqualConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    def update(losses, grads, state, key, hparams):
        return MethodOutput(jnp.ones_like(losses), None, state, {})

    return Method(Needs.LOSSES, no_state, update)


METHODS.register("equal", Entry(EqualConfig, build))
