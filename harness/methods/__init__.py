"""Loss-weighting and gradient-aggregation methods, one module each, registered in METHODS.

Importing this package fills the registry. `aggregate` runs one method on one set of task
gradients, for notebooks, tests and quick comparisons; `build_method` builds one by name.
harness.methods.adapter turns one into an optax-style transformation for training loops written
outside the harness.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from harness.data.base import regression
from harness.methods import (  # noqa: F401  (each module registers itself)
    active_weighting,
    aligned_mtl,
    auto_lambda,
    base,
    cagrad,
    con_fig,
    cr_mogm,
    db_mtl,
    dualproj,
    dwa,
    equal,
    excessmtl,
    fairgrad,
    famo,
    geometric_mean,
    gls,
    graddrop,
    gradnorm,
    gradvac,
    great,
    imtl,
    mgda,
    mgda_ub,
    moco,
    modo,
    nash_mtl,
    pcgrad,
    rgw,
    rlw,
    sdmgrad,
    static,
    stch,
    uncertainty,
    upgrad,
    validation_weighting,
)
from harness.methods.base import METHODS, Method, Needs
from harness.schema import dynamic_values


def build_method(name: str, num_tasks: int, **overrides) -> tuple[Method, dict[str, jax.Array]]:
    """(method, its dynamic values as arrays) of method `name` for `num_tasks` tasks, from its
    config defaults with `overrides` (static and dynamic fields alike)."""
    entry = METHODS.get(name)
    cfg = entry.schema(**overrides)
    method = entry.build(cfg, tuple(regression(f"task{t}") for t in range(num_tasks)))
    return method, {k: jnp.asarray(v) for k, v in dynamic_values(cfg).items()}


def aggregate(name: str, grads: jax.Array, losses: jax.Array | None = None, **hparams) -> jax.Array:
    """One update of method `name` from a fresh state: the combined direction (P,).

    grads: (T, P) task gradients; losses: (T,), ones when omitted. `hparams` override the
    method's config defaults (static and dynamic fields alike). Weight-only methods return
    weights @ grads. The key is fixed, so random methods give repeatable answers.

    >>> import jax.numpy as jnp
    >>> g = jnp.array([[1.0, 0.0], [-1.0, 1.0]])  # conflicting: g1 . g2 = -1
    >>> aggregate("pcgrad", g).tolist()  # g1' = (0.5, 0.5), g2' = (0, 1)
    [0.5, 1.5]
    >>> [round(x, 4) for x in aggregate("mgda", g).tolist()]  # min-norm point of [g1, g2]
    [0.2, 0.4]
    """
    grads = jnp.asarray(grads, jnp.float32)
    num_tasks = grads.shape[0]
    method, values = build_method(name, num_tasks, **hparams)
    losses = jnp.ones((num_tasks,), jnp.float32) if losses is None else jnp.asarray(losses, jnp.float32)
    given = None if method.needs is Needs.LOSSES else grads
    out = method.update(losses, given, method.init(num_tasks, 0 if given is None else given.shape[1]), jax.random.key(0), values)
    return out.weights @ grads if out.direction is None else out.direction
