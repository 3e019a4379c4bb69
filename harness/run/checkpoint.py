"""Long runs in segments with orbax checkpoints: an interrupted run resumes where it stopped.

The compiled program is cut into segments of `train.checkpoint_every` steps (whole evaluation
windows). After each segment the batched training state and the learning curves so far are
saved with orbax; a restart restores the latest segment and continues. Batches and keys depend
on the absolute step, so the resumed run ends with the same metrics as an uninterrupted one.
Progress ("step s/S") is reported between segments, never from inside the compiled run.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import numpy as np

from harness.train import Trainer


@contextlib.contextmanager
def claimed(directory: Path) -> Iterator[Path]:
    """The checkpoint directory this process may use for `directory`'s runs, while inside.

    Two processes training the same runs into one output directory (the same command started
    twice) would otherwise save into, restore from and delete one orbax directory at once. The
    first holds a lock on `<directory>.lock` and uses `directory` (so a re-run after a kill
    resumes from it); another gets a private `<directory>-<pid>`, removed on the way out.
    The caller removes the directory it got once the runs' records are on disk.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock_path = directory.with_name(directory.name + ".lock")
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process trains these runs now
            private = directory.with_name(f"{directory.name}-{os.getpid()}")
            try:
                yield private
            finally:
                shutil.rmtree(private, ignore_errors=True)
            return
        try:
            yield directory
        finally:
            if not directory.exists():  # done: nothing left to resume, so the lock goes too
                lock_path.unlink(missing_ok=True)


def run_in_segments(train: Trainer, keys, hp, data, data_axis, every_chunks: int, steps: int,
                    directory: Path, progress: Callable[[str], None] | None = None
                    ) -> tuple[dict, float, float]:
    """Like jit(vmap(train))(keys, hp, data), checkpointed every `every_chunks` evaluation windows.

    `train` is the Trainer of the runs. Returns (outputs, compile seconds, run seconds), "final"
    among the outputs being the last training state. The caller removes the checkpoint directory once the run's records are on
    disk (a kill before that resumes from the last segment instead of training again).
    """
    # Imported here, not with the module: orbax logs through absl at import, and absl then gives
    # the root logger a handler of its own, so Hydra's --info printed every line twice.
    import orbax.checkpoint as ocp

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
