"""data=nyuv2 and data=cityscapes: small fake copies in the published (MTAN) layout."""
from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from dense_fakes import H, W, write_copy
from harness.data import cityscapes, nyuv2
from harness.errors import ConfigError


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    return write_copy(tmp_path_factory.mktemp("nyuv2"))


def test_nyuv2_reads_the_layout_and_forms_the_splits(nyu):
    source = nyuv2.build(nyuv2.NYUv2Config(path=str(nyu), val_fraction=0.34, seed=3))
    assert source.task_names == ("segmentation", "depth", "normal") and source.input_dim == H * W * 3
    assert [(t.kind, t.output_size, t.metric, t.lower_is_better, t.shape) for t in source.tasks] == [
        ("segmentation", 13, "miou", False, (H, W)), ("depth", 1, "abs_err", True, (H, W)),
        ("normal", 3, "mean_angle", True, (H, W))]
    data = source.generate(jax.random.key(0), {})
    assert [len(s.x) for s in data] == [4, 2, 4]  # val: 2 of the 6 train files; test: the val folder
    assert data.train.y["segmentation"].dtype == np.int32 and data.train.y["segmentation"].shape == (4, H, W)
    assert data.train.y["depth"].shape == (4, H, W, 1) and data.test.y["normal"].shape == (4, H, W, 3)
    # test is the val folder, in file order; train and val are the train folder, disjoint.
    for i in range(4):
        np.testing.assert_array_equal(np.asarray(data.test.x[i]), np.load(nyu / "val" / "image" / f"{i}.npy").astype(np.float32).reshape(-1))
    train_files = [np.load(nyu / "train" / "image" / f"{i}.npy").astype(np.float32).reshape(-1) for i in range(6)]
    rows = [[next(i for i, f in enumerate(train_files) if np.array_equal(f, np.asarray(r))) for r in s.x]
            for s in (data.train, data.val)]
    assert sorted(rows[0] + rows[1]) == list(range(6))
    again = nyuv2.build(nyuv2.NYUv2Config(path=str(nyu), val_fraction=0.34, seed=3)).generate(jax.random.key(0), {})
    np.testing.assert_array_equal(np.asarray(again.val.x), np.asarray(data.val.x))  # the seed fixes val
    assert source.describe(data)["rows"] == {"train": 4, "val": 2, "test": 4}


def test_resize_keeps_ignore_and_invalid_marks(nyu):
    source = nyuv2.build(nyuv2.NYUv2Config(path=str(nyu), image_size=[8, 12], n_train=2, n_test=1))
    data = source.generate(jax.random.key(0), {})
    assert source.input_dim == 8 * 12 * 3 and source.tasks[0].shape == (8, 12)
    assert [len(s.x) for s in data] == [2, 1, 1]
    label = np.asarray(data.test.y["segmentation"][0])
    assert (label[0] == -1).all() and set(np.unique(label)) <= set(range(-1, 13))
    assert np.asarray(data.test.y["depth"])[0, 0, 0, 0] == 0  # the invalid corner survives


def test_cityscapes_picks_the_label_folder(tmp_path):
    root = write_copy(tmp_path / "cs", "cityscapes")
    for classes in (7, 19):
        source = cityscapes.build(cityscapes.CityscapesConfig(path=str(root), classes=classes))
        assert source.task_names == ("segmentation", "depth") and source.tasks[0].output_size == classes
        data = source.generate(jax.random.key(0), {})
        expected = np.load(root / "val" / f"label_{classes}" / "0.npy")
        np.testing.assert_array_equal(np.asarray(data.test.y["segmentation"][0]), expected.astype(np.int32))
    with pytest.raises(ConfigError, match=r"^data\.classes=8: 7 or 19"):
        cityscapes.build(cityscapes.CityscapesConfig(path=str(root), classes=8))


def damage(root, what):
    if what == "missing folder":
        for f in os.listdir(root / "val" / "normal"):
            os.remove(root / "val" / "normal" / f)
        os.rmdir(root / "val" / "normal")
    elif what == "count mismatch":
        os.remove(root / "train" / "depth" / "5.npy")
    elif what == "wrong shape":
        np.save(root / "train" / "depth" / "2.npy", np.ones((H, W), np.float32))
    elif what == "wrong image dtype":
        np.save(root / "val" / "image" / "1.npy", np.ones((H, W, 3), np.uint8))
    elif what == "fractional label":
        np.save(root / "train" / "label" / "0.npy", np.full((H, W), 0.5, np.float32))
    elif what == "label outside":
        np.save(root / "train" / "label" / "3.npy", np.full((H, W), 13, np.int64))
    elif what == "image size differs":
        np.save(root / "train" / "image" / "4.npy", np.ones((H + 1, W, 3), np.float32))
    elif what == "not npy":
        (root / "train" / "normal" / "1.npy").write_text("hello")


@pytest.mark.parametrize("what, says", [
    ("missing folder", "it has no val/normal/ folder"),
    ("count mismatch", "train/image/ has 6 files but train/depth/ has 5"),
    ("wrong shape", f"train/depth/2.npy has shape ({H}, {W}), not {H} x {W} x 1 (its image's)"),
    ("wrong image dtype", "val/image/1.npy has dtype uint8, not a float type"),
    ("fractional label", "train/label/0.npy holds values that are not whole numbers (class labels)"),
    ("label outside", "train/label/3.npy holds label 13, outside -1 (ignored) and 0..12"),
    ("image size differs", f"train/image/4.npy is {H + 1} x {W}, the first image {H} x {W}"),
    ("not npy", "train/normal/1.npy is not a readable .npy array (ValueError)"),
])
def test_file_problems_are_one_line_naming_data_path(tmp_path, what, says):
    root = write_copy(tmp_path / "nyu")
    damage(root, what)
    with pytest.raises(ConfigError) as err:
        nyuv2.build(nyuv2.NYUv2Config(path=str(root), val_fraction=0.2))
    message = str(err.value)
    assert message.startswith(f"data.path={str(root)!r}: a NYUv2 directory") and "\n" not in message
    assert message.endswith(says)


@pytest.mark.parametrize("change, key", [
    (dict(image_size=[0, 4]), "data.image_size"), (dict(val_fraction=1.0), "data.val_fraction"),
    (dict(n_train=0), "data.n_train"), (dict(eval_batch=0), "data.eval_batch")])
def test_bad_numbers_name_their_key(nyu, change, key):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')}="):
        nyuv2.build(nyuv2.NYUv2Config(path=str(nyu), **change))
