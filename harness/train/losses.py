"""Per-task loss and metric, chosen by the task's kind (never by its name); regression
target scaling; the knowledge-distillation term; and the (T,) task losses of one forward pass.

Missing labels (tasks whose TaskSpec.missing_labels is set): a class label < 0
(harness.data.labels.MISSING) or a NaN regression target marks a row (for regression, one column
of a row) without a label. Losses, metrics and target scales average over the labelled entries;
a batch without any label for a task gives that task loss 0, metric 0 and zero gradients. The
NaNs are replaced before any arithmetic, so none reaches a gradient (0 * NaN is NaN in a
backward pass through `where`)."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from harness.data.base import TaskSpec
from harness.train import auc, dense
from harness.train.confusion import confusion, macro_f1


def labelled(spec: TaskSpec, y: jax.Array) -> jax.Array:
    """Where `y` holds a label: (N,) for classification, (N, k) for regression."""
    return y >= 0 if spec.kind == "classification" else jnp.isfinite(y)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of `values` over the entries of `mask`; 0 when there are none."""
    total = jnp.sum(jnp.where(mask, values, 0.0))
    return total / jnp.maximum(jnp.sum(mask, dtype=values.dtype), 1.0)


class Scale(NamedTuple):
    """Train-split mean and std of a regression target, per output column."""

    mean: jax.Array
    std: jax.Array


def target_scales(tasks: tuple[TaskSpec, ...], y: dict[str, jax.Array],
                  rows: dict[str, int] | None = None) -> dict[str, Scale]:
    """Scales of the regression targets from the labelled train rows each task trains on (its
    first `rows[t]` when given). A column constant on train keeps std 1 (it is only centred); a
    column without labels keeps mean 0 and std 1."""
    scales = {}
    for t in tasks:
        if t.kind != "regression":
            continue
        values = y[t.name] if rows is None or t.name not in rows else y[t.name][:rows[t.name]]
        if t.missing_labels:
            present = jnp.isfinite(values)
            count = jnp.maximum(jnp.sum(present, axis=0, dtype=values.dtype), 1.0)
            mean = jnp.sum(jnp.where(present, values, 0.0), axis=0) / count
            std = jnp.sqrt(jnp.sum(jnp.where(present, (values - mean) ** 2, 0.0), axis=0) / count)
        else:
            mean, std = jnp.mean(values, axis=0), jnp.std(values, axis=0)
        scales[t.name] = Scale(mean, jnp.where(std > 0, std, 1.0))
    return scales


def standardize(y: dict[str, jax.Array], scales: dict[str, Scale]) -> dict[str, jax.Array]:
    """Targets in the units the loss sees: (y - mean) / std where a task has a scale."""
    return {n: (v - scales[n].mean) / scales[n].std if n in scales else v for n, v in y.items()}


def in_target_units(out: dict[str, jax.Array], scales: dict[str, Scale]) -> dict[str, jax.Array]:
    """Model outputs back in the targets' own units: out * std + mean where a task has a scale."""
    return {n: o * scales[n].std + scales[n].mean if n in scales else o for n, o in out.items()}


def _labels(spec: TaskSpec, y: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """y with its missing entries replaced by 0, and where it is labelled (None: everywhere)."""
    if not spec.missing_labels:
        return y, None
    mask = labelled(spec, y)
    return jnp.where(mask, y, 0), mask


def _average(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    return jnp.mean(values) if mask is None else _masked_mean(values.astype(jnp.float32), mask)


def loss(spec: TaskSpec, out: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy (classification) or mean squared error (regression); over the
    labelled entries where the task has missing labels."""
    if spec.dense:
        return dense.loss(spec.kind, out, y)
    y, mask = _labels(spec, y)
    if spec.kind == "classification":
        return _average(optax.softmax_cross_entropy_with_integer_labels(out, y), mask)
    return _average((out - y) ** 2, mask)


def metric(spec: TaskSpec, out: jax.Array, y: jax.Array) -> jax.Array:
    """Accuracy (higher is better) or mse (lower is better), as TaskSpec.metric says; over the
    labelled entries where the task has missing labels."""
    if spec.dense:  # on this batch alone; a split's comes from metric_sums
        rows = jnp.ones(y.shape[0], bool)
        return dense.values(spec.kind, dense.sums(spec.kind, out, y, rows, spec.output_size))[spec.metric]
    y, mask = _labels(spec, y)
    if spec.kind == "classification":
        return _average(jnp.argmax(out, axis=-1) == y, mask)
    return _average((out - y) ** 2, mask)


def _entries(spec: TaskSpec, y: jax.Array, rows: jax.Array) -> jax.Array:
    """Where a one-target-per-input task's loss and metric read `y`, within the counted rows."""
    mask = labelled(spec, y) if spec.missing_labels else jnp.ones(y.shape, bool)
    return mask & rows.reshape((-1,) + (1,) * (y.ndim - 1))


def metric_sums(spec: TaskSpec, out: jax.Array, y: jax.Array, rows: jax.Array) -> dict:
    """Additive statistics of a batch from which `metric_values` gives the split's metrics
    (rows where `rows` (B,) is false are left out): evaluation in chunks."""
    if spec.dense:
        return dense.sums(spec.kind, out, y, rows, spec.output_size)
    mask = _entries(spec, y, rows)
    y = jnp.where(mask, y, 0)
    classes = spec.kind == "classification"
    pred = jnp.argmax(out, axis=-1) if classes else None
    hit = pred == y if classes else (out - y) ** 2
    sums = {"total": jnp.sum(jnp.where(mask, hit, 0.0)), "count": jnp.sum(mask, dtype=jnp.int32)}
    if "macro_f1" in spec.secondary:
        sums["confusion"] = confusion(y, pred, mask, spec.output_size)
    if "auc" in spec.secondary:
        sums["scores"] = auc.histogram(out, y, mask)
    if "mae" in spec.secondary:
        sums["abs"] = jnp.sum(jnp.where(mask, jnp.abs(out - y), 0.0))
    return sums


def metric_values(spec: TaskSpec, sums: dict) -> dict[str, jax.Array]:
    """The metrics of summed statistics, as TaskSpec.metrics lists them: the primary one
    (TaskSpec.metric) first, then the secondary ones."""
    if spec.dense:
        values = dense.values(spec.kind, sums)
        return {name: values[name] for name in spec.metrics}
    count = jnp.maximum(sums["count"], 1).astype(jnp.float32)
    values = {spec.metric: sums["total"] / count}
    if "macro_f1" in spec.secondary:
        values["macro_f1"] = macro_f1(sums["confusion"])
    if "auc" in spec.secondary:
        values["auc"] = auc.auc(sums["scores"])
    if "mae" in spec.secondary:
        values["mae"] = sums["abs"] / count
    return values


def loss_sums(spec: TaskSpec, out: jax.Array, y: jax.Array, rows: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sum of the loss's terms, their count) over a batch's counted rows."""
    if spec.dense:
        values, mask = dense.pixel_losses(spec.kind, out, y)
        mask = mask & rows[:, None, None]
    else:
        mask = _entries(spec, y, rows)
        y = jnp.where(mask, y, 0)
        values = (optax.softmax_cross_entropy_with_integer_labels(out, y) if spec.kind == "classification"
                  else (out - y) ** 2)
    return jnp.sum(jnp.where(mask, values, 0.0)), jnp.sum(mask, dtype=jnp.int32)


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
