"""The planner's memory estimate: against XLA's own figures, and the refusal it drives."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from harness.errors import ConfigError
from harness.methods import METHODS
from harness.methods.nash_mtl import NashMTLConfig
from harness.models.lenet import LeNetConfig
from harness.run import memory
from harness.run.execute import _stack, hparams
from harness.run.plan import data_shapes, plan
from harness.train import make_train
from helpers import small_run


def xla_bytes(job, runs: int) -> int:
    """What XLA says the compiled program of `runs` runs takes: arguments, temporaries, outputs."""
    trainer = make_train(job.parts, job.settings)
    fn = jax.jit(jax.vmap(lambda k, h, d: trainer.train(jax.random.key(k), h, d), in_axes=(0, 0, None)))
    keys = jnp.arange(runs, dtype=jnp.uint32)
    stats = fn.lower(keys, _stack([hparams(job.run)] * runs), data_shapes(job.run, job.source)).compile().memory_analysis()
    return stats.argument_size_in_bytes + stats.temp_size_in_bytes + stats.output_size_in_bytes


@pytest.mark.parametrize("method", [None, NashMTLConfig()], ids=["equal", "nash_mtl"])
def test_the_estimate_bounds_what_xla_allocates(method):
    run = small_run(model=dataclasses.replace(small_run().model, width=256), seeds=3)
    if method is not None:  # a gradient method: per-task backward passes and a (T, P) Jacobian
        run = dataclasses.replace(run, method=method)
    job = plan(run, with_baselines=False)
    est, real = job.memory.total(3), xla_bytes(job, 3)
    assert real <= est <= 4 * real, (est, real)


def activation_bound_run(method: str, train_rows: dict[str, int] | None = None):
    """A run whose step activations (batch 256) weigh as much as its parameters, so a term the
    estimate leaves out of a step shows."""
    base = small_run()
    data = dataclasses.replace(base.data, n_train=512, train_rows=train_rows or {})
    return small_run(data=data, model=dataclasses.replace(base.model, width=128, depth=3, shared_depth=2),
                     train=dataclasses.replace(base.train, batch_size=256), method=METHODS.get(method).schema())


@pytest.mark.parametrize("method, train_rows", [
    ("mgda_ub", None),  # (T, B x Z) representation gradients, no per-task parameter gradients
    ("auto_lambda", None),  # a virtual step differentiated through (a `prepare` hook)
    ("great", None),  # per-example representation gradients differentiated through
    ("pcgrad", {"t1": 100}),  # tasks draw their own batches: T x batch_size rows a step
], ids=["mgda_ub", "auto_lambda", "great", "pcgrad-task-rows"])
def test_the_estimate_bounds_steps_beyond_one_backward(method, train_rows):
    job = plan(activation_bound_run(method, train_rows), with_baselines=False)
    est, real = job.memory.total(2), xla_bytes(job, 2)
    assert real <= est <= 4 * real, (est, real)


@pytest.mark.parametrize("method", ["equal", "pcgrad"])
def test_the_estimate_bounds_a_lenet_convolving_by_patches(method):
    """On CPU the LeNet's convolutions are patch matrices times kernels (harness.models.patches):
    the patch matrix, k x k times its input, is what the estimate must not miss."""
    base = small_run()
    run = small_run(data=dataclasses.replace(base.data, input_dim=20 * 20, n_val=256, n_test=256),
                    model=LeNetConfig(image_shape=[20, 20], channels=[8, 16], kernel=3, width=16),
                    train=dataclasses.replace(base.train, batch_size=128), method=METHODS.get(method).schema())
    job = plan(run, with_baselines=False)
    est, real = job.memory.total(2), xla_bytes(job, 2)
    assert real <= est <= 4 * real, (est, real)


def test_representation_gradients_are_counted_at_the_representation_not_the_parameters():
    equal, mgda_ub, pcgrad = (plan(activation_bound_run(m), with_baselines=False).memory
                              for m in ("equal", "mgda_ub", "pcgrad"))
    assert mgda_ub.params == equal.params < pcgrad.params  # no (T, P) shared-parameter gradients
    assert mgda_ub.activations > equal.activations  # but (T, B x Z) representation gradients


@pytest.mark.slow
def test_the_estimate_bounds_a_convolutional_gradient_method(tmp_path):
    """ResNet-18 on NYUv2-shaped files with PCGrad: (T, P) gradients held in several copies."""
    from harness.bench_dense import DenseSizes, job_config, write_synthetic

    sizes = DenseSizes(image=(32, 32), width=8, head_width=16, batch=2, steps=2, n_train=8)
    job = plan(job_config(sizes, write_synthetic(tmp_path, sizes.image, sizes.n_train), "pcgrad"),
               with_baselines=False)
    est, real = job.memory.total(1), xla_bytes(job, 1)
    assert real <= est <= 4 * real, (est, real)


def test_more_runs_and_wider_models_need_more():
    small = plan(small_run(), with_baselines=False).memory
    wide = plan(small_run(model=dataclasses.replace(small_run().model, width=64)), with_baselines=False).memory
    assert wide.per_run > small.per_run and wide.num_params > small.num_params
    assert small.total(8) - small.total(4) == 4 * small.per_run


def test_a_program_beyond_the_device_is_refused_in_one_line_naming_its_keys():
    run = small_run(seeds=10)
    est = plan(run, with_baselines=False).memory
    device = (est.data + 4 * est.per_run, 1, "test device")  # room for 4 of the 10 runs
    with pytest.raises(ConfigError) as err:
        memory.check(run, est, 10, device)
    message = str(err.value)
    assert "\n" not in message
    assert "test device" in message and "seeds=10" in message and "at most 4 runs" in message
    assert "hydra.launcher.max_batch" in message
    memory.check(run, est, 4, device)  # 4 fit
    # Two devices split the runs: 5 each is still too many, 8 runs (4 each) fit.
    with pytest.raises(ConfigError):
        memory.check(run, est, 10, (device[0], 2, "test device"))
    memory.check(run, est, 8, (device[0], 2, "test device"))


def test_the_planner_refuses_absurd_widths_before_building_anything():
    run = small_run(model=dataclasses.replace(small_run().model, width=10**8))
    with pytest.raises(ConfigError, match=r"memory: .*model\.width=100000000"):
        plan(run)


def test_batched_groups_hold_no_more_runs_than_fit(tmp_path, monkeypatch):
    from test_launcher import sweep_configs
    from harness.run import sweep

    jobs = sweep.prepare(sweep_configs(tmp_path, [[f"optim.lr={lr}"] for lr in (0.001, 0.01, 0.1)]))
    est = next(u for u in jobs[0].units if u.kind == "mtl").job.memory
    monkeypatch.setattr(memory, "device_memory", lambda: (est.data + 3 * est.per_run, 1, "test device"))
    mtl = [g for g in sweep.groups(jobs, max_batch=4096) if g[0].kind == "mtl"]
    # three jobs of 2 seeds in one program, but only 3 runs fit: one job per group
    assert [sum(len(u.seeds) for u in g) for g in mtl] == [2, 2, 2]
