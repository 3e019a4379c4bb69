"""The training program: masked updates, fairness of baselines, determinism, batching, divergence."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.config import OptimConfig, ScheduleConfig
from harness.data.relatedness import RelatednessConfig
from harness.config import single_task
from harness.run.execute import hparams
from harness.run.plan import only
from harness.train import INIT
from harness.train.update import group_state
from helpers import execute, plan_of, small_data, small_run, trainer


def leaves_equal(a, b) -> bool:
    return all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def run_once(run, data, seed=0, hp=None):
    return jax.jit(trainer(run).train)(jax.random.key(seed), hp or hparams(run), data)


@pytest.mark.parametrize("state", ["per_task", "shared"])
def test_alternate_step_leaves_other_tasks_bit_identical(state):
    """Round robin over 3 tasks for 2 steps: task t3 never trains, so its parameters and its
    optimiser state must be exactly their initial values; the trained ones must have moved."""
    run = small_run(
        data=RelatednessConfig(num_tasks=3, input_dim=8, n_train=256, n_val=64, n_test=64),
        schedule=ScheduleConfig(name="alternate", sampling="round_robin", optimizer_state=state),
        train=dataclasses.replace(small_run().train, steps=2, eval_every=1),
    )
    source, data = small_data(run)
    out = run_once(run, data)
    model = plan_of(run).parts.model
    init = model.init(jax.random.fold_in(jax.random.key(0), INIT))
    params, opt = out["final"].params, out["final"].opt
    assert leaves_equal(params["tasks"]["t3"], init["tasks"]["t3"])
    assert all(not leaves_equal(params["tasks"][t], init["tasks"][t]) for t in ("t1", "t2"))
    assert not leaves_equal(params["shared"], init["shared"])
    untouched = jax.tree.leaves(group_state(opt, "task/t3"))
    assert all(bool(jnp.all(x == 0)) for x in untouched)  # Adam count, mu, nu all still zero
    if state == "per_task":  # the shared layers' moments of t3's optimiser never moved either
        assert all(bool(jnp.all(x[2] == 0)) for x in jax.tree.leaves(group_state(opt, "shared")))
        assert all(bool(jnp.any(x[0] != 0)) for x in jax.tree.leaves(group_state(opt, "shared")))


def test_separate_towers_reproduce_single_task_runs():
    """shared_depth=0 with joint equal weights trains each task exactly as its baseline does."""
    run = small_run(model=dataclasses.replace(small_run().model, shared_depth=0))
    source, data = small_data(run)
    mtl, _, _ = execute(run, source.tasks, data, [0, 1])
    for j, task in enumerate(source.tasks):
        stl_run = single_task(run, task.name)
        stl, _, _ = execute(stl_run, (task,), only(data, task.name), [0, 1])
        np.testing.assert_allclose(mtl["test"][..., j], stl["test"][..., 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mtl["train_loss"][..., j], stl["train_loss"][..., 0], rtol=1e-5, atol=1e-6)


def test_sharing_changes_results():
    """The fairness check above is not vacuous: sharing a layer gives different metrics."""
    run = small_run()
    source, data = small_data(run)
    shared, _, _ = execute(run, source.tasks, data, [0])
    task = source.tasks[0]
    stl, _, _ = execute(single_task(run, task.name), (task,), only(data, task.name), [0])
    assert not np.allclose(shared["test"][..., 0], stl["test"][..., 0], rtol=1e-4)


def test_same_inputs_give_identical_metrics():
    run = small_run(schedule=ScheduleConfig(name="alternate"))
    source, data = small_data(run)
    a, _, _ = execute(run, source.tasks, data, [0, 1])
    b, _, _ = execute(run, source.tasks, data, [0, 1])
    for key in ("val", "test", "train_loss"):
        np.testing.assert_array_equal(a[key], b[key])


def test_seed_alone_equals_seed_in_batch():
    run = small_run()
    source, data = small_data(run)
    batch, _, _ = execute(run, source.tasks, data, [0, 1, 2, 3])
    alone, _, _ = execute(run, source.tasks, data, [2])
    np.testing.assert_allclose(alone["test"][0], batch["test"][2], rtol=1e-5)
    np.testing.assert_allclose(alone["train_loss"][0], batch["train_loss"][2], rtol=1e-5)
    assert not np.allclose(batch["test"][0], batch["test"][2])  # seeds really differ


def test_divergence_is_recorded_and_isolated():
    """Two runs batched over the learning rate: the huge one diverges, the other is untouched."""
    run = small_run(optim=OptimConfig(name="sgd", lr=1e-2, momentum=0.0))
    source, data = small_data(run)
    train = trainer(run).train
    hp = hparams(run)
    lrs = {**hp, "optim": {**hp["optim"], "lr": jnp.asarray([1e-2, 1e8], jnp.float32)}}
    keys = jax.vmap(jax.random.key)(jnp.asarray([0, 0], jnp.uint32))
    both = jax.jit(jax.vmap(train, in_axes=(0, {"optim": {"lr": 0, "weight_decay": None}, "method": {}, "model": {}, "distill": None}, None)))(keys, lrs, data)
    alone = jax.jit(train)(jax.random.key(0), hp, data)
    assert int(both["diverged_at"][0]) == -1
    assert 0 <= int(both["diverged_at"][1]) < run.train.steps
    np.testing.assert_allclose(both["test"][0], alone["test"], rtol=1e-5)
    assert np.all(np.isfinite(both["test"][0]))


def test_gradient_probes_measure_cosine_and_norm():
    from harness.train.gradients import gradient_probes

    G = jnp.asarray([[3.0, 0.0], [0.0, 2.0], [-1.5, 0.0]])
    probes = gradient_probes(G)
    np.testing.assert_allclose(probes["norm"], [3.0, 2.0, 1.5])
    np.testing.assert_allclose(probes["cos"], [[1, 0, -1], [0, 1, 0], [-1, 0, 1]], atol=1e-6)


def test_probes_observe_without_changing_training():
    base = small_run()
    probed = small_run(train=dataclasses.replace(base.train, diagnostics=True, affinity=True))
    source, data = small_data(base)
    plain, _, _ = execute(base, source.tasks, data, [0])
    seen, _, _ = execute(probed, source.tasks, data, [0])
    np.testing.assert_allclose(plain["test"], seen["test"], rtol=1e-5)
    assert seen["grad_cos"].shape == (1, 2, 2, 2) and seen["affinity"].shape == (1, 2, 2, 2)
    assert np.all((seen["conflict"] >= 0) & (seen["conflict"] <= 1))


def test_affinity_is_high_between_identical_tasks_and_low_between_unrelated_ones():
    """With p = 1 and tiny noise the two tasks have the same labels: once the heads have learnt,
    a step on one task lowers the other's loss most of what it lowers its own. With p = 0 a
    step on one task does nothing for the other."""
    def cross_over_self(p):
        run = small_run(data=RelatednessConfig(num_tasks=2, input_dim=8, n_train=256, n_val=64,
                                               n_test=64, correlation=p, noise=0.01),
                        train=dataclasses.replace(small_run().train, steps=200, eval_every=100, affinity=True))
        source, data = small_data(run)
        out, _, _ = execute(run, source.tasks, data, [0, 1])
        z = out["affinity"].mean(axis=(0, 1))
        return (z[0, 1] + z[1, 0]) / (z[0, 0] + z[1, 1])

    same, unrelated = cross_over_self(1.0), cross_over_self(0.0)
    assert same > 0.5 and abs(unrelated) < 0.1


def test_imbalanced_tasks_draw_their_own_batches_and_keep_baselines_fair():
    """With data.train_rows, separate towers still reproduce the single-task runs exactly, and a
    task limited to few rows fits them (its train loss) better than its val split."""
    base = small_run(model=dataclasses.replace(small_run().model, shared_depth=0))
    run = dataclasses.replace(base, data=dataclasses.replace(base.data, train_rows={"t1": 16}),
                              train=dataclasses.replace(base.train, steps=60, eval_every=30))
    source, data = small_data(run)
    mtl, _, _ = execute(run, source.tasks, data, [0])
    for j, task in enumerate(source.tasks):
        stl, _, _ = execute(single_task(run, task.name), (task,), only(data, task.name), [0])
        np.testing.assert_allclose(mtl["test"][..., j], stl["test"][..., 0], rtol=1e-5, atol=1e-6)
    overfit = mtl["val_loss"][0, -1, 0] / mtl["train_loss"][0, -1, 0]
    full = mtl["val_loss"][0, -1, 1] / mtl["train_loss"][0, -1, 1]
    assert overfit > full  # 16 rows generalise worse than 256


def test_proportional_sampling_follows_train_rows():
    from harness.train.schedules import make_selector

    pick = make_selector("proportional", (300, 100))
    picks = jax.vmap(lambda k: pick(k, 0))(jax.random.split(jax.random.key(0), 4000))
    assert abs(float(picks[:, 0].mean()) - 0.75) < 0.03


@pytest.mark.parametrize("method", ["mgda_ub", "pcgrad"])
def test_per_task_backwards_equal_the_one_hot_vmap(monkeypatch, method):
    """The two ways of getting per-task gradients (chosen by the task count for speed) train the
    same run: losses, weights, metrics and gradient probes agree to float tolerance."""
    import harness.train.gradients as train_module
    from harness.methods import METHODS

    run = small_run(data=RelatednessConfig(num_tasks=3, input_dim=8, n_train=256, n_val=64, n_test=64),
                    method=METHODS.get(method).schema(),
                    train=dataclasses.replace(small_run().train, diagnostics=True))
    source, data = small_data(run)
    outs = []
    for threshold in (2, 99):
        monkeypatch.setattr(train_module, "PER_TASK_BACKWARD_FROM", threshold)
        outs.append(run_once(run, data))
    for key in ("train_loss", "weights", "test", "grad_cos", "grad_norm"):
        np.testing.assert_allclose(outs[0][key], outs[1][key], rtol=2e-4, atol=1e-6)


# Joint and every sampling mode, each optimiser-state choice at least once (the state choice
# concerns shared layers only, which separate towers lack).
SCHEDULES = [ScheduleConfig(name="joint"),
             ScheduleConfig(name="alternate", sampling="uniform", optimizer_state="per_task"),
             ScheduleConfig(name="alternate", sampling="round_robin", optimizer_state="shared"),
             ScheduleConfig(name="alternate", sampling="proportional", optimizer_state="per_task")]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: f"{s.name}-{s.sampling}-{s.optimizer_state}")
def test_separate_towers_equal_their_schedule_matched_baselines(schedule):
    """Depth 0 gives r_t = 0 exactly under every schedule: under alternate a baseline trains its
    task only at the steps the run's draw picks it, so both sides get the same updates. Three
    tasks, one with fewer train rows, so proportional sampling is not uniform."""
    base = small_run(data=RelatednessConfig(num_tasks=3, input_dim=8, n_train=256, n_val=64, n_test=64,
                                            train_rows={"t2": 64}),
                     model=dataclasses.replace(small_run().model, shared_depth=0), schedule=schedule,
                     train=dataclasses.replace(small_run().train, steps=30, eval_every=10))
    source, data = small_data(base)
    names = list(source.task_names)
    mtl, _, _ = execute(base, source.tasks, data, [0, 1])
    for j, task in enumerate(source.tasks):
        stl_run = single_task(base, task.name, names)
        stl, _, _ = execute(stl_run, (task,), only(data, task.name), [0, 1])
        np.testing.assert_array_equal(mtl["test"][..., j], stl["test"][..., 0])
        np.testing.assert_array_equal(mtl["val"][..., j], stl["val"][..., 0])
    if schedule.name == "alternate":  # the matching matters: a full-budget baseline differs
        full, _, _ = execute(single_task(dataclasses.replace(base, schedule=ScheduleConfig()), "t1"),
                             (source.tasks[0],), only(data, "t1"), [0, 1])
        assert not np.array_equal(mtl["test"][..., 0], full["test"][..., 0])


def test_alternate_baselines_are_their_own_configurations():
    run = small_run(schedule=ScheduleConfig(name="alternate"))
    stl = single_task(run, "t1", ["t1", "t2"])
    assert stl.schedule.name == "alternate" and stl.schedule.draw_from == ["t1", "t2"]
    assert single_task(small_run(), "t1").schedule == ScheduleConfig(name="joint")
    # The optimiser-state choice concerns shared layers only: one baseline serves both.
    shared = dataclasses.replace(run, schedule=ScheduleConfig(name="alternate", optimizer_state="shared"))
    assert single_task(shared, "t1", ["t1", "t2"]) == stl
    with pytest.raises(ValueError):
        single_task(run, "t1")


def test_regression_metrics_are_in_the_targets_own_units():
    """Standardised targets make training blind to the targets' units: a target scaled by 1000
    (grams for kilograms) trains the same network, and its mse comes out 1e6 times larger."""
    run = small_run()
    source, data = small_data(run)
    scaled = data._replace(**{name: split._replace(y={n: v * 1000.0 for n, v in split.y.items()})
                              for name, split in zip(data._fields, data)})
    a, _, _ = execute(run, source.tasks, data, [0])
    b, _, _ = execute(run, source.tasks, scaled, [0])
    np.testing.assert_allclose(b["test"], a["test"] * 1e6, rtol=2e-3)
    np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=2e-3)
    raw = dataclasses.replace(run, train=dataclasses.replace(run.train, standardize_targets=False))
    c, _, _ = execute(raw, source.tasks, scaled, [0])
    assert float(c["train_loss"][0, 0].min()) > 1e3  # without it the loss lives in grams^2


def test_method_diagnostics_are_recorded_per_evaluation_window():
    """FAMO's z = softmax(logits) is averaged over each window into the record's curves: it sums
    to 1 over the tasks in every window and moves away from uniform; equal records none."""
    from harness.methods.famo import FAMOConfig
    from harness.run.write import records

    run = small_run(method=FAMOConfig(), train=dataclasses.replace(small_run().train, steps=40, eval_every=10))
    source, data = small_data(run)
    out, _, _ = execute(run, source.tasks, data, [0])
    common = {"kind": "mtl", "config": {}, "config_hash": "h", "label": "", "task": None,
              "tasks": ["t1", "t2"], "task_specs": {}}
    (rec,) = records(run, source.tasks, out, [0], {}, common)
    z = rec.curves["diagnostics"]
    assert set(z) == {"z.t1", "z.t2"} and len(z["z.t1"]) == 4
    np.testing.assert_allclose(np.add(z["z.t1"], z["z.t2"]), 1.0, rtol=1e-5)
    assert abs(z["z.t1"][-1] - 0.5) > 1e-4
    plain, _, _ = execute(small_run(), source.tasks, data, [0])
    (rec,) = records(small_run(), source.tasks, plain, [0], {}, common)
    assert "diagnostics" not in rec.curves
