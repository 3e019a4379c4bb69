"""Hard parameter sharing at a chosen depth (Caruana 1997; Ruder 2017 overview).

An MLP of L hidden layers per task; the first `shared_depth` layers are one trunk used by every
task, the remaining layers and the head belong to each task. Every task sees the same
architecture at every depth, so a sweep over `shared_depth` changes sharing and nothing else;
`shared_depth = 0` gives separate towers.

Initialisation keys are tied to the layer, not to the depth split: hidden layer i of task t is
initialised from fold_in(task_key(t), i) and shared layer i from fold_in(shared_key, i). A task's
tower is therefore bit-identical whether the task is trained alone or beside others.
"""
from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.models.base import MODELS, Model
from harness.schema import Entry

ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh}
SHARED_TAG = 0x5EED


def task_tag(name: str) -> int:
    """A stable integer per task name, for fold_in (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@dataclass
class HardConfig:
    name: str = "hard"
    depth: int = 3  # L hidden layers per task
    width: int = 64
    shared_depth: int = 1  # k in 0..L: the first k hidden layers are shared
    activation: str = "relu"

    def single_task(self) -> "HardConfig":
        """A task's own tower: the same MLP with nothing shared."""
        return dataclasses.replace(self, shared_depth=0)


class Stack(nnx.Module):
    """Dense layers with one key each, so a layer's init does not depend on its neighbours."""

    def __init__(self, dims: list[tuple[int, int]], keys: list[jax.Array], act, last_linear: bool):
        self.layers = nnx.List([nnx.Linear(i, o, rngs=nnx.Rngs(params=k)) for (i, o), k in zip(dims, keys)])
        self.act = act
        self.last_linear = last_linear

    def __call__(self, x: jax.Array) -> jax.Array:
        for n, layer in enumerate(self.layers):
            x = layer(x)
            if not (self.last_linear and n == len(self.layers) - 1):
                x = self.act(x)
        return x


def check(cfg: HardConfig) -> None:
    if cfg.depth < 1:
        raise bad("model.depth", cfg.depth, "an integer >= 1")
    if cfg.width < 1:
        raise bad("model.width", cfg.width, "an integer >= 1")
    if not 0 <= cfg.shared_depth <= cfg.depth:
        raise bad("model.shared_depth", cfg.shared_depth, f"an integer in 0..{cfg.depth} (model.depth)")
    if cfg.activation not in ACTIVATIONS:
        raise bad("model.activation", cfg.activation, f"one of {', '.join(ACTIVATIONS)}")


def build(cfg: HardConfig, tasks: tuple[TaskSpec, ...], input_dim: int) -> Model:
    check(cfg)
    act, k, L, H = ACTIVATIONS[cfg.activation], cfg.shared_depth, cfg.depth, cfg.width
    dims = [(input_dim if i == 0 else H, H) for i in range(L)]

    def make_trunk(key):
        return Stack(dims[:k], [jax.random.fold_in(key, i) for i in range(k)], act, last_linear=False)

    def make_tower(key, spec):
        tower_dims = dims[k:] + [(H if L > 0 else input_dim, spec.output_size)]
        keys = [jax.random.fold_in(key, i) for i in range(k, L + 1)]
        return Stack(tower_dims, keys, act, last_linear=True)

    # Graph definitions are static; only the states (arrays) travel through jit/vmap/scan.
    abstract = jax.random.key(0)
    trunk_def, trunk_state = nnx.split(make_trunk(abstract))
    tower_defs = {t.name: nnx.split(make_tower(abstract, t)) for t in tasks}

    def init(key):
        shared_key = jax.random.fold_in(key, SHARED_TAG)
        shared = nnx.to_pure_dict(nnx.split(make_trunk(shared_key))[1])
        towers = {
            t.name: nnx.to_pure_dict(nnx.split(make_tower(jax.random.fold_in(key, task_tag(t.name)), t))[1])
            for t in tasks
        }
        return {"shared": shared, "tasks": towers}

    def merge(graphdef, abstract_state, pure):
        state = jax.tree.map(lambda a: a, abstract_state)
        nnx.replace_by_pure_dict(state, pure)
        return nnx.merge(graphdef, state)

    def trunk(params, x):
        return merge(trunk_def, trunk_state, params["shared"])(x) if k > 0 else x

    def heads(towers, z):
        return {name: merge(gd, st, towers[name])(z) for name, (gd, st) in tower_defs.items()}

    def last_shared(shared):
        return shared["layers"][k - 1] if k > 0 else shared

    return Model(init, trunk, heads, last_shared)


MODELS.register("hard", Entry(HardConfig, build))
