"""Optimisers as optax transformations without the learning rate, plus the learning-rate schedule.

The learning rate is applied by the trainer from the global step, so parameter groups that are
updated on different steps (alternate schedule) still follow one schedule in wall-clock steps,
while each group's Adam bias correction counts its own updates.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class Optimizer(NamedTuple):
    """The static choices of the optimiser (the config's `optim` group without its dynamic
    values, which arrive in `hparams`: lr, weight_decay)."""

    name: str = "adam"  # adam | adamw | sgd
    momentum: float = 0.9  # sgd only
    lr_schedule: str = "constant"  # constant | cosine | warmup_cosine
    warmup_steps: int = 0
    clip_norm: float | None = None


def make_direction(cfg: Optimizer, hp: dict[str, jax.Array]) -> optax.GradientTransformation:
    """adam / adamw / sgd(momentum) up to the final scaling by -lr (as in optax.adam etc.)."""
    if cfg.name == "sgd":
        return optax.trace(decay=cfg.momentum) if cfg.momentum > 0 else optax.identity()
    adam = optax.scale_by_adam()
    if cfg.name == "adamw":
        return optax.chain(adam, optax.add_decayed_weights(hp["weight_decay"]))
    return adam


def make_learning_rate(cfg: Optimizer, hp: dict[str, jax.Array], steps: int) -> Callable[[jax.Array], jax.Array]:
    """step -> learning rate; the peak value `hp["lr"]` is dynamic."""
    lr = hp["lr"]
    if cfg.lr_schedule == "cosine":
        return lambda step: lr * 0.5 * (1 + jnp.cos(jnp.pi * step / steps))
    if cfg.lr_schedule == "warmup_cosine":
        warm = max(cfg.warmup_steps, 1)

        def warmup_cosine(step):
            frac = jnp.clip((step - cfg.warmup_steps) / max(steps - cfg.warmup_steps, 1), 0.0, 1.0)
            return lr * jnp.where(step < cfg.warmup_steps, (step + 1) / warm, 0.5 * (1 + jnp.cos(jnp.pi * frac)))

        return warmup_cosine
    return lambda step: lr


def clip(grads, max_norm: float | None):
    """Global-norm clipping over all parameters (it couples tasks through the joint norm)."""
    if max_norm is None:
        return grads
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    scale = jnp.minimum(1.0, max_norm / (norm + 1e-12))
    return jax.tree.map(lambda g: g * scale, grads)
