"""GradDrop, gradient sign dropout (Chen et al. 2020, "Just Pick a Sign: Optimizing Deep
Multitask Models with Gradient Sign Dropout").

Per coordinate p of the shared gradients, the sign purity P_p = 1/2 (1 + sum_t g_tp / sum_t |g_tp|)
is the probability of keeping the positive parts: with U_p ~ Uniform(0, 1) drawn from `key`, task
t's component is kept when P_p > U_p and g_tp > 0, or P_p < U_p and g_tp < 0, and dropped
otherwise; d_p = sum_t kept_tp g_tp. Coordinates where every task agrees in sign are kept whole.
Task-specific parameters get their plain gradients.

Differences from the reference implementations: the paper and LibMTL apply the mask to the
gradients of the shared representation (summed over the batch, times the sign of the
activations) and backpropagate the masked sum; here, as in TorchJD's GradDrop, it is applied to
the gradients of the shared parameters themselves, without leak (leak 0, the default of both).
Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.schema import Entry

PURITY_EPS = 1e-7  # as in the reference: a coordinate where every gradient is 0 gets purity 1/2


@dataclass
class GradDropConfig:
    name: str = "graddrop"


def drop_signs(grads: jax.Array, key: jax.Array) -> jax.Array:
    """The GradDrop direction (P,) for gradients (T, P)."""
    purity = 0.5 * (1.0 + grads.sum(axis=0) / (jnp.abs(grads).sum(axis=0) + PURITY_EPS))
    u = jax.random.uniform(key, purity.shape, grads.dtype)
    keep = ((purity > u)[None] & (grads > 0)) | ((purity < u)[None] & (grads < 0))
    return jnp.sum(jnp.where(keep, grads, 0.0), axis=0)


def build(cfg: GradDropConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    def update(losses, grads, state, key, hparams):
        return MethodOutput(jnp.ones_like(losses), drop_signs(grads, key), state, {})

    return Method(Needs.SHARED_GRADS, no_state, update, schedules=("joint",))


METHODS.register("graddrop", Entry(GradDropConfig, build))
