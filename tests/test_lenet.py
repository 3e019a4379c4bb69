"""model=lenet: the paper's network, its pooled conv blocks, sharing depth, and a real MultiMNIST run."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.data.base import classification
from harness.errors import ConfigError
from harness.models.base import MODELS
from harness.models.lenet import LeNetConfig, PooledConv
from harness.models.sizing import count_params

TASKS = (classification("left", 10), classification("right", 10))


def shapes(cfg: LeNetConfig, input_dim: int = 36 * 36):
    model = MODELS.get("lenet").build(cfg, TASKS, input_dim)
    return jax.tree.map(lambda a: a.shape, jax.eval_shape(model.init, jax.random.key(0))), model


def test_defaults_are_the_papers_network():
    """Shared: conv 10 (5 x 5), pool, conv 20 (5 x 5), pool, dense 50; per task: dense 50, head 10.
    On the 36 x 36 canvas the dense layer reads 20 x 6 x 6 features."""
    params, model = shapes(LeNetConfig())
    shared = params["shared"]["layers"]
    assert shared[0]["conv"]["kernel"] == (5, 5, 1, 10) and shared[1]["conv"]["kernel"] == (5, 5, 10, 20)
    assert shared[2]["kernel"] == (720, 50)
    for task in ("left", "right"):
        tower = params["tasks"][task]["layers"]
        assert tower[0]["kernel"] == (50, 50) and tower[1]["kernel"] == (50, 10)
    convs = 5 * 5 * 10 + 10 + 5 * 5 * 10 * 20 + 20
    assert count_params(model) == convs + 720 * 50 + 50 + 2 * (50 * 50 + 50 + 50 * 10 + 10)


def test_pooled_conv_is_a_valid_convolution_then_2x2_max_pooling():
    block = PooledConv((7, 9, 2), 3, 3, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 7 * 9 * 2))
    images = x.reshape(4, 7, 9, 2)
    conv = jax.lax.conv_general_dilated(images, block.conv.kernel[...], (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + block.conv.bias[...]
    assert conv.shape == (4, 5, 7, 3)
    # PyTorch's max_pool2d drops the odd last row and column: 5 x 7 -> 2 x 3.
    pooled = jax.lax.reduce_window(conv[:, :4, :6], -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    np.testing.assert_allclose(block(x), pooled.reshape(4, -1), rtol=1e-5, atol=1e-5)


def test_sharing_depth_moves_one_layer_at_a_time_and_zero_is_the_baseline():
    counts = []
    for k in range(5):
        params, _ = shapes(LeNetConfig(shared_depth=k))
        leaves = jax.tree.leaves(params["shared"], is_leaf=lambda s: isinstance(s, tuple))
        counts.append(sum(np.prod(s) for s in leaves))
    assert counts[0] == 0 and counts == sorted(set(counts))
    baseline = LeNetConfig().single_task()
    assert (baseline.name, baseline.shared_depth, baseline.channels, baseline.kernel) == ("lenet", 0, [10, 20], 5)


@pytest.mark.parametrize("change, key", [
    (dict(image_shape=[28, 28]), "model.image_shape"),  # not the data's 36 x 36
    (dict(channels=[10, 20, 40, 80]), "model.image_shape"),  # 36 -> 16 -> 6 -> 1: nothing left for a 4th
    (dict(channels=[]), "model.channels"),
    (dict(kernel=0), "model.kernel"),
    (dict(shared_depth=5), "model.shared_depth"),
    (dict(depth=0), "model.depth"),
])
def test_bad_configs_fail_with_one_line_naming_the_key(change, key):
    with pytest.raises(ConfigError) as err:
        MODELS.get("lenet").build(dataclasses.replace(LeNetConfig(), **change), TASKS, 36 * 36)
    message = str(err.value)
    assert message.startswith(f"{key}=") and "\n" not in message


# The short run below, as a script for a fresh interpreter: the session's cheap-compile XLA flag
# (conftest.py) makes these convolutions run about 10x slower (about 45 s instead of 5 s here).
SHORT_RUN = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from harness.config import OptimConfig, TrainConfig
from harness.data.multimnist import MultiMNISTConfig
from harness.models.lenet import LeNetConfig
from helpers import execute, small_data, small_run
run = small_run(data=MultiMNISTConfig(n_train=500, n_val=50, n_test=200), model=LeNetConfig(),
                optim=OptimConfig(lr=3e-3), train=TrainConfig(steps=60, batch_size=32, eval_every=60))
source, data = small_data(run)
print(json.dumps(np.asarray(execute(run, source.tasks, data, [0])[0]["test"]).tolist()))
"""


def test_a_short_multimnist_run_learns_both_digits():
    """Real digits, the paper's network, 60 steps of 32 pairs: the test accuracy of each task is
    well above chance (0.1)."""
    env = {**os.environ, "XLA_FLAGS": ""}
    done = subprocess.run([sys.executable, "-c", SHORT_RUN, str(Path(__file__).parent)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    test = np.asarray(json.loads(done.stdout.strip().splitlines()[-1]))
    assert test.shape == (1, 1, 2)  # seeds, evaluations, tasks (left, right)
    assert np.all(test > 0.25), test
