"""Datasets: shapes, determinism, the properties each recipe promises, and one-line errors."""
from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

import harness.data  # noqa: F401  (fills DATASETS)
from harness.data import digits, files, relatedness
from harness.data.base import DATASETS, select_tasks
from harness.errors import ConfigError

SMALL = dict(n_train=300, n_val=50, n_test=60)


def generate(source, key=0, **hparams):
    return source.generate(jax.random.key(key), {**source.dynamic, **hparams})


def assert_split_shapes(source, dataset, sizes):
    for split, n in zip(dataset, sizes):
        assert split.x.shape == (n, source.input_dim) and split.x.dtype == jnp.float32
        assert tuple(split.y) == source.task_names
        for spec in source.tasks:
            y = split.y[spec.name]
            if spec.kind == "classification":
                assert y.shape == (n,) and y.dtype == jnp.int32
                assert 0 <= int(y.min()) and int(y.max()) < spec.output_size
            else:
                assert y.shape == (n, spec.output_size) and y.dtype == jnp.float32


def test_registry_holds_every_dataset():
    assert {"relatedness", "digits", "files", "table", "penguins", "multimnist", "celeba", "yeast",
            "image_folders"} <= set(DATASETS.names())


USER_PATH = ("files", "table", "celeba", "image_folders")  # datasets whose data.path is required


@pytest.mark.parametrize("name", ["relatedness", "digits", "files", "table", "penguins", "multimnist", "celeba", "yeast",
                                  "image_folders"])
def test_yaml_composes_to_the_schema_defaults(name):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from harness.config import register_configs

    register_configs()
    overrides = ["data.path=x.npz"] if name in USER_PATH else []
    conf = os.path.join(os.path.dirname(__file__), "..", "conf")
    with initialize_config_dir(config_dir=os.path.abspath(conf), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(overrides=[f"+data={name}", *overrides]).data)
    schema = DATASETS.get(name).schema
    expected = schema(path="x.npz") if name in USER_PATH else schema()
    assert type(cfg) is schema and cfg == expected


# ---------------------------------------------------------------- relatedness

def test_relatedness_shapes_and_specs():
    source = relatedness.build(relatedness.RelatednessConfig(input_dim=20, **SMALL))
    assert source.task_names == ("t1", "t2")
    assert all(t.kind == "regression" and t.output_size == 1 and t.metric == "mse" for t in source.tasks)
    assert source.dynamic == {"correlation": 0.5, "noise": 0.01}
    assert_split_shapes(source, generate(source), (300, 50, 60))


def test_relatedness_is_deterministic_in_key_and_seed():
    cfg = relatedness.RelatednessConfig(input_dim=20, **SMALL)
    source = relatedness.build(cfg)
    a, b, c = generate(source, 0), generate(source, 0), generate(source, 1)
    other_seed = generate(relatedness.build(dataclasses.replace(cfg, seed=1)), 0)
    assert jax.tree.all(jax.tree.map(jnp.array_equal, a, b))
    assert not jnp.array_equal(a.train.x, c.train.x)
    assert not jnp.array_equal(a.train.x, other_seed.train.x)


def test_relatedness_same_inputs_for_every_correlation():
    source = relatedness.build(relatedness.RelatednessConfig(input_dim=20, **SMALL))
    low, high = generate(source, correlation=0.1), generate(source, correlation=0.9)
    for s_low, s_high in zip(low, high):
        assert jnp.array_equal(s_low.x, s_high.x)
        assert jnp.array_equal(s_low.y["t1"], s_high.y["t1"])  # w1 = c u1 does not depend on p
        assert not jnp.allclose(s_low.y["t2"], s_high.y["t2"])


def test_relatedness_jit_and_vmap_over_correlation():
    source = relatedness.build(relatedness.RelatednessConfig(input_dim=20, **SMALL))
    traces = []

    def run(key, hparams):
        traces.append(1)
        return source.generate(key, hparams)

    fast = jax.jit(run)
    key, noise = jax.random.key(3), jnp.float32(0.01)
    ps = jnp.array([-0.5, 0.0, 0.5, 1.0], jnp.float32)
    singles = [fast(key, {"correlation": p, "noise": noise}) for p in ps]
    assert len(traces) == 1  # a new correlation value does not recompile
    batched = jax.jit(jax.vmap(run, in_axes=(None, {"correlation": 0, "noise": None})))(
        key, {"correlation": ps, "noise": noise})
    for i, single in enumerate(singles):
        for s_batch, s_single in zip(batched, single):
            np.testing.assert_allclose(s_batch.y["t2"][i], s_single.y["t2"], atol=1e-4)
            assert jnp.array_equal(s_batch.x[i], s_single.x)


@pytest.mark.parametrize("num_tasks, ps", [(2, (-0.6, 0.0, 0.3, 1.0)), (4, (0.0, 0.4, 1.0))])
def test_task_weights_cosine_equals_correlation(num_tasks, ps):
    for p in ps:
        w = np.asarray(relatedness.task_weights(jax.random.key(0), num_tasks, 12, p, 2.0))
        np.testing.assert_allclose(np.linalg.norm(w, axis=1), 2.0, rtol=1e-5)
        cos = (w @ w.T) / 4.0
        np.testing.assert_allclose(cos[~np.eye(num_tasks, dtype=bool)], p, atol=1e-5)


def test_relatedness_label_correlation_monotone_in_p():
    source = relatedness.build(relatedness.RelatednessConfig())
    rho = [source.describe(generate(source, correlation=p))["label_correlation"] for p in (0.0, 0.5, 1.0)]
    assert all(isinstance(r, float) for r in rho)
    assert abs(rho[0]) < 0.06 and rho[0] < rho[1] < rho[2]
    assert rho[2] > 0.99


def test_relatedness_three_tasks():
    cfg = relatedness.RelatednessConfig(num_tasks=3, correlation=1.0, input_dim=20, **SMALL)
    source = relatedness.build(cfg)
    dataset = generate(source)
    assert source.task_names == ("t1", "t2", "t3")
    assert_split_shapes(source, dataset, (300, 50, 60))
    summary = source.describe(dataset)
    matrix = np.array(summary["label_correlation_matrix"])
    assert matrix.shape == (3, 3) and np.allclose(np.diag(matrix), 1.0)
    assert summary["label_correlation"] > 0.99
    # A task subset is described by its own tasks: two tasks give a single correlation.
    pair = select_tasks(source, ["t1", "t3"])
    assert set(pair.describe(generate(pair))) == {"label_correlation"}
    assert source.describe(generate(select_tasks(source, ["t2"]))) == {}


@pytest.mark.parametrize("change, match", [
    (dict(num_tasks=1), r"^data\.num_tasks=1: an integer >= 2"),
    (dict(correlation=1.5), r"^data\.correlation=1\.5: a number in \[-1, 1\]"),
    (dict(num_tasks=3, correlation=-0.5), r"^data\.correlation=-0\.5: a number in \[0, 1\] for 3 tasks"),
    (dict(num_tasks=3, input_dim=3), r"^data\.input_dim=3: at least 4"),
    (dict(noise=-0.1), r"^data\.noise=-0\.1"),
    (dict(n_val=0), r"^data\.n_val=0"),
])
def test_relatedness_rejects_bad_config(change, match):
    with pytest.raises(ConfigError, match=match) as err:
        relatedness.build(relatedness.RelatednessConfig(**change))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- digits

DIGITS_CFG = digits.DigitsConfig(**SMALL)


@pytest.fixture(scope="module")
def digits_data():
    source = digits.build(DIGITS_CFG)
    return source, generate(source)


def test_digits_shapes_and_specs(digits_data):
    source, dataset = digits_data
    assert source.task_names == ("left", "right", "ink")
    assert [(t.kind, t.output_size) for t in source.tasks] == [
        ("classification", 10), ("classification", 10), ("regression", 1)]
    assert source.input_dim == 100 and source.dynamic == {}
    assert_split_shapes(source, dataset, (300, 50, 60))
    assert 0.0 <= float(dataset.train.x.min()) and float(dataset.train.x.max()) <= 1.0


def test_digits_overlay_is_pixelwise_max(digits_data):
    _, dataset = digits_data
    source_digits = load_digits()
    pairs = digits.source_pairs(len(source_digits.images), (300, 50, 60), DIGITS_CFG.seed)
    for split, split_pairs in zip(dataset, pairs):
        for row in (0, 7):
            left, right = split_pairs[row]
            canvas = np.zeros((10, 10))
            canvas[:8, :8] = source_digits.images[left] / 16
            for i in range(8):
                for j in range(8):
                    canvas[2 + i, 2 + j] = max(canvas[2 + i, 2 + j], source_digits.images[right][i, j] / 16)
            np.testing.assert_allclose(np.asarray(split.x[row]).reshape(10, 10), canvas, atol=1e-6)
            assert int(split.y["left"][row]) == source_digits.target[left]
            assert int(split.y["right"][row]) == source_digits.target[right]


def test_digits_source_pools_are_disjoint():
    pairs = digits.source_pairs(1797, (4000, 1000, 1000), seed=0)
    pools = [set(p.ravel().tolist()) for p in pairs]
    assert not (pools[0] & pools[1] or pools[0] & pools[2] or pools[1] & pools[2])
    assert len(pools[0]) > 1000  # the train pool is most of the source images


def test_digits_seed_and_sizes():
    pairs = digits.source_pairs(1797, (300, 50, 60), seed=0)
    more_train = digits.source_pairs(1797, (900, 50, 60), seed=0)
    other_seed = digits.source_pairs(1797, (300, 50, 60), seed=1)
    # Growing the train split leaves val and test as they were.
    assert all(np.array_equal(a, b) for a, b in zip(pairs[1:], more_train[1:]))
    assert not np.array_equal(pairs[0], other_seed[0])


def test_digits_ink_is_the_mean_pixel_in_its_own_units(digits_data):
    """Ink stays in pixel units in the data (training standardises it, metrics stay in these units)."""
    source, dataset = digits_data
    for split in dataset:
        np.testing.assert_allclose(np.asarray(split.y["ink"])[:, 0], np.asarray(split.x).mean(1), rtol=1e-5)
    train_ink = np.asarray(dataset.train.x).mean(1)
    np.testing.assert_allclose(source.describe(dataset)["ink_mean"], train_ink.mean(), rtol=1e-5)


@pytest.mark.parametrize("change, match", [
    (dict(canvas=9), r"^data\.canvas=9: an integer >= 8 \+ data\.offset = 10"),
    (dict(offset=-1), r"^data\.offset=-1"),
    (dict(n_test=0), r"^data\.n_test=0"),
])
def test_digits_rejects_bad_config(change, match):
    with pytest.raises(ConfigError, match=match) as err:
        digits.build(digits.DigitsConfig(**change))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- files

ROWS = 40


def arrays(rng=None) -> dict[str, np.ndarray]:
    rng = rng or np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 3)) * 5 + 2
    x[:, 0] = np.arange(ROWS)  # a row id, to check that targets stay aligned with rows
    return {"X": x, "cls": np.arange(ROWS) % 3, "reg": np.arange(ROWS) * 0.5,
            "multi": rng.normal(size=(ROWS, 2)), "unused": np.zeros(2)}


def write(tmp_path, **data) -> str:
    path = str(tmp_path / "data.npz")
    np.savez(path, **data)
    return path


TARGETS = {"cls": "classification", "reg": "regression", "multi": "regression"}


def test_files_round_trip(tmp_path):
    raw = arrays()
    path = write(tmp_path, **raw)
    cfg = files.FilesConfig(path=path, targets=TARGETS, standardize_x=False)
    source = files.build(cfg)
    assert [(t.name, t.kind, t.output_size) for t in source.tasks] == [
        ("cls", "classification", 3), ("reg", "regression", 1), ("multi", "regression", 2)]
    dataset = generate(source)
    assert_split_shapes(source, dataset, (28, 6, 6))
    ids = np.concatenate([np.asarray(s.x[:, 0]) for s in dataset]).astype(int)
    assert sorted(ids) == list(range(ROWS))
    for split in dataset:
        row = np.asarray(split.x[:, 0]).astype(int)
        np.testing.assert_array_equal(split.y["cls"], raw["cls"][row])
        np.testing.assert_allclose(split.y["reg"][:, 0], raw["reg"][row])
        np.testing.assert_allclose(split.y["multi"], raw["multi"][row], rtol=1e-6)
    assert source.describe(dataset) == {"train_rows": 28.0, "val_rows": 6.0, "test_rows": 6.0}
    declared = files.build(dataclasses.replace(cfg, num_classes={"cls": 5}))
    assert declared.tasks[0].output_size == 5


def test_files_standardises_x_with_train_statistics(tmp_path):
    path = write(tmp_path, **arrays())
    cfg = files.FilesConfig(path=path, targets={"reg": "regression"})
    plain = generate(files.build(dataclasses.replace(cfg, standardize_x=False)))
    scaled = generate(files.build(cfg))
    train = np.asarray(plain.train.x)
    mean, std = train.mean(0), train.std(0)
    np.testing.assert_allclose(np.asarray(scaled.train.x).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaled.val.x, (np.asarray(plain.val.x) - mean) / std, atol=1e-5)
    shuffled = generate(files.build(dataclasses.replace(cfg, seed=1)))
    assert not jnp.array_equal(shuffled.train.x, scaled.train.x)


def test_files_and_table_paths_stay_required():
    from omegaconf import MISSING

    from harness.data import table
    assert files.FilesConfig().path == MISSING and table.TableConfig().path == MISSING


def test_files_marks_missing_labels(tmp_path):
    raw = arrays()
    cls = raw["cls"].astype(float)
    cls[::4] = np.nan
    cls[1::4] = -7
    reg = raw["reg"].copy()
    reg[::5] = np.nan
    path = write(tmp_path, **{**raw, "cls": cls, "reg": reg})
    cfg = files.FilesConfig(path=path, targets={"cls": "classification", "reg": "regression"},
                            missing_label=-7, standardize_x=False)
    source = files.build(cfg)
    assert source.tasks[0].output_size == 3
    for split in generate(source):
        row = np.asarray(split.x[:, 0]).astype(int)
        gone = (row % 4 == 0) | (row % 4 == 1)
        np.testing.assert_array_equal(split.y["cls"], np.where(gone, -1, raw["cls"][row]))
        np.testing.assert_array_equal(np.isnan(split.y["reg"][:, 0]), row % 5 == 0)
    with pytest.raises(ConfigError, match=r"^data\.targets='cls': class labels >= 0.*data\.missing_label"):
        files.build(dataclasses.replace(cfg, missing_label=None))


def bad_file(tmp_path, kind):
    path = str(tmp_path / "bad.npz")
    if kind == "text":
        with open(path, "w") as f:
            f.write("not an archive")
    else:
        np.save(path, np.zeros((3, 2)))
        os.rename(path + ".npy", path)
    return path


def changed(**new):
    return lambda a: {**a, **new}


CASES = [  # (id, change to the arrays, config fields, expected message)
    ("missing", None, dict(path="/no/such/data.npz"), r"^data\.path='/no/such/data\.npz': no such file"),
    ("text", "text", {}, r"^data\.path=.*not a readable \.npz"),
    ("npy", "npy", {}, r"^data\.path=.*an \.npz archive"),
    ("x_key", changed(), dict(x_key="features"), r"^data\.x_key='features': a key of the file; it has X, cls"),
    ("target_key", changed(), dict(targets={"label": "regression"}), r"^data\.targets='label': .*it has X, cls"),
    ("x_1d", changed(X=np.arange(ROWS) * 1.0), {}, r"^data\.x_key='X': a 2-D array.*shape \(40,\)"),
    ("x_text", changed(X=np.array([["a"]] * ROWS)), {}, r"^data\.x_key='X': a bool, integer or float array"),
    ("x_object", changed(X=np.array([{}] * ROWS, dtype=object)), {}, r"^data\.path=.*'X' is not a plain"),
    ("length", changed(cls=np.zeros(ROWS - 1, int)), {}, r"^data\.targets='cls': one row per row of X \(40\)"),
    ("x_nan", changed(X=np.where(np.eye(ROWS, 3) > 0, np.nan, 1.0)), {}, r"^data\.x_key='X': finite values; it has 3 NaN/inf"),
    ("y_inf", changed(reg=np.r_[np.inf, np.zeros(ROWS - 1)]), {}, r"^data\.targets='reg': finite values or NaN \(no label\); it has 1 inf"),
    ("fractional", changed(cls=np.arange(ROWS) / 2), {}, r"^data\.targets='cls': integer class labels"),
    ("negative", changed(cls=np.arange(ROWS) - 1), {}, r"^data\.targets='cls': class labels >= 0"),
    ("too_many", changed(), dict(num_classes={"cls": 2}), r"^data\.num_classes\.cls=2: more than the largest label of cls \(2\)"),
    ("one_class", changed(cls=np.zeros(ROWS, int)), {}, r"^data\.targets='cls': at least two classes"),
    ("kind", changed(), dict(targets={"cls": "ranking"}), r"^data\.targets\.cls='ranking': one of classification, regression"),
    ("no_targets", changed(), dict(targets={}), r"^data\.targets=\{\}: a non-empty map"),
    ("classes_of_regression", changed(), dict(num_classes={"reg": 4}), r"^data\.num_classes='reg': a classification task"),
    ("val_zero", changed(), dict(val_fraction=0.0), r"^data\.val_fraction=0\.0: a number in \(0, 1\)"),
    ("test_one", changed(), dict(test_fraction=1.2), r"^data\.test_fraction=1\.2: a number in \(0, 1\)"),
    ("sum", changed(), dict(val_fraction=0.5, test_fraction=0.5), r"^data\.test_fraction=0\.5: val_fraction \+ test_fraction < 1"),
    ("unlabelled_split", changed(reg=np.full(ROWS, np.nan)), {}, r"^data\.targets='reg': at least one label in each of train, val and test; its train split has none.*data\.npz"),
    ("few_rows", lambda a: {k: v[:5] for k, v in a.items()}, {}, r"^data\.path=.*non-empty train/val/test.*it has 5"),
]


@pytest.mark.parametrize("change, fields, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_files_rejects_bad_input(tmp_path, change, fields, match):
    if isinstance(change, str):
        path = bad_file(tmp_path, change)
    elif change is None:
        path = None
    else:
        path = write(tmp_path, **change(arrays()))
    cfg = files.FilesConfig(path=path, targets={"cls": "classification", "reg": "regression"})
    cfg = dataclasses.replace(cfg, **fields)
    with pytest.raises(ConfigError, match=match) as err:
        files.build(cfg)
    assert "\n" not in str(err.value)
