"""Augmentation of dense training batches inside the compiled run (`data.augment=true`).

As in the MTAN code's RandomScaleCrop (Liu, Johns and Davison 2019) and its successors: each
image is scaled by s drawn from SCALES, a random window of 1/s of its height and width is cut
and resized back to the full size (the image bilinearly, targets by nearest neighbour so ignore
and invalid marks stay), and depth is divided by s (zooming in brings the scene closer); then
the image is flipped horizontally with probability 1/2, and with it every target, the normals'
x component (their first channel) negated. Every draw comes from the step's key, so a task sees
the same augmented batches alone or among other tasks.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec

SCALES = (1.0, 1.2, 1.5)


def resample(image: jax.Array, rows: jax.Array, cols: jax.Array, order: int) -> jax.Array:
    """image (H, W, C) read at the grid rows x cols (edges clamped), order 0 or 1."""
    r, c = jnp.meshgrid(rows, cols, indexing="ij")
    channel = lambda a: jax.scipy.ndimage.map_coordinates(a, [r, c], order=order, mode="nearest")  # noqa: E731
    return jax.vmap(channel, in_axes=-1, out_axes=-1)(image)


def transform(image: jax.Array, targets: dict[str, jax.Array], kinds: dict[str, str], scale: jax.Array,
              top: jax.Array, left: jax.Array, flip: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One example scaled by `scale` around the window at (top, left) (fractions of the free
    room), flipped when `flip`. image (H, W, C); targets as their task kinds store them."""
    h, w = image.shape[:2]
    rows = top * h * (1 - 1 / scale) + (jnp.arange(h) + 0.5) / scale - 0.5
    cols = left * w * (1 - 1 / scale) + (jnp.arange(w) + 0.5) / scale - 0.5
    cols = jnp.where(flip, cols[::-1], cols)
    out = {}
    for name, y in targets.items():
        kind = kinds[name]
        y3 = y[..., None] if kind == "segmentation" else y
        z = resample(y3.astype(jnp.float32), rows, cols, 0)
        if kind == "segmentation":
            z = z[..., 0].astype(y.dtype)
        elif kind == "depth":
            z = z / scale
        else:  # normal: a horizontal flip mirrors the x component
            z = z.at[..., 0].multiply(jnp.where(flip, -1.0, 1.0))
        out[name] = z
    return resample(image, rows, cols, 1), out


def make_augment(tasks: tuple[TaskSpec, ...], input_dim: int) -> Callable:
    """(key, x (B, H * W * C), y) -> augmented (x, y); the tasks' dense kinds give (H, W)."""
    (h, w), = {t.shape for t in tasks if t.dense}
    image = (h, w, input_dim // (h * w))
    kinds = {t.name: t.kind for t in tasks}
    dense_names = [t.name for t in tasks if t.dense]

    def one(key, x, y):
        k_scale, k_top, k_left, k_flip = jax.random.split(key, 4)
        scale = jnp.asarray(SCALES)[jax.random.randint(k_scale, (), 0, len(SCALES))]
        img, ys = transform(x.reshape(image), {n: y[n] for n in dense_names}, kinds, scale,
                            jax.random.uniform(k_top), jax.random.uniform(k_left), jax.random.bernoulli(k_flip))
        return img.reshape(-1), {**y, **ys}

    def augment(key, x, y):
        return jax.vmap(one)(jax.random.split(key, x.shape[0]), x, y)

    return augment
