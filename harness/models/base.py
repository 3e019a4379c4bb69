"""The model interface: pure functions over a params pytree.

`params = {"shared": {...}, "tasks": {task_name: {...}}}`. The top-level split is what update
masks are built from: a task step may move `params["shared"]` and `params["tasks"][task]` only.
Flax NNX lives inside the model modules; what leaves them is plain dicts of arrays.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from harness.registry import Registry

Params = dict[str, Any]


class Model(NamedTuple):
    """init(key) -> params.
    trunk(shared_params, x) -> z, the shared representation ((B, Z); x itself when nothing is shared).
    heads(task_params, z) -> {task: output (B, output_size)}.
    The full forward pass is heads(params["tasks"], trunk(params["shared"], x)).
    last_shared(shared_tree) -> the subtree of the last shared layer (GradNorm's W); it must
    accept the tree with a leading task axis on every leaf.
    """

    init: Callable[[jax.Array], Params]
    trunk: Callable[[Any, jax.Array], jax.Array]
    heads: Callable[[dict[str, Any], jax.Array], dict[str, jax.Array]]
    last_shared: Callable[[Any], Any] = lambda shared: shared

    def apply(self, params: Params, x: jax.Array) -> dict[str, jax.Array]:
        return self.heads(params["tasks"], self.trunk(params["shared"], x))


# name -> Entry(config dataclass, build(cfg, tasks, input_dim) -> Model)
MODELS = Registry("model")
