"""Images from the user's own files, read with Pillow (an optional dependency, the `datasets`
extra): what every image dataset (data=celeba, data=image_folders) reads them with."""
from __future__ import annotations

import numpy as np

from harness.errors import bad

INSTALL = 'pip install -e ".[datasets]"'


def read_image(path: str, size: int, dataset: str) -> np.ndarray:
    """The image at `path` converted to RGB and resized (bilinear, not cropped) to `size` pixels
    square: (size * size * 3,) float32 in [0, 1]. A file Pillow cannot read raises OSError
    (PIL.UnidentifiedImageError is one); without Pillow, a ConfigError naming `dataset`."""
    try:
        from PIL import Image
    except ImportError:
        raise bad("data", dataset, f"Pillow, to read the images: {INSTALL}") from None
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), np.float32)
    return pixels.reshape(-1) / 255.0
