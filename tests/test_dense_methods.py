"""Every per-task gradient method on a ResNet-18 trunk (data=nyuv2, three dense tasks): two steps
train, and every parameter stays finite while the shared trunk and each task's tower move.

The trunk's per-task gradients are the memory problem of the PyTorch tools; here they run
through the same vjp over task cotangents as for the MLPs, with GroupNorm's parameters (scale,
bias per stage) among the shared ones. A ResNet program compiles for 30 to 60 s on CPU, so
these are marked slow (`pytest -m slow`), as every ResNet training test; `-k representative`
runs one method of each kind (losses only, shared-parameter gradients with a projection,
representation gradients, a solver). The default suite checks that the catalogue is covered.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from dense_fakes import write_copy
from harness.config import OptimConfig, RunConfig, ScheduleConfig, TrainConfig
from harness.data.base import depth
from harness.data.nyuv2 import NYUv2Config
from harness.methods import METHODS
from harness.methods.base import Needs
from harness.models.resnet import ResNetConfig
from harness.run.execute import execute
from harness.run.plan import plan
from harness.train.loop import INIT

FAST = ("equal", "pcgrad", "mgda_ub", "nash_mtl")
TASKS = ("segmentation", "depth", "normal")


def schema(name: str):
    """A method's default config, with declared targets where it takes them (in a job they
    default to the baselines' validation scores, which these runs have not got)."""
    fields = {f.name for f in dataclasses.fields(METHODS.get(name).schema)}
    return METHODS.get(name).schema(**({"targets": [1.0] * len(TASKS)} if "targets" in fields else {}))


def per_task_gradient_methods() -> list[str]:
    """The registered methods that read per-task gradients (of the shared parameters, the last
    shared layer or the representation) or differentiate through them in a `prepare` hook."""
    tasks = tuple(depth(t, (2, 2)) for t in TASKS)
    built = {name: METHODS.get(name).build(schema(name), tasks) for name in METHODS.names()}
    return sorted(n for n, m in built.items() if m.needs is not Needs.LOSSES or m.prepare is not None)


@pytest.fixture(scope="module")
def nyuv2(tmp_path_factory):
    return write_copy(tmp_path_factory.mktemp("nyuv2"), h=16, w=16, n_train=6, n_val=2)


def run_config(root, method: str) -> RunConfig:
    return RunConfig(
        data=NYUv2Config(path=str(root), eval_batch=2, tasks=list(TASKS)),
        model=ResNetConfig(depth=18, width=4, head_width=8, groups=2),
        method=schema(method), schedule=ScheduleConfig(), optim=OptimConfig(lr=1e-2),
        train=TrainConfig(steps=2, batch_size=2, eval_every=2),
        seeds=1, seed=0, baselines=False, baseline_dir=None, study="test", compile_cache=None)


def check_trains(root, method: str):
    job = plan(run_config(root, method), with_baselines=False)
    data = job.source.generate(jax.random.key(0), {})
    out, _, _ = execute(job, data, [0])
    assert np.all(out["diverged_at"] == -1)
    final = jax.tree.map(lambda a: a[0], out["params"])
    start = job.parts.model.init(jax.random.fold_in(jax.random.key(0), INIT))
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(final)), "a parameter is not finite"
    moved = lambda a, b: any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # noqa: E731
    assert moved(final["shared"], start["shared"]), "the shared trunk did not move"
    for t in TASKS:
        assert moved(final["tasks"][t], start["tasks"][t]), f"{t}'s tower did not move"
    assert np.all(np.isfinite(out["weights"]))


@pytest.mark.slow
@pytest.mark.parametrize("method", FAST)
def test_representative_methods_train_a_resnet(nyuv2, method):
    check_trains(nyuv2, method)


def test_the_representatives_cover_each_kind_of_gradient():
    methods = per_task_gradient_methods()
    assert {"pcgrad", "mgda_ub", "nash_mtl"} <= set(methods) and "equal" not in methods
    assert len(methods) >= 20  # the catalogue, not a handful


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in per_task_gradient_methods() if m not in FAST])
def test_every_per_task_gradient_method_trains_a_resnet(nyuv2, method):
    check_trains(nyuv2, method)
