"""data=table (CSV and parquet files) and data=penguins (the table bundled with palmerpenguins):
encoding with train statistics only, missing values and labels, splits, and one-line errors."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from harness.data import penguins, table
from harness.data.labels import MISSING
from harness.errors import ConfigError

TARGETS = {"kind": "classification", "size": "regression"}


def frame(rows: int = 40) -> pd.DataFrame:
    """id (a row id, to follow rows through the split), a numeric and a text feature with gaps,
    a text class label and a numeric target, both with gaps."""
    rng = np.random.default_rng(0)
    num = rng.normal(size=rows) * 3 + 10
    num[::7] = np.nan
    colour = np.array(["red", "blue", "green", "red"] * (rows // 4), dtype=object)
    colour[::9] = None
    kind = np.array(["b", "a", "c", "a"] * (rows // 4), dtype=object)
    kind[5::11] = None
    size = np.arange(rows) * 0.5
    size[3::6] = np.nan
    return pd.DataFrame({"id": np.arange(rows), "num": num, "colour": colour, "kind": kind, "size": size})


def write(tmp_path: Path, data: pd.DataFrame, name: str = "t.csv") -> str:
    path = tmp_path / name
    data.to_parquet(path) if name.endswith(".parquet") else data.to_csv(path, index=False)  # .gz: gzipped
    return str(path)


def generate(source):
    return source.generate(jax.random.key(0), {})


def test_table_encodes_with_train_statistics_and_marks_missing_labels(tmp_path):
    raw = frame()
    path = write(tmp_path, raw)
    cfg = table.TableConfig(path=path, targets=TARGETS, features=["num", "colour", "id"])
    source = table.build(cfg)
    assert [(t.name, t.kind, t.output_size, t.missing_labels) for t in source.tasks] == [
        ("kind", "classification", 3, True), ("size", "regression", 1, True)]
    data = generate(source)
    assert [len(s.x) for s in data] == [28, 6, 6] and source.input_dim == 1 + 4 + 1
    # Recover the row ids from the standardised id column with the train statistics.
    ids_train = np.sort(np.asarray(data.train.x[:, -1]))
    order = np.random.default_rng(0).permutation(40)
    train = order[:28]
    mean, std = train.mean(), train.std()
    np.testing.assert_allclose(ids_train, np.sort((train - mean) / std), atol=1e-5)
    known = raw["num"].to_numpy()[train]
    known = known[np.isfinite(known)]
    for split in data:
        ids = np.round(np.asarray(split.x[:, -1]) * std + mean).astype(int)
        row = raw.iloc[ids]
        # numeric: train mean and std; a gap becomes the train mean, i.e. 0
        expected = np.where(row["num"].isna(), 0.0, (row["num"] - known.mean()) / known.std())
        np.testing.assert_allclose(split.x[:, 0], expected, atol=1e-5)
        # text: one-hot over the train categories (sorted), then one column for missing
        onehot = np.asarray(split.x[:, 1:5])
        for j, c in enumerate(["blue", "green", "red"]):
            np.testing.assert_array_equal(onehot[:, j], (row["colour"] == c).to_numpy())
        np.testing.assert_array_equal(onehot[:, 3], row["colour"].isna().to_numpy())
        # classes sorted a, b, c -> 0, 1, 2; a gap -> MISSING
        labels = row["kind"].map({"a": 0, "b": 1, "c": 2}).fillna(MISSING).astype(int).to_numpy()
        np.testing.assert_array_equal(split.y["kind"], labels)
        np.testing.assert_array_equal(np.asarray(split.y["size"][:, 0]), row["size"].to_numpy(np.float32))
    info = source.describe(data)
    assert info["train_rows"] == 28 and 0 < info["kind_train_labelled"] < 1


def test_parquet_reads_like_csv_and_unseen_categories_fall_in_the_missing_column(tmp_path):
    raw = frame()
    raw["split"] = ["train"] * 30 + ["val"] * 5 + ["test"] * 5
    raw.loc[35:, "colour"] = "purple"  # only in test
    csv = table.build(table.TableConfig(path=write(tmp_path, raw), targets=TARGETS, split_column="split"))
    pq = table.build(table.TableConfig(path=write(tmp_path, raw, "t.parquet"), targets=TARGETS, split_column="split"))
    gz = table.build(table.TableConfig(path=write(tmp_path, raw, "t.csv.gz"), targets=TARGETS, split_column="split"))
    a, b, c = generate(csv), generate(pq), generate(gz)
    for s, t in [*zip(a, b), *zip(a, c)]:
        np.testing.assert_allclose(s.x, t.x, atol=1e-6)
        np.testing.assert_array_equal(s.y["kind"], t.y["kind"])
    # the split column decides the rows: train is the first 30 in order, test the last 5
    assert [len(s.x) for s in a] == [30, 5, 5]
    ids_scale = np.asarray(a.train.x[:, 0])  # id is the first feature: standardised 0..29
    np.testing.assert_allclose(ids_scale, (np.arange(30) - 14.5) / np.arange(30).std(), atol=1e-5)
    # "purple" never appears in train: those test rows land in the missing-or-unseen column
    np.testing.assert_array_equal(np.asarray(a.test.x[:, 2:6]), [[0, 0, 0, 1]] * 5)


def bad_file(tmp_path: Path, kind: str) -> str:
    if kind == "binary":
        path = tmp_path / "t.parquet"
        path.write_bytes(b"\x00\x01 not parquet")
    elif kind == "empty":
        path = tmp_path / "t.csv"
        path.write_text("")
    elif kind == "suffix":
        path = tmp_path / "t.xlsx"
        path.write_text("a,b\n1,2\n")
    return str(path)


CASES = [  # (id, change to the frame, or a bad file kind, config fields, key=value, allowed)
    ("missing", None, dict(path="/no/such/t.csv"), "data.path='/no/such/t.csv'", "no such file"),
    ("suffix", "suffix", {}, "data.path=", "a file ending in .csv, .csv.gz, .parquet, .pq"),
    ("unreadable", "binary", {}, "data.path=", "a readable parquet file"),
    ("empty", "empty", {}, "data.path=", "a readable CSV file (EmptyDataError)"),
    ("target", None, dict(targets={"knd": "classification"}), "data.targets='knd'", "a column of"),
    ("kind", None, dict(targets={"kind": "ranking"}), "data.targets.kind='ranking'", "one of classification, regression"),
    ("no_targets", None, dict(targets={}), "data.targets={}", "a non-empty map"),
    ("feature", None, dict(features=["nmu"]), "data.features='nmu'", "a column of"),
    ("no_features", None, dict(features=[]), "data.features=[]", "a non-empty list of columns"),
    ("only_targets", lambda f: f[["kind", "size"]], {}, "data.features=None", "at least one input column"),
    ("feature_is_target", None, dict(features=["size"]), "data.features='size'", "not a target"),
    ("split_column", None, dict(split_column="part"), "data.split_column='part'", "a column of"),
    ("split_values", lambda f: f.assign(part=["train", "dev"] * 20), dict(split_column="part"),
     "data.split_column='part'", "it also has dev"),
    ("empty_split", lambda f: f.assign(part=["train", "val"] * 20), dict(split_column="part"),
     "data.split_column='part'", "it has no test row"),
    ("text_regression", None, dict(targets={"colour": "regression"}), "data.targets.colour='regression'",
     "a numeric column"),
    ("one_class", lambda f: f.assign(kind="a"), {}, "data.targets='kind'", "at least two classes"),
    ("unlabelled_val", lambda f: f.assign(part=["train"] * 30 + ["val"] * 5 + ["test"] * 5,
                                          size=[1.0] * 30 + [np.nan] * 5 + [2.0] * 5),
     dict(split_column="part"), "data.targets='size'", "its val split has none"),
    ("few_rows", lambda f: f.head(4), {}, "data.path=", "enough rows"),
    ("fractions", None, dict(val_fraction=0.6, test_fraction=0.5), "data.test_fraction=0.5", "val_fraction"),
]


@pytest.mark.parametrize("change, fields, key, allowed", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_table_rejects_bad_input_in_one_line_naming_key_value_and_file(tmp_path, change, fields, key, allowed):
    if isinstance(change, str):
        path = bad_file(tmp_path, change)
    else:
        path = write(tmp_path, change(frame()) if change else frame())
    cfg = dataclasses.replace(table.TableConfig(path=path, targets=TARGETS), **fields)
    with pytest.raises(ConfigError) as err:
        table.build(cfg)
    message = str(err.value)
    assert message.startswith(key) and allowed in message and "\n" not in message
    assert cfg.path in message


def test_missing_packages_name_the_extra(tmp_path, monkeypatch):
    path = write(tmp_path, frame(), "t.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(ConfigError, match=r'^data\.path=.*t\.parquet.*pyarrow: pip install -e "\.\[datasets\]"$'):
        table.build(table.TableConfig(path=path, targets=TARGETS))
    monkeypatch.setitem(sys.modules, "palmerpenguins", None)
    with pytest.raises(ConfigError, match=r'^data=\'penguins\': the palmerpenguins package: pip install -e "\.\[datasets\]"$'):
        penguins.build(penguins.PenguinsConfig())


def test_penguins_tasks_and_missing_labels_from_the_bundled_table():
    source = penguins.build(penguins.PenguinsConfig())
    assert [(t.name, t.kind, t.output_size, t.missing_labels) for t in source.tasks] == [
        ("species", "classification", 3, False), ("sex", "classification", 2, True),
        ("body_mass_g", "regression", 1, True), ("flipper_length_mm", "regression", 1, True)]
    data = generate(source)
    assert sum(len(s.x) for s in data) == 344 and [len(s.x) for s in data] == [242, 51, 51]
    sex = np.concatenate([np.asarray(s.y["sex"]) for s in data])
    mass = np.concatenate([np.asarray(s.y["body_mass_g"][:, 0]) for s in data])
    assert (sex == MISSING).sum() == 11 and np.isnan(mass).sum() == 2
    assert all(np.isfinite(np.asarray(s.x)).all() for s in data)


def test_a_bad_table_exits_with_status_2_and_one_line(tmp_path):
    path = write(tmp_path, frame())
    env_root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "harness", "data=table", f"data.path={path}",
                          "+data.targets={kind: classification, sze: regression}", f"hydra.run.dir={tmp_path}/run"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(env_root)})
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "data.targets='sze'" in lines[0] and path in lines[0]


def test_penguins_species_network_matches_logistic_regression_on_the_same_split():
    """A short single-task species run reaches scikit-learn's logistic regression on the same
    encoded rows; the sex task trains alongside with its 11 missing labels."""
    from sklearn.linear_model import LogisticRegression

    from harness.config import TrainConfig
    from helpers import execute, small_data, small_run

    run = small_run(data=penguins.PenguinsConfig(tasks=["species", "sex"]), seeds=2,
                    train=TrainConfig(steps=400, batch_size=64, eval_every=100))
    source, data = small_data(run)
    out, _, _ = execute(run, source.tasks, data, [0, 1])
    assert np.all(out["diverged_at"] == -1) and np.all(np.isfinite(out["test"]))
    network = out["test"][:, -1, 0].mean()
    logistic = LogisticRegression(max_iter=1000).fit(data.train.x, data.train.y["species"])
    reference = logistic.score(data.test.x, data.test.y["species"])
    assert reference > 0.9 and network >= reference - 0.04
    assert out["test"][:, -1, 1].mean() > 0.6  # sex: better than the majority class (about 0.5)
