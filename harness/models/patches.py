"""Convolution as a matrix product of image patches ("im2col"), for the small image trunks on CPU.

XLA:CPU runs a convolution inside a loop body several times slower than the same convolution
called on its own (jax-ml/jax#12868), and every training run here is a `lax.scan` over steps.
Measured side by side on 2 CPU cores (`python -m harness.bench --sections conv`,
results/benchmarks/conv_cpu): a gradient step of the MultiMNIST LeNet trunk on 32 canvases takes
8.5 ms called on its own and 45 ms inside a scan with XLA's convolution. Written as shifted
slices of the input concatenated along the channels and one `dot` with the reshaped kernel, it
takes 6.4 ms alone and 6.2 ms inside the scan (7.3x faster there). The product is
the same sum of the same terms (a stride-s, k x k convolution is exactly this), so only the order
of the floating-point additions can differ.

`conv_general_dilated` has `jax.lax.conv_general_dilated`'s signature and is given to
`nnx.Conv`. It takes the patch route on the CPU backend for the plain case (NHWC inputs, HWIO
kernels, no dilation, one feature group) and calls XLA's convolution everywhere else, where the
backend's own kernels (cuDNN, TPU convolutions) are the faster choice.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def plain(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count) -> bool:
    """Whether a convolution is one the patch route computes: 2-D, NHWC x HWIO, undilated, ungrouped."""
    ones = lambda d: d is None or all(v == 1 for v in d)
    dims = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    return lhs.ndim == 4 and dims == NHWC and ones(lhs_dilation) and ones(rhs_dilation) and feature_group_count == 1


def conv_by_patches(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding,
                    precision=None, preferred_element_type=None) -> jax.Array:
    """An NHWC x HWIO convolution as (N, H', W', kh * kw * C) patches times the (kh * kw * C, O)
    kernel. `padding` is "VALID", "SAME" or ((lo, hi), (lo, hi)) as in lax."""
    kh, kw, cin, cout = rhs.shape
    sh, sw = window_strides
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), (sh, sw), padding)
    x = jnp.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    h, w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    # Row-major over (i, j, c): the order of rhs.reshape(kh * kw * cin, cout).
    cols = jnp.concatenate([x[:, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw, :]
                            for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.dot(cols, rhs.reshape(kh * kw * cin, cout), precision=precision,
                   preferred_element_type=preferred_element_type)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None, **kwargs):
    """`lax.conv_general_dilated`, by patches on the CPU backend where `plain` allows it."""
    if (jax.default_backend() == "cpu" and batch_group_count == 1
            and plain(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count)):
        return conv_by_patches(lhs, rhs, window_strides, padding, precision, preferred_element_type)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, batch_group_count, precision,
                                    preferred_element_type, **kwargs)
