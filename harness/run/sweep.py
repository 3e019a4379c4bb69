"""Sweeps: one job at a time (Hydra's basic and cluster launchers call `run_job` per job), or
batched: plan every job of a sweep, group the work by compiled program, run each group as one
vmap-ed (and device-sharded) program, then hand each job its results.

The batched path is used by the `batched` Hydra launcher (hydra_plugins/harness_launcher):
Hydra still sees one job per configuration, with its own directory, `.hydra/` files, callbacks
and records.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
from omegaconf import DictConfig, OmegaConf, open_dict

from harness.config import RunConfig, resolve
from harness.errors import Incompatible
from harness.records import config_hash
from harness.run import memory
from harness.run.checkpoint import claimed
from harness.run.execute import execute_units, static_key
from harness.run.objective import objective
from harness.run.plan import PLANNED, Job, Unit, plan, planned, units
from harness.run.write import write_unit

log = logging.getLogger(__name__)

# Runs of the last batched sweep whose group failed, one line each (their records say "failed";
# a re-run retries them): `python -m harness` lists them at the end and exits 1.
FAILED: list[str] = []


@dataclass
class Planned:
    """A sweep job with its units and, once executed, their outputs or errors."""

    config: DictConfig
    units: list[Unit]
    run: RunConfig | None = None
    job_dir: Path | None = None
    results: dict[int, tuple] = field(default_factory=dict)  # id(unit) -> (out, timing, error)
    # protocol=tuned: (baseline_dir, label); the job tunes and confirms in its task function.
    tuned: tuple[Path, str] | None = None

    def write(self, _cfg: DictConfig) -> float:
        """Hydra's task function for this job (its directory, `.hydra/` and log); its records
        were written as its group finished (under protocol=tuned: are written now). Returns the
        job's objective (harness.run.objective)."""
        if self.tuned is not None:
            from harness.run.tuned import run_tuned

            if self.run.compile_cache:
                enable_compile_cache(self.run.compile_cache)
            run_tuned(self.run, self.job_dir, *self.tuned, progress=step_progress())
            return objective(self.run, self.job_dir)
        for unit in self.units:
            if unit.kind == "mtl" and id(unit) in self.results:
                _, _, error = self.results[id(unit)]
                if error:
                    log.error(f"{unit.common['label']}: group failed: {error}")
        return objective(self.run, self.job_dir) if self.units else math.nan


def task_config(cfg: DictConfig) -> DictConfig:
    """The job's config without Hydra's node (what a task function receives)."""
    task = copy.deepcopy(cfg)
    with open_dict(task):
        del task["hydra"]
    return task


def prepare(configs: list[DictConfig]) -> list[Planned]:
    """Plan and check every job before any data is generated or anything runs (bad input fails
    the sweep with no results), then list each job's units."""
    runs = [resolve(task_config(cfg)) for cfg in configs]
    sources: dict = {}
    # The command line's up-front check planned these jobs already (harness.cli.check_jobs):
    # plan only those it did not see.
    jobs = []
    for cfg, run in zip(configs, runs):
        sweep_dir = Path(str(OmegaConf.select(cfg, "hydra.sweep.dir")))
        job_dir = sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        try:
            job = PLANNED.get(repr(run)) or plan(run, sources)
        except Incompatible as err:
            if not run.skip_incompatible:
                raise
            log.warning(f"skipped (incompatible): {cfg.hydra.job.override_dirname}: {err}")
            jobs.append(Planned(cfg, [], run, job_dir))  # its directory and .hydra/, nothing to train
            continue
        baseline_dir = Path(run.baseline_dir) if run.baseline_dir else sweep_dir / "baselines"
        label = cfg.hydra.job.override_dirname or run.study
        if run.protocol.name == "tuned":  # its runs are only known once it has tuned
            jobs.append(Planned(cfg, [], run, job_dir, tuned=(baseline_dir, label)))
            continue
        jobs.append(Planned(cfg, plan_units(run, job_dir, baseline_dir, label, job), run, job_dir))
    return jobs


def plan_units(run: RunConfig, job_dir: Path, baseline_dir: Path, label: str, job: Job | None = None) -> list[Unit]:
    """The job's units (its data generated), with the compile cache switched on; `job`: its plan
    (default: the command line's, or planned now)."""
    job = job or planned(run)
    if run.compile_cache:
        enable_compile_cache(run.compile_cache)
    return units(job, job_dir, baseline_dir, label)


def run_job(run: RunConfig, job_dir: Path, baseline_dir: Path, label: str) -> list[Path]:
    """Train what is missing for one job and write its records; returns the record paths
    (under protocol=tuned: tunes and confirms, harness.run.tuned, and returns [])."""
    if run.protocol.name == "tuned":
        from harness.run.tuned import run_tuned

        if run.compile_cache:
            enable_compile_cache(run.compile_cache)
        run_tuned(run, job_dir, baseline_dir, label, progress=step_progress())
        return []
    written = []
    for unit in plan_units(run, job_dir, baseline_dir, label):
        if unit.seeds:
            with claimed(unit.out_dir / f".checkpoint-{unit.common['config_hash']}") as saves:
                (out,), c, r = execute_units([unit], saves, step_progress())
                written += write_unit(unit, out, {"compile_s": c, "run_s": r, "batch": len(unit.seeds)})
                shutil.rmtree(saves, ignore_errors=True)  # only once the records are on disk
    return written


def step_progress() -> Callable[[str], None]:
    """Where progress lines go (a finished group of a batched sweep with its elapsed time and
    ETA, a checkpoint segment's step): a progress bar on an interactive terminal; otherwise
    (nohup, SLURM logs, CI) the log, which Hydra writes to the console and the job's log file."""
    if sys.stderr.isatty() and not os.environ.get("CI"):
        return progress_bar
    return log.info


def progress_bar(line: str, width: int = 24) -> None:
    """`line` ("group 3/8 ... ETA 40 s", "step 200/1000") behind a bar drawn over the previous
    one on the terminal; the last of a series ends the line."""
    done = re.search(r"(\d+)/(\d+)", line)
    n, total = (int(done[1]), int(done[2])) if done else (0, 1)
    filled = width * n // max(total, 1)
    end = "\n" if n >= total else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {line}\033[K", end=end, file=sys.stderr, flush=True)


def enable_compile_cache(path: str) -> None:
    """Persist compiled programs on disk; jobs that differ only in dynamic values or data reuse them."""
    jax.config.update("jax_compilation_cache_dir", str(Path(path).resolve()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def report_failures() -> int:
    """Print the failed runs of the last batched sweep, one line each; the exit status (1 if
    any failed, else 0)."""
    for line in FAILED:
        print(f"failed: {line}", file=sys.stderr)
    if FAILED:
        print(f"{len(FAILED)} failed unit(s): re-run the same command to retry them", file=sys.stderr)
    return 1 if FAILED else 0


def groups(jobs: list[Planned], max_batch: int) -> list[list[Unit]]:
    """Units to train, one list per compiled program, at most `max_batch` runs each and no more
    than fit the device's memory. A baseline shared by several jobs is trained once."""
    seen, by_program = set(), {}
    for job in jobs:
        for unit in job.units:
            if not unit.seeds or (unit.kind == "stl" and unit.out_dir in seen):
                continue
            seen.add(unit.out_dir)
            key = (unit.kind, static_key(unit.run, [t.name for t in unit.tasks]))
            by_program.setdefault(key, []).append(unit)
    chunks, device = [], memory.device_memory()
    for units in by_program.values():
        # No more runs in one program than the device holds (each job's seeds alone fit: the
        # planner checked them).
        est = units[0].job.memory
        cap = max_batch if est is None else min(max_batch, max(1, memory.fits(est, device[0]) * device[1]))
        chunk, size = [], 0
        for unit in units:
            if chunk and size + len(unit.seeds) > cap:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(unit)
            size += len(unit.seeds)
        chunks.append(chunk)
    # Baselines first: their records must exist before a job's table refers to them.
    return sorted(chunks, key=lambda c: c[0].kind != "stl")


def checkpoint_dir(group: list[Unit]) -> Path:
    """Where a group's checkpoints go (when train.checkpoint_every is set)."""
    token = config_hash([[u.common["config_hash"], u.seeds] for u in group])
    return group[0].out_dir / f".checkpoint-{token}"


def run_group(group: list[Unit], progress: Callable[[str], None] | None = None, saves: Path | None = None):
    """One group as one program (in this process, or in a submitit job), checkpointed into
    `saves` (default: checkpoint_dir(group))."""
    return execute_units(group, saves or checkpoint_dir(group), progress)


def execute(jobs: list[Planned], max_batch: int, progress: Callable[[str], None] | None = None,
            executor=None) -> None:
    """Run every group; a group's failure is recorded for its units and the others go on.

    executor: None runs the groups here, one after the other; a submitit executor receives each
    group as one job (submitted at once, so a cluster runs them side by side; distilled groups
    after the baselines).
    """
    owner = {id(u): job for job in jobs for u in job.units}
    todo = groups(jobs, max_batch)
    FAILED.clear()
    # Distilled groups read their teachers' parameters (and active ones their baselines' scores),
    # so on a cluster they are submitted only once every baseline group has finished; everything
    # else is submitted at once.
    pending, later = {}, []
    if executor is not None:
        later = [i for i, g in enumerate(todo) if any(u.teachers or u.targets for u in g)]
        pending = {i: executor.submit(run_group, g) for i, g in enumerate(todo) if i not in later}
    start = time.perf_counter()
    for n, group in enumerate(todo, 1):
        runs = sum(len(u.seeds) for u in group)
        if later and n - 1 == min(later):  # baselines come first (groups()), so they are all done
            pending.update({i: executor.submit(run_group, todo[i]) for i in later})
        with contextlib.ExitStack() as stack:
            # Inline, the group's checkpoint is this process's until its records are written.
            saves = checkpoint_dir(group) if executor is not None else stack.enter_context(claimed(checkpoint_dir(group)))
            _run_and_write(group, runs, owner, lambda: (pending[n - 1].result() if executor is not None
                                                        else run_group(group, progress, saves)))
            shutil.rmtree(saves, ignore_errors=True)
        if progress:
            elapsed = time.perf_counter() - start
            progress(f"group {n}/{len(todo)} ({runs} runs) done; elapsed {elapsed:.0f} s, "
                     f"ETA {elapsed / n * (len(todo) - n):.0f} s")


def _run_and_write(group: list[Unit], runs: int, owner: dict, train: Callable) -> None:
    """Train one group (`train()`) and write every record of it; a failure is recorded for its
    units (and in FAILED), never raised."""
    try:
        outs, compile_s, run_s = train()
        timing = {"compile_s": compile_s, "run_s": run_s, "batch": runs, "group_units": len(group)}
        results = [(out, timing, None) for out in outs]
    except Exception as err:  # a broken group must not take the sweep down
        timing = {"compile_s": None, "run_s": None, "batch": runs, "group_units": len(group)}
        results = [(None, timing, f"{type(err).__name__}: {err}")] * len(group)
        FAILED.extend(f"{u.common['label']} (seeds {', '.join(map(str, u.seeds))}): {results[0][2]}"
                      for u in group)
    # Every record of the group is written as the group finishes (a kill later loses only
    # the groups in flight); only then does its checkpoint go.
    for unit, result in zip(group, results):
        write_unit(unit, *result)
        owner[id(unit)].results[id(unit)] = result
