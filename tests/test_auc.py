"""The ROC AUC secondary metric (harness.train.auc) against scikit-learn's roc_auc_score, in both
compiled evaluations, with missing labels, scores crowded near 0, and a split of one class; and
that it is opt-in (two-class tasks only)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from harness.data import table
from harness.data.base import Split, TaskSpec, classification
from harness.errors import ConfigError
from harness.models.base import Model
from harness.train import auc
from harness.train.evaluation import evaluate, evaluate_in_chunks

N = 600


def scored(outputs: dict[str, np.ndarray]):
    """A model whose outputs on row i are outputs[task][i]."""
    x = jnp.arange(N, dtype=jnp.float32)[:, None]
    model = Model(lambda key: {}, lambda params, x: x,
                  lambda tp, z: {k: jnp.asarray(v, jnp.float32)[z[:, 0].astype(jnp.int32)] for k, v in outputs.items()})
    return x, model


def both_paths(model, tasks, split):
    _, _, whole = jax.jit(lambda p: evaluate(model, tasks, p, split))({"tasks": {}})
    _, _, chunked = jax.jit(lambda p: evaluate_in_chunks(model, tasks, p, split, None, 128))({"tasks": {}})
    return whole, chunked


def test_binned_auc_matches_sklearn_within_its_bound_in_both_evaluations():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=N)
    labels[rng.random(N) < 0.2] = -1  # missing labels: left out
    spread = rng.normal(size=(N, 2)) + labels.clip(0)[:, None] * np.array([0.0, 1.2])
    # A rare label whose every class-1 probability is below 2%: many pairs share a bin.
    rare = (rng.random(N) < 0.05).astype(int)
    crowded = np.stack([np.zeros(N), rng.normal(-5.0, 0.6, N) + 1.0 * rare], axis=1)
    x, model = scored({"spread": spread, "crowded": crowded})
    split = Split(x, {"spread": jnp.asarray(labels, jnp.int32), "crowded": jnp.asarray(rare, jnp.int32)})
    tasks = (classification("spread", 2, missing_labels=True, auc=True), classification("crowded", 2, auc=True))
    keep = labels >= 0
    prob = lambda logits: jax.nn.softmax(jnp.asarray(logits, jnp.float32), -1)[:, 1]  # noqa: E731
    expected = {"spread": roc_auc_score(labels[keep], np.asarray(prob(spread))[keep]),
                "crowded": roc_auc_score(rare, np.asarray(prob(crowded)))}
    bounds = {"spread": auc.auc_bound(auc.histogram(jnp.asarray(spread), jnp.asarray(labels), jnp.asarray(keep))),
              "crowded": auc.auc_bound(auc.histogram(jnp.asarray(crowded), jnp.asarray(rare), jnp.ones(N, bool)))}
    assert all(0.6 < v < 0.95 for v in expected.values())
    assert float(bounds["spread"]) < 1e-3  # spread scores: about 0.5 / BINS
    for got in both_paths(model, tasks, split):
        assert {k for k in got if k.endswith(".auc")} == {"spread.auc", "crowded.auc"}
        for name, value in expected.items():
            error = abs(float(got[f"{name}.auc"]) - value)
            assert error <= float(bounds[name]) + 1e-6, name
            assert error < 2e-3, name


def test_a_split_of_one_class_has_auc_one_half_in_both_evaluations():
    x, model = scored({"c": np.random.default_rng(1).normal(size=(N, 2))})
    labels = np.zeros(N, np.int32)
    labels[::3] = -1
    split = Split(x, {"c": jnp.asarray(labels)})
    for got in both_paths(model, (classification("c", 2, missing_labels=True, auc=True),), split):
        assert float(got["c.auc"]) == 0.5


def test_auc_is_opt_in_and_for_two_classes_only(tmp_path):
    assert "auc" not in classification("c", 2).secondary
    assert classification("c", 2, auc=True).metrics == {"accuracy": False, "macro_f1": False, "auc": False}
    with pytest.raises(ConfigError, match="secondary metric='auc'.*two-class task; c has 3 classes"):
        TaskSpec("c", "classification", 3, "accuracy", False, secondary=("auc",))
    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=40), "two": ["a", "b"] * 20, "three": ["a", "b", "c", "a"] * 10}).to_csv(path)
    targets = {"two": "classification", "three": "classification"}
    for flag, expected in ((False, ((), ())), (True, (("auc",), ()))):
        source = table.build(table.TableConfig(path=str(path), targets=targets, auc=flag))
        assert tuple(tuple(m for m in t.secondary if m == "auc") for t in source.tasks) == expected
