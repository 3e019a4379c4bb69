"""The user's own table: a CSV or parquet file, one row per example, one column per feature or
target.

Features become numbers with statistics of the train split only, so nothing about val or test
leaks into the inputs: numeric columns are standardised (mean and std of the train rows, a
missing value replaced by the train mean, i.e. 0 after standardising); other columns are
one-hot, with the categories seen in train plus one column for a value that is missing or not
seen in train. Class labels are the column's distinct values, sorted, mapped to 0..K-1; a missing
label (an empty cell, NA) is marked as harness.data.labels describes, and training skips it.

Every problem with the config or the file is found at build time and reported as one
ConfigError line naming the config key, the bad value and what is allowed, and ending with the
file (`(in data.path=...)`), so a sweep over files says which one is bad.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np
import pandas as pd
from omegaconf import MISSING

from harness.data.base import DATASETS, Dataset, DataSource, Split, TaskSpec, classification, regression
from harness.data.labels import MISSING as NO_LABEL
from harness.data.labels import SPLITS, require_labels
from harness.data.user_file import check_split, naming_the_file
from harness.errors import bad
from harness.schema import Entry

KINDS = ("classification", "regression")
# Longest suffix first: "t.csv.gz" is a gzipped CSV (pandas decompresses it), not a ".gz" file.
READERS = {".csv": "CSV", ".csv.gz": "CSV", ".parquet": "parquet", ".pq": "parquet"}
INSTALL = 'pip install -e ".[datasets]"'


@dataclass
class TableConfig:
    name: str = "table"
    path: str = MISSING  # a .csv, .csv.gz or .parquet file
    # Column -> "classification" | "regression"; required. An empty dict rather than MISSING/None:
    # Hydra can add keys to it from the command line.
    targets: dict[str, str] = field(default_factory=dict)
    # The input columns; None: every column that is neither a target nor the split column.
    features: Optional[list[str]] = None
    # A column whose values (train, val, test) say each row's split; None: a seeded shuffle
    # split by val_fraction and test_fraction.
    split_column: Optional[str] = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0  # the row shuffle before splitting
    tasks: Optional[list[str]] = None
    # Imbalanced tasks: task -> number of train rows it may use (its first n rows); each task then
    # draws its own batches. Empty: every task uses every train row.
    train_rows: dict[str, int] = field(default_factory=dict)
    # Two-class targets also report the ROC AUC of the class-1 probability (a secondary metric,
    # harness.train.auc); class 1 is the larger of the two sorted labels.
    auc: bool = False


def check(cfg: TableConfig) -> None:
    """The checks that need no file."""
    check_split(cfg, "column")
    for name, kind in cfg.targets.items():
        if kind not in KINDS:
            raise bad(f"data.targets.{name}", kind, f"one of {', '.join(KINDS)}")


def read(path: str) -> pd.DataFrame:
    """The file as a DataFrame; a missing, unreadable or unknown kind of file is a ConfigError."""
    full = os.path.expanduser(path)
    suffix = max((s for s in READERS if full.lower().endswith(s)), key=len, default=None)
    if suffix is None:
        raise bad("data.path", path, f"a file ending in {', '.join(READERS)}")
    if not os.path.isfile(full):
        raise bad("data.path", path, "no such file")
    if READERS[suffix] == "parquet":
        try:
            import pyarrow  # noqa: F401  (pandas reads parquet through it)
        except ImportError:
            raise bad("data.path", path, f"reading parquet needs pyarrow: {INSTALL}") from None
    try:
        frame = pd.read_csv(full) if READERS[suffix] == "CSV" else pd.read_parquet(full)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        # pyarrow's errors derive from these; pandas' EmptyDataError is a ValueError.
        raise bad("data.path", path, f"a readable {READERS[suffix]} file ({type(err).__name__})") from None
    if frame.empty:
        raise bad("data.path", path, f"a {READERS[suffix]} file with a header and rows; it has none")
    return frame


def columns_of(cfg: TableConfig, frame: pd.DataFrame) -> list[str]:
    """The feature columns, after checking that every named column is in the file."""
    have = [str(c) for c in frame.columns]
    frame.columns = have
    listing = f"a column of the file; it has {', '.join(have)}"
    for name in cfg.targets:
        if name not in have:
            raise bad("data.targets", name, listing)
    if cfg.split_column is not None and cfg.split_column not in have:
        raise bad("data.split_column", cfg.split_column, listing)
    taken = {*cfg.targets, cfg.split_column}
    if cfg.features is None:
        features = [c for c in have if c not in taken]
    else:
        features = list(cfg.features)
        if not features:
            raise bad("data.features", features, "a non-empty list of columns, or null for every column "
                                                 "that is not a target or the split column")
        for name in features:
            if name not in have:
                raise bad("data.features", name, listing)
            if name in taken:
                raise bad("data.features", name, "a column that is not a target or the split column")
    if not features:
        raise bad("data.features", cfg.features, "at least one input column; the file has only the targets "
                                                 "and the split column")
    return features


def split_rows(cfg: TableConfig, frame: pd.DataFrame) -> list[np.ndarray]:
    """Row indices of train, val and test: from the split column, or a seeded shuffle."""
    rows = len(frame)
    if cfg.split_column is not None:
        values = frame[cfg.split_column]
        unknown = sorted({str(v) for v in values[~values.isin(SPLITS)]})
        if unknown:
            raise bad("data.split_column", cfg.split_column,
                      f"a column of train, val and test; it also has {', '.join(unknown)}")
        parts = [np.flatnonzero(values.to_numpy() == s) for s in SPLITS]
        for name, idx in zip(SPLITS, parts):
            if len(idx) == 0:
                raise bad("data.split_column", cfg.split_column,
                          f"at least one row of each of train, val and test; it has no {name} row")
        return parts
    n_val, n_test = int(rows * cfg.val_fraction), int(rows * cfg.test_fraction)
    if min(n_val, n_test, rows - n_val - n_test) < 1:
        raise bad("data.path", cfg.path, f"enough rows for non-empty train/val/test splits at "
                  f"val_fraction={cfg.val_fraction}, test_fraction={cfg.test_fraction}; it has {rows}")
    order = np.random.default_rng(cfg.seed).permutation(rows)
    return np.split(order, [rows - n_val - n_test, rows - n_test])


def encode_feature(column: pd.Series, train: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(rows, k) float32 inputs of one column and their names, with train statistics only."""
    name = str(column.name)
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        known = values[train][np.isfinite(values[train])]
        if len(known) == 0:
            raise bad("data.features", name, "a column with at least one value in the train split")
        mean, std = known.mean(), known.std()
        # A missing value becomes the train mean; a column constant on train is only centred.
        values = np.where(np.isfinite(values), values, mean)
        return ((values - mean) / (std if std > 0 else 1.0))[:, None].astype(np.float32), [name]
    present = column.notna().to_numpy()
    text = column.astype(str).to_numpy()
    categories = sorted(set(text[train][present[train]]))
    onehot = np.stack([present & (text == c) for c in categories], axis=1)
    other = ~onehot.any(axis=1, keepdims=True)  # missing, or a value train never shows
    return np.concatenate([onehot, other], axis=1).astype(np.float32), [*(f"{name}={c}" for c in categories),
                                                                        f"{name}=<missing or unseen>"]


def encode_target(name: str, kind: str, column: pd.Series, auc: bool = False) -> tuple[TaskSpec, np.ndarray]:
    """The task spec and its labels: class indices (MISSING where absent) or (rows, 1) floats (NaN)."""
    present = column.notna().to_numpy()
    if kind == "regression":
        if not (pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)):
            raise bad(f"data.targets.{name}", kind, f"a numeric column for regression; {name} has dtype "
                                                   f"{column.dtype} (declare it classification)")
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isinf(values).any():
            raise bad("data.targets", name, "finite values or empty cells (no label); it has inf")
        return regression(name, 1, not present.all()), values[:, None].astype(np.float32)
    values = column.to_numpy()
    distinct = list(pd.unique(values[present]))
    try:
        classes = sorted(distinct)
    except TypeError:  # mixed kinds of values (numbers and text): sort by their text
        classes = sorted(distinct, key=str)
    if len(classes) < 2:
        raise bad("data.targets", name, "a column with at least two classes; it has "
                                        f"{', '.join(map(str, classes)) or 'no labels'}")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[v] if p else NO_LABEL for v, p in zip(values, present)], np.int32)
    return classification(name, len(classes), not present.all(), auc=auc and len(classes) == 2), labels


def build(cfg: TableConfig) -> DataSource:
    return naming_the_file(from_file, cfg)


def from_file(cfg: TableConfig) -> DataSource:
    check(cfg)
    frame = read(cfg.path)
    features = columns_of(cfg, frame)
    parts = split_rows(cfg, frame)
    train = np.zeros(len(frame), bool)
    train[parts[0]] = True
    encoded = [encode_feature(frame[c], train) for c in features]
    x = np.concatenate([block for block, _ in encoded], axis=1)
    specs, ys = [], {}
    for name, kind in cfg.targets.items():
        spec, ys[name] = encode_target(name, kind, frame[name], cfg.auc)
        require_labels("data.targets", name, kind, [ys[name][idx] for idx in parts], cfg.path)
        specs.append(spec)
    splits = [(x[idx], {n: y[idx] for n, y in ys.items()}) for idx in parts]

    def generate(key: Any, hparams: dict[str, Any]) -> Dataset:
        # The arrays are fixed at build time; the key and hparams play no part.
        return Dataset(*(Split(jnp.asarray(xs), {n: jnp.asarray(v) for n, v in y.items()})
                         for xs, y in splits))

    def describe(dataset: Dataset) -> dict[str, Any]:
        info = {f"{split}_rows": float(len(s.x)) for split, s in zip(dataset._fields, dataset)}
        for name, y in ys.items():  # how much of each task's train split has a label
            kind = cfg.targets[name]
            labelled = (y[parts[0]] != NO_LABEL) if kind == "classification" else np.isfinite(y[parts[0], 0])
            info[f"{name}_train_labelled"] = float(labelled.mean())
        return info

    return DataSource(tuple(specs), x.shape[1], generate, {}, describe)


DATASETS.register("table", Entry(TableConfig, build))
