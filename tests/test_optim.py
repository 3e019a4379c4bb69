"""The optimiser pieces match optax's own optimisers, and the learning-rate schedules."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from harness.run.write import records
from harness.train.optim import Optimizer, clip, make_direction, make_learning_rate
from helpers import small_run


@pytest.mark.parametrize("name,reference", [
    ("adam", lambda: optax.adam(0.01)),
    ("adamw", lambda: optax.adamw(0.01, weight_decay=0.1)),
    ("sgd", lambda: optax.sgd(0.01, momentum=0.9)),
])
def test_direction_times_lr_is_the_optax_optimiser(name, reference):
    cfg = Optimizer(name=name)
    tx, ref = make_direction(cfg, {"lr": jnp.float32(0.01), "weight_decay": jnp.float32(0.1)}), reference()
    params = {"w": jnp.arange(6.0).reshape(2, 3)}
    s, r = tx.init(params), ref.init(params)
    p_ours, p_ref = params, params
    for i in range(5):
        g = {"w": jnp.sin(p_ours["w"] + i)}
        u, s = tx.update(g, s, p_ours)
        p_ours = jax.tree.map(lambda p, uu: p - 0.01 * uu, p_ours, u)
        v, r = ref.update(g, r, p_ref)
        p_ref = optax.apply_updates(p_ref, v)
    np.testing.assert_allclose(p_ours["w"], p_ref["w"], rtol=1e-6)


def test_learning_rate_schedules():
    hp = {"lr": jnp.float32(0.1)}
    cos = make_learning_rate(Optimizer(lr_schedule="cosine"), hp, 100)
    assert float(cos(0)) == pytest.approx(0.1) and float(cos(100)) == pytest.approx(0.0, abs=1e-7)
    assert float(cos(50)) == pytest.approx(0.05)
    warm = make_learning_rate(Optimizer(lr_schedule="warmup_cosine", warmup_steps=10), hp, 100)
    assert float(warm(0)) == pytest.approx(0.01) and float(warm(9)) == pytest.approx(0.1)
    assert float(warm(10)) == pytest.approx(0.1) and float(warm(100)) == pytest.approx(0.0, abs=1e-7)
    assert float(make_learning_rate(Optimizer(), hp, 100)(77)) == pytest.approx(0.1)


def test_clip_bounds_the_global_norm():
    g = {"a": jnp.full((4,), 3.0), "b": jnp.full((2,), 4.0)}
    clipped = clip(g, 1.0)
    norm = float(jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(clipped))))
    assert norm == pytest.approx(1.0, rel=1e-5)
    assert clip(g, None) is g


def test_best_selection_picks_each_tasks_best_validation_evaluation():
    """Task a (higher is better) peaks at eval 1, task b (mse, lower is better) at eval 2."""
    import dataclasses

    from harness.data.base import classification, regression

    run = small_run(train=dataclasses.replace(small_run().train, select="best"))
    tasks = (classification("a", 3), regression("b"))
    val = np.array([[[0.5, 3.0], [0.9, 2.0], [0.7, 1.0]]])
    test = np.array([[[0.4, 3.5], [0.8, 2.5], [0.6, 1.5]]])
    out = {"val": val, "test": test, "val_loss": val, "train_loss": val, "weights": val,
           "diverged_at": np.array([-1])}
    common = {"kind": "mtl", "config": {}, "config_hash": "h", "label": "", "task": None,
              "tasks": ["a", "b"], "task_specs": {}}
    (rec,) = records(run, tasks, out, [0], {}, common)
    assert rec.metrics["test"] == {"a": pytest.approx(0.8), "b": pytest.approx(1.5)}
    assert rec.selected_step == {"a": 20, "b": 30}
    final = small_run(train=dataclasses.replace(small_run().train, select="final"))
    (rec,) = records(final, tasks, out, [0], {}, common)
    assert rec.metrics["test"] == {"a": pytest.approx(0.6), "b": pytest.approx(1.5)}
