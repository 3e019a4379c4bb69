"""Batched sweeps: one program for many jobs gives each job's own results; sharding over
devices changes nothing; a failing group is recorded and the others go on."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.config import OptimConfig
from harness.run.execute import execute_units, static_key
from harness.run.plan import Unit
from helpers import execute, plan_of, small_data, small_run

ROOT = Path(__file__).resolve().parents[1]


def units_for(lrs, seeds=(0, 1)):
    base = small_run()
    source, data = small_data(base)
    return [Unit("mtl", plan_of(dataclasses.replace(base, optim=OptimConfig(lr=lr))), data,
                 list(seeds), Path("."), {}) for lr in lrs], source


def test_jobs_batched_in_one_program_match_each_job_alone():
    units, source = units_for([1e-3, 1e-2, 3e-2])
    outs, _, _ = execute_units(units)
    for unit, out in zip(units, outs):
        alone, _, _ = execute(unit.run, source.tasks, unit.data, unit.seeds)
        np.testing.assert_allclose(out["test"], alone["test"], rtol=1e-5)
    assert not np.allclose(outs[0]["test"], outs[1]["test"])  # the lr really differs


def test_static_key_ignores_dynamic_values_only():
    run = small_run()
    assert static_key(run, ["t1"]) == static_key(dataclasses.replace(run, optim=OptimConfig(lr=0.5)), ["t1"])
    assert static_key(run, ["t1"]) != static_key(dataclasses.replace(run, optim=OptimConfig(name="sgd")), ["t1"])
    deeper = dataclasses.replace(run, model=dataclasses.replace(run.model, shared_depth=2))
    assert static_key(run, ["t1"]) != static_key(deeper, ["t1"])


SHARD_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import jax
from test_batching import units_for
from harness.run.execute import execute_units
units, _ = units_for([1e-3, 1e-2, 3e-2])  # 6 runs on 4 devices: padded to 8
outs, _, _ = execute_units(units)
print(json.dumps({{"devices": jax.local_device_count(), "test": [o["test"].tolist() for o in outs]}}))
"""


def test_sharding_over_four_devices_matches_one_device():
    env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", SHARD_SCRIPT.format(tests=str(ROOT / "tests"))],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    sharded = json.loads(res.stdout.strip().splitlines()[-1])
    assert sharded["devices"] == 4
    units, _ = units_for([1e-3, 1e-2, 3e-2])
    outs, _, _ = execute_units(units)
    for got, want in zip(sharded["test"], outs):
        np.testing.assert_allclose(np.asarray(got), want["test"], rtol=1e-5)
