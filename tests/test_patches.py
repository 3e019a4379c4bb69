"""The patch route of the small image trunks' convolutions (harness.models.patches) computes XLA's
convolution: same outputs and gradients for every padding and stride the trunks use, XLA's own
convolution where the route does not apply, and the LeNet / conv-block layers built with it."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from harness.models import patches

DIMS = ("NHWC", "HWIO", "NHWC")


def both(x, w, strides, padding):
    ours = patches.conv_by_patches(x, w, strides, padding)
    xla = lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DIMS)
    return ours, xla


@pytest.mark.parametrize("shape,kernel,strides,padding", [
    ((3, 36, 36, 1), (5, 5, 1, 10), (1, 1), "VALID"),       # LeNet's first block
    ((3, 16, 16, 10), (5, 5, 10, 20), (1, 1), "VALID"),     # LeNet's second block
    ((2, 10, 10, 1), (3, 3, 1, 16), (2, 2), "SAME"),        # hard_conv's blocks
    ((2, 5, 7, 3), (3, 3, 3, 4), (2, 2), "SAME"),           # odd sides
    ((2, 9, 8, 2), (3, 2, 2, 5), (1, 2), ((1, 2), (0, 1))),  # explicit, uneven padding
])
def test_patches_equal_xla_convolution_and_its_gradients(shape, kernel, strides, padding):
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), kernel)
    ours, xla = both(x, w, strides, padding)
    assert ours.shape == xla.shape
    np.testing.assert_allclose(ours, xla, rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
    g_ours = jax.grad(loss(lambda x, w: patches.conv_by_patches(x, w, strides, padding)), (0, 1))(x, w)
    g_xla = jax.grad(loss(lambda x, w: lax.conv_general_dilated(x, w, strides, padding,
                                                                 dimension_numbers=DIMS)), (0, 1))(x, w)
    for a, b in zip(g_ours, g_xla):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_other_convolutions_go_to_xla():
    """Dilated, grouped or NCHW convolutions are not the patch route's: they get XLA's answer."""
    x = jax.random.normal(jax.random.key(0), (2, 12, 12, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 4, 4))
    dims = lax.conv_dimension_numbers(x.shape, w.shape, DIMS)
    dilated = patches.conv_general_dilated(x, w, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=dims)
    np.testing.assert_array_equal(dilated, lax.conv_general_dilated(x, w, (1, 1), "SAME", rhs_dilation=(2, 2),
                                                                    dimension_numbers=dims))
    assert not patches.plain(x, w, None, (2, 2), dims, 1)
    assert not patches.plain(x, w[:, :, :2], None, None, dims, 2)
    assert not patches.plain(x, w, None, None, ("NCHW", "OIHW", "NCHW"), 1)
    assert patches.plain(x, w, None, None, dims, 1)


def test_nnx_conv_with_patches_matches_the_default():
    x = jax.random.normal(jax.random.key(2), (4, 10, 10, 3))
    mk = lambda **kw: nnx.Conv(3, 8, (3, 3), strides=(2, 2), padding="SAME", rngs=nnx.Rngs(params=0), **kw)
    default, ours = mk(), mk(conv_general_dilated=patches.conv_general_dilated)
    np.testing.assert_allclose(ours(x), default(x), rtol=1e-5, atol=1e-5)


def test_patch_route_is_taken_on_cpu():
    """On the CPU backend the compiled LeNet block holds no XLA convolution at all."""
    if jax.default_backend() != "cpu":
        pytest.skip("the patch route is the CPU backend's")
    x = jnp.ones((2, 36, 36, 1))
    w = jnp.ones((5, 5, 1, 10))
    dims = lax.conv_dimension_numbers(x.shape, w.shape, DIMS)
    hlo = jax.jit(lambda x, w: patches.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=dims)
                  ).lower(x, w).as_text()
    assert "convolution" not in hlo and "dot_general" in hlo
