"""Long runs in segments with orbax checkpoints: an interrupted run resumes where it stopped.

The compiled program is cut into segments of `train.checkpoint_every` steps (whole evaluation
windows). After each segment the batched training state and the learning curves so far are
saved with orbax; a restart restores the latest segment and continues. Batches and keys depend
on the absolute step, so the resumed run ends with the same metrics as an uninterrupted one.
Progress ("step s/S") is reported between segments, never from inside the compiled run.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from harness.train import Trainer


def run_in_segments(train: Trainer, keys, hp, data, data_axis, every_chunks: int, steps: int,
                    directory: Path, progress: Callable[[str], None] | None = None
                    ) -> tuple[dict, float, float]:
    """Like jit(vmap(train))(keys, hp, data), checkpointed every `every_chunks` evaluation windows.

    `train` is the Trainer of the runs. Returns (outputs, compile seconds, run seconds), "final"
    among the outputs being the last training state. The caller removes the checkpoint directory once the run's records are on
    disk (a kill before that resumes from the last segment instead of training again).
    """
    total = train.num_chunks
    vinit = jax.jit(jax.vmap(lambda k, h: train.init(jax.random.key(k), h)))
    vrun = jax.jit(jax.vmap(
        lambda c, k, h, d, first: train.run_chunks(c, jax.random.key(k), h, d, first, every_chunks),
        in_axes=(0, 0, 0, data_axis, None)))
    t0 = time.perf_counter()
    carry = vinit(keys, hp)
    step_fn = vrun.lower(carry, keys, hp, data, 0).compile()
    compile_s = time.perf_counter() - t0
    _, shapes = jax.eval_shape(vrun, carry, keys, hp, data, 0)
    state = {"carry": carry,
             "curves": jax.tree.map(lambda s: np.zeros((s.shape[0], total) + s.shape[2:], s.dtype), shapes)}
    manager = ocp.CheckpointManager(Path(directory).resolve(), options=ocp.CheckpointManagerOptions(max_to_keep=1))
    done = manager.latest_step() or 0
    if done:
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
        state = manager.restore(done, args=ocp.args.StandardRestore(abstract))
    t1 = time.perf_counter()
    for first in range(done, total, every_chunks):
        carry, curves = step_fn(state["carry"], keys, hp, data, first)
        full = jax.tree.map(np.array, state["curves"])
        jax.tree.map(lambda f, c: f.__setitem__((slice(None), slice(first, first + every_chunks)), c),
                     full, jax.device_get(curves))
        state = {"carry": carry, "curves": full}
        manager.save(first + every_chunks, args=ocp.args.StandardSave(state))
        manager.wait_until_finished()
        if progress:
            progress(f"step {(first + every_chunks) * steps // total}/{steps}")
    run_s = time.perf_counter() - t1
    out: dict[str, Any] = {**jax.device_get(state["curves"]),
                           "diverged_at": np.asarray(jax.device_get(state["carry"].diverged_at)),
                           "final": jax.device_get(state["carry"])}
    manager.close()
    return out, compile_s, run_s
