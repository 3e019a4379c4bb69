"""Parameter counts, and models matched to a parameter budget.

Architectures are compared at equal size in Ma et al. 2018 (MMoE, KDD), section 4: every model's
hidden sizes are set so that its total parameter count is the same. Here a model config with
`target_params` set gets the `width` (integer search) whose total parameter count is closest to
the target; its single-task baseline keeps the config's own `width`, so every matched model is
compared with the same baselines.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.models.base import Model

MAX_WIDTH = 1 << 20


def count_params(model: Model) -> int:
    """Total number of parameters of a model (shapes only; nothing is initialised)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return int(sum(leaf.size for leaf in jax.tree.leaves(shapes)))


def match_width(cfg: Any, build: Callable[[Any, tuple[TaskSpec, ...], int], Model],
                tasks: tuple[TaskSpec, ...], input_dim: int) -> Any:
    """`cfg` with `width` set so the built model's parameter count is closest to
    `cfg.target_params` (ties go to the smaller width), and `target_params` cleared; `cfg`
    itself when no target is set. Counts grow with the width: the search brackets the target
    by doubling or halving from the config's own width, then bisects."""
    target = cfg.target_params
    if target is None:
        return cfg
    if target < 1:
        raise bad("model.target_params", target, "a positive integer, or null for no matching")
    key = (repr(cfg), tasks, input_dim)  # a job builds its model several times: search once
    if key not in _matched:
        width = _search(cfg, build, tasks, input_dim)
        _matched[key] = dataclasses.replace(cfg, width=width, target_params=None)
    return _matched[key]


_matched: dict[tuple, Any] = {}


def _search(cfg, build, tasks, input_dim) -> int:
    target = cfg.target_params

    @functools.cache
    def count(width: int) -> int:
        unmatched = dataclasses.replace(cfg, width=width, target_params=None)
        return count_params(build(unmatched, tasks, input_dim))

    lo = hi = max(1, cfg.width)
    while count(hi) < target:
        if hi >= MAX_WIDTH:
            raise bad("model.target_params", target, f"a count reachable with width <= {MAX_WIDTH}")
        lo, hi = hi, hi * 2
    while lo > 1 and count(lo) >= target:
        lo, hi = lo // 2, lo
    # Now count(lo) < target <= count(hi), or lo == hi == 1, or lo == 1 already reaches it.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return min((lo, hi), key=lambda w: (abs(count(w) - target), w))
