"""Cross-stitch networks (Misra et al. 2016, "Cross-stitch Networks for Multi-task Learning", CVPR).

Every task has its own column of hidden layers (the separate towers of hard sharing at depth 0:
same layers, same keys). After each of the first `shared_depth` hidden layers a cross-stitch unit
mixes the tasks' activations, h_t <- sum_s alpha_ts h_s, with one T x T matrix alpha per unit
(the paper's per-layer unit, one scalar per task pair). The remaining layers and the head run per
task. `shared_depth` keeps the meaning it has in hard sharing: the first k hidden layers are where
tasks share; 0 leaves separate towers. With a conv trunk (harness.models.plans) the units after
conv blocks mix the tasks' feature maps, flattened, as the paper's units mix its conv layers'
activations: one scalar per task pair per unit, shared by every channel and position.

Initialisation follows the paper's near-identity choice: alpha_self on the diagonal and the rest
of each row spread evenly over the other tasks, so rows sum to one (the paper's (0.9, 0.1) for two
tasks is alpha_self = 0.9). `learn_mixing = false` keeps the units at their initial value as
constants, not parameters; with alpha_self = 1 that is the identity, i.e. separate towers.
The units' values are static: they shape the initialisation, which receives no hparams.

Parameters: the units are shared (params["shared"]["units"]); the columns are task-owned but run
inside the trunk (params["tasks"][t]["column"]), the rest of each column and the head in the task's
head (params["tasks"][t]["tower"]). The trunk returns {task: (B, features entering layer k)}.
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
from harness.models.hard import OwnTowers
from harness.models.layers import Template, hidden, pure, task_key, tower
from harness.models.plans import make_plan
from harness.models.sizing import match_width
from harness.schema import Entry


@dataclass
class CrossStitchConfig(OwnTowers):  # channels, image_shape, single_task()
    name: str = "cross_stitch"
    depth: int = 3
    width: int = 64
    shared_depth: int = 3  # a cross-stitch unit after each of the first k hidden layers
    alpha_self: float = 0.9  # initial diagonal of every unit
    learn_mixing: bool = True  # false: the units stay at their initial value
    activation: str = "relu"
    target_params: Optional[int] = None  # see harness.models.sizing


def initial_mixing(num_tasks: int, alpha_self: float) -> jax.Array:
    """(T, T): alpha_self on the diagonal, (1 - alpha_self) / (T - 1) elsewhere."""
    if num_tasks == 1:
        return jnp.ones((1, 1))
    off = (1.0 - alpha_self) / (num_tasks - 1)
    return jnp.full((num_tasks, num_tasks), off) + (alpha_self - off) * jnp.eye(num_tasks)


def build(cfg: CrossStitchConfig, tasks: tuple[TaskSpec, ...], input_dim: int) -> Model:
    plan = make_plan(cfg, input_dim)
    if not 0.0 <= cfg.alpha_self <= 1.0:
        raise bad("model.alpha_self", cfg.alpha_self, "a number in [0, 1]")
    cfg = match_width(cfg, build, tasks, input_dim)
    plan = dataclasses.replace(plan, width=cfg.width)
    k, names = cfg.shared_depth, [t.name for t in tasks]
    column = Template(lambda key: hidden(plan, key, 0, k))
    towers = {t.name: Template(lambda key, t=t: tower(plan, key, k, t.output_size)) for t in tasks}
    mixing = initial_mixing(len(tasks), cfg.alpha_self)
    learned = cfg.learn_mixing and k > 0

    def init(key):
        own = {t.name: {"column": pure(hidden(plan, task_key(key, t.name), 0, k)),
                        "tower": pure(tower(plan, task_key(key, t.name), k, t.output_size))} for t in tasks}
        return {"shared": {"units": [mixing] * k} if learned else {}, "tasks": own}

    def trunk(params, x):
        columns = [column(params["tasks"][n]["column"]) for n in names]
        h = jnp.stack([x] * len(names))  # (T, B, features), conv feature maps flattened
        for i in range(k):
            h = jnp.stack([plan.act(c.layers[i](h[t])) for t, c in enumerate(columns)])
            unit = params["shared"]["units"][i] if learned else mixing
            h = jnp.einsum("ts,sbf->tbf", unit, h)
        return {n: h[t] for t, n in enumerate(names)}

    def heads(task_params, z):
        return {n: template(task_params[n]["tower"])(z[n]) for n, template in towers.items()}

    def last_shared(shared):
        return shared["units"][k - 1] if learned else shared

    return Model(init, trunk, heads, last_shared, width=plan.width)


MODELS.register("cross_stitch", Entry(CrossStitchConfig, build))
