"""Static vs dynamic config fields.

A field marked `dynamic` is a number that enters the compiled run as an array (seed-like:
learning rate, loss weights, method coefficients, data correlation). Every other field is
static: changing it changes the compiled program. Batching decisions read these marks; they are
never guessed from values.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, Callable, NamedTuple

import numpy as np


def dynamic(default: float):
    """A numeric field that may differ between runs of one compiled program."""
    return field(default=default, metadata={"dynamic": True})


def added(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
          metadata: dict | None = None):
    """A field added after records were written with its schema: left out of a configuration's
    identity (`harness.config.identity`) while it holds its default, so existing records keep
    their config hash and a re-run sweep does not retrain them."""
    return field(default=default, default_factory=default_factory, metadata={**(metadata or {}), "added": True})


def unset_additions(cfg: Any) -> tuple[str, ...]:
    """Names of a config object's `added` fields that hold their default."""
    if not dataclasses.is_dataclass(cfg):
        return ()
    names = []
    for f in dataclasses.fields(cfg):
        if not f.metadata.get("added"):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if getattr(cfg, f.name) == default:
            names.append(f.name)
    return tuple(names)


def dynamic_names(schema: type) -> tuple[str, ...]:
    """Names of the dynamic fields of a config dataclass."""
    return tuple(f.name for f in dataclasses.fields(schema) if f.metadata.get("dynamic"))


def dynamic_values(cfg: Any) -> dict[str, np.ndarray]:
    """The dynamic fields of a config object as float32 arrays (scalars or 1-D)."""
    return {
        name: np.asarray(getattr(cfg, name), dtype=np.float32)
        for name in dynamic_names(type(cfg))
        if getattr(cfg, name) is not None
    }


class Entry(NamedTuple):
    """A registry entry: the config dataclass of an option and the function that builds it."""

    schema: type
    build: Callable[..., Any]
