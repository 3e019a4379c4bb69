"""Image folders: tasks with their own inputs, one folder per task and one subfolder per class.

The layout of Office-31 (Saenko, Kulis, Fritz and Darrell 2010, "Adapting Visual Category
Models to New Domains", ECCV) and Office-Home (Venkateswara et al. 2017, CVPR), which LibMTL
(Lin and Zhang 2023, JMLR) trains as its "multi-input" setting: each domain is a task with its
own images, all classified by one shared trunk and a head per task. `data.path` is a directory

    <task>/<class>/<image>.jpg|.jpeg|.png    e.g. amazon/back_pack/frame_0001.jpg

Tasks are the folders, sorted; `data.tasks` picks some, in its order, after every folder is
read (as for every dataset: a baseline's draw under alternate needs its job's other tasks' row
counts). A task's classes are its own subfolders, sorted (tasks need not share them); other
files are ignored. Images are read
with Pillow, converted to RGB and resized (not cropped) to `data.image_size` pixels square, then
flattened to size * size * 3 floats in [0, 1] (model.image_shape=[size, size, 3]).

Each task's images are split apart from the others' by a shuffle seeded with data.seed and the
task's name, so a task's split is the same whichever tasks a job picks: the last
`test_fraction` of the shuffled images are its test split, the `val_fraction` before them its
validation split. Tasks keep their own numbers of rows (harness.data.base.Split: x is task ->
its inputs), so nothing is padded: each task draws its batches from its own train rows and is
evaluated on its own val and test rows, and its single-task baseline sees exactly those.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np
from omegaconf import MISSING

from harness.data.base import DATASETS, Dataset, DataSource, Split, classification
from harness.data.images import read_image
from harness.data.user_file import check_fractions
from harness.errors import bad
from harness.schema import Entry

EXTENSIONS = (".jpg", ".jpeg", ".png")
LAYOUT = "a directory of task folders, each with one folder of images per class"


@dataclass
class ImageFoldersConfig:
    name: str = "image_folders"
    path: str = MISSING  # the directory holding one folder per task
    tasks: Optional[list[str]] = None  # task folders to train, in this order; null: all, sorted
    image_size: int = 32  # side of the square the images are resized to
    val_fraction: float = 0.2  # of each task's images
    test_fraction: float = 0.2
    seed: int = 0  # each task's shuffle before splitting
    # Evaluate this many images of a task at a time (large images: the activations of a whole
    # split need not fit); null: a task's whole split at once.
    eval_batch: Optional[int] = None


def check(cfg: ImageFoldersConfig) -> None:
    """The checks that need no file."""
    if cfg.image_size < 1:
        raise bad("data.image_size", cfg.image_size, "an integer >= 1")
    check_fractions(cfg)
    if cfg.eval_batch is not None and cfg.eval_batch < 1:
        raise bad("data.eval_batch", cfg.eval_batch, "an integer >= 1, or null for a whole split at once")


def folders(path: str) -> list[str]:
    """The sorted subfolders of `path`, hidden ones left out."""
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def task_folders(cfg: ImageFoldersConfig) -> list[str]:
    root = os.path.expanduser(cfg.path)
    if not os.path.isdir(root):
        raise bad("data.path", cfg.path, f"{LAYOUT}; no such directory")
    found = folders(root)
    if not found:
        raise bad("data.path", cfg.path, f"{LAYOUT}; it has no folders")
    return found


def list_task(cfg: ImageFoldersConfig, task: str) -> tuple[list[str], list[str], np.ndarray]:
    """A task's classes, its image files (class by class, each sorted) and their labels."""
    where = os.path.join(os.path.expanduser(cfg.path), task)
    classes = folders(where)
    if len(classes) < 2:
        raise bad("data.path", cfg.path, f"{LAYOUT}; {task}/ has {len(classes)} class folders, at least 2 needed")
    files, labels = [], []
    for k, name in enumerate(classes):
        images = sorted(f for f in os.listdir(os.path.join(where, name))
                        if f.lower().endswith(EXTENSIONS) and not f.startswith("."))
        if not images:
            raise bad("data.path", cfg.path, f"{LAYOUT}; {task}/{name}/ has no {', '.join(EXTENSIONS)} images")
        files += [os.path.join(task, name, f) for f in images]
        labels += [k] * len(images)
    return classes, files, np.asarray(labels, np.int32)


def split_order(cfg: ImageFoldersConfig, task: str, n: int) -> list[np.ndarray]:
    """Row indices of a task's train, val and test splits."""
    n_val, n_test = int(n * cfg.val_fraction), int(n * cfg.test_fraction)
    if min(n_val, n_test, n - n_val - n_test) < 1:
        raise bad("data.path", cfg.path, f"{LAYOUT}, with enough images per task for non-empty train/val/test "
                  f"splits at val_fraction={cfg.val_fraction}, test_fraction={cfg.test_fraction}; {task}/ has {n}")
    order = np.random.default_rng([cfg.seed, zlib.crc32(task.encode())]).permutation(n)
    return np.split(order, [n - n_val - n_test, n - n_test])


def load(cfg: ImageFoldersConfig, files: list[str]) -> np.ndarray:
    """(n, size * size * 3) float32 in [0, 1]; an image Pillow cannot read is a ConfigError."""
    out = np.empty((len(files), cfg.image_size ** 2 * 3), np.float32)
    for row, name in enumerate(files):
        try:
            out[row] = read_image(os.path.join(os.path.expanduser(cfg.path), name), cfg.image_size, "image_folders")
        except (OSError, ValueError) as err:
            raise bad("data.path", cfg.path, f"readable images; {name} is not one ({type(err).__name__})") from None
    return out


def build(cfg: ImageFoldersConfig) -> DataSource:
    check(cfg)
    tasks = task_folders(cfg)
    listed = {t: list_task(cfg, t) for t in tasks}  # every layout problem before any image is read
    splits: list[tuple[dict, dict]] = [({}, {}), ({}, {}), ({}, {})]  # train, val, test: (x, y)
    for t, (_, files, labels) in listed.items():
        x = load(cfg, files)
        for (xs, ys), idx in zip(splits, split_order(cfg, t, len(files))):
            xs[t], ys[t] = x[idx], labels[idx]

    def generate(key: Any, hparams: dict[str, Any]) -> Dataset:
        # The arrays are fixed at build time; the key and hparams play no part.
        return Dataset(*(Split({t: jnp.asarray(v) for t, v in xs.items()}, {t: jnp.asarray(v) for t, v in ys.items()})
                         for xs, ys in splits))

    def describe(dataset: Dataset) -> dict[str, Any]:
        return {f"{t}_{split}_rows": float(len(ys[t])) for split, (_, ys) in zip(("train", "val", "test"), splits)
                for t in tasks}

    specs = tuple(classification(t, len(classes)) for t, (classes, _, _) in listed.items())
    return DataSource(specs, cfg.image_size ** 2 * 3, generate, {}, describe)


DATASETS.register("image_folders", Entry(ImageFoldersConfig, build))
