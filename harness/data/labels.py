"""Missing labels in a dataset's arrays, as the training program reads them.

A row without a class label holds `MISSING` (-1); a regression target without a value holds
NaN. Losses, metrics and target scales skip them (harness.train.losses). A loader only has to
mark them this way and check that every task keeps at least one label in every split, since a
split without labels leaves nothing to train on, select by, or report.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.errors import bad

MISSING = -1  # the class label of a row without one
SPLITS = ("train", "val", "test")


def present(kind: str, y: np.ndarray) -> np.ndarray:
    """(N,) bool: rows with a label (for regression, a value in every column)."""
    if kind == "classification":
        return y != MISSING
    return np.isfinite(y).reshape(len(y), -1).all(axis=1)


def require_labels(key: str, name: str, kind: str, splits: Sequence[np.ndarray], path: str) -> None:
    """Every split (train, val, test) has at least one labelled row of task `name` (read from
    the file at `path`, which the message names)."""
    for split, y in zip(SPLITS, splits):
        if not present(kind, y).any():
            raise bad(key, name, f"at least one label in each of train, val and test; its {split} split "
                                 f"has none ({len(y)} rows) (in data.path={path!r})")
