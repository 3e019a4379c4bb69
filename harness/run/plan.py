"""The planner: every part of a job built once, every static check run, before anything trains.

`plan(run)` turns a validated RunConfig into a Job: its data source, the compiled program's
parts (model, method, schedule, distillation teachers) and settings, and the same for each of
its matched single-task baselines. Every check that needs no generated data happens here (the
config's own checks in harness.config.validate, the builders', a method's schedules, task row
counts against the split's shape), so a sweep is checked job by job before its first job runs.
`units(job, ...)` then generates the data and lists what is left to train.

Single-task baseline of task t for a multi-task config: the same data (generated with every
task, then only t kept), seeds, step budget, optimiser and learning rate, and the task's own
tower (the model config's `single_task()`), trained alone with equal weights and the same
updates as t gets in the job (`harness.config.single_task`: under alternate, only the steps the
job's draw picks t). Each baseline record also carries its linear reference floor
(`harness.reference`). Where each task has its own inputs (harness.data.base.Split), every task
draws its own batch from its own train rows, and the baseline of t trains and is evaluated on
t's inputs only, drawing the same rows as t does in the job.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from harness.config import SWEEP_ONLY, RunConfig, identity, single_task, target_groups
from harness.data.base import (DATASETS, DataSource, Dataset, keep_tasks, own_inputs, record_spec, select_tasks,
                                task_inputs, task_sizes)
from harness.errors import Incompatible, bad
from harness.methods.base import METHODS
from harness.models.base import MODELS
from harness.records import config_hash, environment, existing_seeds
from harness.run import memory
from harness.run import teachers as teacher_files
from harness.schema import dynamic_values
from harness.train import Parts, Settings
from harness.train.optim import Optimizer
from harness.train.schedules import make_schedule


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything static about one configuration, built once. baselines: task -> the Job of its
    matched single-task baseline ({} for a baseline, or with `baselines=false`)."""

    run: RunConfig
    source: DataSource
    parts: Parts
    settings: Settings
    baselines: dict[str, "Job"]
    memory: memory.Estimate | None = None  # bytes of its program (harness.run.memory)


@dataclasses.dataclass
class Unit:
    """One configuration to train for some seeds: a job's multi-task runs or a baseline."""

    kind: str  # "mtl" | "stl"
    job: Job
    data: Dataset
    seeds: list[int]  # the seeds still to train
    out_dir: Path  # where its records go
    common: dict  # record fields shared by its seeds
    teachers: dict[str, Path] | None = None  # distillation: task -> its baseline's directory
    # targets from the baselines (harness.config.target_groups): task -> its baseline's directory
    targets: dict[str, Path] | None = None

    @property
    def run(self) -> RunConfig:
        return self.job.run

    @property
    def tasks(self):
        return self.job.parts.tasks


def build_source(run: RunConfig) -> DataSource:
    source = DATASETS.get(run.data.name).build(run.data)
    return select_tasks(source, getattr(run.data, "tasks", None))


def data_shapes(run: RunConfig, source: DataSource) -> Dataset:
    """The shapes of the data a job will generate, without generating it."""
    hp = {k: jnp.asarray(v) for k, v in dynamic_values(run.data).items()}
    return jax.eval_shape(source.generate, jax.random.key(0), hp)


def input_sizes(run: RunConfig, source: DataSource) -> dict[str, int] | None:
    """Task -> its number of train rows where each task has its own inputs; None where all
    tasks share them."""
    train = data_shapes(run, source).train
    return task_sizes(train) if own_inputs(train) else None


def check_rows(rows: dict | None, tasks, n_train: int | dict[str, int]) -> None:
    """data.train_rows: tasks of the dataset, each with 1..n_train rows (n_train: the train
    split's rows, or task -> its own where each task has its own inputs)."""
    if not rows:
        return
    names = [t.name for t in tasks]
    for name, n in rows.items():
        if name not in names:
            raise bad("data.train_rows", dict(rows), f"task names among {', '.join(names)}")
        limit = n_train[name] if isinstance(n_train, dict) else n_train
        if not 1 <= n <= limit:
            raise bad(f"data.train_rows.{name}", n, f"an integer in 1..{limit} (the train split)")


def draw_rows_of(run: RunConfig, sizes: dict[str, int] | None) -> dict[str, int]:
    """Task -> the train rows it draws from, for the tasks that draw their own batches: every
    task where each has its own inputs (`sizes`), limited by data.train_rows."""
    return {**(sizes or {}), **(getattr(run.data, "train_rows", None) or {})}


def make_settings(run: RunConfig, tasks, input_dim: int, train_size: int,
                  sizes: dict[str, int] | None = None) -> Settings:
    """The static settings of the compiled program. Under data.train_rows, or where each task
    has its own inputs (`sizes`: task -> its train rows), each task draws its own batch from its
    own rows (a baseline keeps its task's entry)."""
    rows = draw_rows_of(run, sizes)
    names = {t.name for t in tasks}
    o = run.optim
    return Settings(
        steps=run.train.steps, eval_every=run.train.eval_every, batch_size=run.train.batch_size,
        train_size=train_size, input_dim=input_dim,
        optimizer=Optimizer(o.name, o.momentum, o.lr_schedule, o.warmup_steps, o.clip_norm),
        task_rows={n: r for n, r in rows.items() if n in names} if rows else None,
        diagnostics=run.train.diagnostics, affinity=run.train.affinity,
        standardize_targets=run.train.standardize_targets, eval_batch=getattr(run.data, "eval_batch", None),
        augment=getattr(run.data, "augment", False), own_inputs=sizes is not None)


def make_parts(run: RunConfig, tasks, input_dim: int, train_size: int, teachers=None,
               sizes: dict[str, int] | None = None) -> Parts:
    """Model, method and schedule of a configuration; raises ConfigError for invalid combinations.
    sizes: task -> its train rows, where each task has its own inputs."""
    model = MODELS.get(run.model.name).build(run.model, tasks, input_dim)
    method = METHODS.get(run.method.name).build(run.method, tasks)
    if run.schedule.name not in method.schedules:
        raise Incompatible(bad("method", run.method.name,
                               f"works with schedule {' or '.join(method.schedules)}, not "
                               f"{run.schedule.name} (its docstring says why; skip_incompatible=true "
                               "skips such jobs of a sweep)"))
    names = [t.name for t in tasks]
    draw = list(run.schedule.draw_from or names)
    rows = draw_rows_of(run, sizes)
    targets = run.schedule.targets
    if targets is not None and len(targets) != len(names):
        raise bad("schedule.targets", list(targets), f"one target per task, in task order ({', '.join(names)})")
    schedule = make_schedule(run.schedule.name, run.schedule.sampling, run.schedule.optimizer_state,
                             draw, [rows.get(n, train_size) for n in draw], names,
                             [t.lower_is_better for t in tasks])
    return Parts(model, method, tuple(tasks), schedule, teachers)


# Jobs planned by the up-front check of a command line (harness.cli.check_jobs), by config: the
# task function of each job takes its plan from here instead of building it again.
PLANNED: dict[str, Job] = {}


def planned(run: RunConfig) -> Job:
    """The job of `run`: as the command line's check planned it, or planned now."""
    return PLANNED.get(repr(run)) or plan(run)


def plan(run: RunConfig, sources: dict | None = None, with_baselines: bool = True) -> Job:
    """Build and check one job and its baselines; raises ConfigError. `sources` caches data
    sources by data config, for checking the many jobs of a sweep."""
    key = repr(run.data)
    dataset = sources.get(key) if sources is not None else None
    if dataset is None:
        dataset = DATASETS.get(run.data.name).build(run.data)
        if sources is not None:
            sources[key] = dataset
    source = select_tasks(dataset, getattr(run.data, "tasks", None))
    tasks, names = source.tasks, [t.name for t in source.tasks]
    draw = run.schedule.draw_from
    if draw is not None and (not set(names) <= set(draw) or len(set(draw)) != len(draw)):
        raise bad("schedule.draw_from", list(draw), f"distinct task names including every task of the run ({', '.join(names)})")
    shapes = data_shapes(run, source)
    # Where each task has its own inputs: every task of the dataset's train rows, since a
    # baseline's draw (under alternate) may pick its job's other tasks.
    sizes = input_sizes(run, dataset) if own_inputs(shapes.train) else None
    input_dim = task_inputs(shapes.train, names[0]).shape[1]
    train_size = max(task_sizes(shapes.train).values())
    # Rows may name any task of the dataset: a baseline keeps the entries of its job's other
    # tasks, which its draw (under alternate) needs.
    check_rows(getattr(run.data, "train_rows", None), dataset.tasks, sizes or train_size)
    if run.objective.startswith("val.") and run.objective.removeprefix("val.") not in names:
        raise bad("objective", run.objective, f"delta_m or val.<task> for a task among {', '.join(names)}")
    baselines = {}
    for t in tasks if run.baselines else ():
        stl = single_task(run, t.name, names)
        baselines[t.name] = checked(Job(stl, source, make_parts(stl, (t,), input_dim, train_size, sizes=sizes),
                                        make_settings(stl, (t,), input_dim, train_size, sizes),
                                        {}), shapes)
    # The distillation teachers are the baselines' models (their parameters come at run time).
    teachers = {n: b.parts.model for n, b in baselines.items()} if run.distill.enabled else None
    parts = make_parts(run, tasks, input_dim, train_size, teachers, sizes)
    return checked(Job(run, source, parts, make_settings(run, tasks, input_dim, train_size, sizes),
                       baselines if with_baselines else {}), shapes)


def replan(job: Job, run: RunConfig) -> Job:
    """`job` under another config of the same data and tasks (a tuning candidate of
    harness.run.tuned): parts and settings rebuilt, memory checked again, no baselines."""
    s, tasks = job.settings, job.parts.tasks
    sizes = input_sizes(run, job.source)
    parts = make_parts(run, tasks, s.input_dim, s.train_size, job.parts.teachers, sizes)
    settings = make_settings(run, tasks, s.input_dim, s.train_size, sizes)
    return checked(Job(run, job.source, parts, settings, {}), data_shapes(run, job.source))


def checked(job: Job, shapes: Dataset) -> Job:
    """The job with its program's memory estimate, refused (ConfigError) when its seeds cannot
    fit the device in one program."""
    est = memory.estimate(job.parts, job.settings, shapes)
    memory.check(job.run, est, job.run.seeds)
    return dataclasses.replace(job, memory=est)


def only(data: Dataset, task: str) -> Dataset:
    """The data of `task`'s baseline: its targets, and its own inputs where each task has them."""
    return Dataset(*(keep_tasks(s, [task]) for s in data))


def param_count(model) -> dict[str, Any]:
    """Parameter counts: total, shared, and each task's own; and the width the model was built
    with, which differs from the config's when it was matched to a parameter budget."""
    shapes = jax.eval_shape(model.init, jax.random.key(0))

    def count(tree):
        return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))

    counts = {"total": count(shapes), "shared": count(shapes["shared"]),
              "tasks": {name: count(sub) for name, sub in shapes["tasks"].items()}}
    if getattr(model, "width", None) is not None:  # the width built (after model.target_params)
        counts["width"] = int(model.width)
    return counts


def generate(job: Job) -> tuple[Dataset, dict]:
    """A planned job's data and the environment fields of its records (with the data's own
    description)."""
    run = job.run
    data_hp = {k: jnp.asarray(v) for k, v in dynamic_values(run.data).items()}
    data = jax.jit(job.source.generate)(jax.random.key(getattr(run.data, "seed", 0)), data_hp)
    return data, {**environment(), "data_info": job.source.describe(data)}


def units(job: Job, job_dir: Path, baseline_dir: Path, label: str) -> list[Unit]:
    """Generate a planned job's data and list what it still has to train: baselines first, then
    its runs. Seeds whose record exists with the same config hash are left out (an interrupted
    sweep re-run finishes the rest)."""
    run = job.run
    data, env = generate(job)
    seeds = list(range(run.seed, run.seed + run.seeds))
    todo_units = [stl_unit(stl, data, seeds, baseline_dir, env, need_params=run.distill.enabled)
                  for stl in job.baselines.values()]
    hashes = {name: u.common["config_hash"] for name, u in zip(job.baselines, todo_units)}
    todo_units.append(mtl_unit(job, data, seeds, job_dir / "runs", hashes, baseline_dir, env, label))
    return todo_units


def stl_unit(stl: Job, data: Dataset, seeds: list[int], baseline_dir: Path, env: dict,
             need_params: bool = False, extra: dict | None = None) -> Unit:
    """A single-task baseline's unit: its seeds without a record under baseline_dir/<hash>
    (`need_params`: or without saved parameters, for distillation). `data` may hold every task
    of its multi-task job; only the baseline's own is kept. `extra`: more record fields."""
    (spec,) = stl.parts.tasks
    name = spec.name
    h = config_hash(identity(stl.run))
    out_dir = baseline_dir / h
    common = {"kind": "stl", "config": recorded_config(stl.run), "config_hash": h,
              "label": f"stl:{name}", "task": name, "tasks": [name], **env,
              "task_specs": {name: record_spec(spec)}, "param_count": param_count(stl.parts.model),
              **(extra or {})}
    # A distilled job also needs its teachers' parameters (a baseline from before they were
    # kept is retrained: same seed, same record).
    return Unit("stl", stl, only(data, name), todo(out_dir, h, seeds, need_params), out_dir, common)


def mtl_unit(job: Job, data: Dataset, seeds: list[int], runs_dir: Path, baselines: dict[str, str],
             baseline_dir: Path, env: dict, label: str, extra: dict | None = None) -> Unit:
    """A multi-task configuration's unit: its seeds without a record under runs_dir, paired in
    its records with the baselines `baselines` (task -> config hash) under baseline_dir.
    `extra`: more record fields."""
    run, tasks = job.run, job.parts.tasks
    h = config_hash(identity(run))
    common = {"kind": "mtl", "config": recorded_config(run), "config_hash": h, "label": label,
              "task": None, "tasks": [t.name for t in tasks], "baselines": baselines,
              "baseline_dir": _relative(baseline_dir, runs_dir), **env, "param_count": param_count(job.parts.model),
              "task_specs": {t.name: record_spec(t) for t in tasks}, **(extra or {})}
    dirs = {t: baseline_dir / h_ for t, h_ in baselines.items()}
    return Unit("mtl", job, data, todo(runs_dir, h, seeds), runs_dir, common,
                dirs if run.distill.enabled else None, dirs if target_groups(run) else None)


def recorded_config(run: RunConfig) -> dict:
    """The config a record keeps: everything but how the sweep treats its jobs (skip_incompatible,
    objective), which says nothing about this run."""
    d = dataclasses.asdict(run)
    for key in SWEEP_ONLY:
        d.pop(key)
    return d


def todo(out_dir: Path, h: str, seeds: list[int], need_params: bool = False) -> list[int]:
    """Seeds without a record of config hash `h` (or, with need_params, without saved parameters)."""
    done = set(existing_seeds(out_dir, h, seeds))
    if need_params:
        done = {s for s in done if teacher_files.params_path(out_dir, s).exists()}
    return [s for s in seeds if s not in done]


def _relative(target: Path, start: Path) -> str:
    return os.path.relpath(Path(target).resolve(), Path(start).resolve())
