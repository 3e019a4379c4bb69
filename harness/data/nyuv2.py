"""NYUv2 (Silberman et al. 2012, "Indoor Segmentation and Support Inference from RGBD Images",
ECCV) as the multi-task papers use it: 13-class semantic segmentation, depth and surface normals,
read from the user's copy of the preprocessed files of the MTAN code (Liu, Johns and Davison
2019), 795 train / 654 val images at 288 x 384. Nothing is downloaded.

    <path>/{train,val}/{image,label,depth,normal}/<i>.npy

Tasks `segmentation` (13 classes, -1 ignored; metric mIoU), `depth` (0 = invalid; absolute
error) and `normal` (mean angle error). Splits (harness.data.dense): test = the val folder, the
split the published tables report; val = `data.val_fraction` (default 0.1) of the train folder,
drawn with `data.seed`; train = the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.data import dense
from harness.data.base import DATASETS, DataSource, depth, normal, segmentation
from harness.schema import Entry

CLASSES = 13
TARGETS = (dense.Target("label", "segmentation", None, CLASSES), dense.Target("depth", "depth", 1),
           dense.Target("normal", "normal", 3))


@dataclass
class NYUv2Config(dense.DenseConfig):
    name: str = "nyuv2"


def spec(t: dense.Target, shape: tuple[int, int]):
    if t.classes:
        return segmentation(t.task, t.classes, shape)
    return depth(t.task, shape) if t.task == "depth" else normal(t.task, shape)


def build(cfg: NYUv2Config) -> DataSource:
    return dense.build(cfg, "NYUv2", TARGETS, spec)


DATASETS.register("nyuv2", Entry(NYUv2Config, build))
