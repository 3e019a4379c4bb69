"""Two overlapping digits per image, after Sener & Koltun's Multi-MNIST.

Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS), put one
digit at the top-left and one at the bottom-right of a canvas, overlapping; the tasks are the
two classes. We scale it down to scikit-learn's bundled 8x8 digits (no download): the left digit
at (0, 0), the right one shifted down-right by `offset` pixels, overlap by pixelwise max. A third
task, "ink" (mean pixel intensity, in its own units), adds a regression head in the spirit
of the classic multi-task tutorials.

The 1797 source images are split into disjoint train/val/test pools before pairs are drawn, so
a source image seen in training never appears in a val or test example.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits

from harness.data.base import DATASETS, Dataset, DataSource, Split, classification, regression
from harness.errors import bad
from harness.schema import Entry

DIGIT = 8  # side of a source image
POOL_FRACTIONS = (0.7, 0.15)  # train and val shares of the source images; test takes the rest


@dataclass
class DigitsConfig:
    name: str = "digits"
    n_train: int = 4000
    n_val: int = 1000
    n_test: int = 1000
    canvas: int = 10  # side of the square image
    offset: int = 2  # down-right shift of the right digit
    seed: int = 0
    tasks: Optional[list[str]] = None
    # Imbalanced tasks: task -> number of train rows it may use (its first n rows); each task then
    # draws its own batches. Empty: every task uses every train row.
    train_rows: dict[str, int] = field(default_factory=dict)


def load_source() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (1797, 8, 8) float32 in [0, 1] and (1797,) int32 labels."""
    digits = load_digits()
    # Pixel values are counts 0..16 (4x4 blocks of a 32x32 bitmap).
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int32)


def source_pairs(n_images: int, sizes: tuple[int, int, int], seed: int) -> list[np.ndarray]:
    """Per split (train, val, test), an (n, 2) array of source-image indices (left, right).

    Each split draws from its own pool; the pools partition the source images.
    """
    # One child stream per split: changing n_train leaves the val and test examples unchanged.
    pool_seq, *split_seqs = np.random.SeedSequence(seed).spawn(4)
    order = np.random.default_rng(pool_seq).permutation(n_images)
    cuts = np.cumsum([round(f * n_images) for f in POOL_FRACTIONS])
    pools = np.split(order, cuts)
    return [np.random.default_rng(s).choice(pool, size=(n, 2))
            for s, pool, n in zip(split_seqs, pools, sizes)]


def render(images: np.ndarray, pairs: np.ndarray, canvas: int, offset: int) -> np.ndarray:
    """(n, canvas, canvas) images: left digit at the top-left, right digit shifted by `offset`."""
    out = np.zeros((len(pairs), canvas, canvas), np.float32)
    out[:, :DIGIT, :DIGIT] = images[pairs[:, 0]]
    window = out[:, offset:offset + DIGIT, offset:offset + DIGIT]
    np.maximum(window, images[pairs[:, 1]], out=window)
    return out


def check(cfg: DigitsConfig) -> None:
    for key in ("n_train", "n_val", "n_test"):
        if getattr(cfg, key) < 1:
            raise bad(f"data.{key}", getattr(cfg, key), "an integer >= 1")
    if cfg.offset < 0:
        raise bad("data.offset", cfg.offset, "an integer >= 0")
    if cfg.canvas < DIGIT + cfg.offset:
        raise bad("data.canvas", cfg.canvas, f"an integer >= {DIGIT} + data.offset = {DIGIT + cfg.offset}")
    if cfg.seed < 0:
        raise bad("data.seed", cfg.seed, "an integer >= 0")


def build(cfg: DigitsConfig) -> DataSource:
    check(cfg)
    images, classes = load_source()
    sizes = (cfg.n_train, cfg.n_val, cfg.n_test)
    pairs = source_pairs(len(images), sizes, cfg.seed)
    pictures = [render(images, p, cfg.canvas, cfg.offset) for p in pairs]
    # Ink in its own units (mean pixel intensity in [0, 1]); training standardises it on the
    # train split (train.standardize_targets), and its mse is reported in these units.
    ink = [p.mean(axis=(1, 2)) for p in pictures]
    splits = [
        (pic.reshape(len(pic), -1),
         {"left": classes[p[:, 0]], "right": classes[p[:, 1]], "ink": i.astype(np.float32)[:, None]})
        for pic, p, i in zip(pictures, pairs, ink)
    ]

    def generate(key: Any, hparams: dict[str, Any]) -> Dataset:
        # The images are fixed by cfg.seed at build time; the key and hparams play no part.
        return Dataset(*(Split(jnp.asarray(x), {n: jnp.asarray(v) for n, v in y.items()})
                         for x, y in splits))

    def describe(dataset: Dataset) -> dict[str, Any]:
        return {"ink_mean": float(ink[0].mean()), "ink_std": float(ink[0].std())}

    return DataSource(
        tasks=(classification("left", 10), classification("right", 10), regression("ink")),
        input_dim=cfg.canvas * cfg.canvas,
        generate=generate,
        dynamic={},
        describe=describe,
    )


DATASETS.register("digits", Entry(DigitsConfig, build))
