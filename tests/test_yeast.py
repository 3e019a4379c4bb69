"""data=yeast: the 14-label Yeast table that ships inside river, read by the table loader."""
from __future__ import annotations

import importlib.util

import jax
import numpy as np
import pandas as pd
import pytest

from harness.data import yeast
from harness.errors import ConfigError


def test_yeast_has_14_tasks_103_features_and_disjoint_splits_that_cover_the_file():
    source = yeast.build(yeast.YeastConfig(seed=1))
    assert source.task_names == yeast.LABELS and source.input_dim == 103
    assert all(t.kind == "classification" and t.output_size == 2 and not t.missing_labels for t in source.tasks)
    data = source.generate(jax.random.key(0), {})
    sizes = [len(s.x) for s in data]
    assert sum(sizes) == 2417 and sizes[1] == sizes[2] == int(2417 * 0.15)
    # The file has no duplicate feature rows, so a row's bytes identify it across splits.
    rows = [{r.tobytes() for r in np.asarray(s.x)} for s in data]
    assert [len(r) for r in rows] == sizes
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    # Labels 0/1 keep their meaning: each task's positives over the splits are the file's.
    frame = pd.read_csv(yeast.csv_path())
    for name in yeast.LABELS:
        assert sum(int(np.asarray(s.y[name]).sum()) for s in data) == int(frame[name].sum())
    # Standardised with train statistics: train columns have mean 0 and std 1.
    np.testing.assert_allclose(np.asarray(data.train.x).mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(data.train.x).std(0), 1, atol=1e-3)


def test_without_river_the_error_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "river" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^data='yeast': the river package .*: pip install -e \"\.\[datasets\]\"$") as err:
        yeast.build(yeast.YeastConfig())
    assert "\n" not in str(err.value)
