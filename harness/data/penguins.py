"""Palmer penguins: 344 penguins of three species, four tasks, missing values included.

The table ships inside the `palmerpenguins` package (its penguins.csv, data by Gorman, Williams
and Fraser 2014, PLoS ONE 9(3): e90081, released under CC0 by the Palmer Station LTER), so
nothing is downloaded. It is read by the `table` loader: the tasks are species and sex
(classification; sex is missing for 11 penguins) and body_mass_g and flipper_length_mm
(regression; missing for 2); the inputs are the other columns (island, bill length and depth,
year), missing measurements imputed with the train mean.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Optional

from harness.data import table
from harness.data.base import DATASETS, DataSource
from harness.errors import bad
from harness.schema import Entry

TARGETS = {"species": "classification", "sex": "classification",
           "body_mass_g": "regression", "flipper_length_mm": "regression"}


@dataclass
class PenguinsConfig:
    name: str = "penguins"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0  # the row shuffle before splitting
    tasks: Optional[list[str]] = None
    # Imbalanced tasks: task -> number of train rows it may use (its first n rows); each task then
    # draws its own batches. Empty: every task uses every train row.
    train_rows: dict[str, int] = field(default_factory=dict)


def csv_path() -> str:
    """The penguins.csv inside the installed palmerpenguins package."""
    try:
        return str(resources.files("palmerpenguins") / "data" / "penguins.csv")
    except ModuleNotFoundError:
        raise bad("data", "penguins", f"the palmerpenguins package: {table.INSTALL}") from None


def build(cfg: PenguinsConfig) -> DataSource:
    return table.build(table.TableConfig(path=csv_path(), targets=dict(TARGETS), val_fraction=cfg.val_fraction,
                                         test_fraction=cfg.test_fraction, seed=cfg.seed))


DATASETS.register("penguins", Entry(PenguinsConfig, build))
