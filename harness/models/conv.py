"""`hard_conv`: hard sharing over a small convolutional network, for image data (the digits canvas).

Every model takes a conv trunk through `model.channels` and `model.image_shape` (see
harness.models.plans); `hard_conv` is `hard` with a conv trunk by default, kept under its own name
for the records and the conf/model/hard_conv.yaml written with it. The inputs arrive flattened,
(B, H * W * C); the network is `channels` convolution blocks followed by `depth` dense hidden
layers of `width` units and a head per task; the first `shared_depth` hidden layers (conv blocks
first, then dense) are shared, and 0 gives separate towers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.models import hard
from harness.models.base import MODELS
from harness.schema import Entry


@dataclass
class HardConvConfig(hard.HardConfig):
    # Plain fields, not `added` ones as in HardConfig: they were always part of this model's identity.
    name: str = "hard_conv"
    depth: int = 1  # dense hidden layers after the conv blocks
    shared_depth: int = 2  # the first k hidden layers (conv blocks, then dense) are shared
    channels: list[int] = field(default_factory=lambda: [16, 32])  # one conv block per entry
    image_shape: list[int] = field(default_factory=lambda: [10, 10])  # [H, W] or [H, W, C]


MODELS.register("hard_conv", Entry(HardConvConfig, hard.build))
