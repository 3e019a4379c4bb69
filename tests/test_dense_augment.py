"""data.augment: scale-crop and horizontal flip inside the compiled program."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from harness.data.base import depth, normal, segmentation
from harness.train.augment import make_augment, transform

H, W = 6, 8
KINDS = {"seg": "segmentation", "depth": "depth", "normal": "normal"}
TASKS = (segmentation("seg", 5, (H, W)), depth("depth", (H, W)), normal("normal", (H, W)))


def example(seed=0):
    rng = np.random.default_rng(seed)
    n = rng.normal(size=(H, W, 3))
    return (jnp.asarray(rng.uniform(size=(H, W, 3)), jnp.float32),
            {"seg": jnp.asarray(rng.integers(-1, 5, size=(H, W)), jnp.int32),
             "depth": jnp.asarray(rng.uniform(1, 3, size=(H, W, 1)), jnp.float32),
             "normal": jnp.asarray(n / np.linalg.norm(n, axis=-1, keepdims=True), jnp.float32)})


def apply(image, ys, scale=1.0, top=0.0, left=0.0, flip=False):
    return transform(image, ys, KINDS, jnp.asarray(scale), jnp.asarray(top), jnp.asarray(left), jnp.asarray(flip))


def test_no_scale_no_flip_is_the_identity_and_flip_twice_is_too():
    image, ys = example()
    same, same_y = apply(image, ys)
    np.testing.assert_allclose(same, image, atol=1e-6)
    once, once_y = apply(image, ys, flip=True)
    np.testing.assert_allclose(once, image[:, ::-1], atol=1e-6)
    np.testing.assert_array_equal(once_y["seg"], ys["seg"][:, ::-1])
    # Flipping mirrors the normals: x negated, y and z kept.
    np.testing.assert_allclose(once_y["normal"][..., 0], -ys["normal"][:, ::-1, 0], atol=1e-6)
    np.testing.assert_allclose(once_y["normal"][..., 1:], ys["normal"][:, ::-1, 1:], atol=1e-6)
    twice, twice_y = apply(once, once_y, flip=True)
    np.testing.assert_allclose(twice, image, atol=1e-6)
    for name in ys:
        np.testing.assert_allclose(twice_y[name], ys[name], atol=1e-6)
        np.testing.assert_allclose(same_y[name], ys[name], atol=1e-6)


def test_scale_crop_zooms_in_and_divides_depth():
    image, ys = example(1)
    out, out_y = apply(image, ys, scale=1.5, top=1.0, left=0.0)  # the bottom-left window of 4 x 5
    assert out.shape == image.shape and out_y["seg"].dtype == jnp.int32
    assert set(np.unique(out_y["seg"])) <= set(np.unique(ys["seg"][2:, :6]))  # labels are copied, not blended
    # Depth values are the window's divided by the scale.
    assert set(np.round(np.unique(out_y["depth"]) * 1.5, 5)) <= set(np.round(np.unique(ys["depth"][2:, :6]), 5))
    np.testing.assert_allclose(np.linalg.norm(out_y["normal"], axis=-1), 1.0, atol=1e-5)


def test_batches_are_augmented_per_example_and_by_key():
    image, ys = example(2)
    x = jnp.stack([image.reshape(-1)] * 4)
    y = jax.tree.map(lambda a: jnp.stack([a] * 4), ys)
    augment = jax.jit(make_augment(TASKS, H * W * 3))
    a, ay = augment(jax.random.key(0), x, y)
    b, _ = augment(jax.random.key(0), x, y)
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and ay["normal"].shape == y["normal"].shape
    assert len({np.asarray(row).tobytes() for row in a}) > 1  # each example draws its own
