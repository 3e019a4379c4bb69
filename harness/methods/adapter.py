"""Any registered method as an optax-style transformation over per-task gradients, for use in
a training loop written outside the harness.

`task_aggregator(name, num_tasks, **overrides)` returns a `TaskAggregator`:
  init(params) -> state
  update(task_grads, state, params=None, *, losses=None, key=None, method_grads=None)
      -> (updates, state)
task_grads is a pytree like params whose every leaf has a leading task axis T (the output of
`jax.jacrev` of the (T,) task losses, or of a vmap over per-task gradients): the shape optax's
experimental aggregators take. updates is one gradient pytree like params, to feed to any optax
optimiser. Inside, the method sees exactly what the harness's trainer gives it
(harness.train.gradients): the (T, P) flattened gradients of the shared parameters (the leaves
`shared` marks; all of them by default), the task losses, a key, its dynamic values; and its
answer is applied as there: the shared leaves move along its direction when it returns one and
along sum_t w_t g_t otherwise; the other (task-specific) leaves along sum_t w_t g_t.

Randomness: the state holds a key (from `seed`) folded with the step count, unless `key` is
given. Methods that read gradients of the shared representation (needs REPR_GRADS) or of the
last shared layer (LAST_SHARED_GRADS) are given those as `method_grads` (T, K), with K passed
as `grad_dim`; without them they read the shared parameters' gradients. A method with an
`on_eval` (validation_weighting) exposes it as `on_eval(state, val_scores)` (higher is better).
Methods with a `prepare` hook (auto_lambda, great) need the model and the data, not only
gradients, and are refused.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from harness.errors import bad
from harness.methods import METHODS, build_method
from harness.methods.base import Needs

PyTree = Any


class AggregatorState(NamedTuple):
    method: PyTree  # the method's own state
    key: jax.Array
    count: jax.Array  # int32, updates so far


class TaskAggregator(NamedTuple):
    """init(params) -> state; update(task_grads, state, params=None, *, losses=None, key=None,
    method_grads=None) -> (updates, state); on_eval(state, val_scores (T,)) -> state, or None."""

    init: Callable[[PyTree], AggregatorState]
    update: Callable[..., tuple[PyTree, AggregatorState]]
    on_eval: Callable[[AggregatorState, jax.Array], AggregatorState] | None = None


def shared_mask(shared: PyTree | Callable[[PyTree], PyTree] | None, params: PyTree) -> PyTree:
    """A bool per leaf of params: `shared` may be None (all shared), a callable of params, or a
    prefix of params with a bool at each of its leaves (e.g. {"shared": True, "tasks": False})."""
    if shared is None:
        return jax.tree.map(lambda _: True, params)
    mask = shared(params) if callable(shared) else shared
    return jax.tree.map(lambda m, sub: jax.tree.map(lambda _: bool(m), sub), mask, params)


def task_aggregator(name: str, num_tasks: int, shared: PyTree | Callable | None = None, seed: int = 0,
                    grad_dim: int | None = None, **overrides) -> TaskAggregator:
    """The method `name` (its config defaults, with `overrides`) for `num_tasks` tasks."""
    method, hparams = build_method(name, num_tasks, **overrides)
    if method.prepare is not None:
        raise bad("method", name, "looks ahead through the model itself (auto_lambda's virtual step, great's "
                  "gradients of gradients), which an aggregator of given gradients cannot; train it with the harness")
    if method.on_eval is not None and "targets" not in hparams and "targets" in METHODS.get(name).schema.__dataclass_fields__:
        # The harness reads the default targets from the matched baselines' records; an
        # aggregator has no baselines, so its targets must be given.
        raise bad("targets", None, f"one target score per task ({num_tasks}), in the metrics' own units: "
                  f"{name} has no baselines to read them from outside the harness")

    def split(tree, mask):
        leaves, treedef = jax.tree.flatten(tree)
        return leaves, jax.tree.leaves(mask), treedef

    def init(params: PyTree) -> AggregatorState:
        leaves, flags, _ = split(params, shared_mask(shared, params))
        size = sum(int(leaf.size) for leaf, s in zip(leaves, flags) if s)
        dim = 0 if method.needs is Needs.LOSSES else (size if grad_dim is None else grad_dim)
        return AggregatorState(method.init(num_tasks, dim), jax.random.key(seed), jnp.zeros((), jnp.int32))

    def update(task_grads: PyTree, state: AggregatorState, params: PyTree | None = None, *,
               losses: jax.Array | None = None, key: jax.Array | None = None,
               method_grads: jax.Array | None = None) -> tuple[PyTree, AggregatorState]:
        template = jax.tree.map(lambda g: g[0], task_grads)
        leaves, flags, treedef = split(task_grads, shared_mask(shared, template))
        shared_leaves = [leaf for leaf, s in zip(leaves, flags) if s]
        first = next(iter(leaves))
        losses = jnp.ones((num_tasks,), first.dtype) if losses is None else jnp.asarray(losses)
        key = jax.random.fold_in(state.key, state.count) if key is None else key
        unravel = None
        if method.needs is Needs.LOSSES:
            grads = None
        elif method_grads is not None:
            if method.needs is Needs.SHARED_GRADS:
                raise ValueError(f"method_grads: {name} combines the shared parameters' gradients; pass none")
            grads = method_grads
        else:
            grads = jax.vmap(lambda ls: ravel_pytree(ls)[0])(shared_leaves)
            unravel = ravel_pytree([leaf[0] for leaf in shared_leaves])[1]
        out = method.update(jax.lax.stop_gradient(losses), grads, state.method, key, hparams)
        combined = [jnp.tensordot(out.weights.astype(leaf.dtype), leaf, 1) for leaf in leaves]
        if out.direction is not None and unravel is not None:
            moved = iter(unravel(out.direction))
            combined = [next(moved) if s else leaf for leaf, s in zip(combined, flags)]
        new_state = AggregatorState(out.state, state.key, state.count + 1)
        return jax.tree.unflatten(treedef, combined), new_state

    on_eval = None
    if method.on_eval is not None:
        def on_eval(state: AggregatorState, val_scores: jax.Array) -> AggregatorState:
            return state._replace(method=method.on_eval(state.method, jnp.asarray(val_scores), hparams))

    return TaskAggregator(init, update, on_eval)
