"""Losses and metrics of the dense task kinds (one target per pixel), as the MTAN code and its
successors compute them (Liu, Johns and Davison 2019, "End-to-End Multi-Task Learning with
Attention", CVPR; Navon et al. 2022, Nash-MTL; Liu et al. 2021, CAGrad):

- segmentation: per-pixel cross-entropy over the pixels whose label is not -1; mIoU from the
  confusion counts of the whole split, the mean of the classes' IoU over the classes present in
  the union of prediction and label (a class with an empty union has no IoU and is left out),
  and pixel accuracy over the labelled pixels.
- depth: L1 over the valid pixels (target != 0); absolute error and relative error
  |d - d*| / d* over them.
- normal: the prediction is normalised to a unit vector; loss 1 - cosine with the target over
  the valid pixels (target not all zero); angle error in degrees, its mean, median and the share
  of pixels within 11.25, 22.5 and 30 degrees.

Metrics over a split are computed from additive sums (`sums`), so a split evaluated chunk by
chunk gives the same numbers as one evaluated at once. The median angle comes from a histogram
of ANGLE_BINS bins over 0..180 degrees, interpolated inside its bin: within 180 / ANGLE_BINS
degrees of the exact median.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from harness.train.confusion import confusion

ANGLE_BINS = 18000  # 0.01 degree each
THRESHOLDS = (11.25, 22.5, 30.0)
EPS = 1e-12


def valid(kind: str, y: jax.Array) -> jax.Array:
    """(B, H, W): the pixels that carry a target."""
    if kind == "segmentation":
        return y >= 0
    if kind == "depth":
        return y[..., 0] != 0
    return jnp.any(y != 0, axis=-1)


def unit(v: jax.Array) -> jax.Array:
    """v / |v|, with a finite gradient where v = 0 (a norm's gradient is NaN there)."""
    return v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True) + EPS)


def pixel_losses(kind: str, out: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(loss per pixel (B, H, W), where a pixel counts (B, H, W))."""
    mask = valid(kind, y)
    if kind == "segmentation":
        return optax.softmax_cross_entropy_with_integer_labels(out, jnp.where(mask, y, 0)), mask
    if kind == "depth":
        return jnp.abs(out - y)[..., 0], mask
    return 1.0 - jnp.sum(unit(out) * y, axis=-1), mask


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(jnp.sum(mask, dtype=jnp.float32), 1.0)


def loss(kind: str, out: jax.Array, y: jax.Array) -> jax.Array:
    """The training loss of one batch: the mean over its valid pixels."""
    return masked_mean(*pixel_losses(kind, out, y))


def angles(out: jax.Array, y: jax.Array) -> jax.Array:
    """Angle in degrees between the normalised prediction and the target, per pixel."""
    return jnp.degrees(jnp.arccos(jnp.clip(jnp.sum(unit(out) * y, axis=-1), -1.0, 1.0)))


def sums(kind: str, out: jax.Array, y: jax.Array, rows: jax.Array, num_classes: int = 0) -> dict:
    """Additive statistics of a batch (rows where `rows` (B,) is false are left out)."""
    mask = valid(kind, y) & rows[:, None, None]
    count = jnp.sum(mask, dtype=jnp.int32)
    if kind == "segmentation":
        return {"confusion": confusion(y, jnp.argmax(out, axis=-1), mask, num_classes)}
    if kind == "depth":
        err = jnp.abs(out - y)[..., 0]
        rel = err / jnp.where(mask, jnp.abs(y[..., 0]), 1.0)
        return {"count": count, "abs": jnp.sum(jnp.where(mask, err, 0.0)),
                "rel": jnp.sum(jnp.where(mask, rel, 0.0))}
    a = angles(out, y)
    bins = jnp.clip((a / 180.0 * ANGLE_BINS).astype(jnp.int32), 0, ANGLE_BINS - 1)
    hist = jnp.zeros(ANGLE_BINS, jnp.int32).at[bins.reshape(-1)].add(mask.reshape(-1).astype(jnp.int32))
    return {"count": count, "angle": jnp.sum(jnp.where(mask, a, 0.0)), "hist": hist,
            "within": jnp.stack([jnp.sum(mask & (a < t), dtype=jnp.int32) for t in THRESHOLDS])}


def miou(confusion: jax.Array) -> jax.Array:
    """Mean IoU over the classes present in the union (rows: labels, columns: predictions)."""
    c = confusion.astype(jnp.float32)
    inter = jnp.diag(c)
    union = c.sum(0) + c.sum(1) - inter
    present = union > 0
    iou = jnp.where(present, inter / jnp.maximum(union, 1.0), 0.0)
    return jnp.sum(iou) / jnp.maximum(jnp.sum(present), 1)


def median_from_histogram(hist: jax.Array, count: jax.Array) -> jax.Array:
    """The median of values in [0, 180) counted by `hist`, interpolated inside its bin."""
    cum = jnp.cumsum(hist)
    half = count.astype(jnp.float32) / 2.0
    b = jnp.argmax(cum >= half)
    before = jnp.where(b > 0, cum[jnp.maximum(b - 1, 0)], 0).astype(jnp.float32)
    inside = (half - before) / jnp.maximum(hist[b].astype(jnp.float32), 1.0)
    return (b + inside) * (180.0 / ANGLE_BINS)


def values(kind: str, s: dict) -> dict[str, jax.Array]:
    """The metrics of summed statistics; the first is the task's primary metric."""
    if kind == "segmentation":
        c = s["confusion"]
        return {"miou": miou(c),
                "pixel_acc": jnp.trace(c).astype(jnp.float32) / jnp.maximum(jnp.sum(c), 1).astype(jnp.float32)}
    n = jnp.maximum(s["count"], 1).astype(jnp.float32)
    if kind == "depth":
        return {"abs_err": s["abs"] / n, "rel_err": s["rel"] / n}
    out = {"mean_angle": s["angle"] / n, "median_angle": median_from_histogram(s["hist"], s["count"])}
    out.update({f"within_{t:g}": s["within"][i].astype(jnp.float32) / n for i, t in enumerate(THRESHOLDS)})
    return out
