"""Building blocks of every model: stacks of layers cut from a plan, and templates that turn plain
params dicts back into NNX modules.

A *plan* (harness.models.plans: an MLP or a conv trunk) says what hidden layer i of a network is
(`layer(i, key)`), how many features enter it (`features(i)`), and how many hidden layers there
are (`depth`). Models cut a plan into stacks (a shared trunk, experts, task columns, tower
tails); hidden layer i of a stack owned by key K is always initialised from fold_in(K, i), and the
head of a tower from fold_in(K, depth). A layer's initial value therefore depends on its owner and
its index only, never on where a model cuts the network, which is what makes one model's
degenerate case equal another model exactly.
"""
from __future__ import annotations

import functools
import zlib
from typing import Any, Callable

import jax
from flax import nnx

from harness.models.plans import Plan

SHARED_TAG = 0x5EED


def task_tag(name: str) -> int:
    """A stable integer per task name, for fold_in (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def task_key(key: jax.Array, name: str) -> jax.Array:
    """The key of everything task `name` owns."""
    return jax.random.fold_in(key, task_tag(name))


def shared_key(key: jax.Array) -> jax.Array:
    """The key of the layers every task shares."""
    return jax.random.fold_in(key, SHARED_TAG)


class Stack(nnx.Module):
    """Layers applied in order, each followed by the activation (the last one not, for a head)."""

    def __init__(self, layers: list[nnx.Module], act, last_linear: bool):
        self.layers = nnx.List(layers)
        self.act = act
        self.last_linear = last_linear

    def __call__(self, x: jax.Array) -> jax.Array:
        for n, layer in enumerate(self.layers):
            x = layer(x)
            if not (self.last_linear and n == len(self.layers) - 1):
                x = self.act(x)
        return x


def hidden(plan: Plan, key: jax.Array, start: int, stop: int) -> Stack:
    """Hidden layers start..stop-1 of the plan, layer i from fold_in(key, i)."""
    return Stack([plan.layer(i, jax.random.fold_in(key, i)) for i in range(start, stop)], plan.act,
                 last_linear=False)


def tower(plan: Plan, key: jax.Array, start: int, output_size: int) -> Stack:
    """Hidden layers start..depth-1 and a linear head (from fold_in(key, depth))."""
    layers = [plan.layer(i, jax.random.fold_in(key, i)) for i in range(start, plan.depth)]
    head_key = jax.random.fold_in(key, plan.depth)
    head = nnx.Linear(plan.features(plan.depth), output_size, rngs=nnx.Rngs(params=head_key))
    return Stack(layers + [head], plan.act, last_linear=True)


def pure(module: nnx.Module) -> dict[str, Any]:
    """A module's parameters as a plain nested dict of arrays."""
    return nnx.to_pure_dict(nnx.split(module)[1])


class Template:
    """The graph of a module, built with abstract arrays on first use; calling it with a plain
    params dict gives the module holding those arrays. Graph definitions stay static, so only
    arrays travel through jit, vmap and scan."""

    def __init__(self, make: Callable[[jax.Array], nnx.Module]):
        self.make = make

    @functools.cached_property
    def graph(self) -> tuple[nnx.GraphDef, nnx.State]:
        return nnx.split(nnx.eval_shape(lambda: self.make(jax.random.key(0))))

    def __call__(self, params: dict[str, Any]) -> nnx.Module:
        graphdef, abstract = self.graph
        state = jax.tree.map(lambda a: a, abstract)  # a fresh copy: the template is reused
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)
