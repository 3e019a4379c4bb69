"""protocol=tuned: the comparison the evaluation papers ask for (Kurin et al. 2022, "In Defense
of the Unitary Scalarization"; Xin et al. 2022, "Do Current Multi-Task Optimization Methods in
Deep Learning Even Help?"; Gama & Grassi 2025).

For one job (one multi-task configuration of a sweep):

1. **Search.** The configuration and each of its single-task baselines get the same search over
   `protocol.space`: every point of the grid (search=grid) or `budget` points drawn from it
   (search=random, seeded by `search_seed`). A key a configuration does not have (a method's
   coefficient under another method; any method key for a baseline, which trains with equal
   weights) is not searched for it, so a baseline is tuned over the optimiser's keys; nor is
   weight decay except under optim=adamw (the only optimiser that uses it).
2. **Tune** every candidate on the `tune_seeds` seeds `seed, seed+1, ...`. Candidates that
   differ only in dynamic values (learning rate, weight decay, method coefficients) train as one
   compiled program (the batched launcher's grouping, harness.run.sweep.groups).
3. **Select on validation only.** Each baseline: the candidate with the best mean validation
   metric of its task. The configuration: the candidate with the highest mean over tasks of the
   paired relative validation change against the *chosen* baselines, each task's metrics
   averaged first (delta_m on validation, harness.analysis).
   Only candidates whose every tuning seed is ok (neither diverged nor failed) can be chosen.
   The selection functions receive a table without any test column (`validation_view`) and
   refuse one that has any, so no test number can reach a choice.
4. **Confirm** the chosen configuration and baselines on `confirm_seeds` fresh seeds (the seeds
   right after the tuning ones, so the two sets are disjoint). Only these runs enter the
   transfer table: tuning records carry `selection.phase = "tune"` and harness.records.collect
   leaves them out; each confirmation record says what was chosen from how many candidates.

With a one-point space, the confirmation runs are exactly the runs protocol=fixed trains with
`seed` set to the first confirmation seed (the same configurations and seeds, the same records).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from harness.analysis import recorded_secondary, relative_change
from harness.config import RunConfig, identity, validate
from harness.data.base import task_sizes
from harness.errors import bad
from harness.records import config_hash, load_record, record_path, record_row
from harness.run.plan import Job, Unit, data_shapes, generate, mtl_unit, planned, replan, stl_unit

log = logging.getLogger(__name__)


def flat(space: dict[str, dict[str, list]]) -> dict[str, list]:
    """protocol.space ({group: {field: values}}) as {"group.field": values}."""
    return {f"{group}.{name}": list(values) for group, fields in space.items() for name, values in fields.items()}


def applicable(run: RunConfig, space: dict[str, list]) -> dict[str, list]:
    """The keys of a flat space that `run` has (`<group>.<field>` with the field in its group's
    config) and that change its training: weight decay only under optim=adamw (adam and sgd
    ignore it, so searching it would only repeat candidates)."""
    def used(key: str) -> bool:
        group, name = key.split(".")
        if key == "optim.weight_decay":
            return run.optim.name == "adamw"
        return hasattr(getattr(run, group), name)

    return {key: list(values) for key, values in space.items() if used(key)}


def points(space: dict[str, list], search: str, budget: int, seed: int) -> list[dict[str, Any]]:
    """The candidates' values: the whole grid, or `budget` distinct grid points drawn with `seed`
    (the whole grid when it has no more). A space without keys has one point, {}."""
    keys = list(space)
    grid = [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]
    if search == "grid" or len(grid) <= budget:
        return grid
    pick = np.random.default_rng(seed).choice(len(grid), size=budget, replace=False)
    return [grid[i] for i in sorted(pick)]


def with_values(run: RunConfig, values: dict[str, Any], seed: int, seeds: int) -> RunConfig:
    """`run` with the candidate's values and seeds; checked like any config (ConfigError)."""
    groups: dict[str, dict] = {}
    for key, value in values.items():
        group, name = key.split(".")
        groups.setdefault(group, {})[name] = value
    changed = {g: dataclasses.replace(getattr(run, g), **fields) for g, fields in groups.items()}
    out = dataclasses.replace(run, **changed, seed=seed, seeds=seeds)
    validate(out)
    return out


def seeds_of(run: RunConfig) -> tuple[list[int], list[int]]:
    """(tuning seeds, confirmation seeds): consecutive from `seed`, disjoint."""
    p = run.protocol
    n_confirm = p.confirm_seeds if p.confirm_seeds is not None else run.seeds
    tune = list(range(run.seed, run.seed + p.tune_seeds))
    return tune, list(range(tune[-1] + 1, tune[-1] + 1 + n_confirm))


@dataclasses.dataclass
class Candidates:
    """A job's candidates: the configuration's and, per task, its baseline's."""

    mtl: list[tuple[dict, Job]]
    stl: dict[str, list[tuple[dict, Job]]]


def candidates(job: Job, baselines: bool = True) -> Candidates:
    """Plan every candidate of a job and (with `baselines`) of its baselines; raises ConfigError
    for a bad value in the space."""
    run, p = job.run, job.run.protocol
    if run.distill.enabled:
        raise bad("protocol.name", "tuned", "protocol=fixed with distill.enabled (the teachers would be "
                  "the tuned baselines, which are only chosen after tuning)")
    if min(task_sizes(data_shapes(run, job.source).val).values()) == 0:
        raise bad("protocol.name", "tuned", "a dataset with a validation split (selection reads only validation metrics)")
    space = flat(p.space)
    tune, _ = seeds_of(run)

    def plan_all(base: Job) -> list[tuple[dict, Job]]:
        values = points(applicable(base.run, space), p.search, p.budget, p.search_seed)
        return [(v, replan(base, with_values(base.run, v, tune[0], len(tune)))) for v in values]

    return Candidates(plan_all(job), {t: plan_all(b) for t, b in job.baselines.items()} if baselines else {})


def check(job: Job) -> None:
    """The up-front check of a tuned job (harness.cli): its candidates and its front plan."""
    candidates(job)
    for c in front_configs(job, Path(".")):
        candidates(c.job, baselines=False)


def validation_view(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs table without any test-split column: all that selection may see."""
    return runs.drop(columns=[c for c in runs.columns if c.startswith("test.")])


def _no_test(runs: pd.DataFrame) -> None:
    leaked = [c for c in runs.columns if c.startswith("test.")]
    if leaked:
        raise ValueError(f"selection was handed test metrics ({', '.join(leaked)}): pass validation_view(runs)")


def _complete(runs: pd.DataFrame, n_seeds: int) -> pd.DataFrame:
    """Rows of the candidates whose every tuning seed is ok."""
    ok = runs[runs["status"].eq("ok")]
    counts = ok.groupby("config_hash")["seed"].nunique()
    return ok[ok["config_hash"].isin(counts[counts >= n_seeds].index)]


def choose_baseline(runs: pd.DataFrame, task: str, n_seeds: int) -> tuple[str, float] | None:
    """(config hash, mean validation metric) of the best baseline candidate of `task` among
    `runs` (its candidates' tuning records); None when no candidate has every seed ok."""
    _no_test(runs)
    ok = _complete(runs, n_seeds)
    if ok.empty:
        return None
    means = ok.groupby("config_hash", sort=False)[f"val.{task}"].mean()
    lower = bool(ok[f"lower_is_better.{task}"].iloc[0])
    best = means.idxmin() if lower else means.idxmax()
    return str(best), float(means[best])


def choose_config(runs: pd.DataFrame, baselines: pd.DataFrame, tasks: list[str],
                  n_seeds: int) -> tuple[str, float] | None:
    """(config hash, score) of the best multi-task candidate among `runs`: the score is the
    validation delta_m against the chosen baselines' same-seed runs (`baselines`: their tuning
    records, one task each), as harness.analysis forms it: the mean over tasks of the mean over
    each task's metrics (those both sides record) of the mean over seeds of the relative change."""
    _no_test(runs)
    _no_test(baselines)
    ok = _complete(runs, n_seeds)
    if ok.empty:
        return None
    scores = {}
    for h, group in ok.groupby("config_hash", sort=False):
        per_task = []
        for task in tasks:
            base = baselines[baselines["task"].eq(task) & baselines["status"].eq("ok")]
            metrics = [(f"val.{task}", bool(group[f"lower_is_better.{task}"].iloc[0]))]
            metrics += [(f"val.{task}.{m}", bool(group[f"lower_is_better.{task}.{m}"].iloc[0]))
                        for m in recorded_secondary(group, task) if m in recorded_secondary(base, task)]
            per_metric = []
            for column, lower in metrics:
                pair = group[["seed", column]].merge(base[["seed", column]], on="seed", suffixes=("", "_stl"))
                per_metric.append(np.mean(relative_change(pair[column], pair[f"{column}_stl"], lower)))
            # One metric: its mean itself, so single-metric choices are exactly as before.
            per_task.append(per_metric[0] if len(per_metric) == 1 else np.mean(per_metric))
        scores[h] = float(np.mean(per_task))
    finite = {h: v for h, v in scores.items() if np.isfinite(v)}
    if not finite:
        return None
    best = max(finite, key=finite.get)
    return str(best), finite[best]


def _rows(units: list[Unit], seeds: list[int]) -> pd.DataFrame:
    """The runs table of the records of `units` on `seeds` (on disk: also those an earlier,
    interrupted run of the same command wrote)."""
    rows = []
    for unit in units:
        for seed in seeds:
            rec = load_record(record_path(unit.out_dir, seed))
            if rec is not None:
                rows.append(record_row(rec))
    return pd.DataFrame(rows)


@dataclasses.dataclass
class Compared:
    """One multi-task configuration the tuned protocol compares: the job's own, or a point of
    the scalarization front."""

    label: str
    job: Job
    job_dir: Path  # its confirmation runs go to job_dir/runs, its tuning runs to job_dir/tune
    front: bool = False


def front_weights(num_tasks: int, k: int, seed: int = 0) -> list[list[float]]:
    """The static weight vectors of the scalarization front (Xin et al. 2022): for 2 or 3 tasks
    every vector a / k * T with positive integers a summing to k (the lattice inside the
    simplex, so no task is dropped), scaled to sum to T so that (1, ..., 1) is equal weighting;
    for more tasks, k vectors drawn from a flat Dirichlet with `seed`."""
    if num_tasks <= 3:
        combos = [a for a in itertools.product(range(1, k), repeat=num_tasks) if sum(a) == k]
        return [[num_tasks * ai / k for ai in a] for a in combos]
    draws = np.random.default_rng(seed).dirichlet(np.ones(num_tasks), size=k)
    return [[float(num_tasks * w) for w in row] for row in draws]


def front_configs(job: Job, front_dir: Path) -> list[Compared]:
    """The front's configurations for `job`'s data, model and schedule (method=static)."""
    from harness.methods.static import StaticConfig

    k = job.run.protocol.front
    if not k:
        return []
    out = []
    for w in front_weights(len(job.parts.tasks), k, job.run.protocol.search_seed):
        run = dataclasses.replace(job.run, method=StaticConfig(weights=[round(x, 6) for x in w]))
        out.append(Compared(f"front: static weights=[{', '.join(f'{x:.3g}' for x in w)}]", replan(job, run),
                            front_dir / config_hash(identity(run)), front=True))
    return out


def run_tuned(run: RunConfig, job_dir: Path, baseline_dir: Path, label: str, max_batch: int = 4096,
              progress: Callable[[str], None] | None = None) -> dict:
    """Tune, select on validation, confirm on fresh seeds (module docstring), for the job's
    configuration and, with protocol.front, the scalarization front beside it (under
    job_dir/../front, shared by the jobs of a sweep with the same data, model and schedule).
    Returns what was chosen for the job's configuration: {"values", "score", "candidates",
    "baselines": task -> {"values", "score", "candidates"}}, or {} when no candidate of it or of
    a baseline had every tuning seed ok."""
    from harness.run.sweep import FAILED, Planned, execute

    job = planned(run)
    compared = [Compared(label, job, job_dir), *front_configs(job, job_dir.parent / "front")]
    tune, confirm = seeds_of(run)
    data, env = generate(job)
    own = candidates(job)  # the front's configurations share the job's baselines
    stl_cands = own.stl
    mtl_cands = [own.mtl] + [candidates(c.job, baselines=False).mtl for c in compared[1:]]
    failed: list[str] = []

    def train(units: list[Unit]) -> None:
        execute([Planned(None, units)], max_batch, progress)
        failed.extend(FAILED)

    # 1-2. Tune every candidate of the configurations and of their baselines.
    stl_units = {t: [_tune_stl(b, v, data, tune, baseline_dir, env) for v, b in cs] for t, cs in stl_cands.items()}
    mtl_units = [[_tune_mtl(j, v, data, tune, c, baseline_dir, env) for v, j in cs] for c, cs in zip(compared, mtl_cands)]
    train([u for us in stl_units.values() for u in us] + [u for us in mtl_units for u in us])

    # 3. Select, on tables without a test column.
    chosen_stl = {}
    for t, us in stl_units.items():
        pick = choose_baseline(validation_view(_rows(us, tune)), t, len(tune))
        if pick is None:
            log.error(f"{label}: no baseline candidate of {t} trained every tuning seed without diverging; nothing confirmed")
            FAILED[:] = failed
            return {}
        chosen_stl[t] = pick
    stl_rows = validation_view(_rows([u for us in stl_units.values() for u in us], tune))
    chosen_base_rows = stl_rows[stl_rows["config_hash"].isin([h for h, _ in chosen_stl.values()])]

    # 4. Confirm the chosen ones on fresh seeds.
    units, hashes, chosen = [], {}, {}
    baselines = {}
    for t, (h_stl, metric) in chosen_stl.items():
        v, b = next((v, b) for v, b in stl_cands[t] if config_hash(identity(b.run)) == h_stl)
        baselines[t] = {"values": v, "score": metric, "candidates": len(stl_cands[t])}
        unit = stl_unit(_reseeded(b, confirm), data, confirm, baseline_dir, env,
                        extra={"selection": {"phase": "confirm", **baselines[t]}})
        hashes[t] = unit.common["config_hash"]
        units.append(unit)
    for c, cs, us in zip(compared, mtl_cands, mtl_units):
        pick = choose_config(validation_view(_rows(us, tune)), chosen_base_rows, list(stl_units), len(tune))
        if pick is None:
            log.error(f"{c.label}: no candidate trained every tuning seed without diverging; nothing confirmed")
            continue
        h_mtl, score = pick
        values, best = next((v, j) for v, j in cs if config_hash(identity(j.run)) == h_mtl)
        info = {"values": values, "score": score, "candidates": len(cs)}
        units.append(mtl_unit(_reseeded(best, confirm), data, confirm, c.job_dir / "runs", hashes, baseline_dir, env,
                              c.label, extra={"selection": {"phase": "confirm", **info, "criterion": "val delta_m",
                                                            "tune_seeds": tune, "front": c.front}}))
        if c.job is job:
            chosen = {**info, "baselines": baselines}
            log.info(f"{label}: chose {_text(values)} from {len(cs)} candidates (val delta_m {score:+.3g}%); "
                     + "; ".join(f"baseline {t}: {_text(i['values'])}" for t, i in baselines.items()))
    train(units)
    FAILED[:] = failed
    return chosen


def _text(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "the configuration as given"


def _reseeded(job: Job, seeds: list[int]) -> Job:
    return dataclasses.replace(job, run=dataclasses.replace(job.run, seed=seeds[0], seeds=len(seeds)))


def _tune_stl(b: Job, values: dict, data, seeds: list[int], baseline_dir: Path, env: dict) -> Unit:
    return stl_unit(b, data, seeds, baseline_dir, env, extra={"selection": {"phase": "tune", "values": values}})


def _tune_mtl(j: Job, values: dict, data, seeds: list[int], c: Compared, baseline_dir: Path, env: dict) -> Unit:
    h = config_hash(identity(j.run))
    return mtl_unit(j, data, seeds, c.job_dir / "tune" / h, {}, baseline_dir, env, f"{c.label} [{_text(values)}]",
                    extra={"selection": {"phase": "tune", "values": values}})
