"""The planner's memory estimate: against XLA's own figures, and the refusal it drives."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from harness.errors import ConfigError
from harness.methods.nash_mtl import NashMTLConfig
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
