"""Plans: what hidden layer i of a network is, chosen once from a model config by `make_plan`.

Every model is cut from a plan (see harness.models.layers), so every model takes either trunk:

- `MLPPlan` (`model.channels` empty, the default): `depth` dense hidden layers of `width` units.
- `ConvPlan` (`model.channels=[16, 32] model.image_shape=[10, 10]`): one 3 x 3 stride-2 convolution
  block per entry of `channels` on the flattened images, then `depth` dense hidden layers (0 allowed
  after at least one block). Each block halves the image side (rounding up) and is followed by the
  activation, as in the small convolutional trunks shared across tasks in Misra et al. 2016
  ("Cross-stitch Networks for Multi-task Learning", CVPR).

Layer indices run over conv blocks first, then dense layers, so every depth-like setting
(`shared_depth`, expert depth, tree group depths) keeps its meaning: the first k hidden layers.
Layers map flattened (B, features(i)) arrays to flattened arrays; models never ask which kind a
layer is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from harness.errors import bad
from harness.models import patches

ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh}
CONV_DEPTH = "the number of model.channels plus model.depth"


class Plan(Protocol):
    depth: int
    width: int  # units of each dense hidden layer (what harness.models.sizing adjusts)
    act: Callable[[jax.Array], jax.Array]

    def features(self, i: int) -> int:
        """Number of features entering hidden layer i (i = depth: entering the head)."""

    def layer(self, i: int, key: jax.Array) -> nnx.Module:
        """Hidden layer i, a map (B, features(i)) -> (B, features(i + 1)) before the activation."""


@dataclass(frozen=True)
class MLPPlan:
    """`depth` dense hidden layers of `width` units on an input of `input_dim` features."""

    input_dim: int
    depth: int
    width: int
    act: Callable[[jax.Array], jax.Array]

    def features(self, i: int) -> int:
        return self.input_dim if i == 0 else self.width

    def layer(self, i: int, key: jax.Array) -> nnx.Module:
        return nnx.Linear(self.features(i), self.width, rngs=nnx.Rngs(params=key))


class ConvBlock(nnx.Module):
    """A 3 x 3 stride-2 convolution on flattened images: (B, H * W * C) -> (B, H' * W' * C')."""

    def __init__(self, shape: tuple[int, int, int], out_channels: int, key: jax.Array):
        self.shape = shape
        self.conv = nnx.Conv(shape[2], out_channels, kernel_size=(3, 3), strides=(2, 2), padding="SAME",
                             conv_general_dilated=patches.conv_general_dilated, rngs=nnx.Rngs(params=key))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(x.reshape(x.shape[:-1] + self.shape))
        return y.reshape(y.shape[:-3] + (-1,))


@dataclass(frozen=True)
class ConvPlan:
    """Hidden layers 0..C-1 are conv blocks, C..C+dense-1 dense layers of `width` units."""

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


def check_mlp(depth: int, width: int, activation: str, min_depth: int = 1, why: str = "") -> None:
    """The checks every model config's dense layers share; raises ConfigError."""
    if depth < min_depth:
        raise bad("model.depth", depth, f"an integer >= {min_depth}{why}")
    if width < 1:
        raise bad("model.width", width, "an integer >= 1")
    if activation not in ACTIVATIONS:
        raise bad("model.activation", activation, f"one of {', '.join(ACTIVATIONS)}")


def check_shared_depth(shared_depth: int, depth: int, low: int = 0, bound: str = "model.depth") -> None:
    if not low <= shared_depth <= depth:
        raise bad("model.shared_depth", shared_depth, f"an integer in {low}..{depth} ({bound})")


def check_image(shape: list[int], input_dim: int) -> tuple[int, int, int]:
    """[H, W] or [H, W, C] as (H, W, C); raises ConfigError unless it holds the data's inputs."""
    image = tuple(shape) + (1,) * (3 - len(shape))
    if len(shape) not in (2, 3) or min(image) < 1 or math.prod(image) != input_dim:
        raise bad("model.image_shape", list(shape),
                  f"[H, W] or [H, W, C] of positive sizes, H * W * C = {input_dim} (the data's input size)")
    return image


def depth_bound(cfg: Any) -> str:
    """What bounds depth-like settings of this config, for error messages."""
    return CONV_DEPTH if cfg.channels else "model.depth"


def make_plan(cfg: Any, input_dim: int, low: int = 0) -> MLPPlan | ConvPlan:
    """The plan of a model config: an MLP when `cfg.channels` is empty, conv blocks then dense
    layers otherwise. Validates the config's trunk, and its `shared_depth` (in low..plan depth)
    when it has one; raises a one-line ConfigError naming the key."""
    # Checked even for an MLP: a sweep over channels (none included) keeps one image_shape.
    image = check_image(cfg.image_shape, input_dim) if cfg.image_shape or cfg.channels else None
    if not cfg.channels:
        check_mlp(cfg.depth, cfg.width, cfg.activation)
        plan = MLPPlan(input_dim, cfg.depth, cfg.width, ACTIVATIONS[cfg.activation])
    else:
        if any(c < 1 for c in cfg.channels):
            raise bad("model.channels", list(cfg.channels), "a list of positive channel counts")
        check_mlp(cfg.depth, cfg.width, cfg.activation, min_depth=0, why=" (dense layers after the conv blocks)")
        if cfg.depth == 0 and getattr(cfg, "target_params", None) is not None:
            # Without dense layers the width changes nothing, and no search could reach the target.
            raise bad("model.target_params", cfg.target_params,
                      "null when model.depth = 0 (no dense layers whose width could be matched)")
        plan = ConvPlan(image, tuple(cfg.channels), cfg.depth, cfg.width, ACTIVATIONS[cfg.activation])
    if hasattr(cfg, "shared_depth"):
        check_shared_depth(cfg.shared_depth, plan.depth, low, depth_bound(cfg))
    return plan
