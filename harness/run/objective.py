"""The number a job hands back to Hydra, for sweepers that optimise (hydra/sweeper=optuna).

Computed from the job's records on disk, on the validation split only: a sweeper that selects
configurations on test metrics would make the reported test result a biased estimate.

- `delta_m`: the mean over tasks of the paired relative change against the matched
  single-task baselines, each task's metrics averaged first (harness.analysis.transfer_table on
  the validation split): higher is better, so the sweeper's direction is `maximize`.
- `val.<task>`: that task's validation metric, mean over the job's seeds (direction as the
  metric: maximize an accuracy, minimize an MSE).

A job without an ok run (all diverged or failed, or skipped as incompatible) gives NaN, which
optuna records as a failed trial.
"""
from __future__ import annotations

import math
from pathlib import Path

from harness.config import RunConfig, identity
from harness.records import collect, config_hash


def objective(run: RunConfig, job_dir: Path) -> float:
    runs = collect(job_dir)
    if runs.empty:
        return math.nan
    h = config_hash(identity(run))
    mtl = runs[runs["kind"].eq("mtl") & runs["config_hash"].eq(h) & runs["status"].eq("ok")]
    if mtl.empty:
        return math.nan
    if run.objective.startswith("val."):
        return float(mtl[run.objective].mean())
    from harness.analysis import transfer_table

    own = runs[runs["kind"].eq("stl") | runs["config_hash"].eq(h)]
    table = transfer_table(own, split="val")
    return float(table["delta_m"].iloc[0]) if len(table) else math.nan
