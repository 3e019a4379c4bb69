"""Small configurations shared by the tests."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from harness.config import OptimConfig, RunConfig, ScheduleConfig, TrainConfig
from harness.data.relatedness import RelatednessConfig
from harness.run.execute import execute as run_execute
from harness.run.plan import build_source, plan
from harness.train import make_train
from harness.methods.equal import EqualConfig
from harness.models.hard import HardConfig
from harness.schema import dynamic_values


def small_run(**changes) -> RunConfig:
    run = RunConfig(
        data=RelatednessConfig(num_tasks=2, input_dim=8, n_train=256, n_val=64, n_test=64),
        model=HardConfig(depth=2, width=16, shared_depth=1), method=EqualConfig(),
        schedule=ScheduleConfig(), optim=OptimConfig(lr=1e-2),
        train=TrainConfig(steps=20, batch_size=32, eval_every=10),
        seeds=2, seed=0, baselines=True, baseline_dir=None, study="test", compile_cache=None,
    )
    return dataclasses.replace(run, **changes)


def small_data(run: RunConfig):
    source = build_source(run)
    hp = {k: jnp.asarray(v) for k, v in dynamic_values(run.data).items()}
    return source, source.generate(jax.random.key(0), hp)


def plan_of(run: RunConfig):
    """The planned job of `run` without its baselines (harness.run.plan)."""
    return plan(run, with_baselines=False)


def trainer(run: RunConfig):
    """The Trainer of `run`'s compiled program, from its planned parts and settings."""
    job = plan_of(run)
    return make_train(job.parts, job.settings)


def execute(run: RunConfig, tasks, data, seeds: list[int]):
    """Train `run` (whose tasks must be `tasks`) on `data` for `seeds`: (outputs, compile s, run s)."""
    job = plan_of(run)
    assert [t.name for t in job.parts.tasks] == [t.name for t in tasks]
    return run_execute(job, data, seeds)
