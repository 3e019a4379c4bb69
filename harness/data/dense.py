"""What the dense-prediction datasets (data=nyuv2, data=cityscapes) share: reading the
preprocessed layout of the MTAN code (Liu, Johns and Davison 2019, "End-to-End Multi-Task
Learning with Attention", CVPR), which Nash-MTL, CAGrad, FAMO and LibMTL read too:

    <path>/train/<folder>/<i>.npy    i = 0, 1, ... the same indices in every folder
    <path>/val/<folder>/<i>.npy

with folders `image` (H x W x 3 float), a label folder (H x W integer class, -1 = ignored; float
files holding whole numbers are accepted, as the published ones are float), `depth` (H x W x 1
float, 0 = invalid) and, for NYUv2, `normal` (H x W x 3 float, all zero = invalid).

Splits. The published layouts have train and val only, and the papers report on val. Here
test = the val folder (what the published tables report), and val = a `data.val_fraction` of
the train folder drawn with `data.seed` (model selection never sees test); train = the rest.
`data.n_train`, `data.n_val`, `data.n_test` keep the first rows of each (for quick runs).

Images and targets keep the files' resolution, or are resized to `data.image_size` = [H, W]
(images bilinearly, targets by nearest neighbour so ignore and invalid marks survive). Inputs
are flattened to (N, H * W * 3) as every other image dataset's; targets keep their shape:
labels (N, H, W) int32, depth (N, H, W, 1), normals (N, H, W, 3), float32.

Every problem with the files is a one-line ConfigError naming data.path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import MISSING

from harness.data.base import Dataset, DataSource, Split, TaskSpec
from harness.errors import ConfigError, bad

SPLITS = ("train", "val")


@dataclass
class DenseConfig:
    """The fields every dense dataset has."""

    name: str = MISSING
    path: str = MISSING  # the directory holding train/ and val/
    image_size: Optional[list[int]] = None  # [H, W] to resize to; null: the files' resolution
    val_fraction: float = 0.1  # of the train folder, held out as val (test is the val folder)
    seed: int = 0  # draws the val rows
    n_train: Optional[int] = None  # first rows kept of each split; null: all
    n_val: Optional[int] = None
    n_test: Optional[int] = None
    eval_batch: int = 8  # evaluation runs on this many images at a time
    augment: bool = False  # random scale-crop and horizontal flip of training batches
    tasks: Optional[list[str]] = None


@dataclass(frozen=True)
class Target:
    """A folder of per-pixel targets: its task's name, the trailing axis its files have (None:
    H x W), and whether it holds class labels."""

    folder: str
    task: str
    channels: int | None
    classes: int = 0


class Layout:
    """Checks and reads one dataset's files; `what` names it in errors."""

    def __init__(self, cfg: Any, what: str, targets: tuple[Target, ...]):
        self.cfg, self.what, self.targets = cfg, what, targets
        self.root = os.path.expanduser(cfg.path)
        self.shape: tuple[int, int] | None = None

    def error(self, problem: str) -> ConfigError:
        folders = ",".join(["image"] + [t.folder for t in self.targets])
        return bad("data.path", self.cfg.path, f"a {self.what} directory ({{train,val}}/{{{folders}}}/<i>.npy); {problem}")

    def indices(self, split: str) -> list[int]:
        """The file indices of a split, the same in every folder."""
        found = {}
        for folder in ["image"] + [t.folder for t in self.targets]:
            full = os.path.join(self.root, split, folder)
            if not os.path.isdir(full):
                raise self.error(f"it has no {split}/{folder}/ folder")
            names = [n for n in os.listdir(full) if n.endswith(".npy")]
            if any(not n[:-4].isdigit() for n in names):
                odd = next(n for n in names if not n[:-4].isdigit())
                raise self.error(f"{split}/{folder}/{odd} is not named <i>.npy")
            found[folder] = sorted(int(n[:-4]) for n in names)
        first = found["image"]
        if not first:
            raise self.error(f"{split}/image/ holds no .npy file")
        for folder, idx in found.items():
            if len(idx) != len(first):
                raise self.error(f"{split}/image/ has {len(first)} files but {split}/{folder}/ has {len(idx)}")
            if idx != first:
                missing = sorted(set(first) - set(idx))[0]
                raise self.error(f"{split}/{folder}/ has no {missing}.npy")
        return first

    def load(self, split: str, folder: str, i: int) -> np.ndarray:
        name = f"{split}/{folder}/{i}.npy"
        try:
            return np.load(os.path.join(self.root, split, folder, f"{i}.npy"))
        except (ValueError, OSError, EOFError) as err:
            raise self.error(f"{name} is not a readable .npy array ({type(err).__name__})") from None

    def image(self, split: str, i: int) -> np.ndarray:
        a = self.load(split, "image", i)
        name = f"{split}/image/{i}.npy"
        if a.ndim != 3 or a.shape[-1] != 3:
            raise self.error(f"{name} has shape {a.shape}, not H x W x 3")
        if not np.issubdtype(a.dtype, np.floating):
            raise self.error(f"{name} has dtype {a.dtype}, not a float type")
        if self.shape is None:
            self.shape = a.shape[:2]
        elif a.shape[:2] != self.shape:
            raise self.error(f"{name} is {a.shape[0]} x {a.shape[1]}, the first image {self.shape[0]} x {self.shape[1]}")
        return a

    def target(self, split: str, t: Target, i: int) -> np.ndarray:
        a = self.load(split, t.folder, i)
        name = f"{split}/{t.folder}/{i}.npy"
        want = self.shape if t.channels is None else self.shape + (t.channels,)
        if a.shape != want:
            raise self.error(f"{name} has shape {a.shape}, not {' x '.join(map(str, want))} (its image's)")
        if not t.classes:
            if not np.issubdtype(a.dtype, np.floating):
                raise self.error(f"{name} has dtype {a.dtype}, not a float type")
            return a
        if np.issubdtype(a.dtype, np.floating):
            if not np.all(np.isfinite(a) & (a == np.round(a))):
                raise self.error(f"{name} holds values that are not whole numbers (class labels)")
        elif not np.issubdtype(a.dtype, np.integer):
            raise self.error(f"{name} has dtype {a.dtype}, not an integer (or whole-number float) type")
        if a.size and (a.min() < -1 or a.max() >= t.classes):
            bad_value = a.min() if a.min() < -1 else a.max()
            raise self.error(f"{name} holds label {bad_value:g}, outside -1 (ignored) and 0..{t.classes - 1}")
        return a.astype(np.int32)

    def read(self, split: str, rows: list[int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Inputs (n, H * W * 3) and targets of the given file indices, resized when asked."""
        images = [self.image(split, i) for i in rows]
        ys = {t.task: np.stack([self.target(split, t, i) for i in rows]) for t in self.targets}
        x = np.stack(images).astype(np.float32)
        size = self.cfg.image_size
        if size:
            h, w = size
            x = np.asarray(jax.image.resize(x, (len(rows), h, w, 3), "linear"))
            ys = {k: np.asarray(jax.image.resize(v, (len(rows), h, w) + v.shape[3:], "nearest")) for k, v in ys.items()}
        ys = {k: v if v.dtype == np.int32 else v.astype(np.float32) for k, v in ys.items()}
        return x.reshape(len(rows), -1), ys


def check(cfg: Any) -> None:
    if cfg.image_size is not None and (len(cfg.image_size) != 2 or min(cfg.image_size) < 1):
        raise bad("data.image_size", list(cfg.image_size), "[H, W] of positive sizes, or null for the files' resolution")
    if not 0 < cfg.val_fraction < 1:
        raise bad("data.val_fraction", cfg.val_fraction, "a number in (0, 1): the share of train held out as val")
    if cfg.seed < 0:
        raise bad("data.seed", cfg.seed, "an integer >= 0")
    for key in ("n_train", "n_val", "n_test"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 1:
            raise bad(f"data.{key}", getattr(cfg, key), "an integer >= 1, or null for every row of the split")
    if cfg.eval_batch < 1:
        raise bad("data.eval_batch", cfg.eval_batch, "an integer >= 1")


def split_rows(cfg: Any, train: list[int], test: list[int], layout: Layout) -> tuple[list[int], list[int], list[int]]:
    """File indices of train, val (a seeded share of the train folder) and test (the val folder)."""
    n_val = max(1, round(cfg.val_fraction * len(train)))
    if n_val >= len(train):
        raise layout.error(f"train/ has {len(train)} images: too few to hold out "
                           f"data.val_fraction={cfg.val_fraction} as val and keep some to train on")
    order = np.random.default_rng(cfg.seed).permutation(len(train))
    val_rows = sorted(train[k] for k in order[:n_val])
    train_rows = sorted(train[k] for k in order[n_val:])
    return train_rows[:cfg.n_train], val_rows[:cfg.n_val], test[:cfg.n_test]


def build(cfg: Any, what: str, targets: tuple[Target, ...],
          spec: Callable[[Target, tuple[int, int]], TaskSpec]) -> DataSource:
    """The DataSource of a dense dataset in the layout above."""
    check(cfg)
    layout = Layout(cfg, what, targets)
    rows = split_rows(cfg, layout.indices("train"), layout.indices("val"), layout)
    splits = [layout.read(folder, r) for folder, r in zip(("train", "train", "val"), rows)]
    shape = tuple(cfg.image_size) if cfg.image_size else layout.shape
    tasks = tuple(spec(t, shape) for t in targets)

    def generate(key: Any, hparams: dict[str, Any]) -> Dataset:
        # The arrays are fixed at build time; the key and hparams play no part.
        return Dataset(*(Split(jnp.asarray(x), {n: jnp.asarray(v) for n, v in y.items()}) for x, y in splits))

    def describe(dataset: Dataset) -> dict[str, Any]:
        info: dict[str, Any] = {"image_size": list(shape), "files_size": list(layout.shape),
                                "rows": {s: len(r) for s, r in zip(("train", "val", "test"), rows)}}
        for t in targets:  # share of train pixels that carry a target
            y = splits[0][1][t.task]
            valid = y >= 0 if t.classes else np.any(y != 0, axis=-1)
            info[f"{t.task}_train_valid"] = float(valid.mean())
        return info

    return DataSource(tasks, shape[0] * shape[1] * 3, generate, {}, describe)
