"""Inter-task affinity (Fifty et al. 2021, TAG) per configuration and the task groupings it
suggests.

Records carry it when training ran with `train.affinity=true`: curves["affinity"]["a>b"] is
Z_{a->b}, the relative decrease of task b's loss after a lookahead step on task a alone,
averaged over the steps since the previous evaluation (positive: a helps b).
"""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd

from harness.analysis import fmt_number
from harness.grouping import EXHAUSTIVE_TASKS, best_grouping
from harness.report.common import capped, config_frame, config_names, new_figure, symmetric_limit
from harness.report.curves import configs_with, select
from harness.report.document import Block, Plot, Table, skipped

MAX_MATRICES = 12
MAX_BUDGET = 6  # grouping rows per configuration: budgets 2..MAX_BUDGET, then no limit
ANNOTATE_TASKS = 10  # beyond this many tasks the cells are too small for their numbers
EXPLAIN = ("Z_{a->b} (row a, column b): relative decrease of b's loss after a lookahead step "
           "on a alone, mean over training and seeds; positive = a helps b. The groupings are "
           "TAG's selection: for each budget k, the partition of the tasks into at most k "
           "groups with the largest total affinity onto each task from the rest of its group "
           "(mean over the group's other members; a task alone scores 0). Up to "
           f"{EXHAUSTIVE_TASKS} tasks every "
           "partition is scored; beyond, a local search and a capped branch-and-bound, which "
           "either prove the grouping optimal or give the best one found (column `search`).")


def affinity_matrix(curves: pd.DataFrame, config: str, tasks: list[str]) -> pd.DataFrame:
    """Mean Z_{a->b} over evaluations and seeds; rows a, columns b, NaN where not recorded."""
    values = select(curves, config, "affinity")
    means = values.groupby("key")["value"].mean()
    matrix = pd.DataFrame(np.nan, index=tasks, columns=tasks)
    for key, value in means.items():
        a, b = key.split(">")
        if a in matrix.index and b in matrix.columns:
            matrix.loc[a, b] = value
    return matrix


def budgets(tasks: int) -> list[int]:
    """Group budgets shown: 2..MAX_BUDGET, then T itself (no limit) when T is larger: a row
    per k up to 40 tasks would bury the few groupings anyone trains."""
    return [*range(2, min(tasks, MAX_BUDGET) + 1), *([tasks] if tasks > MAX_BUDGET else [])]


def grouping_table(table: pd.DataFrame, matrices: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per configuration and budget k: the suggested groups, their total affinity, and whether
    the search proved them optimal."""
    leading = config_frame(table)
    rows = []
    for config, matrix in matrices.items():
        for budget in budgets(len(matrix)):
            found = best_grouping(matrix, budget)
            rows.append({**leading.loc[config].to_dict(),
                         "budget": f"{budget} (no limit)" if budget > MAX_BUDGET else str(budget),
                         "groups": " ".join("{" + ", ".join(g) + "}" for g in found.groups),
                         "total affinity": fmt_number(found.total),
                         "search": "optimal" if found.optimal else "best found"})
    return pd.DataFrame(rows)


def _plot(matrices: dict[str, pd.DataFrame], names: dict[str, str]) -> Plot:
    ncols = min(4, len(matrices))
    nrows = math.ceil(len(matrices) / ncols)
    size = max(len(m) for m in matrices.values())
    annotate = size <= ANNOTATE_TASKS
    cell = 0.6 if annotate else 0.3  # inches: room for a number, or only for the colour
    fig = new_figure(ncols * (1.4 + cell * size) + 1.0, nrows * (1.2 + cell * 0.85 * size))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    limit = symmetric_limit(np.concatenate([m.to_numpy(float).ravel() for m in matrices.values()]))
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#dddddd")
    for ax, (config, matrix) in zip(axes, matrices.items()):
        grid = matrix.to_numpy(float)
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-limit, vmax=limit,
                          aspect="auto")
        for (i, j), v in np.ndenumerate(grid if annotate else np.empty((0, 0))):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=8,
                        color="white" if abs(v) > 0.6 * limit else "black")
        ax.set_xticks(range(len(matrix)), matrix.columns, rotation=90, fontsize="small" if annotate else "x-small")
        ax.set_yticks(range(len(matrix)), matrix.index, fontsize="small" if annotate else "x-small")
        ax.set_xlabel("b (affected)")
        ax.set_ylabel("a (lookahead step)")
        ax.set_title(names[config], fontsize="small")
    for ax in axes[len(matrices):]:
        ax.set_axis_off()
    fig.colorbar(image, ax=axes.tolist(), shrink=0.8, label="Z_{a->b}")
    caption = ("Inter-task affinity Z_{a->b} per configuration (row: lookahead step on a; "
               "column: affected task b), mean over training and seeds; positive = a helps b")
    return Plot("affinity", fig, caption)


def affinity_blocks(table: pd.DataFrame, curves: pd.DataFrame) -> list[Block]:
    """Affinity heatmaps and suggested groupings, or a note when no record has affinity."""
    having = configs_with(curves, "affinity")
    configs = [c for c in dict.fromkeys(table["config_hash"]) if c in having]
    if not configs:
        return [skipped("no multi-task record of this report has task affinity "
                        "(training with `train.affinity=true` records it).")]
    tasks = {c: list(dict.fromkeys(table.loc[table["config_hash"].eq(c), "task"]))
             for c in configs}
    matrices = {c: affinity_matrix(curves, c, tasks[c]) for c in configs}
    shown, notes = capped(configs, "configurations", MAX_MATRICES)
    plot = _plot({c: matrices[c] for c in shown}, config_names(table))
    return [EXPLAIN, Table(grouping_table(table, matrices)), *notes, plot]
