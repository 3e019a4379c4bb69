"""Knowledge distillation from the single-task baselines: the loss, the degenerate weight, the
teachers' outputs inside the compiled run, and the teachers' parameters on disk."""
from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from harness.run import teachers
from harness.run.execute import hparams, static_key
from harness.train import losses as L
from harness.config import DistillConfig, identity, single_task
from harness.data.base import TaskSpec
from harness.run.sweep import run_job
from harness.models.base import MODELS
from harness.models.cross_stitch import CrossStitchConfig
from harness.models.hard import HardConfig
from harness.models.moe import MMoEConfig
from harness.models.tree import TreeConfig, TreeGroup
from harness.records import config_hash, read_record
from harness.train import make_train
from helpers import plan_of, small_data, small_run, trainer

CLASS = TaskSpec("c", "classification", 4, "accuracy", False)
REGRESSION = TaskSpec("r", "regression", 1, "mse", True)


def test_classification_term_is_the_tempered_kl_times_t_squared():
    out, teacher = jax.random.normal(jax.random.key(0), (2, 5, 4)) * 3
    for T in (1.0, 4.0):
        p = np.asarray(jax.nn.softmax(teacher / T))
        q = np.asarray(jax.nn.softmax(out / T))
        expected = T**2 * np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1))
        assert float(L.distillation(CLASS, out, teacher, T)) == pytest.approx(expected, rel=1e-5)
        assert float(L.distillation(CLASS, teacher, teacher, T)) == pytest.approx(0.0, abs=1e-6)
        # d/d out = T (softmax(out/T) - softmax(teacher/T)) / batch: the T^2 keeps it O(1/T)
        grad = jax.grad(lambda o: L.distillation(CLASS, o, teacher, T))(out)
        np.testing.assert_allclose(grad, T * (q - p) / out.shape[0], atol=1e-6)


def test_regression_term_is_the_squared_difference_and_ignores_temperature():
    out, teacher = jnp.array([[1.0], [2.0]]), jnp.array([[0.0], [4.0]])
    assert float(L.distillation(REGRESSION, out, teacher, 3.0)) == pytest.approx(2.5)
    y = jnp.array([[1.0], [1.0]])
    mixed = L.distilled(REGRESSION, out, y, teacher, 0.25, 7.0)
    assert float(mixed) == pytest.approx(0.75 * float(optax.l2_loss(out, y).mean() * 2) + 0.25 * 2.5)


def random_teachers(run, tasks, input_dim, key=123):
    """Parameters of each task's teacher model, freshly initialised (a fixed random function)."""
    out = {}
    for i, t in enumerate(tasks):
        stl = single_task(run, t.name).model
        model = MODELS.get(stl.name).build(stl, (t,), input_dim)
        out[t.name] = model.init(jax.random.key(key + i))
    return out


def train_with(run, data, tasks, hp, task_rows=None):
    job = plan_of(run)
    train = make_train(job.parts, job.settings._replace(task_rows=task_rows)).train
    return jax.jit(train)(jax.random.key(0), hp, data)


@pytest.mark.parametrize("task_rows", [None, {"t1": 100}], ids=["one-batch", "own-batches"])
def test_weight_zero_is_plain_training_and_a_positive_weight_is_not(task_rows):
    plain_run = small_run()
    source, data = small_data(plain_run)
    plain = train_with(plain_run, data, source.tasks, hparams(plain_run), task_rows)
    outs = {}
    for weight in (0.0, 0.5):
        run = dataclasses.replace(plain_run, distill=DistillConfig(enabled=True, weight=weight))
        hp = {**hparams(run), "teachers": random_teachers(run, source.tasks, data.train.x.shape[1])}
        outs[weight] = train_with(run, data, source.tasks, hp, task_rows)
    for key in ("val", "test", "train_loss"):
        np.testing.assert_allclose(outs[0.0][key], plain[key], rtol=1e-6, atol=1e-7)
    assert not np.allclose(outs[0.5]["test"], plain["test"], rtol=1e-3)


def test_pure_distillation_learns_the_teachers_function():
    """weight = 1: the labels play no part, so the student converges to the teacher's outputs
    (a fixed random network here), which plain training on the labels does not."""
    base = small_run()
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, steps=300, eval_every=100))
    source, data = small_data(base)
    teacher_params = random_teachers(base, source.tasks, data.train.x.shape[1])
    gaps = {}
    for weight in (0.0, 1.0):
        run = dataclasses.replace(base, distill=DistillConfig(enabled=True, weight=weight))
        parts = plan_of(run).parts
        out = jax.jit(trainer(run).train)(jax.random.key(0), {**hparams(run), "teachers": teacher_params}, data)
        pred = parts.model.apply(out["final"].params, data.val.x)
        gaps[weight] = {t.name: float(jnp.mean((pred[t.name] - parts.teachers[t.name].apply(
            teacher_params[t.name], data.val.x)[t.name]) ** 2)) for t in source.tasks}
    for t in source.tasks:
        assert gaps[1.0][t.name] < 0.2 * gaps[0.0][t.name]


def test_identity_and_batching_of_distillation_settings():
    plain = small_run()
    off = dataclasses.replace(plain, distill=DistillConfig(enabled=False, weight=0.9))
    assert "distill" not in identity(plain) and identity(off) == identity(plain)
    on = [dataclasses.replace(plain, distill=DistillConfig(enabled=True, weight=w)) for w in (0.2, 0.8)]
    assert len({config_hash(identity(r)) for r in [plain, *on]}) == 3
    tasks = ["t1", "t2"]
    assert static_key(on[0], tasks) == static_key(on[1], tasks) != static_key(plain, tasks)
    assert single_task(on[0], "t1") == single_task(plain, "t1")  # the same baselines


def test_a_distilled_job_keeps_and_reuses_its_teachers(tmp_path):
    run = small_run(distill=DistillConfig(enabled=True, weight=0.5))
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, select="final"))  # teachers are final
    baselines = tmp_path / "baselines"
    first = run_job(run, tmp_path / "a", baselines, "a")
    assert len(first) == 6  # 2 tasks x 2 seeds of baselines, 2 seeds of the job
    source, data = small_data(run)
    for t in source.tasks:
        stl = single_task(run, t.name)
        model = MODELS.get(stl.model.name).build(stl.model, (t,), data.train.x.shape[1])
        run_dir = baselines / config_hash(identity(stl))
        for seed in (0, 1):
            # The saved parameters are the baseline's final ones: they reproduce its test metric.
            params = teachers.load(run_dir, seed, jax.eval_shape(model.init, jax.random.key(0)))
            out = L.in_target_units(model.apply(params, data.test.x), L.target_scales((t,), data.train.y))
            mse = float(L.metric(t, out[t.name], data.test.y[t.name]))
            assert mse == pytest.approx(read_record(run_dir / f"seed_{seed}.json")["metrics"]["test"][t.name],
                                        rel=1e-5)
    # another weight reuses every baseline; a lost parameter file retrains just that seed
    second = run_job(dataclasses.replace(run, distill=DistillConfig(enabled=True, weight=0.2)),
                     tmp_path / "b", baselines, "b")
    assert [p.parent.name for p in second] == ["runs", "runs"]
    lost = next(baselines.iterdir())
    before = json.loads((lost / "seed_1.json").read_text())["metrics"]
    (lost / "params_seed_1.msgpack").unlink()
    plain = dataclasses.replace(run, distill=DistillConfig())
    assert run_job(plain, tmp_path / "plain", baselines, "plain")[0].parent.name == "runs"
    third = run_job(dataclasses.replace(run, distill=DistillConfig(enabled=True, weight=0.7)),
                    tmp_path / "c", baselines, "c")
    assert lost / "seed_1.json" in third and (lost / "params_seed_1.msgpack").exists()
    after = json.loads((lost / "seed_1.json").read_text())["metrics"]
    for split, values in before.items():  # the same run (alone, not beside seed 0: float noise)
        assert after[split] == pytest.approx(values, rel=1e-5)


def test_teacher_parameters_must_fit_the_teacher_model(tmp_path):
    params = {"layers": [{"kernel": np.ones((3, 2), np.float32)}]}
    teachers.save(tmp_path, 0, params)
    fits = teachers.load(tmp_path, 0, {"layers": [{"kernel": jax.ShapeDtypeStruct((3, 2), jnp.float32)}]})
    np.testing.assert_array_equal(fits["layers"][0]["kernel"], params["layers"][0]["kernel"])
    with pytest.raises(ValueError, match="do not fit"):
        teachers.load(tmp_path, 0, {"layers": [{"kernel": jax.ShapeDtypeStruct((4, 2), jnp.float32)}]})
    with pytest.raises(FileNotFoundError, match="did not finish"):
        teachers.load(tmp_path, 1, params)


CONV_TRUNK = dict(depth=1, width=6, channels=[4], image_shape=[2, 4])  # the 8 inputs as 2 x 4 images
# soft is hard's towers plus a penalty and omoe is mmoe's builder: hard and mmoe stand for them.
STUDENTS = {
    "hard": HardConfig(depth=2, width=16, shared_depth=1),
    "cross_stitch": CrossStitchConfig(depth=2, width=16, shared_depth=2),
    "mmoe": MMoEConfig(depth=2, width=16, shared_depth=1, num_experts=2),
    "tree": TreeConfig(depth=2, width=16, groups=[TreeGroup(depth=1)]),
    "hard+conv": HardConfig(**CONV_TRUNK, shared_depth=1),
    "mmoe+conv": MMoEConfig(**CONV_TRUNK, shared_depth=1, num_experts=2),
}


@pytest.mark.parametrize("name", STUDENTS)
def test_every_model_can_be_distilled_from_its_own_baselines(name):
    """The teachers are each model's own single-task towers (conv towers for a conv trunk); the
    weights 0 and 0.5 run side by side in one vmap and only the second feels the teachers."""
    run = small_run(model=STUDENTS[name], distill=DistillConfig(enabled=True))
    source, data = small_data(run)
    parts = plan_of(run).parts
    train = trainer(run).train
    for teacher in parts.teachers.values():  # a conv trunk's teachers are conv towers
        paths = jax.tree_util.tree_flatten_with_path(jax.eval_shape(teacher.init, jax.random.key(0)))[0]
        assert any("conv" in jax.tree_util.keystr(p) for p, _ in paths) == name.endswith("+conv")
    hp = {**hparams(run), "teachers": random_teachers(run, source.tasks, 8)}
    both = jax.tree.map(lambda a: jnp.stack([a, a]), hp)
    both["distill"]["weight"] = jnp.asarray([0.0, 0.5])
    out = jax.jit(jax.vmap(train, in_axes=(None, 0, None)))(jax.random.key(0), both, data)
    assert np.all(np.isfinite(out["test"]))
    assert not np.allclose(out["test"][0], out["test"][1], rtol=1e-4)
