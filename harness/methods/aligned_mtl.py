"""Aligned-MTL (Senushkin et al. 2023, "Independent Component Alignment for Multi-Task Learning").

Makes the task gradients orthogonal with equal magnitudes before summing them, so that the
linear system of gradients has condition number 1. With M = G G^T = V diag(lambda) V^T over its
numerical rank and sigma_min^2 the smallest kept eigenvalue, B = sigma_min V diag(lambda)^-1/2 V^T;
the aligned gradients are the rows of B G (orthogonal, each of norm sigma_min), and the
direction is their sum, d = (B 1)^T G. Task-specific parameters get their plain gradients.

Matches the reference implementation (LibMTL's Aligned_MTL, equal task preferences, rank
tolerance lambda_max * T * float eps), except that the rank cut is a mask instead of slicing.
Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.methods.solvers import gram
from harness.schema import Entry


@dataclass
class AlignedMTLConfig:
    name: str = "aligned_mtl"


def alignment_weights(grads: jax.Array) -> jax.Array:
    """B 1 (T,): the weights of the raw gradients in the sum of the aligned gradients."""
    lam, vecs = jnp.linalg.eigh(gram(grads))
    tol = jnp.max(lam) * lam.shape[0] * jnp.finfo(lam.dtype).eps
    keep = lam > tol
    inv_sqrt = jnp.where(keep, jax.lax.rsqrt(jnp.where(keep, lam, 1.0)), 0.0)
    sigma_min = jnp.sqrt(jnp.min(jnp.where(keep, lam, jnp.inf)))
    sigma_min = jnp.where(jnp.any(keep), sigma_min, 0.0)
    b = sigma_min * (vecs * inv_sqrt) @ vecs.T
    return b.sum(axis=1)


def build(cfg: AlignedMTLConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    def update(losses, grads, state, key, hparams):
        direction = alignment_weights(grads) @ grads
        return MethodOutput(jnp.ones_like(losses), direction, state, {})

    return Method(Needs.SHARED_GRADS, no_state, update, schedules=("joint",))


METHODS.register("aligned_mtl", Entry(AlignedMTLConfig, build))
