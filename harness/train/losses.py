"""Per-task loss and metric, chosen by the task's kind (never by its name); regression
target scaling; the knowledge-distillation term; and the (T,) task losses of one forward pass."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from harness.data.base import TaskSpec


class Scale(NamedTuple):
    """Train-split mean and std of a regression target, per output column."""

    mean: jax.Array
    std: jax.Array


def target_scales(tasks: tuple[TaskSpec, ...], y: dict[str, jax.Array],
                  rows: dict[str, int] | None = None) -> dict[str, Scale]:
    """Scales of the regression targets from the train rows each task trains on (its first
    `rows[t]` when given). A column constant on train keeps std 1 (it is only centred)."""
    scales = {}
    for t in tasks:
        if t.kind != "regression":
            continue
        values = y[t.name] if rows is None or t.name not in rows else y[t.name][:rows[t.name]]
        std = jnp.std(values, axis=0)
        scales[t.name] = Scale(jnp.mean(values, axis=0), jnp.where(std > 0, std, 1.0))
    return scales


def standardize(y: dict[str, jax.Array], scales: dict[str, Scale]) -> dict[str, jax.Array]:
    """Targets in the units the loss sees: (y - mean) / std where a task has a scale."""
    return {n: (v - scales[n].mean) / scales[n].std if n in scales else v for n, v in y.items()}


def in_target_units(out: dict[str, jax.Array], scales: dict[str, Scale]) -> dict[str, jax.Array]:
    """Model outputs back in the targets' own units: out * std + mean where a task has a scale."""
    return {n: o * scales[n].std + scales[n].mean if n in scales else o for n, o in out.items()}


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


def distillation(spec: TaskSpec, out: jax.Array, teacher: jax.Array, temperature: jax.Array) -> jax.Array:
    """Distance of a student's outputs from a teacher's on the same inputs (Hinton, Vinyals and
    Dean 2015, "Distilling the Knowledge in a Neural Network").

    Classification: T^2 KL(softmax(teacher / T) || softmax(out / T)), batch mean. The T^2 factor
    is the paper's: the soft targets' gradients scale as 1 / T^2, so it keeps the distillation
    term's weight comparable across temperatures. Regression: mean squared difference from the
    teacher's output (the temperature plays no part)."""
    if spec.kind == "classification":
        target = jax.nn.log_softmax(teacher / temperature, axis=-1)
        student = jax.nn.log_softmax(out / temperature, axis=-1)
        kl = jnp.sum(jnp.exp(target) * (target - student), axis=-1)
        return temperature**2 * kl.mean()
    return jnp.mean((out - teacher) ** 2)


def distilled(spec: TaskSpec, out: jax.Array, y: jax.Array, teacher: jax.Array, weight: jax.Array,
              temperature: jax.Array) -> jax.Array:
    """(1 - weight) * loss + weight * distillation: a task's training loss under distillation."""
    return (1.0 - weight) * loss(spec, out, y) + weight * distillation(spec, out, teacher, temperature)


class Teaching(NamedTuple):
    """Knowledge distillation on one step: the teachers' outputs on the step's batch (per task, in
    the rows the task's loss reads) and the dynamic weight and temperature."""

    outputs: dict[str, jax.Array]
    weight: jax.Array
    temperature: jax.Array


def task_losses(heads, tasks: tuple[TaskSpec, ...], blocks: bool = False):
    """(task_params, z, y, teaching=None) -> (T,) losses, for `heads(task_params, z)` (a model's
    heads). With `blocks`, the rows of z come in T blocks, one per task's own batch, and each
    task's loss reads only its block. With `teaching`, each loss is (1 - weight) * its loss +
    weight * its distillation term."""
    def one(t, out, y, teaching):
        if teaching is None:
            return loss(t, out, y[t.name])
        return distilled(t, out, y[t.name], teaching.outputs[t.name], teaching.weight, teaching.temperature)

    def heads_losses(task_params, z, y, teaching=None):
        if not blocks:
            out = heads(task_params, z)
            return jnp.stack([one(t, out[t.name], y, teaching) for t in tasks])
        size = y[tasks[0].name].shape[0]
        return jnp.stack([
            one(t, heads(task_params, jax.tree.map(lambda a: a[i * size:(i + 1) * size], z))[t.name], y, teaching)
            for i, t in enumerate(tasks)])

    return heads_losses
