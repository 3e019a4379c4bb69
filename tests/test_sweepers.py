"""Optimising sweepers: the task function returns the declared objective, computed on the
validation split, and optuna's best trial is the best of what the records say."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.config import RunConfig
from harness.errors import ConfigError

SMALL = ["seeds=2", "train.steps=20", "train.eval_every=10", "data.n_train=64", "data.n_val=32",
         "data.n_test=32", "compile_cache=null"]


def delta_m_on_val(job_dir: Path) -> float:
    """By hand from the records: per task and metric (the primary one and the task's secondary
    ones, e.g. macro-F1 and MAE), the paired relative change on validation against the same-seed
    baseline (sign flipped where lower is better), averaged over seeds, then over the task's
    metrics, then over tasks (the multi-metric delta_m of Maninis et al. 2019)."""
    runs = [json.loads(p.read_text()) for p in (job_dir / "runs").glob("seed_*.json")]
    per_metric = {}
    for rec in runs:
        for task, base_hash in rec["baselines"].items():
            base_file = (job_dir / "runs" / rec["baseline_dir"] / base_hash / f"seed_{rec['seed']}.json").resolve()
            base = json.loads(base_file.read_text())
            spec = rec["task_specs"][task]
            values = [(None, spec["lower_is_better"], rec["metrics"]["val"][task], base["metrics"]["val"][task])]
            values += [(name, lower, rec["secondary"]["val"][task][name], base["secondary"]["val"][task][name])
                       for name, lower in (spec.get("secondary") or {}).items()]
            for name, lower, mine, theirs in values:
                sign = -1.0 if lower else 1.0
                per_metric.setdefault((task, name), []).append(sign * (mine - theirs) / abs(theirs) * 100)
    tasks = {task for task, _ in per_metric}
    return float(np.mean([np.mean([np.mean(v) for (t, _), v in per_metric.items() if t == task]) for task in tasks]))


# Batched: each optuna batch of 2 trials is one program; basic: one job at a time (2 trials).
@pytest.mark.parametrize("launcher,trials", [("batched", 4), ("basic", 2)])
def test_an_optuna_study_maximises_delta_m_on_validation(tmp_path, launcher, trials):
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/sweeper=optuna", f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.direction=maximize", "hydra.sweeper.sampler.seed=0",
            "optim.lr=interval(0.001,0.1)", *SMALL, f"hydra.sweep.dir={sweep}"]
    if launcher == "batched":
        args.append("hydra/launcher=batched")
    res = subprocess.run([sys.executable, "-m", "harness", *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = [p for p in sweep.iterdir() if (p / "runs").is_dir()]
    assert len(jobs) == trials
    by_lr = {json.loads(next((j / "runs").glob("seed_0.json")).read_text())["config"]["optim"]["lr"]: delta_m_on_val(j)
             for j in jobs}
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best_lr = max(by_lr, key=by_lr.get)
    assert result["best_params"]["optim.lr"] == pytest.approx(best_lr)
    assert result["best_value"] == pytest.approx(by_lr[best_lr], rel=1e-6)


def test_the_objective_is_a_validation_quantity():
    from harness.config import validate
    from helpers import small_run
    import dataclasses

    with pytest.raises(ConfigError, match=r"^objective='test.t1': delta_m or val.<task>"):
        validate(dataclasses.replace(small_run(), objective="test.t1"))
    from harness.run.plan import plan

    with pytest.raises(ConfigError, match=r"^objective='val.nope': .*among t1, t2"):
        plan(dataclasses.replace(small_run(), objective="val.nope"))
    assert isinstance(dataclasses.replace(small_run(), objective="val.t1"), RunConfig)
