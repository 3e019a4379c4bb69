"""Per-task loss and metric, chosen by the task's kind (never by its name)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from harness.data.base import TaskSpec


def loss(spec: TaskSpec, out: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy (classification) or mean squared error (regression)."""
    if spec.kind == "classification":
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    return jnp.mean((out - y) ** 2)


def metric(spec: TaskSpec, out: jax.Array, y: jax.Array) -> jax.Array:
    """Accuracy (higher is better) or mse (lower is better), as TaskSpec.metric says."""
    if spec.kind == "classification":
        return jnp.mean(jnp.argmax(out, axis=-1) == y)
    return jnp.mean((out - y) ** 2)


def score(spec: TaskSpec, value: jax.Array) -> jax.Array:
    """The metric oriented so that higher is better."""
    return -value if spec.lower_is_better else value
