"""`lenet`: the multi-task LeNet of Sener & Koltun 2018, hard sharing at a chosen depth.

Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS), MultiMNIST
network (their MultiLeNetR / MultiLeNetO): a shared trunk of two 5 x 5 convolutions (10 and 20
channels), each followed by 2 x 2 max pooling and a ReLU, then a dense layer of 50 units; per
task a dense layer of 50 units and a linear 10-way head. Here the hidden layers are, in order,
the conv blocks (`channels`) and `depth` dense layers of `width` units, and the first
`shared_depth` of them are shared: the defaults (channels [10, 20], depth 2, width 50,
shared_depth 3) are the paper's network, `shared_depth = 0` is one LeNet per task (the
single-task baseline), and any depth in between moves the split. The reference also applies
dropout (after the second convolution and in the task layers); the harness trains without
dropout, as every other model does.

The reference feeds 28 x 28 images (its loader shrinks the 36 x 36 canvas); on the 36 x 36
canvas of data=multimnist the trunk's dense layer reads 20 x 6 x 6 features instead of 20 x 4 x 4.
The blocks use 'valid' convolutions and pooling that drops an odd last row or column, as
PyTorch's conv2d and max_pool2d do.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import jax
from flax import nnx

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.models import hard, patches
from harness.models.base import MODELS, Model
from harness.models.plans import ACTIVATIONS, check_image, check_mlp, check_shared_depth
from harness.models.sizing import match_width
from harness.schema import Entry

POOL = 2


class PooledConv(nnx.Module):
    """A k x k 'valid' convolution then 2 x 2 max pooling, on flattened images:
    (B, H * W * C) -> (B, H' * W' * C') with H' = (H - k + 1) // 2."""

    def __init__(self, shape: tuple[int, int, int], out_channels: int, kernel: int, key: jax.Array):
        self.shape = shape
        self.conv = nnx.Conv(shape[2], out_channels, kernel_size=(kernel, kernel), padding="VALID",
                             conv_general_dilated=patches.conv_general_dilated, rngs=nnx.Rngs(params=key))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(x.reshape(x.shape[:-1] + self.shape))
        *lead, h, w, c = y.shape
        h, w = h // POOL, w // POOL
        y = y[..., :h * POOL, :w * POOL, :].reshape(*lead, h, POOL, w, POOL, c).max(axis=(-4, -2))
        return y.reshape(*lead, -1)


@dataclass(frozen=True)
class LeNetPlan:
    """Hidden layers 0..C-1 are pooled conv blocks, C..C+dense-1 dense layers of `width` units
    (the Plan protocol of harness.models.plans, so harness.models.layers cuts it like any other)."""

    image: tuple[int, int, int]
    channels: tuple[int, ...]
    kernel: int
    dense: int
    width: int
    act: Callable[[jax.Array], jax.Array]

    @property
    def depth(self) -> int:
        return len(self.channels) + self.dense

    def shape(self, i: int) -> tuple[int, int, int]:
        """Image shape entering conv block i (i <= number of blocks)."""
        h, w, c = self.image
        for out in self.channels[:i]:
            h, w, c = (h - self.kernel + 1) // POOL, (w - self.kernel + 1) // POOL, out
        return h, w, c

    def features(self, i: int) -> int:
        return math.prod(self.shape(i)) if i <= len(self.channels) else self.width

    def layer(self, i: int, key: jax.Array) -> nnx.Module:
        if i < len(self.channels):
            return PooledConv(self.shape(i), self.channels[i], self.kernel, key)
        return nnx.Linear(self.features(i), self.width, rngs=nnx.Rngs(params=key))


@dataclass
class LeNetConfig(hard.HardConfig):
    name: str = "lenet"
    depth: int = 2  # dense hidden layers after the conv blocks
    width: int = 50
    shared_depth: int = 3  # the conv blocks and the first dense layer, as in the paper
    channels: list[int] = field(default_factory=lambda: [10, 20])  # one pooled conv block per entry
    kernel: int = 5  # side of every convolution
    image_shape: list[int] = field(default_factory=lambda: [36, 36])  # [H, W] or [H, W, C]
    # single_task() (from HardConfig): the same LeNet with nothing shared.


def make_plan(cfg: LeNetConfig, input_dim: int) -> LeNetPlan:
    """The config's network; raises a one-line ConfigError naming the key."""
    image = check_image(cfg.image_shape, input_dim)
    if not cfg.channels or any(c < 1 for c in cfg.channels):
        raise bad("model.channels", list(cfg.channels), "a non-empty list of positive channel counts")
    if cfg.kernel < 1:
        raise bad("model.kernel", cfg.kernel, "an integer >= 1")
    check_mlp(cfg.depth, cfg.width, cfg.activation)
    plan = LeNetPlan(image, tuple(cfg.channels), cfg.kernel, cfg.depth, cfg.width, ACTIVATIONS[cfg.activation])
    smallest = min(plan.shape(i)[:2] for i in range(1, len(cfg.channels) + 1))
    if min(smallest) < 1:
        raise bad("model.image_shape", list(cfg.image_shape),
                  f"images large enough for {len(cfg.channels)} blocks of a {cfg.kernel} x {cfg.kernel} "
                  f"convolution and {POOL} x {POOL} pooling (model.channels, model.kernel)")
    check_shared_depth(cfg.shared_depth, plan.depth, bound="the number of model.channels plus model.depth")
    return plan


def build(cfg: LeNetConfig, tasks: tuple[TaskSpec, ...], input_dim: int) -> Model:
    plan = make_plan(cfg, input_dim)
    cfg = match_width(cfg, build, tasks, input_dim)
    return hard.hard_sharing(dataclasses.replace(plan, width=cfg.width), cfg.shared_depth, tasks)


MODELS.register("lenet", Entry(LeNetConfig, build))
