"""The optax-style adapter (harness.methods.adapter) gives the harness trainer's updates: on a
tiny model, a few optimiser steps from the same start with the same batches and keys land on the
same parameters, for a loss-weighting, a projecting and a stateful bargaining method."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from harness.data.base import regression
from harness.methods import aggregate, build_method
from harness.methods.adapter import task_aggregator
from harness.models.base import MODELS
from harness.models.hard import HardConfig
from harness.train.gradients import make_gradients
from harness.train.losses import task_losses

TASKS = tuple(regression(f"t{t}") for t in range(3))
INPUT_DIM, BATCH, STEPS = 5, 16, 3


def batch(step: int):
    rng = np.random.default_rng(step)
    x = jnp.asarray(rng.normal(size=(BATCH, INPUT_DIM)), jnp.float32)
    return x, {t.name: jnp.asarray(x[:, :1] * (i + 1) - x[:, 1:2] * i + 0.1 * rng.normal(size=(BATCH, 1)),
                                   jnp.float32) for i, t in enumerate(TASKS)}


@pytest.mark.parametrize("name", ["equal", "pcgrad", "nash_mtl", "uncertainty"])
def test_adapter_gives_the_trainers_updates(name):
    model = MODELS.get("hard").build(HardConfig(depth=2, width=8, shared_depth=1), TASKS, INPUT_DIM)
    params = model.init(jax.random.key(0))
    method, hp = build_method(name, len(TASKS))
    shared_size = sum(leaf.size for leaf in jax.tree.leaves(params["shared"]))
    trainer_grads = jax.jit(make_gradients(model, method, TASKS, shared_size))
    heads_losses = task_losses(model.heads, TASKS)
    agg = task_aggregator(name, len(TASKS), shared={"shared": True, "tasks": False})

    @jax.jit
    def adapter_step(p, state, x, y, key):
        losses, vjp = jax.vjp(lambda q: heads_losses(q["tasks"], model.trunk(q, x), y), p)
        task_grads = jax.vmap(vjp)(jnp.eye(len(TASKS)))[0]  # every leaf (T, ...)
        return agg.update(task_grads, state, p, losses=losses, key=key)

    opt = optax.adam(1e-2)

    @jax.jit
    def descend(p, grads, opt_state):
        u, opt_state = opt.update(grads, opt_state, p)
        return optax.apply_updates(p, u), opt_state

    ours, theirs = params, params
    ours_opt, theirs_opt = opt.init(params), opt.init(params)
    agg_state, mstate = agg.init(params), method.init(len(TASKS), shared_size)
    active = jnp.ones(len(TASKS))
    for step in range(STEPS):
        x, y = batch(step)
        key = jax.random.key(100 + step)
        _, g_theirs, out, _ = trainer_grads(theirs, x, y, mstate, key, hp, {}, active, 1e-2)
        g_ours, agg_state = adapter_step(ours, agg_state, x, y, key)
        for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_theirs)):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
        mstate = out.state
        theirs, theirs_opt = descend(theirs, g_theirs, theirs_opt)
        ours, ours_opt = descend(ours, g_ours, ours_opt)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(params)))


def test_adapter_defaults_treat_every_leaf_as_shared_and_draw_fresh_keys():
    """Without a mask every leaf is combined by the method; without a key each update folds the
    step count into the state's key, so a random method draws anew each step."""
    grads = {"a": jnp.asarray([[1.0, 0.0], [-1.0, 1.0]]), "b": jnp.asarray([[[2.0]], [[0.5]]])}
    agg = task_aggregator("mgda", 2)
    updates, state = jax.jit(agg.update)(grads, agg.init(jax.tree.map(lambda g: g[0], grads)))
    flat = jnp.concatenate([grads["a"], grads["b"].reshape(2, 1)], axis=1)
    expected = aggregate("mgda", flat)
    np.testing.assert_allclose(jnp.concatenate([updates["a"], updates["b"].ravel()]), expected, rtol=1e-5)
    assert int(state.count) == 1
    rgw = task_aggregator("rgw", 2)
    state = rgw.init(jax.tree.map(lambda g: g[0], grads))
    update = jax.jit(rgw.update)
    first, state = update(grads, state)
    second, _ = update(grads, state)
    assert not np.allclose(first["a"], second["a"])


def test_adapter_refuses_what_it_cannot_run_in_one_line():
    """Lookahead methods need the model; active weighting's default targets need baselines.
    Both are refused when the aggregator is made, naming the method or key; given targets,
    active weighting runs."""
    from harness.errors import ConfigError
    with pytest.raises(ConfigError, match="auto_lambda"):
        task_aggregator("auto_lambda", 2)
    with pytest.raises(ConfigError, match="targets"):
        task_aggregator("active_weighting", 2)
    agg = task_aggregator("active_weighting", 2, targets=[1.0, 1.0], temperature=1.0)
    state = agg.on_eval(agg.init({"w": jnp.ones(3)}), jnp.asarray([0.5, 1.0]))
    # The task further below its target gets the larger weight; the weights sum to T.
    assert state.method.weights[0] > state.method.weights[1]
    assert float(state.method.weights.sum()) == pytest.approx(2.0)
