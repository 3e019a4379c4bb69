"""Datasets. Importing this package registers every dataset in `DATASETS`."""
from harness.data import (base, celeba, cityscapes, digits, files, multimnist, nyuv2, penguins,  # noqa: F401
                          relatedness, table, yeast)
