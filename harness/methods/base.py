"""The method interface: optax-style pure functions that turn per-task losses (and, when the
method asks for them, per-task gradients) into one update.

A method is built from its config (a dataclass in its own module) and the task specs:
`build(cfg, tasks) -> Method`. Everything inside `init`/`update` must be pure JAX (it runs inside
`lax.scan`, under `vmap` over seeds and hyper-parameters), with no Python callbacks.
"""
from __future__ import annotations

import enum
from typing import Any, Callable, NamedTuple

import jax

from harness.schema import dynamic  # noqa: F401  (re-exported for method configs)

PyTree = Any


class Needs(enum.Enum):
    """What the trainer must compute for a method; it computes no more than that."""

    LOSSES = "losses"  # task losses only; the update is the gradient of sum_t w_t L_t
    SHARED_GRADS = "shared_grads"  # (T, P) gradients of every shared parameter, flattened
    LAST_SHARED_GRADS = "last_shared_grads"  # (T, P) gradients of the last shared layer only
    REPR_GRADS = "repr_grads"  # (T, B*Z) gradients of the shared representation, flattened


class MethodOutput(NamedTuple):
    """weights: (T,) weights of the task losses. They weight the gradients of the task-specific
        parameters always, and of the shared parameters too when `direction` is None.
    direction: (P,) descent direction for the shared parameters (flattened, same layout as the
        gradients passed in), or None. Only SHARED_GRADS methods may return one.
    state: the new method state.
    diagnostics: name -> scalar or (T,) array; the trainer averages it over each evaluation window
        and records it in the curves under `diagnostics` ('<name>' or '<name>.<task>').
    """

    weights: jax.Array
    direction: jax.Array | None
    state: PyTree
    diagnostics: dict[str, jax.Array]


class Lookahead(NamedTuple):
    """What a method's `prepare` hook may evaluate on a step: functions of the parameters, all
    differentiable, so a method can take a virtual step or differentiate through gradients.

    params: the current parameters {"shared", "tasks"}.
    train_losses(params) -> (T,): the task losses on this step's batch (as training sees them).
    repr_grads(params) -> (T, N, Z): each task loss's gradient with respect to the N rows of the
        shared representation on this step's batch (a row per example).
    val_losses(params) -> (T,): the task losses on a batch of rows of the validation split,
        drawn only when this is called.
    lr: this step's learning rate. step: this step's number (unbatched, so `lax.cond` on it stays
        a branch under vmap).
    """

    params: PyTree
    train_losses: Callable[[PyTree], jax.Array]
    repr_grads: Callable[[PyTree], jax.Array]
    val_losses: Callable[[PyTree], jax.Array]
    lr: jax.Array
    step: jax.Array


class Method(NamedTuple):
    """needs: what `update` receives as `grads`.
    init(num_tasks, grad_dim) -> state; grad_dim is P, the width of the `grads` that `update`
        will receive (0 for LOSSES methods), so states such as gradient averages have fixed shapes.
    update(losses (T,), grads (T, P) or None, state, key, hparams) -> MethodOutput.
        `hparams` maps each dynamic field of the method's config to a scalar array.
    schedules: the schedules this method makes sense with ("joint", "alternate"). Under
        "alternate" only one task is active per step: the trainer zeroes the other weights.
    on_eval: optional `(state, val_scores (T,), hparams) -> state`, called after each evaluation
        inside the compiled run; val_scores are oriented so that higher is better
        (accuracy, or minus the mse).
    prepare: optional `(state, Lookahead, key, hparams) -> (state, extra, diagnostics)`, called
        on every step before `update`, for methods that look beyond this step's losses (a
        lookahead on validation rows, a penalty differentiated through the task gradients).
        `extra` is None or a gradient pytree like params that the trainer adds to the weighted
        gradient. Such a method that needs only losses gets, as `init`'s grad_dim, the width Z
        of one row of the shared representation. Schedules: joint only.
    """

    needs: Needs
    init: Callable[[int, int], PyTree]
    update: Callable[[jax.Array, jax.Array | None, PyTree, jax.Array, dict[str, jax.Array]], MethodOutput]
    schedules: tuple[str, ...] = ("joint", "alternate")
    on_eval: Callable[[PyTree, jax.Array, dict[str, jax.Array]], PyTree] | None = None
    prepare: Callable[[PyTree, Lookahead, jax.Array, dict[str, jax.Array]],
                      tuple[PyTree, PyTree | None, dict[str, jax.Array]]] | None = None


def no_state(num_tasks: int, grad_dim: int) -> tuple[()]:
    """`init` of a method without state: `Method(needs, no_state, update)`. The state is `()`, an
    empty pytree, which `update` passes back unchanged."""
    return ()


# name -> Entry(config dataclass, build(cfg, tasks) -> Method); filled by the method modules.
from harness.registry import Registry  # noqa: E402

METHODS = Registry("method")
