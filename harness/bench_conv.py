"""Section `conv` of `python -m harness.bench`: the two routes of harness.models.patches, side by side.

The network is the trunk of Sener & Koltun's MultiMNIST LeNet on the 36 x 36 canvas (5 x 5 'valid'
convolutions of 10 and 20 channels, 2 x 2 max pooling, ReLU) and one 10-way linear head; one
step is the gradient of its cross-entropy and an SGD update. Each route (XLA's convolution,
`lax.conv_general_dilated`, and the patch product, `patches.conv_by_patches`) is timed as one
step called from Python and as `steps` steps inside one compiled `lax.scan`, the form every
training run here takes. The ratios say what the loop costs each route and what the patch route
saves inside it.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from harness.models.patches import conv_by_patches

DIMS = ("NHWC", "HWIO", "NHWC")
ROUTES = {"xla": lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=DIMS),
          "patches": lambda x, w: conv_by_patches(x, w, (1, 1), "VALID")}


class ConvSizes(NamedTuple):
    batch: int = 32
    steps: int = 50
    repeats: int = 5


def pool(h: jax.Array) -> jax.Array:
    n, hh, ww, c = h.shape
    h = h[:, :hh // 2 * 2, :ww // 2 * 2]
    return jax.nn.relu(h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4)))


def init(key: jax.Array) -> dict:
    k = jax.random.split(key, 3)
    return {"c1": jax.random.normal(k[0], (5, 5, 1, 10)) * 0.2, "c2": jax.random.normal(k[1], (5, 5, 10, 20)) * 0.06,
            "out": jax.random.normal(k[2], (20 * 6 * 6, 10)) * 0.02}


def make_step(conv: Callable, x: jax.Array, y: jax.Array) -> Callable:
    def loss(p, x):
        h = pool(conv(pool(conv(x, p["c1"])), p["c2"]))
        logits = h.reshape(h.shape[0], -1) @ p["out"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    def step(p, i):
        g = jax.grad(loss)(p, x + 1e-3 * i)  # a different input each step, so nothing is hoisted out of the loop
        return jax.tree.map(lambda a, b: a - 1e-2 * b, p, g), None

    return step


def bench_conv(sizes: ConvSizes) -> list[dict]:
    from harness.bench import interleaved  # here, not at the top: harness.bench imports this module

    x = jax.random.uniform(jax.random.key(0), (sizes.batch, 36, 36, 1))
    y = jax.random.randint(jax.random.key(1), (sizes.batch,), 0, 10)
    p = init(jax.random.key(2))
    fns, n = {}, sizes.steps
    for route, conv in ROUTES.items():
        step = make_step(conv, x, y)
        # step bound as a default: a closure would see only the last route's
        one = jax.jit(lambda p, step=step: step(p, 0.0)[0])
        scanned = jax.jit(lambda p, step=step: lax.scan(step, p, jnp.arange(n, dtype=jnp.float32))[0])
        fns[f"{route}_alone"] = lambda one=one: [one(p) for _ in range(n)][-1]
        fns[f"{route}_scan"] = lambda scanned=scanned: scanned(p)
    t = {k: v / n for k, v in interleaved(fns, sizes.repeats).items()}
    return [{"route": route, "batch": sizes.batch, "step_ms_alone": 1e3 * t[f"{route}_alone"],
             "step_ms_in_scan": 1e3 * t[f"{route}_scan"],
             "scan_over_alone": t[f"{route}_scan"] / t[f"{route}_alone"],
             "xla_scan_over_this_scan": t["xla_scan"] / t[f"{route}_scan"]} for route in ROUTES]
