"""Soft parameter sharing (Duong et al. 2015, "Low Resource Dependency Parsing: Cross-lingual
Parameter Sharing in a Neural Network Parser"; Ruder 2017 overview, section 4.2).

Every task has its own tower (exactly the separate towers of hard sharing at depth 0: same
layers, same keys), and the training loss gains

    coupling * sum over task pairs (i, j) of sum over hidden layers l < shared_depth
               of ||theta_i^l - theta_j^l||^2          (kernels and biases),

which pulls corresponding layers of different tasks towards each other (with a conv trunk,
harness.models.plans, conv blocks are hidden layers like any other: their kernels are coupled
too). The heads differ in output size, so only hidden layers are coupled. `shared_depth` says
how many of the lowest hidden layers are coupled, the same meaning as in hard sharing (there
they are tied). The coupling is a dynamic field: runs that differ only in it are one compiled
program.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.models.base import MODELS, Model
from harness.models.hard import OwnTowers, hard_sharing
from harness.models.plans import make_plan
from harness.models.sizing import match_width
from harness.schema import Entry, dynamic


@dataclass
class SoftConfig(OwnTowers):  # channels, image_shape, single_task()
    name: str = "soft"
    depth: int = 3
    width: int = 64
    shared_depth: int = 3  # the first k hidden layers are coupled by the penalty
    activation: str = "relu"
    # lambda; 0.1 is the best validation MSE of {1e-4 .. 10} on experiments/architectures.yaml data.
    coupling: float = dynamic(0.1)
    target_params: Optional[int] = None  # see harness.models.sizing


def pairwise_distance(stacked: jax.Array) -> jax.Array:
    """sum over pairs i < j of ||a_i - a_j||^2 for a (T, ...) array, as T * sum_i ||a_i - mean||^2
    (the same number, in O(T) and without cancellation)."""
    centred = stacked - stacked.mean(axis=0)
    return stacked.shape[0] * jnp.sum(centred**2)


def build(cfg: SoftConfig, tasks: tuple[TaskSpec, ...], input_dim: int) -> Model:
    plan = make_plan(cfg, input_dim)
    if cfg.coupling < 0:
        raise bad("model.coupling", cfg.coupling, "a number >= 0")
    cfg = match_width(cfg, build, tasks, input_dim)
    towers = hard_sharing(dataclasses.replace(plan, width=cfg.width), 0, tasks)
    names, k = [t.name for t in tasks], cfg.shared_depth

    def penalty(params, hparams):
        total = jnp.zeros(())
        for i in range(k):
            per_task = [params["tasks"][n]["layers"][i] for n in names]
            layer = jax.tree.map(lambda *leaves: jnp.stack(leaves), *per_task)
            total += sum(pairwise_distance(leaf) for leaf in jax.tree.leaves(layer))
        return hparams["coupling"] * total

    return towers._replace(penalty=penalty)


MODELS.register("soft", Entry(SoftConfig, build))
