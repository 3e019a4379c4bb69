"""Mixtures of experts: MMoE and OMoE (Ma et al. 2018, "Modeling Task Relationships in
Multi-task Learning with Multi-gate Mixture-of-Experts", KDD).

E experts, each a stack of the first `shared_depth` hidden layers on x (conv blocks included, with
a conv trunk: harness.models.plans), are shared by all tasks.
A gate g(x) = softmax(W_g x) (a linear map of x, no bias, as in the paper) weighs the experts;
the gated sum sum_e g_e(x) f_e(x) feeds a tower of the remaining hidden layers and a head.
MMoE (`mmoe`) gives every task its own gate (task-owned); OMoE (`omoe`, the paper's one-gate
baseline) has one gate shared by all tasks. `shared_depth` keeps its hard-sharing meaning: the
first k hidden layers are the shared part, here as experts.

Keys follow hard sharing: expert 0 is initialised exactly like hard sharing's trunk and the
towers like its towers, so with one expert (whose gate is a softmax over one logit, i.e. 1) the
model is the shared-bottom model, hard sharing at depth `shared_depth`.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.models.base import MODELS, Model
from harness.models.hard import OwnTowers
from harness.models.layers import Template, hidden, pure, shared_key, task_key, tower
from harness.models.plans import make_plan
from harness.models.sizing import match_width
from harness.schema import Entry

# fold_in tags far above any layer index, so experts and gates never reuse a layer's key.
EXPERT_TAG, GATE_TAG = 0xE0000, 0x6A7E


@dataclass
class MMoEConfig(OwnTowers):  # channels, image_shape, single_task()
    name: str = "mmoe"
    depth: int = 3
    width: int = 64  # of experts and towers alike
    shared_depth: int = 1  # expert depth: the first k hidden layers
    num_experts: int = 4
    activation: str = "relu"
    target_params: Optional[int] = None  # see harness.models.sizing


@dataclass
class OMoEConfig(MMoEConfig):
    name: str = "omoe"


class Gate(nnx.Module):
    """softmax(W_g x): (B, D) -> (B, E) expert weights that sum to one."""

    def __init__(self, input_dim: int, num_experts: int, key: jax.Array):
        self.linear = nnx.Linear(input_dim, num_experts, use_bias=False, rngs=nnx.Rngs(params=key))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.softmax(self.linear(x), axis=-1)


def expert_key(key: jax.Array, e: int) -> jax.Array:
    """Expert 0 gets hard sharing's trunk key; the others keys of their own."""
    base = shared_key(key)
    return base if e == 0 else jax.random.fold_in(base, EXPERT_TAG + e)


def build(cfg: MMoEConfig, tasks: tuple[TaskSpec, ...], input_dim: int, gate_per_task: bool) -> Model:
    plan = make_plan(cfg, input_dim, low=1)
    if cfg.num_experts < 1:
        raise bad("model.num_experts", cfg.num_experts, "an integer >= 1")
    cfg = match_width(cfg, functools.partial(build, gate_per_task=gate_per_task), tasks, input_dim)
    plan = dataclasses.replace(plan, width=cfg.width)
    k, E, names = cfg.shared_depth, cfg.num_experts, [t.name for t in tasks]
    expert = Template(lambda key: hidden(plan, key, 0, k))
    gate = Template(lambda key: Gate(input_dim, E, key))
    towers = {t.name: Template(lambda key, t=t: tower(plan, key, k, t.output_size)) for t in tasks}

    def init(key):
        experts = [pure(hidden(plan, expert_key(key, e), 0, k)) for e in range(E)]
        shared = {"experts": jax.tree.map(lambda *leaves: jnp.stack(leaves), *experts)}
        own = {t.name: {"tower": pure(tower(plan, task_key(key, t.name), k, t.output_size))} for t in tasks}
        if gate_per_task:
            for t in tasks:
                gate_key = jax.random.fold_in(task_key(key, t.name), GATE_TAG)
                own[t.name]["gate"] = pure(Gate(input_dim, E, gate_key))
        else:
            shared["gate"] = pure(Gate(input_dim, E, jax.random.fold_in(shared_key(key), GATE_TAG)))
        return {"shared": shared, "tasks": own}

    def trunk(params, x):
        # (E, B, features(k)): the width, or a flattened feature map when experts end in a conv block
        outputs = jax.vmap(lambda p: expert(p)(x))(params["shared"]["experts"])

        def mix(gate_params):
            return jnp.einsum("be,ebf->bf", gate(gate_params)(x), outputs)

        if gate_per_task:
            return {n: mix(params["tasks"][n]["gate"]) for n in names}
        return mix(params["shared"]["gate"])

    def heads(task_params, z):
        return {n: template(task_params[n]["tower"])(z[n] if gate_per_task else z)
                for n, template in towers.items()}

    def last_shared(shared):
        return shared["experts"]["layers"][k - 1]

    return Model(init, trunk, heads, last_shared, width=plan.width)


MODELS.register("mmoe", Entry(MMoEConfig, functools.partial(build, gate_per_task=True)))
MODELS.register("omoe", Entry(OMoEConfig, functools.partial(build, gate_per_task=False)))
