"""Yeast: 2,417 genes, 103 expression and phylogenetic features, 14 binary gene-function labels.

The multi-label benchmark of Elisseeff and Weston 2001, "A kernel method for multi-labelled
classification" (NeurIPS), in the MULAN version (Tsoumakas et al. 2011, JMLR; OpenML id 40597).
It ships inside the `river` package (`river/datasets/yeast.csv.gz`; river is BSD-3-Clause, its
docstring cites the two papers above and states no separate licence for the data), so nothing is
downloaded. The file is found without importing river and read by the `table` loader: the
tasks are Class1..Class14 (two-class classification each; 1.4% to 75% positive, Class14 the
rarest with 34 genes), the inputs Att1..Att103, standardised with train statistics. Each task
reports its ROC AUC beside accuracy and macro-F1 (accuracy alone flatters a rare label). Fourteen
tasks make it the harness's many-task table: a T = 14 report, grouping search and step times.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Optional

from harness.data import table
from harness.data.base import DATASETS, DataSource
from harness.errors import bad
from harness.schema import Entry

LABELS = tuple(f"Class{i}" for i in range(1, 15))


@dataclass
class YeastConfig:
    name: str = "yeast"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0  # the row shuffle before splitting
    tasks: Optional[list[str]] = None
    # Imbalanced tasks: task -> number of train rows it may use (its first n rows); each task then
    # draws its own batches. Empty: every task uses every train row.
    train_rows: dict[str, int] = field(default_factory=dict)


def csv_path() -> str:
    """yeast.csv.gz inside the installed river package, found without importing river (whose
    import pulls in its whole online-learning library)."""
    spec = importlib.util.find_spec("river")
    if spec is None or spec.origin is None:
        raise bad("data", "yeast", f"the river package (it ships the Yeast table): {table.INSTALL}")
    return os.path.join(os.path.dirname(spec.origin), "datasets", "yeast.csv.gz")


def build(cfg: YeastConfig) -> DataSource:
    return table.build(table.TableConfig(path=csv_path(), targets=dict.fromkeys(LABELS, "classification"),
                                         val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                                         seed=cfg.seed, auc=True))


DATASETS.register("yeast", Entry(YeastConfig, build))
