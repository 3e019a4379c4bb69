"""Batched sweeps: plan every job of a sweep, group the work by compiled program, run each
group as one vmap-ed (and device-sharded) program, then hand each job its results.

Used by the `batched` Hydra launcher (hydra_plugins/harness_launcher): Hydra still sees one job
per configuration, with its own directory, `.hydra/` files, callbacks and records.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf, open_dict

from harness.batching import execute_units, static_key
from harness.config import resolve
from harness.driver import Unit, plan_job, write_unit
from harness.results import config_hash

log = logging.getLogger(__name__)


@dataclass
class Planned:
    """A sweep job with its units and, once executed, their outputs or errors."""

    config: DictConfig
    units: list[Unit]
    results: dict[int, tuple] = field(default_factory=dict)  # id(unit) -> (out, timing, error)

    def write(self, _cfg: DictConfig) -> None:
        """Hydra's task function for this job: write the job's own records."""
        for unit in self.units:
            if unit.kind == "mtl" and id(unit) in self.results:
                out, timing, error = self.results[id(unit)]
                write_unit(unit, out, timing, error)
                if error:
                    log.error(f"{unit.common['label']}: group failed: {error}")


def task_config(cfg: DictConfig) -> DictConfig:
    """The job's config without Hydra's node (what a task function receives)."""
    task = copy.deepcopy(cfg)
    with open_dict(task):
        del task["hydra"]
    return task


def prepare(configs: list[DictConfig]) -> list[Planned]:
    """Validate every job before anything runs (bad input fails the sweep with no results)."""
    jobs = []
    for cfg in configs:
        run = resolve(task_config(cfg))
        sweep_dir = Path(str(OmegaConf.select(cfg, "hydra.sweep.dir")))
        job_dir = sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        baseline_dir = Path(run.baseline_dir) if run.baseline_dir else sweep_dir / "baselines"
        label = cfg.hydra.job.override_dirname or run.study
        jobs.append(Planned(cfg, plan_job(run, job_dir, baseline_dir, label)))
    return jobs


def groups(jobs: list[Planned], max_batch: int) -> list[list[Unit]]:
    """Units to train, one list per compiled program, at most `max_batch` runs each.
    A baseline shared by several jobs is trained once."""
    seen, by_program = set(), {}
    for job in jobs:
        for unit in job.units:
            if not unit.seeds or (unit.kind == "stl" and unit.out_dir in seen):
                continue
            seen.add(unit.out_dir)
            key = (unit.kind, static_key(unit.run, [t.name for t in unit.tasks]))
            by_program.setdefault(key, []).append(unit)
    chunks = []
    for units in by_program.values():
        chunk, size = [], 0
        for unit in units:
            if chunk and size + len(unit.seeds) > max_batch:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(unit)
            size += len(unit.seeds)
        chunks.append(chunk)
    # Baselines first: their records must exist before a job's table refers to them.
    return sorted(chunks, key=lambda c: c[0].kind != "stl")


def run_group(group: list[Unit], progress: Callable[[str], None] | None = None):
    """One group as one program (in this process, or in a submitit job)."""
    token = config_hash([[u.common["config_hash"], u.seeds] for u in group])
    return execute_units(group, group[0].out_dir / f".checkpoint-{token}", progress)


def execute(jobs: list[Planned], max_batch: int, progress: Callable[[str], None] | None = None,
            executor=None) -> None:
    """Run every group; a group's failure is recorded for its units and the others go on.

    executor: None runs the groups here, one after the other; a submitit executor receives each
    group as one job (submitted at once, so a cluster runs them side by side; distilled groups
    after the baselines).
    """
    owner = {id(u): job for job in jobs for u in job.units}
    todo = groups(jobs, max_batch)
    # Distilled groups read their teachers' parameters, so on a cluster they are submitted only
    # once every baseline group has finished; everything else is submitted at once.
    pending, later = {}, []
    if executor is not None:
        later = [i for i, g in enumerate(todo) if any(u.teachers for u in g)]
        pending = {i: executor.submit(run_group, g) for i, g in enumerate(todo) if i not in later}
    start = time.perf_counter()
    for n, group in enumerate(todo, 1):
        runs = sum(len(u.seeds) for u in group)
        if later and n - 1 == min(later):  # baselines come first (groups()), so they are all done
            pending.update({i: executor.submit(run_group, todo[i]) for i in later})
        try:
            outs, compile_s, run_s = (pending[n - 1].result() if executor is not None
                                      else run_group(group, progress))
            timing = {"compile_s": compile_s, "run_s": run_s, "batch": runs, "group_units": len(group)}
            results = [(out, timing, None) for out in outs]
        except Exception as err:  # a broken group must not take the sweep down
            timing = {"compile_s": None, "run_s": None, "batch": runs, "group_units": len(group)}
            results = [(None, timing, f"{type(err).__name__}: {err}")] * len(group)
        for unit, result in zip(group, results):
            if unit.kind == "stl":
                write_unit(unit, *result)
            owner[id(unit)].results[id(unit)] = result
        if progress:
            elapsed = time.perf_counter() - start
            progress(f"group {n}/{len(todo)} ({runs} runs) done; elapsed {elapsed:.0f} s, "
                     f"ETA {elapsed / n * (len(todo) - n):.0f} s")
