"""CelebA: face images with 40 binary attributes, read from the user's copy (nothing is downloaded).

Liu, Luo, Wang and Tang 2015, "Deep Learning Face Attributes in the Wild" (ICCV); used as a
40-task benchmark by Sener & Koltun 2018 ("Multi-Task Learning as Multi-Objective
Optimization", NeurIPS). `data.path` is a directory in the published layout:

    img_align_celeba/<id>.jpg   the aligned and cropped faces (178 x 218)
    list_attr_celeba.txt        a count line, a line of the 40 attribute names, then one line per
                                image: `<id>.jpg v1 ... v40`, each value 1 or -1
    list_eval_partition.txt     one line per image: `<id>.jpg 0|1|2` (train, val, test)

Each attribute is a 2-class task (label 1 where the file says 1, else 0); `data.tasks` picks
some. Images are read with Pillow, converted to RGB and resized (not cropped) to
`data.image_size` pixels square, then flattened to (N, size * size * 3) floats in [0, 1]
(model.image_shape=[size, size, 3]). `data.n_train`, `data.n_val`, `data.n_test` keep the first
rows of each split in the partition file's order, since the full set at 64 x 64 is about
10 GB of float32.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np
from omegaconf import MISSING

from harness.data.base import DATASETS, Dataset, DataSource, Split, classification
from harness.data.images import read_image
from harness.errors import bad
from harness.schema import Entry

IMAGES = "img_align_celeba"
ATTRIBUTES = "list_attr_celeba.txt"
PARTITION = "list_eval_partition.txt"
SPLITS = ("0", "1", "2")  # train, val, test in the partition file


@dataclass
class CelebAConfig:
    name: str = "celeba"
    path: str = MISSING  # the directory holding the three entries above
    image_size: int = 64  # side of the square the images are resized to
    # Rows kept per split (the first ones in the partition file); null: all of them.
    n_train: Optional[int] = None
    n_val: Optional[int] = None
    n_test: Optional[int] = None
    tasks: Optional[list[str]] = None
    # Imbalanced tasks: task -> number of train rows it may use (its first n rows); each task then
    # draws its own batches. Empty: every task uses every train row.
    train_rows: dict[str, int] = field(default_factory=dict)


def layout_error(cfg: CelebAConfig, problem: str):
    return bad("data.path", cfg.path, f"a CelebA directory ({IMAGES}/, {ATTRIBUTES}, {PARTITION}); {problem}")


def read_lines(cfg: CelebAConfig, name: str) -> list[list[str]]:
    full = os.path.join(os.path.expanduser(cfg.path), name)
    if not os.path.isfile(full):
        raise layout_error(cfg, f"it has no {name}")
    with open(full) as f:
        return [line.split() for line in f if line.strip()]


def read_attributes(cfg: CelebAConfig) -> tuple[list[str], dict[str, np.ndarray]]:
    """Attribute names and, per image file, its (K,) labels in {0, 1}."""
    lines = read_lines(cfg, ATTRIBUTES)
    if len(lines) < 3 or len(lines[0]) != 1 or not lines[0][0].isdigit():
        raise layout_error(cfg, f"{ATTRIBUTES} must start with a count line, then the attribute names")
    names, rows = lines[1], lines[2:]
    labels = {}
    for n, row in enumerate(rows, start=3):
        if len(row) != len(names) + 1 or any(v not in ("1", "-1") for v in row[1:]):
            raise layout_error(cfg, f"{ATTRIBUTES} line {n}: a file name then {len(names)} values of 1 or -1")
        labels[row[0]] = (np.asarray(row[1:], dtype=np.int32) > 0).astype(np.int32)
    if int(lines[0][0]) != len(rows):
        raise layout_error(cfg, f"{ATTRIBUTES} says {lines[0][0]} images and lists {len(rows)}")
    return names, labels


def read_partition(cfg: CelebAConfig, labelled: dict[str, np.ndarray]) -> list[list[str]]:
    """Image files of train, val and test, in the file's order."""
    parts: list[list[str]] = [[], [], []]
    for n, row in enumerate(read_lines(cfg, PARTITION), start=1):
        if len(row) != 2 or row[1] not in SPLITS:
            raise layout_error(cfg, f"{PARTITION} line {n}: a file name then 0, 1 or 2")
        if row[0] not in labelled:
            raise layout_error(cfg, f"{PARTITION} line {n}: {row[0]} has no line in {ATTRIBUTES}")
        parts[int(row[1])].append(row[0])
    for split, files in zip(("train", "val", "test"), parts):
        if not files:
            raise layout_error(cfg, f"{PARTITION} lists no {split} image")
    return parts


def load_images(cfg: CelebAConfig, files: list[str]) -> np.ndarray:
    """(n, size * size * 3) float32 in [0, 1]."""
    out = np.empty((len(files), cfg.image_size ** 2 * 3), np.float32)
    for row, name in enumerate(files):
        full = os.path.join(os.path.expanduser(cfg.path), IMAGES, name)
        if not os.path.isfile(full):
            raise layout_error(cfg, f"it has no {IMAGES}/{name}")
        out[row] = read_image(full, cfg.image_size, "celeba")
    return out


def check(cfg: CelebAConfig) -> None:
    if cfg.image_size < 1:
        raise bad("data.image_size", cfg.image_size, "an integer >= 1")
    for key in ("n_train", "n_val", "n_test"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 1:
            raise bad(f"data.{key}", getattr(cfg, key), "an integer >= 1, or null for every row of the split")


def build(cfg: CelebAConfig) -> DataSource:
    check(cfg)
    names, labels = read_attributes(cfg)
    parts = read_partition(cfg, labels)
    splits = []
    for files, key in zip(parts, ("n_train", "n_val", "n_test")):
        files = files[:getattr(cfg, key)]  # None keeps all
        y = np.stack([labels[f] for f in files])
        splits.append((load_images(cfg, files), {n: y[:, k] for k, n in enumerate(names)}))

    def generate(key: Any, hparams: dict[str, Any]) -> Dataset:
        # The arrays are fixed at build time; the key and hparams play no part.
        return Dataset(*(Split(jnp.asarray(x), {n: jnp.asarray(v) for n, v in y.items()}) for x, y in splits))

    def describe(dataset: Dataset) -> dict[str, Any]:
        # Share of positive train labels per attribute: many are rare (a majority guess is strong).
        return {f"{n}_train_positive": float(v.mean()) for n, v in splits[0][1].items()}

    return DataSource(tuple(classification(n, 2) for n in names), cfg.image_size ** 2 * 3, generate, {}, describe)


DATASETS.register("celeba", Entry(CelebAConfig, build))
