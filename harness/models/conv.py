"""Hard sharing over a small convolutional network, for image data (the digits canvas).

The inputs arrive flattened, (B, H * W * C); the network is `channels` convolution blocks
(3 x 3, stride 2, 'same' padding, then the activation: each halves the image side, rounding up)
followed by `depth` dense hidden layers of `width` units and a head per task. Sharing depth
keeps the meaning it has for the MLP: the first `shared_depth` of these hidden layers (conv blocks
first, then dense) are shared, the rest belong to each task, and 0 gives separate towers. Keys
follow hard.py, layer by layer, so a task's network is the same alone or beside others.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import jax
from flax import nnx

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.models.base import MODELS, Model
from harness.models.hard import hard_sharing
from harness.models.layers import ACTIVATIONS, check_shared_depth
from harness.models.sizing import match_width
from harness.schema import Entry


@dataclass
class HardConvConfig:
    name: str = "hard_conv"
    image_shape: list[int] = field(default_factory=lambda: [10, 10])  # [H, W] or [H, W, C]
    channels: list[int] = field(default_factory=lambda: [16, 32])  # one conv block per entry
    depth: int = 1  # dense hidden layers after the conv blocks
    width: int = 64  # units of each dense hidden layer (what target_params adjusts)
    shared_depth: int = 2  # the first k hidden layers (conv blocks, then dense) are shared
    activation: str = "relu"
    target_params: Optional[int] = None  # see harness.models.sizing

    def single_task(self) -> "HardConvConfig":
        return dataclasses.replace(self, shared_depth=0, target_params=None)


class ConvBlock(nnx.Module):
    """A 3 x 3 stride-2 convolution on flattened images: (B, H * W * C) -> (B, H' * W' * C')."""

    def __init__(self, shape: tuple[int, int, int], out_channels: int, key: jax.Array):
        self.shape = shape
        self.conv = nnx.Conv(shape[2], out_channels, kernel_size=(3, 3), strides=(2, 2), padding="SAME",
                             rngs=nnx.Rngs(params=key))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(x.reshape(x.shape[:-1] + self.shape))
        return y.reshape(y.shape[:-3] + (-1,))


@dataclass(frozen=True)
class ConvPlan:
    """Hidden layers 0..C-1 are conv blocks, C..C+depth-1 dense layers (see harness.models.layers)."""

    image: tuple[int, int, int]
    channels: tuple[int, ...]
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
            h, w, c = math.ceil(h / 2), math.ceil(w / 2), out
        return h, w, c

    def features(self, i: int) -> int:
        return math.prod(self.shape(i)) if i <= len(self.channels) else self.width

    def layer(self, i: int, key: jax.Array) -> nnx.Module:
        if i < len(self.channels):
            return ConvBlock(self.shape(i), self.channels[i], key)
        return nnx.Linear(self.features(i), self.width, rngs=nnx.Rngs(params=key))


def check(cfg: HardConvConfig, input_dim: int) -> tuple[int, int, int]:
    """The image shape as (H, W, C); raises ConfigError."""
    shape = tuple(cfg.image_shape) + (1,) * (3 - len(cfg.image_shape))
    if len(shape) != 3 or min(shape) < 1 or math.prod(shape) != input_dim:
        raise bad("model.image_shape", list(cfg.image_shape),
                  f"[H, W] or [H, W, C] of positive sizes, H * W * C = {input_dim} (the data's input size)")
    if any(c < 1 for c in cfg.channels):
        raise bad("model.channels", list(cfg.channels), "a list of positive channel counts")
    if cfg.depth < 0 or cfg.depth + len(cfg.channels) < 1:
        raise bad("model.depth", cfg.depth, "an integer >= 0, with at least one conv block or dense layer")
    if cfg.width < 1:
        raise bad("model.width", cfg.width, "an integer >= 1")
    if cfg.activation not in ACTIVATIONS:
        raise bad("model.activation", cfg.activation, f"one of {', '.join(ACTIVATIONS)}")
    check_shared_depth(cfg.shared_depth, len(cfg.channels) + cfg.depth,
                       bound="the number of model.channels plus model.depth")
    return shape


def build(cfg: HardConvConfig, tasks: tuple[TaskSpec, ...], input_dim: int) -> Model:
    image = check(cfg, input_dim)
    cfg = match_width(cfg, build, tasks, input_dim)
    plan = ConvPlan(image, tuple(cfg.channels), cfg.depth, cfg.width, ACTIVATIONS[cfg.activation])
    return hard_sharing(plan, cfg.shared_depth, tasks)


MODELS.register("hard_conv", Entry(HardConvConfig, build))
