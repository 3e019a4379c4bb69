"""Evaluation inside the compiled run: metrics and losses on a whole split, and the summary of
one evaluation window."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from harness.data.base import Split, TaskSpec
from harness.models.base import Model
from harness.train import losses as L


def evaluate(model: Model, tasks: tuple[TaskSpec, ...], params, split: Split,
             scales: dict[str, L.Scale] | None = None) -> tuple[jax.Array, jax.Array]:
    """(metrics (T,), losses (T,)) on a whole split: metrics in the targets' own units, losses
    in the units training sees (standardised regression targets where `scales` has them)."""
    scales = scales or {}
    out = model.apply(params, split.x)
    shown = L.in_target_units(out, scales)
    metrics = jnp.stack([L.metric(t, shown[t.name], split.y[t.name]) for t in tasks])
    y = L.standardize(split.y, scales)
    losses = jnp.stack([L.loss(t, out[t.name], y[t.name]) for t in tasks])
    return metrics, losses


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
