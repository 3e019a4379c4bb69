"""Missing labels: masked losses, metrics and target scales; methods and training with tasks
that lack labels in a batch; the reference floor fit on labelled rows only."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.data.base import Dataset, Split, classification, regression
from harness.data.labels import MISSING
from harness.methods import METHODS
from harness.methods.base import Needs
from harness.reference import reference_floor
from harness.schema import dynamic_values
from harness.train import losses as L

from harness.config import TrainConfig
from harness.methods.mgda import MGDAConfig
from harness.run.execute import execute as run_execute
from harness.run.plan import Job, make_parts, make_settings

from helpers import small_run

CLS, REG = classification("c", 3, missing_labels=True), regression("r", 2, missing_labels=True)


def problem(seed=0, rows=12):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(size=(rows, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, rows), jnp.int32)
    out = jnp.asarray(rng.normal(size=(rows, 2)), jnp.float32)
    targets = jnp.asarray(rng.normal(size=(rows, 2)), jnp.float32)
    return logits, labels, out, targets


@pytest.mark.parametrize("fn", [L.loss, L.metric])
def test_missing_rows_count_as_absent(fn):
    logits, labels, out, targets = problem()
    keep = np.arange(12) % 3 != 0
    holed = jnp.where(keep, labels, MISSING)
    np.testing.assert_allclose(fn(CLS, logits, holed), fn(CLS, logits[keep], labels[keep]), rtol=1e-6)
    # regression masks single entries: the mean runs over the labelled (row, column) pairs
    hole = np.zeros((12, 2), bool)
    hole[::3, 0] = hole[1::4, 1] = True
    holed = jnp.where(hole, jnp.nan, targets)
    expected = np.mean(((np.asarray(out) - np.asarray(targets)) ** 2)[~hole])
    np.testing.assert_allclose(fn(REG, out, holed), expected, rtol=1e-6)
    # with every label present, the masked form is the plain mean
    plain = (np.mean(np.asarray(jax.nn.log_softmax(logits))[np.arange(12), labels] * -1)
             if fn is L.loss else np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(labels)))
    np.testing.assert_allclose(fn(CLS, logits, labels), plain, rtol=1e-6)


@pytest.mark.parametrize("spec", [CLS, REG], ids=["classification", "regression"])
def test_a_batch_without_labels_gives_zero_loss_and_zero_gradient(spec):
    logits, labels, out, targets = problem()
    x, y = (logits, jnp.full_like(labels, MISSING)) if spec is CLS else (out, jnp.full_like(targets, jnp.nan))
    value, grad = jax.value_and_grad(lambda o: L.loss(spec, o, y))(x)
    assert value == 0.0 and L.metric(spec, x, y) == 0.0
    assert bool(jnp.all(grad == 0.0))
    # and under jit and vmap over a batch of batches, one of them without labels
    y_half = jnp.stack([y, labels if spec is CLS else targets])
    values = jax.jit(jax.vmap(lambda yy: L.loss(spec, x, yy)))(y_half)
    assert values[0] == 0.0 and values[1] > 0.0


def test_target_scales_use_labelled_values_only():
    _, _, _, targets = problem(rows=40)
    hole = np.zeros((40, 2), bool)
    hole[:25, 1] = True
    scale = L.target_scales((REG,), {"r": jnp.where(hole, jnp.nan, targets)})["r"]
    kept = np.asarray(targets)[25:, 1]
    np.testing.assert_allclose(scale.mean, [np.mean(targets[:, 0]), kept.mean()], rtol=1e-5)
    np.testing.assert_allclose(scale.std, [np.std(targets[:, 0]), kept.std()], rtol=1e-5)
    empty = L.target_scales((REG,), {"r": jnp.full((5, 2), jnp.nan)})["r"]
    assert empty.mean.tolist() == [0.0, 0.0] and empty.std.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("name", METHODS.names())
def test_methods_stay_finite_when_a_task_has_no_labels_in_a_batch(name):
    """An unlabelled task arrives with loss 0 and a zero gradient; every other step it is back."""
    num_tasks, width = 3, 7
    entry = METHODS.get(name)
    cfg = entry.schema(**({"weights": [1.0, 1.5, 2.0]} if name == "static" else {}))
    method = entry.build(cfg, tuple(regression(f"t{i}") for i in range(num_tasks)))
    hp = {k: jnp.asarray(v) for k, v in dynamic_values(cfg).items()}
    update, state = jax.jit(method.update), method.init(num_tasks, width)
    rng = np.random.default_rng(0)
    for step in range(4):
        grads = jnp.asarray(rng.normal(size=(num_tasks, width)), jnp.float32)
        losses = jnp.asarray(rng.uniform(0.2, 3.0, num_tasks), jnp.float32)
        if step % 2 == 0:  # the first step too: methods that keep the first losses see a 0
            grads, losses = grads.at[1].set(0.0), losses.at[1].set(0.0)
        out = update(losses, None if method.needs is Needs.LOSSES else grads, state, jax.random.key(step), hp)
        state = out.state
        for leaf in jax.tree.leaves((out.weights, out.direction, out.state, out.diagnostics)):
            assert bool(jnp.all(jnp.isfinite(leaf))), (name, step)


def test_nash_mtl_forgets_the_weight_of_a_task_absent_from_the_last_batch():
    """Its weight on a batch with the task back is the fresh solution's, not a warm start from the
    huge weight a vanished gradient gets."""
    entry = METHODS.get("nash_mtl")
    method = entry.build(entry.schema(), tuple(regression(f"t{i}") for i in range(3)))
    rng = np.random.default_rng(0)
    before, after = (jnp.asarray(rng.normal(size=(3, 7)), jnp.float32) for _ in range(2))
    losses, key = jnp.ones(3), jax.random.key(0)
    absent = method.update(losses, before.at[1].set(0.0), method.init(3, 7), key, {})
    back = method.update(losses, after, absent.state, key, {})
    fresh = method.update(losses, after, method.init(3, 7), key, {})
    np.testing.assert_allclose(back.weights, fresh.weights, rtol=1e-3)


def test_reference_floor_fits_and_scores_labelled_rows_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]))[:, None].astype(np.float32)
    holed = y.copy()
    holed[::2] = np.nan
    split = lambda rows, ys: Split(jnp.asarray(x[rows]), {"r": jnp.asarray(ys[rows])})  # noqa: E731
    parts = [np.arange(0, 60), np.arange(60, 75), np.arange(75, 90)]
    with_holes = reference_floor(regression("r", missing_labels=True), Dataset(*(split(p, holed) for p in parts)))
    keep = [p[np.isfinite(holed[p, 0])] for p in parts]
    labelled = reference_floor(regression("r"), Dataset(*(split(p, y) for p in keep)))
    assert with_holes == labelled and labelled["test"] < 1e-3


def synthetic(rows: int = 1000, seed: int = 0) -> Dataset:
    """A learnable pair of tasks on 8 inputs: c = argmax of 3 linear scores, r = linear + noise;
    splits of 600 / 200 / 200 rows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8)).astype(np.float32)
    c = np.argmax(x @ rng.normal(size=(8, 3)), axis=1).astype(np.int32)
    r = (x @ rng.normal(size=8) + 0.5 * rng.normal(size=rows))[:, None].astype(np.float32)
    return Dataset(*(Split(jnp.asarray(x[p]), {"c": jnp.asarray(c[p]), "r": jnp.asarray(r[p])})
                     for p in np.split(np.arange(rows), [600, 800])))


def job(run, data: Dataset) -> Job:
    """The job of `run` on `data` (its tasks c and r, its train size)."""
    tasks = (classification("c", 3, missing_labels=True), regression("r", missing_labels=True))
    n, d = data.train.x.shape
    return Job(run, None, make_parts(run, tasks, d, n), make_settings(run, tasks, d, n), {})


def drop_labels(data: Dataset, keep: np.ndarray) -> Dataset:
    y = data.train.y
    return data._replace(train=Split(data.train.x, {"c": jnp.where(keep, y["c"], MISSING),
                                                    "r": jnp.where(keep[:, None], y["r"], jnp.nan)}))


def test_half_missing_labels_train_like_the_labelled_rows_alone():
    """Tasks whose train labels are half missing reach the metrics of the same tasks trained on
    their labelled rows only (same seeds, same val/test, different batches: close, not equal)."""
    run = small_run(train=TrainConfig(steps=600, batch_size=32, eval_every=200), method=MGDAConfig())
    data = synthetic()
    keep = np.random.default_rng(1).random(600) < 0.5
    only = data._replace(train=Split(data.train.x[keep], {n: v[keep] for n, v in data.train.y.items()}))
    holed, _, _ = run_execute(job(run, data), drop_labels(data, keep), [0, 1, 2])
    alone, _, _ = run_execute(job(run, only), only, [0, 1, 2])
    assert np.all(holed["diverged_at"] == -1)
    (acc_h, mse_h), (acc_a, mse_a) = holed["test"][:, -1].mean(0), alone["test"][:, -1].mean(0)
    assert abs(acc_h - acc_a) < 0.03 and acc_a > 0.85
    assert abs(mse_h - mse_a) < 0.1 * mse_a and mse_a < 0.5  # the noise alone gives 0.25


@pytest.mark.parametrize("method", ["pcgrad", "nash_mtl"])
def test_batches_without_labels_leave_training_finite(method):
    """With 95% of one task's labels missing and batches of 8, about two batches in three have
    none of them (0.95^8): that task's loss is then 0 and its gradient zero, which gradient
    methods must combine without a NaN (every method's update on such inputs: above)."""
    run = small_run(train=TrainConfig(steps=60, batch_size=8, eval_every=20), method=METHODS.get(method).schema())
    data = synthetic()
    keep = np.random.default_rng(2).random(600) < 0.05
    holed = data._replace(train=Split(data.train.x, {"c": data.train.y["c"],
                                                     "r": jnp.where(keep[:, None], data.train.y["r"], jnp.nan)}))
    out, _, _ = run_execute(job(run, data), holed, [0])
    assert np.all(out["diverged_at"] == -1)
    for name in ("val", "test", "val_loss", "train_loss"):
        assert np.all(np.isfinite(out[name])), name
