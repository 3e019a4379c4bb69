"""Cityscapes (Cordts et al. 2016, "The Cityscapes Dataset for Semantic Urban Scene
Understanding", CVPR) as the multi-task papers use it: semantic segmentation (7 or 19 classes)
and depth (disparity), read from the user's copy of the preprocessed files of the MTAN code
(Liu, Johns and Davison 2019), 2,975 train / 500 val images at 128 x 256. Nothing is downloaded.

    <path>/{train,val}/{image,label_7,depth}/<i>.npy   (label_19 with data.classes=19)

Tasks `segmentation` (metric mIoU) and `depth` (0 = invalid; absolute error). Splits
(harness.data.dense): test = the val folder, the split the published tables report; val =
`data.val_fraction` (default 0.1) of the train folder, drawn with `data.seed`; train = the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.data import dense
from harness.data.base import DATASETS, DataSource, depth, segmentation
from harness.errors import bad
from harness.schema import Entry

CLASSES = (7, 19)


@dataclass
class CityscapesConfig(dense.DenseConfig):
    name: str = "cityscapes"
    classes: int = 7  # 7 or 19: reads label_7/ or label_19/


def spec(t: dense.Target, shape: tuple[int, int]):
    return segmentation(t.task, t.classes, shape) if t.classes else depth(t.task, shape)


def build(cfg: CityscapesConfig) -> DataSource:
    if cfg.classes not in CLASSES:
        raise bad("data.classes", cfg.classes, "7 or 19 (the label_7/ or label_19/ folder)")
    targets = (dense.Target(f"label_{cfg.classes}", "segmentation", None, cfg.classes),
               dense.Target("depth", "depth", 1))
    return dense.build(cfg, "Cityscapes", targets, spec)


DATASETS.register("cityscapes", Entry(CityscapesConfig, build))
