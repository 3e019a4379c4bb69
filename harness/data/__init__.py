"""Datasets. Importing this package registers every dataset in `DATASETS`."""
from harness.data import base, celeba, digits, files, multimnist, penguins, relatedness, table  # noqa: F401
