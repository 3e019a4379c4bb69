"""Evaluation inside the compiled run: metrics and losses on a whole split, and the summary of
one evaluation window.

`evaluate` runs the model on the whole split at once (the one-target-per-input datasets, as
before). `evaluate_in_chunks` runs it on fixed-size chunks in a `lax.scan` and adds up each
task's statistics (confusion counts, error sums: harness.train.losses.metric_sums), so the
activations held at once are a chunk's, whatever the split's size (images at full resolution);
its metrics equal the whole split's. Both also return every task's secondary metrics
(TaskSpec.secondary). Where each task has its own inputs (harness.data.base.Split), both
evaluate each task on its own rows, one task at a time."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from harness.data.base import Split, TaskSpec, own_inputs
from harness.models.base import Model
from harness.train import losses as L


def evaluate(model: Model, tasks: tuple[TaskSpec, ...], params, split: Split,
             scales: dict[str, L.Scale] | None = None) -> tuple[jax.Array, jax.Array, dict]:
    """(metrics (T,), losses (T,), secondary metrics {"<task>.<metric>": scalar}) on a whole
    split: metrics in the targets' own units, losses in the units training sees (standardised
    regression targets where `scales` has them)."""
    if own_inputs(split):
        return per_task(evaluate, model, tasks, params, split, scales)
    scales = scales or {}
    out = model.apply(params, split.x)
    shown = L.in_target_units(out, scales)
    metrics = jnp.stack([L.metric(t, shown[t.name], split.y[t.name]) for t in tasks])
    y = L.standardize(split.y, scales)
    losses = jnp.stack([L.loss(t, out[t.name], y[t.name]) for t in tasks])
    rows = jnp.ones(split.x.shape[0], bool)
    # The primary metric keeps its own computation above, bit for bit (the records of earlier
    # runs hold its exact values): behind the barrier the secondary metrics read their own copy
    # of the outputs in target units, so XLA fuses nothing of theirs into the primary's
    # reduction (sharing `shown` moved the MSE's last bit). They come from the same sums as in
    # evaluate_in_chunks.
    out_apart, y_apart = jax.lax.optimization_barrier((out, split.y))
    shown_apart = L.in_target_units(out_apart, scales)
    secondary = {f"{t.name}.{k}": v for t in tasks if t.secondary
                 for k, v in L.metric_values(t, L.metric_sums(t, shown_apart[t.name], y_apart[t.name], rows)).items()
                 if k != t.metric}
    return metrics, losses, secondary


def evaluate_in_chunks(model: Model, tasks: tuple[TaskSpec, ...], params, split: Split,
                       scales: dict[str, L.Scale] | None, size: int) -> tuple[jax.Array, jax.Array, dict]:
    """(metrics (T,), losses (T,), secondary metrics {"<task>.<metric>": scalar}) on a split,
    `size` rows at a time. The last chunk is the split's last `size` rows, its rows already
    counted left out, so no padding copy of the split is made."""
    if own_inputs(split):
        return per_task(evaluate_in_chunks, model, tasks, params, split, scales, size)
    scales = scales or {}
    n = split.x.shape[0]
    size = min(size, n)

    def stats(i):
        start = jnp.minimum(i * size, n - size)
        cut = lambda a: jax.lax.dynamic_slice_in_dim(a, start, size)  # noqa: E731
        x, y = cut(split.x), {name: cut(v) for name, v in split.y.items()}
        rows = start + jnp.arange(size) >= i * size
        out = model.apply(params, x)
        shown, ys = L.in_target_units(out, scales), L.standardize(y, scales)
        return ({t.name: L.metric_sums(t, shown[t.name], y[t.name], rows) for t in tasks},
                {t.name: L.loss_sums(t, out[t.name], ys[t.name], rows) for t in tasks})

    def chunk(total, i):
        return jax.tree.map(jnp.add, total, stats(i)), None

    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(stats, 0))
    (metric_sums, loss_sums), _ = jax.lax.scan(chunk, zeros, jnp.arange(-(-n // size)))
    values = {t.name: L.metric_values(t, metric_sums[t.name]) for t in tasks}
    metrics = jnp.stack([values[t.name][t.metric] for t in tasks])
    losses = jnp.stack([s / jnp.maximum(c, 1).astype(s.dtype) for s, c in (loss_sums[t.name] for t in tasks)])
    secondary = {f"{t.name}.{k}": v for t in tasks for k, v in values[t.name].items() if k != t.metric}
    return metrics, losses, secondary


def per_task(evaluation, model: Model, tasks: tuple[TaskSpec, ...], params, split: Split,
             scales, *args) -> tuple[jax.Array, jax.Array, dict]:
    """`evaluation` of each task alone on its own inputs, put together as one evaluation of all:
    the model runs on a task's rows and only that task's outputs are read, as its single-task
    baseline evaluates them."""
    parts = [evaluation(model, (t,), params, Split(split.x[t.name], {t.name: split.y[t.name]}), scales, *args)
             for t in tasks]
    return (jnp.concatenate([m for m, _, _ in parts]), jnp.concatenate([loss for _, loss, _ in parts]),
            {k: v for _, _, secondary in parts for k, v in secondary.items()})


def window_summary(losses: jax.Array, weights: jax.Array, probes: dict, diagnostics: dict) -> dict:
    """Means over one evaluation window's steps (leading axis) of what the steps produced."""
    summary = {"train_loss": losses.mean(0), "weights": weights.mean(0)}
    if "cos" in probes:
        summary.update(grad_cos=probes["cos"].mean(0), conflict=(probes["cos"] < 0).mean(0),
                       grad_norm=probes["norm"].mean(0))
    if "affinity" in probes:
        summary["affinity"] = probes["affinity"].mean(0)
    if diagnostics:
        summary["diagnostics"] = {name: jnp.mean(value, axis=0) for name, value in diagnostics.items()}
    return summary
