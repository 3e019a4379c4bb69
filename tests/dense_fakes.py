"""Small fake copies of NYUv2 and Cityscapes in the published layout (MTAN's .npy files)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

H, W = 16, 24


def write_copy(root: Path, dataset: str = "nyuv2", n_train: int = 6, n_val: int = 4, h: int = H, w: int = W,
               classes: int = 13, seed: int = 0) -> Path:
    """Images, labels (-1 on a border strip), depth (0 on a corner) and unit normals (zero on the
    same corner), as float files like the published ones. Cityscapes gets label_7 and label_19."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            image = rng.uniform(size=(h, w, 3))
            folders = {"image": image}
            labels = {"label": classes} if dataset == "nyuv2" else {"label_7": 7, "label_19": 19}
            for folder, c in labels.items():
                label = rng.integers(0, c, size=(h, w)).astype(np.float32)
                label[:2] = -1  # an ignored strip (two rows, so halving keeps it)
                folders[folder] = label
            depth = rng.uniform(0.5, 5.0, size=(h, w, 1)).astype(np.float32)
            depth[:3, :3] = 0
            folders["depth"] = depth
            if dataset == "nyuv2":
                normal = rng.normal(size=(h, w, 3))
                normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
                normal[:3, :3] = 0
                folders["normal"] = normal.astype(np.float32)
            for folder, array in folders.items():
                (root / split / folder).mkdir(parents=True, exist_ok=True)
                np.save(root / split / folder / f"{i}.npy", array)
    return root
