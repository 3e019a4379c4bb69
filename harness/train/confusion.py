"""Confusion counts of class predictions, and the macro-F1 read from them.

Counts are additive, so a split evaluated chunk by chunk (harness.train.evaluation) gives the
same score as one evaluated at once.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def confusion(y: jax.Array, pred: jax.Array, mask: jax.Array, num_classes: int) -> jax.Array:
    """(C, C) int32 counts, rows the labels and columns the predicted classes, over `mask`."""
    pred = jax.nn.one_hot(pred, num_classes, dtype=jnp.float32)
    true = jax.nn.one_hot(jnp.where(mask, y, 0), num_classes, dtype=jnp.float32) * mask[..., None]
    # Counts of a chunk are exact in float32 below 2^24 per cell; accumulated as int32.
    return jnp.round(jnp.einsum("...i,...j->ij", true, pred)).astype(jnp.int32)


def macro_f1(counts: jax.Array) -> jax.Array:
    """Unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN), over the classes that occur
    as a label or a prediction: scikit-learn's `f1_score(average="macro")`, whose default label
    set is the union of both. A class predicted but never true (or the reverse) scores 0."""
    c = counts.astype(jnp.float32)
    tp = jnp.diag(c)
    denominator = c.sum(0) + c.sum(1)  # (TP + FP) + (TP + FN)
    present = denominator > 0
    f1 = jnp.where(present, 2.0 * tp / jnp.maximum(denominator, 1.0), 0.0)
    return jnp.sum(f1) / jnp.maximum(jnp.sum(present), 1)
