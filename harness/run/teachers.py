"""Single-task baselines as distillation teachers: their final parameters, kept beside their
records (`<baseline dir>/<config hash>/params_seed_<s>.msgpack`, written atomically), and
loaded for the multi-task runs of the same seed.

Parameters are plain nested dicts of arrays (harness.models), stored with flax's msgpack
serialisation; loading checks them against the shapes of the teacher model it is meant for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from harness.records import atomic_write_bytes


def params_path(run_dir: Path, seed: int) -> Path:
    return Path(run_dir) / f"params_seed_{seed}.msgpack"


def save(run_dir: Path, seed: int, params: Any) -> Path:
    path = params_path(run_dir, seed)
    atomic_write_bytes(path, serialization.msgpack_serialize(jax.tree.map(np.asarray, params)))
    return path


def load(run_dir: Path, seed: int, like: Any) -> Any:
    """The saved parameters of `seed`, which must have the structure and shapes of `like`
    (a pytree of arrays or ShapeDtypeStructs); raises FileNotFoundError or ValueError."""
    path = params_path(run_dir, seed)
    if not path.exists():
        raise FileNotFoundError(f"no teacher parameters at {path}: its single-task baseline did not finish")
    params = serialization.msgpack_restore(path.read_bytes())
    want = jax.tree.map(lambda a: (tuple(a.shape), np.dtype(a.dtype).name), like)
    have = jax.tree.map(lambda a: (tuple(np.shape(a)), np.asarray(a).dtype.name), params)
    if jax.tree.structure(want) != jax.tree.structure(have) or jax.tree.leaves(want) != jax.tree.leaves(have):
        raise ValueError(f"teacher parameters at {path} do not fit the teacher model "
                         "(written by a different model configuration)")
    return params
