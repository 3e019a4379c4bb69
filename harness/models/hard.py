"""Hard parameter sharing at a chosen depth (Caruana 1997; Ruder 2017 overview).

An MLP of L hidden layers per task (or, with `channels`, conv blocks then L dense layers:
harness.models.plans); the first `shared_depth` layers are one trunk used by every task, the
remaining layers and the head belong to each task. Every task sees the same architecture at
every depth, so a sweep over `shared_depth` changes sharing and nothing else; `shared_depth = 0`
gives separate towers.

Initialisation keys are tied to the layer, not to the depth split: hidden layer i of task t is
initialised from fold_in(task_key(t), i) and shared layer i from fold_in(shared_key, i). A task's
tower is therefore bit-identical whether the task is trained alone or beside others, unless
`init_stream` moves the whole initialisation to an independent key stream: then separate towers
(`shared_depth=0`) are statistically identical to the single-task baselines but not
bit-identical, the null design of experiments/calibration.yaml.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import jax

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.models.base import MODELS, Model
from harness.models.layers import Template, hidden, pure, shared_key, task_key, tower
from harness.models.plans import Plan, make_plan
from harness.models.sizing import match_width
from harness.schema import Entry, added


@dataclass
class HardConfig:
    name: str = "hard"
    depth: int = 3  # L hidden layers per task (dense ones, after any conv blocks)
    width: int = 64
    shared_depth: int = 1  # k in 0..L: the first k hidden layers are shared
    activation: str = "relu"
    # Pick the width whose total parameter count is closest to this (harness.models.sizing).
    target_params: Optional[int] = None
    # A conv trunk (harness.models.plans): one conv block per entry, on images of image_shape
    # ([H, W] or [H, W, C]); empty: an MLP.
    channels: list[int] = added(default_factory=list)
    image_shape: list[int] = added(default_factory=list)
    # 0: the layer keys above. k > 0: every key folded with k first, an initialisation
    # independent of the baselines' (which always use stream 0) with the same distribution.
    init_stream: int = added(0)

    def single_task(self) -> "HardConfig":
        """A task's own tower: the same network with nothing shared, at the config's width."""
        return dataclasses.replace(self, shared_depth=0, target_params=None, init_stream=0)


@dataclass
class OwnTowers:
    """Base of the model configs whose single-task baseline is a task's own hard-sharing tower of
    the same depth, width, activation and trunk (soft, cross-stitch, MMoE/OMoE, tree): the conv
    trunk fields, as in HardConfig, and `single_task`."""

    channels: list[int] = added(default_factory=list)
    image_shape: list[int] = added(default_factory=list)

    def single_task(self) -> HardConfig:
        return HardConfig(depth=self.depth, width=self.width, shared_depth=0, activation=self.activation,
                          channels=list(self.channels), image_shape=list(self.image_shape))


def hard_sharing(plan: Plan, k: int, tasks: tuple[TaskSpec, ...], init_stream: int = 0) -> Model:
    """The plan's first k hidden layers shared by every task, the rest and a head per task;
    `init_stream` > 0 draws the initialisation from an independent stream (HardConfig)."""
    trunk_template = Template(lambda key: hidden(plan, key, 0, k))
    tower_templates = {t.name: Template(lambda key, t=t: tower(plan, key, k, t.output_size)) for t in tasks}

    def init(key):
        key = jax.random.fold_in(key, init_stream) if init_stream else key
        return {"shared": pure(hidden(plan, shared_key(key), 0, k)),
                "tasks": {t.name: pure(tower(plan, task_key(key, t.name), k, t.output_size)) for t in tasks}}

    def trunk(params, x):
        return trunk_template(params["shared"])(x) if k > 0 else x

    def heads(towers, z):
        return {name: template(towers[name])(z) for name, template in tower_templates.items()}

    def last_shared(shared):
        return shared["layers"][k - 1] if k > 0 else shared

    return Model(init, trunk, heads, last_shared, width=plan.width)


def build(cfg: HardConfig, tasks: tuple[TaskSpec, ...], input_dim: int) -> Model:
    if cfg.init_stream < 0:
        raise bad("model.init_stream", cfg.init_stream, "an integer >= 0")
    plan = make_plan(cfg, input_dim)
    cfg = match_width(cfg, build, tasks, input_dim)
    return hard_sharing(dataclasses.replace(plan, width=cfg.width), cfg.shared_depth, tasks, cfg.init_stream)


MODELS.register("hard", Entry(HardConfig, build))
