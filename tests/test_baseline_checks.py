"""What keeps a verdict honest about its baseline: the linear reference floor, the flag on a
baseline still moving at the end of training, and the warning on losses of different scales."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from harness.analysis import transfer_table
from harness.data.base import Dataset, Split, classification, regression
from harness.run.write import loss_scale_warning, val_trend
from harness.reference import reference_floor
from harness.records import collect
from test_config import job


def split(x, **y):
    return Split(np.asarray(x, np.float32), {k: np.asarray(v) for k, v in y.items()})


def test_reference_floor_fits_a_linear_task_and_picks_its_strength_on_validation():
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(n, 4)) for n in (200, 100, 100)]
    w = np.array([1.0, -2.0, 0.5, 0.0])
    data = Dataset(*(split(a, y=(a @ w)[:, None] * 1000.0, c=(a @ w > 0).astype(np.int32)) for a in x))
    ridge = reference_floor(regression("y"), data)
    assert ridge["model"] == "ridge" and ridge["test"] < 1e-3  # exact fit, in the targets' units
    logistic = reference_floor(classification("c", 2), data)
    assert logistic["model"] == "logistic" and logistic["test"] > 0.9
    few = reference_floor(classification("c", 2), data, rows=8)  # the first 8 train rows only
    assert few["test"] <= logistic["test"]


def test_val_trend_is_oriented_so_positive_means_still_improving():
    assert val_trend(np.array([0.5, 0.6, 0.7, 0.8]), lower_is_better=False) == pytest.approx(100 * 0.1 / 0.7)
    assert val_trend(np.array([0.2, 0.3, 0.25, 0.39]), lower_is_better=True) == pytest.approx(-100 * 0.14 / 0.25)
    assert val_trend(np.array([1.0]), lower_is_better=True) is None


def test_loss_scale_warning_fires_above_a_hundredfold_gap():
    assert loss_scale_warning(["a", "b"], np.array([2.3, 1.0])) is None
    line = loss_scale_warning(["kg", "g"], np.array([0.5, 2e5]))
    assert "4e+05x" in line and "train.standardize_targets" in line and "\n" not in line


def grams_file(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6)).astype(np.float32)
    mass = 4000.0 + 800.0 * x[:, 0] + 100.0 * rng.normal(size=240)  # grams
    np.savez(tmp_path / "animals.npz", X=x, kind=(x[:, 1] > 0).astype(np.int64), mass=mass)
    return ["data=files", f"data.path={tmp_path / 'animals.npz'}",
            "+data.targets={kind: classification, mass: regression}"]


def test_unscaled_targets_warn_in_one_line_and_in_the_record(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        paths = job(tmp_path / "raw", grams_file(tmp_path) + ["train.standardize_targets=false"])
    rec = json.loads(next(p for p in paths if "runs" in p.parts).read_text())
    assert any("task losses differ" in m for m in caplog.messages)
    assert "task losses differ" in rec["warnings"][0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        paths = job(tmp_path / "scaled", grams_file(tmp_path))
    rec = json.loads(next(p for p in paths if "runs" in p.parts).read_text())
    assert rec["warnings"] == [] and not any("task losses differ" in m for m in caplog.messages)
    assert rec["metrics"]["test"]["mass"] > 1e3  # mse in grams^2, the target's own units


def linear_file(tmp_path):
    """Two tasks a linear model solves: a regression target and a linearly separable class."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 1.5, -1.0]) + 0.5 * rng.normal(size=400)
    np.savez(tmp_path / "linear.npz", X=x, y=y, c=(x[:, 0] - x[:, 1] > 0).astype(np.int64))
    return ["data=files", f"data.path={tmp_path / 'linear.npz'}", "+data.targets={y: regression, c: classification}"]


def test_crippled_baseline_is_flagged_below_its_linear_reference_and_still_improving(tmp_path):
    """A baseline given a learning rate too small for its step budget: a linear model on the
    same split beats it, and its validation metric is still improving at the end."""
    job(tmp_path / "crippled", linear_file(tmp_path) + ["optim.lr=3e-4", "train.steps=40", "train.eval_every=10"])
    table = transfer_table(collect(tmp_path / "crippled")).set_index("task")
    assert list(table.loc[["y", "c"], "ref_model"]) == ["ridge", "logistic"]
    assert table.loc["y", "stl_mean"] > table.loc["y", "ref_mean"]
    assert table.loc["c", "stl_mean"] < table.loc["c", "ref_mean"]
    assert table.loc["y", "baseline_check"] == "below ref, improving"  # its val mse still falls
    assert table.loc["c", "baseline_check"].startswith("below ref")
    job(tmp_path / "trained", linear_file(tmp_path) + ["optim.lr=1e-2", "train.steps=300", "train.eval_every=30"])
    healthy = transfer_table(collect(tmp_path / "trained")).set_index("task")
    assert not healthy["baseline_check"].str.contains("improving").any()


def test_the_ridge_reference_is_exact_and_quiet_with_fewer_rows_than_features():
    import warnings

    rng = np.random.default_rng(0)
    x = [rng.normal(size=(n, 12)) for n in (6, 20, 20)]
    w = rng.normal(size=12)
    data = Dataset(*(split(a, y=(a @ w)[:, None]) for a in x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ridge = reference_floor(regression("y"), data)
    assert ridge["model"] == "ridge" and np.isfinite(ridge["test"])
