"""Aggregate comparison of the configurations of one table: mean rank over tasks with a
bootstrap interval over seeds, hypervolume (2-3 tasks), whether the scalarization front
dominates a configuration (Xin et al. 2022), and what a run costs.

Input: a transfer table (harness.analysis.transfer_table), the paired per-seed changes
(harness.analysis.paired) and the runs table. Every number is in the relative change r_t of the
table (positive = better than the single-task baseline), so tasks on different metrics and
directions compare.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

DRAWS = 1000  # bootstrap resamples of the seeds
HYPERVOLUME_TASKS = (2, 3)

RANKING_TEXT = """\
- **Mean rank**: per task, the configurations are ranked by mean r_t (1 = best, ties share the \
mean rank), then the ranks are averaged over tasks. The interval is a 95% percentile bootstrap \
over seeds: the seeds are resampled together for every configuration (they share seeds), the \
means and ranks recomputed ({draws} draws).
- **Hypervolume** (2-3 tasks): the volume between the configuration's mean r_t point and a \
reference point, the worst per-seed r_t of each task over every configuration of the table; \
higher is better, comparable only within one table.
- **Front**: with `protocol.front`, whether a tuned static weighting of the scalarization front \
(Xin et al. 2022) has a mean r_t at least as high on every task and higher on one.
- **Cost**: seconds per run (the training program's time divided by the runs it held; compile \
time apart) and XLA's memory figure for the program divided by its runs (MiB), medians over the \
configuration's runs.
"""


def _matrix(pairs: pd.DataFrame, configs: list[str], tasks: list[str]) -> tuple[np.ndarray, list]:
    """r[config, task, seed] (NaN where a pair is missing) and the seeds, in order."""
    seeds = sorted(pairs["seed"].unique())
    r = np.full((len(configs), len(tasks), len(seeds)), np.nan)
    index = {s: i for i, s in enumerate(seeds)}
    c_index, t_index = {c: i for i, c in enumerate(configs)}, {t: i for i, t in enumerate(tasks)}
    for row in pairs[pairs["config_hash"].isin(configs)].itertuples():
        r[c_index[row.config_hash], t_index[row.task], index[row.seed]] = row.r
    return r, seeds


def mean_ranks(means: np.ndarray) -> np.ndarray:
    """Mean over tasks of each configuration's rank by mean r (means: (..., configs, tasks);
    1 = best; ties share their mean rank; a configuration missing on a task has no rank)."""
    ranks = stats.rankdata(-np.nan_to_num(means, nan=-np.inf), axis=-2)
    ranks = np.where(np.isnan(means), np.nan, ranks)
    return np.nanmean(ranks, axis=-1) if means.shape[-1] else np.full(means.shape[:-1], np.nan)


def bootstrap_ranks(r: np.ndarray, draws: int = DRAWS, seed: int = 0, level: float = 0.95) -> np.ndarray:
    """(configs, 2) percentile interval of the mean rank, resampling the seeds (last axis of r)
    jointly for every configuration."""
    n = r.shape[-1]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=draws)  # (draws, seeds)
    present = np.isfinite(r)
    total = np.einsum("cts,ds->dct", np.where(present, r, 0.0), counts)
    weight = np.einsum("cts,ds->dct", present.astype(float), counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(weight > 0, total / weight, np.nan)
    ranks = mean_ranks(means)  # (draws, configs)
    alpha = (1 - level) / 2
    return np.nanquantile(ranks, [alpha, 1 - alpha], axis=0).T


def hypervolume(point: np.ndarray, reference: np.ndarray) -> float:
    """Volume of the box between `point` and `reference` (higher-is-better coordinates); 0
    when the point does not dominate the reference."""
    return float(np.prod(np.clip(np.asarray(point) - np.asarray(reference), 0.0, None)))


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """a is at least b on every coordinate and above it on one (higher is better)."""
    a, b = np.asarray(a), np.asarray(b)
    return bool(np.all(a >= b) and np.any(a > b))


def ranking(table: pd.DataFrame, pairs: pd.DataFrame, runs: pd.DataFrame, draws: int = DRAWS) -> pd.DataFrame:
    """One row per configuration of `table` (not the front's): label, mean_rank, rank_lo,
    rank_hi, delta_m, hypervolume (2-3 tasks), front (the front point dominating it, "no", or
    None without a front), s_per_run, compile_s, mib_per_run; sorted by mean rank."""
    marked = runs["front"].fillna(False).astype(bool) if "front" in runs else pd.Series(False, index=runs.index)
    front_hashes = set(runs.loc[runs["kind"].eq("mtl") & marked, "config_hash"])
    tasks = list(dict.fromkeys(table["task"]))
    configs = [c for c in dict.fromkeys(table["config_hash"]) if c not in front_hashes]
    front = [c for c in dict.fromkeys(table["config_hash"]) if c in front_hashes]
    means = table.pivot_table(index="config_hash", columns="task", values="r_mean", aggfunc="first").reindex(
        index=configs + front, columns=tasks)
    r, _ = _matrix(pairs, configs, tasks)
    order = mean_ranks(means.loc[configs].to_numpy(float))
    interval = bootstrap_ranks(r, draws) if r.shape[-1] else np.full((len(configs), 2), np.nan)
    labels = table.drop_duplicates("config_hash").set_index("config_hash")
    rows = []
    all_r, _ = _matrix(pairs, configs + front, tasks)
    with np.errstate(all="ignore"):
        reference = np.nanmin(all_r, axis=(0, 2)) if all_r.size else np.full(len(tasks), np.nan)
    ok = runs[runs["kind"].eq("mtl") & runs["status"].eq("ok")]
    for i, c in enumerate(configs):
        point = means.loc[c].to_numpy(float)
        row = {"config_hash": c, "label": labels.at[c, "label"], "mean_rank": order[i],
               "rank_lo": interval[i, 0], "rank_hi": interval[i, 1], "delta_m": labels.at[c, "delta_m"]}
        row["hypervolume"] = (hypervolume(point, reference) if len(tasks) in HYPERVOLUME_TASKS
                              and np.isfinite(point).all() else np.nan)
        row["front"] = (None if not front else
                        next((labels.at[f, "label"] for f in front if dominates(means.loc[f].to_numpy(float), point)), "no"))
        mine = ok[ok["config_hash"].eq(c)]
        batch = mine["batch"] if "batch" in mine else pd.Series(np.nan, index=mine.index)
        row["s_per_run"] = float((mine["run_s"] / batch).median()) if len(mine) else np.nan
        row["compile_s"] = float(mine["compile_s"].median()) if len(mine) else np.nan
        if "program_bytes" in mine:
            row["mib_per_run"] = float((mine["program_bytes"] / mine["program_runs"]).median() / 2**20)
        else:
            row["mib_per_run"] = np.nan
        rows.append(row)
    columns = ["config_hash", "label", "mean_rank", "rank_lo", "rank_hi", "delta_m", "hypervolume", "front",
               "s_per_run", "compile_s", "mib_per_run"]
    return pd.DataFrame(rows, columns=columns).sort_values("mean_rank", kind="stable", ignore_index=True)
