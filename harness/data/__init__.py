"""Datasets. Importing this package registers every dataset in `DATASETS`."""
from harness.data import (base, celeba, cityscapes, digits, files, image_folders, multimnist, nyuv2,  # noqa: F401
                          penguins, relatedness, table, yeast)
