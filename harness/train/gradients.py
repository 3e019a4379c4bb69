"""Task losses and gradients of one step from one forward pass.

Per-task gradients, when the method (or a probe) needs them, come from a vmap over one-hot
cotangents of that pass and the final gradient from one more backward with the method's
weights; or, from PER_TASK_BACKWARD_FROM tasks on, from one backward per task whose results the
weights combine. The trainer computes no more than the method's `needs`.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from harness.data.base import TaskSpec
from harness.methods.base import Lookahead, Method, MethodOutput, Needs
from harness.models.base import Model
from harness.train.losses import Teaching, task_losses

# From this many tasks on, per-task gradients come from one backward per task through its own
# loss, instead of a vmap over one-hot cotangents of all the losses (T^2 head backwards, then one
# more with the weights). Step time / equal's on `python -m harness.bench --sections methods
# --tasks 2 3 4` (2 CPU cores), vmap vs per-task: mgda_ub 1.37 vs 1.45 at T = 2, 1.72 vs 1.54 at
# T = 3, 1.80 vs 1.55 at T = 4; pcgrad, mgda and gradnorm move the same way.
PER_TASK_BACKWARD_FROM = 3


def _flat(tree) -> jax.Array:
    return ravel_pytree(tree)[0]


def _backward_per_task(losses_of, task_params, z, num_tasks: int):
    """One backward per task through its own loss (XLA prunes the other heads): the losses, a
    weights -> (head grads, z cotangent) combiner and the per-task z cotangents (T, ...)."""
    per_task = [jax.vjp(lambda tp, zz, i=i: losses_of(tp, zz)[i], task_params, z) for i in range(num_tasks)]
    losses = jnp.stack([loss for loss, _ in per_task])
    parts = [vjp(jnp.ones((), loss.dtype)) for loss, vjp in per_task]
    g_heads = jax.tree.map(lambda *a: jnp.stack(a), *(g for g, _ in parts))
    gz = jax.tree.map(lambda *a: jnp.stack(a), *(g for _, g in parts))

    def heads_vjp(w):
        return jax.tree.map(lambda a: jnp.tensordot(w, a, 1), (g_heads, gz))

    return losses, heads_vjp, gz


def _backward_joint(losses_of, task_params, z, num_tasks: int, per_task: bool):
    """One vjp of all the losses; with `per_task`, the per-task z cotangents from a vmap over
    one-hot cotangents (T backwards through all heads), else None."""
    losses, heads_vjp = jax.vjp(losses_of, task_params, z)
    gz = jax.vmap(lambda c: heads_vjp(c)[1])(jnp.eye(num_tasks)) if per_task else None
    return losses, heads_vjp, gz


def gradient_probes(G: jax.Array) -> dict[str, jax.Array]:
    """Cosine similarity between task gradients (T, T) and their norms (T,)."""
    norms = jnp.linalg.norm(G, axis=1)
    cos = (G @ G.T) / jnp.maximum(norms[:, None] * norms[None, :], 1e-12)
    return {"cos": cos, "norm": norms}


def lookahead_affinity(model: Model, losses_of, params, gshared, x, losses, lr) -> jax.Array:
    """TAG inter-task affinity (Fifty et al. 2021, "Efficiently Identifying Task Groupings"):
    Z[i, j] = (1 - L_j(shared after an SGD step on task i alone) / L_j(now)) / lr, on the
    same batch. Positive: a step on i lowers j's loss."""
    def after_step_on(g_i):
        shared = jax.tree.map(lambda p, g: p - lr * g, params["shared"], g_i)
        moved = {"shared": shared, "tasks": params["tasks"]}
        return losses_of(moved["tasks"], model.trunk(moved, x))

    ahead = jax.vmap(after_step_on)(gshared)  # (T_i, T_j)
    return (1.0 - ahead / losses[None, :]) / lr


def make_gradients(model: Model, method: Method, tasks: tuple[TaskSpec, ...], shared_size: int,
                   diagnostics: bool = False, affinity: bool = False, blocks: bool = False,
                   val_blocks: bool = False) -> Callable:
    """(params, x, y, method_state, key, hparams, model_hparams, active, lr, teaching=None,
    val=None, step=None) -> (losses, grads, MethodOutput, probes).

    val: (x, y) rows of the validation split and step: the step number, both for a method with
    a `prepare` hook (harness.methods.base.Lookahead), which runs before its `update`. With
    `val_blocks` (tasks with their own inputs) the validation rows come in one block per task.

    probes: {"cos" (T, T), "norm" (T,)} with diagnostics, {"affinity" (T, T)} with affinity;
    empty otherwise. With nothing shared, a gradient method has nothing to combine: the plain
    sum of losses.
    """
    num_tasks = len(tasks)
    heads_losses = task_losses(model.heads, tasks, blocks)
    needs = method.needs if shared_size > 0 else Needs.LOSSES
    probing = shared_size > 0 and (diagnostics or affinity)
    per_task = needs is not Needs.LOSSES or probing
    val_losses_of = task_losses(model.heads, tasks, val_blocks)  # one batch for every task, unless each has its own

    def lookahead(params, x, losses_of, val, lr, step) -> Lookahead:
        def train_losses(p):
            return losses_of(p["tasks"], model.trunk(p, x))

        def repr_grads(p):
            z = model.trunk(p, x)
            losses, vjp = jax.vjp(lambda zz: losses_of(p["tasks"], zz), z)
            gz = jax.vmap(lambda c: vjp(c)[0])(jnp.eye(num_tasks, dtype=losses.dtype))
            return gz.reshape(num_tasks, z.shape[0], -1)

        def val_losses(p):
            vx, vy = val
            return val_losses_of(p["tasks"], model.trunk(p, vx), vy)

        return Lookahead(params, train_losses, repr_grads, val_losses, lr, step)

    def method_inputs(losses_of, params, trunk_vjp, gz, x, losses, lr):
        """(G, unravel, probes): the (T, P) gradients the method asks for, the inverse of the
        flattening of shared gradients (SHARED_GRADS only), and the probes."""
        G, unravel, probes = None, None, {}
        if needs is Needs.REPR_GRADS:
            G = jax.vmap(_flat)(gz)
        if needs in (Needs.SHARED_GRADS, Needs.LAST_SHARED_GRADS) or probing:
            gshared = jax.vmap(lambda g: trunk_vjp(g)[0]["shared"])(gz)
            flat = jax.vmap(_flat)(gshared)
            if needs is Needs.SHARED_GRADS:
                G, unravel = flat, ravel_pytree(jax.tree.map(lambda a: a[0], gshared))[1]
            elif needs is Needs.LAST_SHARED_GRADS:
                G = jax.vmap(_flat)(model.last_shared(gshared))
            if diagnostics:
                probes.update(gradient_probes(flat))
            if affinity:
                probes["affinity"] = lookahead_affinity(model, losses_of, params, gshared, x, losses, lr)
        return G, unravel, probes

    def gradients(params, x, y, mstate, key, hp, hp_model, active, lr, teaching: Teaching | None = None,
                  val=None, step=None):
        def losses_of(task_params, zz):
            return heads_losses(task_params, zz, y, teaching)

        extra, prepared = None, {}
        if method.prepare is not None:
            # the hook's key is folded from the method's, so `update` sees the same key as without it
            mstate, extra, prepared = method.prepare(mstate, lookahead(params, x, losses_of, val, lr, step),
                                                     jax.random.fold_in(key, 1), hp)

        z, trunk_vjp = jax.vjp(lambda p: model.trunk(p, x), params)
        if per_task and num_tasks >= PER_TASK_BACKWARD_FROM:
            losses, heads_vjp, gz = _backward_per_task(losses_of, params["tasks"], z, num_tasks)
        else:
            losses, heads_vjp, gz = _backward_joint(losses_of, params["tasks"], z, num_tasks, per_task)
        G, unravel, probes = (method_inputs(losses_of, params, trunk_vjp, gz, x, losses, lr)
                              if per_task else (None, None, {}))
        if needs is Needs.LOSSES and method.needs is not Needs.LOSSES:
            out = MethodOutput(jnp.ones_like(losses), None, mstate, {})
        else:
            out = method.update(jax.lax.stop_gradient(losses), G, mstate, key, hp)
        weights = out.weights * active
        g_tasks, g_z = heads_vjp(weights.astype(losses.dtype))
        (grads,) = trunk_vjp(g_z)
        grads = {"shared": grads["shared"], "tasks": jax.tree.map(jnp.add, grads["tasks"], g_tasks)}
        if out.direction is not None and unravel is not None:
            grads["shared"] = unravel(out.direction)
        if model.penalty is not None:
            grads = jax.tree.map(jnp.add, grads, jax.grad(model.penalty)(params, hp_model))
        if extra is not None:
            grads = jax.tree.map(jnp.add, grads, extra)
        if prepared:
            out = out._replace(diagnostics={**out.diagnostics, **prepared})
        return losses, grads, out._replace(weights=weights), probes

    return gradients


def method_grad_dim(model: Model, method: Method, shared_shapes: Any, input_dim: int, batch: int) -> int:
    """P, the width of the gradients the method will receive (0 when it gets none)."""
    def size(tree):
        return int(sum(leaf.size for leaf in jax.tree.leaves(tree)))

    x = jax.ShapeDtypeStruct((batch, input_dim), jnp.float32)
    if method.prepare is not None and method.needs is Needs.LOSSES:  # the width of a representation row
        z = jax.eval_shape(lambda k, xx: model.trunk(model.init(k), xx), jax.random.key(0), x)
        return int(z.size // z.shape[0])
    if method.needs is Needs.LOSSES or size(shared_shapes) == 0:
        return 0
    if method.needs is Needs.SHARED_GRADS:
        return size(shared_shapes)
    if method.needs is Needs.LAST_SHARED_GRADS:
        return size(model.last_shared(shared_shapes))
    return size(jax.eval_shape(lambda k, xx: model.trunk(model.init(k), xx), jax.random.key(0), x))
