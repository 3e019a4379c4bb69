"""Learning curves: per configuration and task, the multi-task metric over training against the
matched single-task baseline's, each as the mean over seeds with a min-max band."""
from __future__ import annotations

import pandas as pd

from harness.report.common import (band, capped, config_names, draw_band, extreme_tasks, new_figure, panel_grid,
                                   wrap_label)
from harness.report.curves import configs_with, select
from harness.report.document import Block, Gallery, Plot, skipped

MTL_COLOR, STL_COLOR = "C0", "0.35"


def baselines(runs: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Per multi-task config hash, its single-task baseline hash per task."""
    columns = [c for c in runs.columns if c.startswith("baseline.")]
    mtl = runs[runs["kind"].eq("mtl")].drop_duplicates("config_hash").set_index("config_hash")
    return {h: {c.removeprefix("baseline."): v for c, v in row.items() if isinstance(v, str)}
            for h, row in mtl[columns].iterrows()}


def direction(lower_is_better: bool) -> str:
    return "lower is better" if lower_is_better else "higher is better"


def _plot_config(table: pd.DataFrame, curves: pd.DataFrame, config: str, name: str,
                 stl: dict[str, str], split: str, tasks: list[str]) -> Plot:
    rows = table[table["config_hash"].eq(config) & table["task"].isin(tasks)]
    nrows, ncols = panel_grid(len(rows))
    fig = new_figure(max(2.8 * ncols, 4.0), 2.7 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(rows):]:
        ax.set_axis_off()
    for ax, (_, row) in zip(axes, rows.iterrows()):
        task = row["task"]
        mtl = select(curves, config, split, task)
        if not mtl.empty:
            draw_band(ax, band(mtl), f"multi-task ({mtl['seed'].nunique()} seeds)", MTL_COLOR)
        base = select(curves, stl.get(task, ""), split, task)
        if not base.empty:
            draw_band(ax, band(base), f"single-task ({base['seed'].nunique()} seeds)",
                      STL_COLOR, "--")
        ax.set_title(task, fontsize="medium")
        ax.set_xlabel("step")
        ax.set_ylabel(f"{split} {row['metric']} ({direction(row['lower_is_better'])})",
                      fontsize="small")
        ax.legend(fontsize="x-small")
    fig.suptitle(wrap_label(name, width=70, max_lines=3), fontsize="medium")
    caption = (f"{name}: {split} metric per evaluation, multi-task (solid) against the "
               "single-task baseline (dashed); mean and min-max band over seeds")
    return Plot(f"curves_{config}", fig, caption)


def learning_blocks(table: pd.DataFrame, runs: pd.DataFrame, curves: pd.DataFrame,
                    split: str) -> list[Block]:
    """One figure per configuration (capped), or a note when no record has curves."""
    having = configs_with(curves, split)
    configs = [c for c in dict.fromkeys(table["config_hash"]) if c in having]
    if not configs:
        return [skipped(f"no multi-task record of this report has `{split}` learning curves.")]
    shown, notes = capped(configs, "configurations")
    tasks, task_notes = extreme_tasks(table)
    names, stl = config_names(table), baselines(runs)
    plots = [_plot_config(table, curves, c, names[c], stl.get(c, {}), split, tasks) for c in shown]
    return [*notes, *task_notes, Gallery(plots)]
