"""Active sampling (Sharma et al. 2017) as an alternate schedule and as a joint loss weighting:
the distribution is the formula's, computed from the evaluations inside the compiled run, it
draws the lagging task more, its targets come from the baselines or are declared, and a bad
target fails early in one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from harness.config import register_configs, resolve
from harness.errors import ConfigError
from harness.run.sweep import run_job

CONF = Path(__file__).resolve().parents[1] / "conf"
register_configs()
SMALL = ["seeds=1", "train.steps=20", "train.eval_every=10", "train.batch_size=16",
         "data.n_train=64", "data.n_val=32", "data.n_test=32", "model.width=8"]


def run_of(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return resolve(compose("config", overrides=SMALL + overrides))


def expected(val: np.ndarray, targets: np.ndarray, lower: list[bool], tau: float) -> np.ndarray:
    """The paper's softmax of relative target gaps, on scores oriented higher-is-better."""
    sign = np.where(lower, -1.0, 1.0)
    gap = (sign * targets - sign * val) / np.abs(sign * targets)
    z = np.exp(gap / tau - np.max(gap / tau))
    return z / z.sum()


def records(tmp_path: Path, overrides: list[str]) -> tuple[dict, dict]:
    run_job(run_of(overrides), tmp_path / "job", tmp_path / "baselines", "test")
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "job" / "runs").glob("seed_*.json")]
    stl = {r["task"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "baselines").rglob("seed_*.json"))}
    return rec, stl


def test_sampling_follows_the_formula_against_the_baselines_targets(tmp_path):
    """Regression tasks (mse, lower is better), so the targets are negative once oriented. The
    first window samples uniformly; the second uses the first evaluation's scores against the
    same-seed baselines' final validation scores. The baselines of an active run train every
    step (as under joint)."""
    rec, stl = records(tmp_path, ["schedule=alternate_active", "schedule.temperature=0.5"])
    tasks = rec["tasks"]
    assert all(s["config"]["schedule"]["name"] == "joint" for s in stl.values())
    targets = np.array([stl[t]["curves"]["val"][t][-1] for t in tasks])
    first = np.array([rec["curves"]["val"][t][0] for t in tasks])
    prob = np.array([rec["curves"]["diagnostics"][f"sample_prob.{t}"] for t in tasks])  # (T, E)
    np.testing.assert_allclose(prob[:, 0], 0.5)
    want = expected(first, targets, [True, True], 0.5)
    assert abs(want[0] - 0.5) > 1e-3  # the check below can tell the formula from uniform
    np.testing.assert_allclose(prob[:, 1], want, rtol=1e-5)


def test_active_weighting_is_t_times_the_sampling_distribution(tmp_path):
    """Under joint, with declared targets in the metrics' units: weights 1 until the first
    evaluation, then T * the distribution of that evaluation's scores."""
    overrides = ["method=active_weighting", "method.temperature=0.5", "method.targets=[0.5,2.0]", "baselines=false"]
    run_job(run_of(overrides), tmp_path / "job", tmp_path / "baselines", "test")
    (path,) = (tmp_path / "job" / "runs").glob("seed_*.json")
    rec = json.loads(path.read_text())
    tasks = rec["tasks"]
    first = np.array([rec["curves"]["val"][t][0] for t in tasks])
    weights = np.array([rec["curves"]["weights"][t] for t in tasks])
    np.testing.assert_allclose(weights[:, 0], 1.0)
    want = 2 * expected(first, np.array([0.5, 2.0]), [True, True], 0.5)
    assert abs(want[0] - 1.0) > 1e-3
    np.testing.assert_allclose(weights[:, 1], want, rtol=1e-5)


def test_a_task_far_below_its_target_is_drawn_more_often(tmp_path):
    """Declared targets: task 0's (mse 1e-4) is far below reach, task 1's (mse 1e3) long met, so
    after the first evaluation task 0 is drawn at nearly every step (the window means of the
    alternate weights count the draws)."""
    overrides = ["schedule=alternate_active", "schedule.temperature=0.5", "schedule.targets=[1e-4,1e3]",
                 "baselines=false", "train.steps=200", "train.eval_every=100"]
    run_job(run_of(overrides), tmp_path / "job", tmp_path / "baselines", "test")
    (path,) = (tmp_path / "job" / "runs").glob("seed_*.json")
    rec = json.loads(path.read_text())
    drawn = [rec["curves"]["weights"][t] for t in rec["tasks"]]  # share of steps per window
    assert 0.3 < drawn[0][0] < 0.7  # uniform before the first evaluation
    assert drawn[0][1] > 0.95 and drawn[1][1] < 0.05
    assert rec["curves"]["diagnostics"][f"sample_prob.{rec['tasks'][0]}"][1] > 0.99


@pytest.mark.parametrize("overrides,key", [
    (["schedule=alternate_active", "schedule.targets=[0.5]"], "schedule.targets"),
    (["schedule=alternate_active", "baselines=false"], "schedule.targets"),
    (["schedule=alternate", "schedule.targets=[0.5,0.5]"], "schedule.targets"),
    (["schedule=alternate_active", "schedule.temperature=0"], "schedule.temperature"),
    (["method=active_weighting", "method.targets=[1,2,3]"], "method.targets"),
    (["method=active_weighting", "baselines=false"], "method.targets"),
], ids=["count", "no-baselines", "not-active", "temperature", "method-count", "method-no-baselines"])
def test_bad_targets_fail_early_in_one_line(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as err:
        run_job(run_of(overrides), tmp_path / "job", tmp_path / "baselines", "test")
    assert str(err.value).startswith(key) and "\n" not in str(err.value)
    assert not list(tmp_path.rglob("*.json"))
