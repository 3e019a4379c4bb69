"""IMTL, impartial multi-task learning (Liu et al. 2021, "Towards Impartial Multi-task Learning").

mode "g" (IMTL-G): with u_t = g_t / ||g_t||, find d = sum_t alpha_t g_t, sum_t alpha_t = 1,
whose projections d . u_t are equal for all tasks. The paper's closed form (D rows g_1 - g_t,
U rows u_1 - u_t: alpha_{2..T} = g_1 U^T (D U^T)^-1) is the same as beta = C^+ 1 with C the
cosine matrix (C beta = 1 makes every projection equal), alpha = beta_t / ||g_t|| normalised to
sum 1; that form is computed here, from the Gram matrix only. A task whose gradient vanishes
drops out (weight 0), as in TorchJD, instead of forcing every projection to 0. With more tasks
than parameters C beta = 1 may have no solution; beta is then its least-squares solution, as
in TorchJD. Task-specific parameters get their plain gradients.
mode "l" (IMTL-L): learned scales s_t (in the method state, Adam with learning rate `lr`) on the
losses e^{s_t} L_t - s_t, which drives every scaled loss towards 1; weights e^{s_t}.
mode "hybrid" (IMTL): IMTL-G applied to the gradients of the scaled losses e^{s_t} g_t.

Differences from the reference implementation: a pseudo-inverse of the cosine matrix replaces
the inverse of D U^T, so collinear or vanished gradients give a finite answer and norms spread
over many orders of magnitude cost no accuracy (TorchJD takes the pseudo-inverse of the Gram
matrix itself); s_t has its own Adam instead of sharing the model's
optimiser. Schedules: mode "l" joint and alternate (the scale normalises a lone task's loss);
"g" and "hybrid" joint only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic, no_state
from harness.methods.solvers import cosines, gram, per_gradient
from harness.schema import Entry

MODES = ("g", "l", "hybrid")


@dataclass
class IMTLConfig:
    name: str = "imtl"
    mode: str = "hybrid"  # g | l | hybrid
    lr: float = dynamic(1e-3)  # Adam learning rate of the loss scales s_t (modes l, hybrid)


class IMTLState(NamedTuple):
    log_scales: jax.Array  # s_t
    opt_state: optax.OptState


def equal_projection_weights(grads: jax.Array) -> jax.Array:
    """IMTL-G's alpha (T,), summing to 1, from gradients (T, P); zeros if no solution has a
    non-zero sum (every projection would be 0)."""
    c, norms = cosines(gram(grads))
    beta = jnp.linalg.pinv(c, hermitian=True) @ jnp.ones_like(norms)
    alpha = per_gradient(beta, norms)
    total = jnp.sum(alpha)
    # alpha and -alpha give the same projections up to sign; a vanishing sum means the
    # equal projections are all 0
    ok = jnp.abs(total) > 1e-6 * jnp.sum(jnp.abs(alpha))
    return jnp.where(ok, alpha / jnp.where(ok, total, 1.0), 0.0)


def build(cfg: IMTLConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if cfg.mode not in MODES:
        raise bad("method.mode", cfg.mode, f"one of {', '.join(MODES)}")
    if not cfg.lr > 0:
        raise bad("method.lr", cfg.lr, "a number > 0")

    def init(num_tasks: int, grad_dim: int) -> IMTLState:
        s = jnp.zeros((num_tasks,), jnp.float32)
        return IMTLState(s, optax.adam(1.0).init(s))

    def update(losses, grads, state, key, hparams):
        if cfg.mode == "g":
            alpha = equal_projection_weights(grads)
            return MethodOutput(jnp.ones_like(losses), alpha @ grads, state, {})
        scales = jnp.exp(state.log_scales)
        # d/ds of e^s L - s
        step, opt_state = optax.adam(hparams["lr"]).update(scales * losses - 1.0, state.opt_state)
        new_state = IMTLState(state.log_scales + step, opt_state)
        diagnostics = {"log_scale": state.log_scales}
        if cfg.mode == "l":
            return MethodOutput(scales, None, new_state, diagnostics)
        scaled = scales[:, None] * grads
        direction = equal_projection_weights(scaled) @ scaled
        return MethodOutput(scales, direction, new_state, diagnostics)

    needs = Needs.LOSSES if cfg.mode == "l" else Needs.SHARED_GRADS
    schedules = ("joint", "alternate") if cfg.mode == "l" else ("joint",)
    return Method(needs, no_state if cfg.mode == "g" else init, update, schedules=schedules)


METHODS.register("imtl", Entry(IMTLConfig, build))
