"""The user's own data: one .npz file holding X and one target array per task.

Every problem with the file is found at build time and reported as one ConfigError line naming
the config key, the bad value and what is allowed, before any compilation starts.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np
from omegaconf import MISSING

from harness.data.base import DATASETS, Dataset, DataSource, Split, TaskSpec, classification, regression
from harness.data.labels import MISSING as NO_LABEL
from harness.data.labels import require_labels
from harness.data.user_file import check_split, naming_the_file
from harness.errors import bad
from harness.schema import Entry

KINDS = ("classification", "regression")


@dataclass
class FilesConfig:
    name: str = "files"
    path: str = MISSING  # an .npz archive (numpy.savez)
    x_key: str = "X"  # the (N, D) input array
    # Task name (= array key in the file) -> "classification" | "regression"; required.
    # Empty dicts rather than MISSING/None: Hydra can add keys to those from the command line.
    targets: dict[str, str] = field(default_factory=dict)
    # Classes per classification task; a task left out gets its largest label + 1.
    num_classes: dict[str, int] = field(default_factory=dict)
    # A class label that means "no label" (e.g. -1); NaN in a float target always does.
    missing_label: Optional[int] = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0  # the row shuffle before splitting
    standardize_x: bool = True  # with train statistics
    tasks: Optional[list[str]] = None
    # Imbalanced tasks: task -> number of train rows it may use (its first n rows); each task then
    # draws its own batches. Empty: every task uses every train row.
    train_rows: dict[str, int] = field(default_factory=dict)


def check(cfg: FilesConfig) -> None:
    """The checks that need no file."""
    check_split(cfg, "task name (array key)")
    for name, kind in cfg.targets.items():
        if kind not in KINDS:
            raise bad(f"data.targets.{name}", kind, f"one of {', '.join(KINDS)}")
    for name, count in cfg.num_classes.items():
        if cfg.targets.get(name) != "classification":
            wanted = [n for n, k in cfg.targets.items() if k == "classification"]
            raise bad("data.num_classes", name,
                      f"a classification task of data.targets ({', '.join(wanted) or 'none'})")
        if count < 2:
            raise bad(f"data.num_classes.{name}", count, "an integer >= 2")


def load(cfg: FilesConfig) -> dict[str, np.ndarray]:
    """X and the target arrays, read from the file; nothing else in it is read."""
    path = os.path.expanduser(cfg.path)
    if not os.path.isfile(path):
        raise bad("data.path", cfg.path, "no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise bad("data.path", cfg.path, f"not a readable .npz archive ({type(err).__name__})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise bad("data.path", cfg.path, "an .npz archive of named arrays (numpy.savez), not one .npy array")
    with archive:
        have = ", ".join(archive.files)
        if cfg.x_key not in archive.files:
            raise bad("data.x_key", cfg.x_key, f"a key of the file; it has {have}")
        for name in cfg.targets:
            if name not in archive.files:
                raise bad("data.targets", name, f"every task must be a key of the file; it has {have}")
        arrays = {}
        for name in (cfg.x_key, *cfg.targets):
            try:
                arrays[name] = archive[name]
            except (OSError, ValueError, zipfile.BadZipFile) as err:
                # Object arrays need pickle, which is never loaded from a data file.
                raise bad("data.path", cfg.path,
                          f"array {name!r} is not a plain numeric array ({type(err).__name__})") from None
    return arrays


def check_array(key: str, name: str, a: np.ndarray, rows: int | None, nan: bool = False) -> None:
    """A numeric, finite array with one row per row of X (when `rows` is given); with `nan`,
    NaN (a missing label) is allowed too."""
    if a.dtype.kind not in "biuf":
        raise bad(key, name, f"a bool, integer or float array; it has dtype {a.dtype}")
    if rows is not None and (a.ndim == 0 or len(a) != rows):
        raise bad(key, name, f"one row per row of X ({rows}); it has shape {a.shape}")
    bad_values = int(a.size - (np.isfinite(a) | (nan & np.isnan(a))).sum())
    if bad_values:
        allowed = "finite values or NaN (no label)" if nan else "finite values"
        raise bad(key, name, f"{allowed}; it has {bad_values} {'inf' if nan else 'NaN/inf'} entries")


def target(cfg: FilesConfig, name: str, y: np.ndarray) -> tuple[TaskSpec, np.ndarray]:
    """The task spec and the target array in the harness's layout."""
    if cfg.targets[name] == "regression":
        if y.ndim > 2:
            raise bad("data.targets", name, f"a regression target of shape (N,) or (N, k); it has {y.shape}")
        y = y.reshape(len(y), -1).astype(np.float32)
        return regression(name, y.shape[1], bool(np.isnan(y).any())), y
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    y = y.astype(np.int64) if y.dtype == bool else y
    if y.ndim != 1:
        raise bad("data.targets", name, f"class labels of shape (N,); it has shape {y.shape}")
    missing = np.isnan(y) | (y == cfg.missing_label if cfg.missing_label is not None else False)
    y = np.where(missing, 0, y)
    if np.any(y != np.round(y)):
        raise bad("data.targets", name, "integer class labels; it has non-integer values")
    if y.min() < 0:
        raise bad("data.targets", name, f"class labels >= 0; its smallest is {y.min():g}"
                  f"{'' if cfg.missing_label is not None else ' (data.missing_label declares a no-label value)'}")
    largest = int(y[~missing].max()) if (~missing).any() else 0
    declared = cfg.num_classes.get(name)
    if declared is not None and largest >= declared:
        raise bad(f"data.num_classes.{name}", declared, f"more than the largest label of {name} ({largest})")
    count = declared if declared is not None else largest + 1
    if count < 2:
        raise bad("data.targets", name,
                  "at least two classes; every label is 0 (declare data.num_classes to say more exist)")
    return classification(name, count, bool(missing.any())), np.where(missing, NO_LABEL, y).astype(np.int32)


def build(cfg: FilesConfig) -> DataSource:
    check(cfg)
    return naming_the_file(from_file, cfg)


def from_file(cfg: FilesConfig) -> DataSource:
    arrays = load(cfg)
    x = arrays[cfg.x_key]
    check_array("data.x_key", cfg.x_key, x, None)
    if x.ndim != 2 or x.shape[1] == 0:
        raise bad("data.x_key", cfg.x_key, f"a 2-D array (rows, features >= 1); it has shape {x.shape}")
    rows = len(x)
    n_val, n_test = int(rows * cfg.val_fraction), int(rows * cfg.test_fraction)
    if min(n_val, n_test, rows - n_val - n_test) < 1:
        raise bad("data.path", cfg.path, f"enough rows for non-empty train/val/test splits at "
                  f"val_fraction={cfg.val_fraction}, test_fraction={cfg.test_fraction}; it has {rows}")
    specs, ys = [], {}
    for name in cfg.targets:
        check_array("data.targets", name, arrays[name], rows, nan=True)
        spec, ys[name] = target(cfg, name, arrays[name])
        specs.append(spec)
    order = np.random.default_rng(cfg.seed).permutation(rows)
    parts = np.split(order, [rows - n_val - n_test, rows - n_test])
    x = x.astype(np.float32)
    if cfg.standardize_x:
        mean, std = x[parts[0]].mean(0), x[parts[0]].std(0)
        # A feature constant on train carries no signal; leave it centred instead of dividing by 0.
        x = (x - mean) / np.where(std > 0, std, 1.0)
    splits = [(x[idx], {n: y[idx] for n, y in ys.items()}) for idx in parts]
    for spec in specs:
        require_labels("data.targets", spec.name, spec.kind, [y[spec.name] for _, y in splits], cfg.path)

    def generate(key: Any, hparams: dict[str, Any]) -> Dataset:
        # The arrays are fixed at build time; the key and hparams play no part.
        return Dataset(*(Split(jnp.asarray(xs), {n: jnp.asarray(v) for n, v in y.items()})
                         for xs, y in splits))

    def describe(dataset: Dataset) -> dict[str, Any]:
        return {f"{split}_rows": float(len(s.x)) for split, s in zip(dataset._fields, dataset)}

    return DataSource(tuple(specs), x.shape[1], generate, {}, describe)


DATASETS.register("files", Entry(FilesConfig, build))
