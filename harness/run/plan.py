"""One job: build and validate everything, train the multi-task runs (all seeds in one vmap-ed
program), train or reuse the matched single-task baselines, write one record per run.

A job is planned as units (its baselines and its own runs), each executed by
`harness.batching.execute_units`, which also serves the batched launcher.

Single-task baseline of task t for a multi-task config: the same data (generated with every
task, then only t kept), seeds, step budget, optimiser and learning rate, and the task's own
tower (the model config's `single_task()`), trained alone with equal weights and the same
updates as t gets in the job (`harness.config.single_task`: under alternate, only the steps the
job's draw picks t). Each baseline record also carries its linear reference floor
(`harness.reference`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from harness.config import RunConfig, identity, single_task  # noqa: F401  (single_task re-exported)
from harness.errors import bad
from harness.data.base import DATASETS, DataSource, Dataset, Split, select_tasks
from harness.results import config_hash, environment, existing_seeds, record_path, write_json
from harness.schema import dynamic_values
from harness import teachers
from harness.batching import execute_units, hparams  # noqa: F401  (hparams re-exported)
from harness.reference import reference_floor
from harness.train import build_parts

log = logging.getLogger(__name__)

def build_source(run: RunConfig) -> DataSource:
    source = DATASETS.get(run.data.name).build(run.data)
    return select_tasks(source, getattr(run.data, "tasks", None))


def only(data: Dataset, task: str) -> Dataset:
    return Dataset(*(Split(s.x, {task: s.y[task]}) for s in data))


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


def execute(run: RunConfig, tasks, data: Dataset, seeds: list[int]) -> tuple[dict, float, float]:
    """Train every seed of one configuration as one jit(vmap(train)) program; returns host
    arrays (leading axis: seeds) and the compile and run seconds."""
    (out,), compile_s, run_s = execute_units([Unit("mtl", run, tasks, data, seeds, Path("."), {})])
    return out, compile_s, run_s


def records(run: RunConfig, tasks, out: dict, seeds: list[int], timing: dict, common: dict) -> list[dict]:
    """One record per seed from the batched outputs."""
    K, E = run.train.eval_every, out["val"].shape[1]
    steps = [(e + 1) * K for e in range(E)]
    orient = np.array([-1.0 if t.lower_is_better else 1.0 for t in tasks])
    recs = []
    for i, seed in enumerate(seeds):
        diverged = int(out["diverged_at"][i])
        ok = diverged < 0
        val, test = out["val"][i], out["test"][i]
        pick = (np.argmax(val * orient, axis=0) if run.train.select == "best"
                else np.full(len(tasks), E - 1))
        curves = {"steps": steps}
        for key in ("val", "test", "val_loss", "train_loss", "weights", "grad_norm"):
            if key in out:
                curves[key] = {t.name: out[key][i][:, j].tolist() for j, t in enumerate(tasks)}
        names = [t.name for t in tasks]
        for key in ("grad_cos", "conflict"):  # symmetric: one entry per unordered pair
            if key in out:
                curves[key] = {f"{a}|{b}": out[key][i][:, ia, ib].tolist()
                               for ia, a in enumerate(names) for ib, b in enumerate(names) if ia < ib}
        if "affinity" in out:  # Z[a -> b]: a step on a, effect on b
            curves["affinity"] = {f"{a}>{b}": out["affinity"][i][:, ia, ib].tolist()
                                  for ia, a in enumerate(names) for ib, b in enumerate(names) if ia != ib}
        metrics = {split: {t.name: (float(arr[pick[j], j]) if ok else None) for j, t in enumerate(tasks)}
                   for split, arr in (("val", val), ("test", test))}
        recs.append({
            **common, "seed": seed, "status": "ok" if ok else "diverged",
            "diverged_step": None if ok else diverged, "metrics": metrics,
            "selected_step": {t.name: steps[int(pick[j])] for j, t in enumerate(tasks)},
            "val_trend": {t.name: (val_trend(val[:, j], t.lower_is_better) if ok else None)
                          for j, t in enumerate(tasks)},
            "curves": curves, "timing": timing,
        })
    return recs


TREND_WINDOW = 0.25  # the last quarter of training


def val_trend(curve: np.ndarray, lower_is_better: bool) -> float | None:
    """How much the validation metric still moved over the last quarter of training, in % of
    where it stood then, oriented so positive = still improving and negative = getting worse
    (overfitting). None with fewer than two evaluations."""
    n = len(curve)
    if n < 2:
        return None
    back = max(1, round(n * TREND_WINDOW))
    then, last = float(curve[n - 1 - back]), float(curve[n - 1])
    if then == 0 or not np.isfinite([then, last]).all():
        return None
    return (-1.0 if lower_is_better else 1.0) * (last - then) / abs(then) * 100.0


LOSS_RATIO_WARN = 100.0


def loss_scale_warning(names: list[str], first_losses: np.ndarray) -> str | None:
    """One line when the tasks' training losses in the first evaluation window differ by more
    than LOSS_RATIO_WARN times: the largest then dominates every shared update."""
    losses = np.asarray(first_losses, dtype=float)
    finite = np.isfinite(losses) & (losses > 0)
    if finite.sum() < 2:
        return None
    lo, hi = losses[finite].min(), losses[finite].max()
    if hi / lo <= LOSS_RATIO_WARN:
        return None
    shown = ", ".join(f"{n} {v:.3g}" for n, v in zip(names, losses))
    return (f"task losses differ {hi / lo:.3g}x at the first evaluation ({shown}): the largest "
            "dominates the shared layers; keep train.standardize_targets=true for regression "
            "targets or weight the tasks (method=static method.weights=...)")


@dataclasses.dataclass
class Unit:
    """One configuration to train for some seeds: a job's multi-task runs or a baseline."""

    kind: str  # "mtl" | "stl"
    run: RunConfig
    tasks: tuple
    data: Dataset
    seeds: list[int]  # the seeds still to train
    out_dir: Path  # where its records go
    common: dict  # record fields shared by its seeds
    teachers: dict[str, Path] | None = None  # distillation: task -> its baseline's directory


def build_job(run: RunConfig, sources: dict | None = None):
    """(data source, model, task -> baseline config, task -> baseline model) of a job: all that
    can be checked before the data is generated; raises ConfigError. `sources` caches data
    sources by data config, for checking the many jobs of a sweep."""
    key = repr(run.data)
    source = sources.get(key) if sources is not None else None
    if source is None:
        source = build_source(run)
        if sources is not None:
            sources[key] = source
    names = [t.name for t in source.tasks]
    draw = run.schedule.draw_from
    if draw is not None and (not set(names) <= set(draw) or len(set(draw)) != len(draw)):
        raise bad("schedule.draw_from", list(draw), f"distinct task names including every task of the run ({', '.join(names)})")
    model, _ = build_parts(run, source.tasks, source.input_dim)
    stl_runs = {n: single_task(run, n, names) for n in names} if run.baselines else {}
    stl_models = {t.name: build_parts(stl_runs[t.name], (t,), source.input_dim)[0]
                  for t in source.tasks if t.name in stl_runs}
    return source, model, stl_runs, stl_models


def plan_job(run: RunConfig, job_dir: Path, baseline_dir: Path, label: str) -> list[Unit]:
    """Validate a job and list what it still has to train: baselines first, then its runs.

    Everything is built and validated before anything is trained or written, so bad input
    fails with a ConfigError and no results. Seeds whose record exists with the same config
    hash are left out (an interrupted sweep re-run finishes the rest).
    """
    source, model, stl_runs, stl_models = build_job(run)
    tasks = source.tasks
    if run.compile_cache:
        enable_compile_cache(run.compile_cache)
    data_hp = {k: jnp.asarray(v) for k, v in dynamic_values(run.data).items()}
    data = jax.jit(source.generate)(jax.random.key(getattr(run.data, "seed", 0)), data_hp)
    check_rows(getattr(run.data, "train_rows", None), tasks, data.train.x.shape[0])
    env = {**environment(), "data_info": source.describe(data)}
    seeds = list(range(run.seed, run.seed + run.seeds))
    units, baselines = [], {}
    for t in tasks:
        if t.name not in stl_runs:
            continue
        stl = stl_runs[t.name]
        h = baselines[t.name] = config_hash(identity(stl))
        out_dir = baseline_dir / h
        common = {"kind": "stl", "config": dataclasses.asdict(stl), "config_hash": h,
                  "label": f"stl:{t.name}", "task": t.name, "tasks": [t.name], **env,
                  "task_specs": {t.name: dataclasses.asdict(t)},
                  "param_count": param_count(stl_models[t.name])}
        # A distilled job also needs its teachers' parameters (a baseline from before they were
        # kept is retrained: same seed, same record).
        units.append(Unit("stl", stl, (t,), only(data, t.name), todo(out_dir, h, seeds, run.distill.enabled),
                          out_dir, common))
    h = config_hash(identity(run))
    runs_dir = job_dir / "runs"
    common = {"kind": "mtl", "config": dataclasses.asdict(run), "config_hash": h, "label": label,
              "task": None, "tasks": [t.name for t in tasks], "baselines": baselines,
              "baseline_dir": _relative(baseline_dir, runs_dir), **env,
              "param_count": param_count(model),
              "task_specs": {t.name: dataclasses.asdict(t) for t in tasks}}
    teachers = {t: baseline_dir / hash_ for t, hash_ in baselines.items()} if run.distill.enabled else None
    units.append(Unit("mtl", run, tasks, data, todo(runs_dir, h, seeds), runs_dir, common, teachers))
    return units


def check_rows(rows: dict | None, tasks, n_train: int) -> None:
    """data.train_rows: known tasks, each with 1..n_train rows."""
    if not rows:
        return
    names = [t.name for t in tasks]
    for name, n in rows.items():
        if name not in names:
            raise bad("data.train_rows", dict(rows), f"task names among {', '.join(names)}")
        if not 1 <= n <= n_train:
            raise bad(f"data.train_rows.{name}", n, f"an integer in 1..{n_train} (the train split)")


def todo(out_dir: Path, h: str, seeds: list[int], need_params: bool = False) -> list[int]:
    """Seeds without a record of config hash `h` (or, with need_params, without saved parameters)."""
    done = set(existing_seeds(out_dir, h, seeds))
    if need_params:
        done = {s for s in done if teachers.params_path(out_dir, s).exists()}
    return [s for s in seeds if s not in done]


def write_unit(unit: Unit, out: dict | None, timing: dict, error: str | None = None) -> list[Path]:
    """Write one record per seed of a unit: from its outputs, or as failed with the error."""
    if out is None:
        recs = [{**unit.common, "seed": s, "status": "failed", "error": error, "diverged_step": None,
                 "metrics": {split: {t.name: None for t in unit.tasks} for split in ("val", "test")},
                 "curves": {}, "timing": timing} for s in unit.seeds]
    else:
        recs = records(unit.run, unit.tasks, out, unit.seeds, timing, unit.common)
    paths = []
    if out is not None and unit.kind == "stl":  # kept first: a record promises its teacher
        for i, seed in enumerate(unit.seeds):
            teachers.save(unit.out_dir, seed, jax.tree.map(lambda a: a[i], out["params"]))
        (task,) = unit.tasks
        rows = (getattr(unit.run.data, "train_rows", None) or {}).get(task.name)
        floor = reference_floor(task, unit.data, rows)
        recs = [{**rec, "reference": floor} for rec in recs]
    if out is not None and unit.kind == "mtl":
        warning = loss_scale_warning([t.name for t in unit.tasks], np.nanmean(out["train_loss"][:, 0], axis=0))
        if warning:
            log.warning(f"{unit.common['label']}: {warning}")
            recs = [{**rec, "warnings": [warning]} for rec in recs]
    for rec in recs:
        path = record_path(unit.out_dir, rec["seed"])
        write_json(path, rec)
        paths.append(path)
    return paths


def run_job(run: RunConfig, job_dir: Path, baseline_dir: Path, label: str) -> list[Path]:
    """Train what is missing for one job and write its records; returns the record paths."""
    written = []
    for unit in plan_job(run, job_dir, baseline_dir, label):
        if unit.seeds:
            (out,), c, r = execute_units([unit], unit.out_dir / f".checkpoint-{unit.common['config_hash']}",
                                         step_progress())
            written += write_unit(unit, out, {"compile_s": c, "run_s": r, "batch": len(unit.seeds)})
    return written


def step_progress():
    """Step progress of checkpointed long runs on an interactive terminal; quiet otherwise."""
    if not sys.stderr.isatty() or os.environ.get("CI"):
        return None
    return lambda line: print(line, file=sys.stderr, flush=True)


def enable_compile_cache(path: str) -> None:
    """Persist compiled programs on disk; jobs that differ only in dynamic values or data reuse them."""
    jax.config.update("jax_compilation_cache_dir", str(Path(path).resolve()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _relative(target: Path, start: Path) -> str:
    return os.path.relpath(Path(target).resolve(), Path(start).resolve())
