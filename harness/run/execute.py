"""Execute: many runs of one static configuration as one compiled program.

Runs (seeds x jobs that differ only in dynamic values: learning rate, loss weights, method
coefficients, data correlation...) are flattened along one "runs" axis and trained by
`jit(vmap(train))`. With several local devices the runs axis is sharded over them (padded to a
multiple of the device count; the padding is dropped from the outputs). Which fields are dynamic
comes from the config schema (`harness.schema.dynamic`), never from the values.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from harness.config import identity, target_groups
from harness.records import config_hash, load_record, record_path
from harness.run import teachers
from harness.run.checkpoint import run_in_segments
from harness.run.plan import Job, Unit
from harness.schema import dynamic_names, dynamic_values
from harness.train import make_train

GROUPS_WITH_DYNAMIC_FIELDS = ("data", "model", "method", "optim", "distill", "schedule")


def hparams(run) -> dict:
    """The dynamic values of a run, as the `hparams` argument of `train` (without teachers, and
    without the targets its baselines give, `baseline_targets`). "schedule" only for a schedule
    that reads it (active sampling), so every other program's arguments are what they were."""
    hp = {"optim": dynamic_values(run.optim), "method": dynamic_values(run.method),
          "model": dynamic_values(run.model), "distill": dynamic_values(run.distill)}
    if run.schedule.sampling == "active" and run.schedule.name == "alternate":
        hp["schedule"] = dynamic_values(run.schedule)
    return hp


def baseline_targets(unit: Unit, seed: int) -> dict:
    """{group: {"targets": (T,)}} for the groups of harness.config.target_groups: each task's
    same-seed baseline's final validation score, in the metric's own units, from its record.
    Raises ValueError when a baseline has no ok record (the run would have no target)."""
    groups = target_groups(unit.run)
    if not groups:
        return {}
    if unit.targets is None:
        raise ValueError(f"{unit.common.get('label', unit.kind)}: targets from the baselines need their directories")
    scores = []
    for task in (t.name for t in unit.tasks):
        rec = load_record(record_path(unit.targets[task], seed))
        if rec is None or rec.status != "ok":
            raise ValueError(f"no target for {task}: its single-task baseline (seed {seed}) under "
                             f"{unit.targets[task]} has no ok record")
        scores.append(rec.curves["val"][task][-1])
    return {group: {"targets": np.asarray(scores, np.float32)} for group in groups}


def run_hparams(unit: Unit, seed: int, teacher_shapes: dict | None) -> dict:
    """Every dynamic value of one run of a unit: its config's, its teachers', its targets'."""
    hp = hparams(unit.run)
    for group, values in baseline_targets(unit, seed).items():
        hp[group] = {**hp[group], **values}
    return {**hp, **teacher_params(teacher_shapes, unit, seed)}


def static_key(run, tasks: Sequence[str]) -> str:
    """Runs with equal keys compile to the same program: everything but dynamic values."""
    d = identity(run)
    for group in (g for g in GROUPS_WITH_DYNAMIC_FIELDS if g in d):
        for name in dynamic_names(type(getattr(run, group))):
            # Only presence matters (a None weight list is a different program from a list).
            d[group][name] = None if getattr(getattr(run, group), name) is None else "dynamic"
    d["tasks"] = list(tasks)
    return config_hash(d)


def _stack(trees: list) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def execute_units(units: Sequence[Unit], checkpoint_dir: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> tuple[list[dict], float, float]:
    """Train every seed of every unit (all of one static configuration) in one program.

    The units' jobs share one program (the parts and settings of the first are used). Returns
    one host-side output dict per unit (leading axis: that unit's seeds), the compile seconds and
    the run seconds. With `train.checkpoint_every` set and a `checkpoint_dir`, the run goes in
    checkpointed segments.
    """
    run0, data0, parts = units[0].run, units[0].data, units[0].job.parts
    trainer = make_train(parts, units[0].job.settings)
    seeds = [s for u in units for s in u.seeds]
    shapes = ({n: jax.eval_shape(m.init, jax.random.key(0)) for n, m in parts.teachers.items()}
              if parts.teachers is not None else None)
    hp = _stack([run_hparams(u, s, shapes) for u in units for s in u.seeds])
    data_keys = {json.dumps(dataclasses.asdict(u.run.data), sort_keys=True) for u in units}
    shared_data = len(data_keys) == 1
    data = data0 if shared_data else _stack([u.data for u in units for _ in u.seeds])
    keys = jnp.asarray(seeds, jnp.uint32)
    keys, hp, data, size = _shard(keys, hp, data, batched_data=not shared_data)
    data_axis = None if shared_data else 0
    every = run0.train.checkpoint_every
    memory = {}
    if every and checkpoint_dir is not None:
        out, compile_s, run_s = run_in_segments(trainer, keys, hp, data, data_axis, every // run0.train.eval_every,
                                                run0.train.steps, checkpoint_dir, progress)
    else:
        fn = jax.jit(jax.vmap(lambda k, h, d: trainer.train(jax.random.key(k), h, d), in_axes=(0, 0, data_axis)))
        t0 = time.perf_counter()
        compiled = fn.lower(keys, hp, data).compile()
        memory = program_memory(compiled, size)
        t1 = time.perf_counter()
        out = jax.device_get(jax.block_until_ready(compiled(keys, hp, data)))
        compile_s, run_s = t1 - t0, time.perf_counter() - t1
    out["params"] = out.pop("final").params  # a baseline's are kept as a teacher; not in records
    outs, start = [], 0
    for u in units:
        outs.append({**jax.tree.map(lambda a: a[start:start + len(u.seeds)], out), "memory": memory})
        start += len(u.seeds)
    assert start <= size
    return outs, compile_s, run_s


def program_memory(compiled, runs: int) -> dict:
    """XLA's own figure for a compiled program's memory (arguments + outputs + temporaries, in
    bytes) and how many runs it holds; {} where the backend gives none."""
    try:
        m = compiled.memory_analysis()
        total = int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)
    except Exception:  # not every backend implements it
        return {}
    return {"program_bytes": total, "program_runs": int(runs)}


def execute(job: Job, data, seeds: list[int]) -> tuple[dict, float, float]:
    """Train every seed of one job's own runs as one jit(vmap(train)) program (no records, no
    teachers); returns host arrays (leading axis: seeds) and the compile and run seconds."""
    (out,), compile_s, run_s = execute_units([Unit("mtl", job, data, seeds, Path("."), {})])
    return out, compile_s, run_s


def teacher_params(shapes: dict | None, unit: Unit, seed: int) -> dict:
    """{"teachers": task -> parameters} of the same-seed baselines a distilled unit learns from
    (`shapes`: task -> the teacher model's parameter shapes); {} without distillation."""
    if shapes is None:
        return {}
    if unit.teachers is None:
        raise ValueError(f"{unit.common.get('label', unit.kind)}: distillation needs its baselines' directories")
    return {"teachers": {n: teachers.load(unit.teachers[n], seed, like) for n, like in shapes.items()}}


def _shard(keys, hp, data, batched_data: bool):
    """Spread the runs axis over the local devices (padding with copies of the last run)."""
    devices = jax.local_devices()
    size = keys.shape[0]
    if len(devices) == 1:
        return keys, hp, data, size
    pad = (-size) % len(devices)

    def padded(a):
        return jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a

    mesh = Mesh(np.array(devices), ("runs",))
    runs, replicated = NamedSharding(mesh, PartitionSpec("runs")), NamedSharding(mesh, PartitionSpec())
    keys, hp = jax.device_put((padded(keys), jax.tree.map(padded, hp)), runs)
    data = jax.device_put(jax.tree.map(padded, data), runs) if batched_data else jax.device_put(data, replicated)
    return keys, hp, data, size + pad
