"""Datasets. Importing this package registers every dataset in `DATASETS`."""
from harness.data import base, digits, files, penguins, relatedness, table  # noqa: F401
