"""Secondary metrics of the one-target-per-input kinds, computed inside a jitted evaluation,
against scikit-learn and numpy: macro-F1 (with a class never predicted, one never labelled and
missing labels) and MAE (with a missing target)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import f1_score

from harness.data.base import Split, TaskSpec, classification, record_spec, regression
from harness.errors import ConfigError
from harness.models.base import Model
from harness.train.evaluation import evaluate, evaluate_in_chunks

N = 40


def split_and_model():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=N)  # class 4 of 5 is never a label
    labels[:5] = -1
    logits = rng.normal(size=(N, 5))
    logits[:, 2] = -50.0  # class 2 is a label but never predicted: its F1 is 0
    logits[labels == -1, 4] = 50.0  # class 4 predicted on unlabelled rows only: left out
    target = rng.normal(size=(N, 2))
    target[7, 1] = np.nan
    pred = rng.normal(size=(N, 2))
    outputs = {"c": logits, "r": pred, "m": pred}
    x = jnp.arange(N, dtype=jnp.float32)[:, None]
    model = Model(lambda key: {}, lambda params, x: x,
                  lambda tp, z: {k: jnp.asarray(v, jnp.float32)[z[:, 0].astype(jnp.int32)] for k, v in outputs.items()})
    ys = {"c": jnp.asarray(labels, jnp.int32), "r": jnp.asarray(np.nan_to_num(target), jnp.float32),
          "m": jnp.asarray(target, jnp.float32)}
    return Split(x, ys), model, labels, logits, target, pred


def test_macro_f1_and_mae_match_sklearn_and_numpy_in_the_compiled_evaluation():
    split, model, labels, logits, target, pred = split_and_model()
    tasks = (classification("c", 5, missing_labels=True), regression("r", 2), regression("m", 2, missing_labels=True))
    keep = labels >= 0
    expected = {"c.macro_f1": f1_score(labels[keep], logits[keep].argmax(-1), average="macro"),
                "r.mae": np.abs(pred - np.nan_to_num(target)).mean(),
                "m.mae": np.nanmean(np.abs(pred - target))}
    assert 0 < expected["c.macro_f1"] < 1
    _, _, whole = jax.jit(lambda p: evaluate(model, tasks, p, split))({"tasks": {}})
    _, _, chunked = jax.jit(lambda p: evaluate_in_chunks(model, tasks, p, split, None, 16))({"tasks": {}})
    for got in (whole, chunked):
        assert set(got) == set(expected)
        for name, value in expected.items():
            assert float(got[name]) == pytest.approx(value, rel=1e-5), name


def test_a_spec_lists_its_metrics_with_directions_and_rejects_an_unknown_one():
    assert classification("c", 3).metrics == {"accuracy": False, "macro_f1": False}
    assert regression("r").metrics == {"mse": True, "mae": True}
    assert record_spec(regression("r"))["secondary"] == {"mae": True}
    assert "secondary" not in record_spec(TaskSpec("r", "regression", 1, "mse", True))
    with pytest.raises(ConfigError, match="secondary metric.*'top5'.*macro_f1, auc"):
        TaskSpec("c", "classification", 2, "accuracy", False, secondary=("top5",))
