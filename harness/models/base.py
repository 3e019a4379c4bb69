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
    trunk(params, x) -> z, the representation the task heads read (any pytree of arrays; x
        itself when nothing is shared). It receives all parameters, since some models (e.g.
        cross-stitch) mix task-owned layers inside the trunk.
    heads(task_params, z) -> {task: output (B, output_size)}.
    The full forward pass is heads(params["tasks"], trunk(params, x)).
    last_shared(shared_tree) -> the subtree of the last shared layer (GradNorm's W); it must
        accept the tree with a leading task axis on every leaf.
    penalty(params, hparams) -> scalar added to the training loss (e.g. soft sharing's coupling
        of towers), or None. `hparams` holds the model config's dynamic fields.
    shared_groups: None when every shared parameter serves every task; otherwise
        params["shared"] is a dict {group: subtree} and shared_groups maps each group to the
        names of the tasks that use it (task trees). Under the alternate schedule a group moves
        only on steps of one of its tasks, like a task's own parameters.
    width: the units of each dense hidden layer as built, i.e. after harness.models.sizing
        matched it to `target_params` (the config's `width` when nothing was matched), so run
        records can say what a parameter budget bought; None when a builder does not say.

    Every model config dataclass has a `single_task()` method returning the config of one
    task's own model (its matched single-task baseline), which the planner turns into its baseline.
    """

    init: Callable[[jax.Array], Params]
    trunk: Callable[[Params, jax.Array], Any]
    heads: Callable[[dict[str, Any], Any], dict[str, jax.Array]]
    last_shared: Callable[[Any], Any] = lambda shared: shared
    penalty: Callable[[Params, dict[str, jax.Array]], jax.Array] | None = None
    shared_groups: dict[str, tuple[str, ...]] | None = None
    width: int | None = None

    def apply(self, params: Params, x: jax.Array) -> dict[str, jax.Array]:
        return self.heads(params["tasks"], self.trunk(params, x))


# name -> Entry(config dataclass, build(cfg, tasks, input_dim) -> Model)
MODELS = Registry("model")
