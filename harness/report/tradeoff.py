"""The two-task trade-off plot: task-1 metric against task-2 metric per configuration, with the
single-task point, one panel per pair of baselines (configurations that share data and budget)."""
from __future__ import annotations

import math

import pandas as pd
from matplotlib.axes import Axes

from harness.analysis import cfg_text, short_names, varying_columns
from harness.report.common import config_names, new_figure, wrap_label
from harness.report.document import Block, Plot, skipped
from harness.report.heatmaps import MAX_PANELS
from harness.report.learning import baselines, direction

MARKERS = "osD^vPX<>"


def _errors(row: pd.Series, side: str = "mtl") -> list[list[float]]:
    # No interval (fewer than 2 seeds): a bare point.
    mean = row[f"{side}_mean"]
    lo, hi = mean - row[f"{side}_lo"], row[f"{side}_hi"] - mean
    return [[0.0 if math.isnan(lo) else lo], [0.0 if math.isnan(hi) else hi]]


def _panel(ax: Axes, table: pd.DataFrame, configs: list[str], tasks: list[str], title: str,
           styles: dict[str, dict]) -> None:
    rows = table[table["config_hash"].isin(configs)]
    inside = [c for c in varying_columns(table) if rows[c].astype(str).nunique() > 1]
    names = config_names(rows, inside)
    by_task = {t: rows[rows["task"].eq(t)].set_index("config_hash") for t in tasks}
    for config in (c for c in configs if all(c in by_task[t].index for t in tasks)):
        x, y = by_task[tasks[0]].loc[config], by_task[tasks[1]].loc[config]
        # One style per name across panels, so one legend serves the figure.
        style = styles.setdefault(names[config], {
            "marker": MARKERS[len(styles) // 10 % len(MARKERS)], "color": f"C{len(styles) % 10}"})
        ax.errorbar(x["mtl_mean"], y["mtl_mean"], xerr=_errors(x), yerr=_errors(y), capsize=3,
                    linestyle="none", label=names[config], **style)
    # The baseline with the most paired seeds stands for the panel's single-task point.
    x = by_task[tasks[0]].sort_values("n").iloc[-1]
    y = by_task[tasks[1]].sort_values("n").iloc[-1]
    ax.errorbar(x["stl_mean"], y["stl_mean"], xerr=_errors(x, "stl"), yerr=_errors(y, "stl"),
                marker="*", markersize=14, color="black", capsize=3, linestyle="none",
                label="single-task")
    ax.axvline(x["stl_mean"], color="grey", linestyle=":", linewidth=1)
    ax.axhline(y["stl_mean"], color="grey", linestyle=":", linewidth=1)
    for axis, row in ((ax.set_xlabel, x), (ax.set_ylabel, y)):
        # The arrow points to better along the axis (the y label is turned, so is its arrow).
        arrow = "\u2190" if row["lower_is_better"] else "\u2192"
        axis(f"{row['task']}: {row['metric']} ({direction(row['lower_is_better'])} {arrow})")
    ax.set_title(title, fontsize="medium")


def tradeoff_blocks(table: pd.DataFrame, runs: pd.DataFrame) -> list[Block]:
    """The trade-off figure for a two-task sweep, or a note saying why there is none."""
    tasks = list(dict.fromkeys(table["task"]))
    if len(tasks) != 2:
        return [skipped(f"the trade-off plot needs exactly two tasks; this report has "
                        f"{len(tasks)}.")]
    stl = baselines(runs)
    groups: dict[tuple, list[str]] = {}
    for config in dict.fromkeys(table["config_hash"]):
        groups.setdefault(tuple(stl.get(config, {}).get(t) for t in tasks), []).append(config)
    notes = []
    if len(groups) > MAX_PANELS:
        notes.append(f"Showing {MAX_PANELS} of {len(groups)} baseline pairs.")
    groups = dict(list(groups.items())[:MAX_PANELS])
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = new_figure(5.2 * ncols, 4.4 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    names = short_names(varying_columns(table))
    styles: dict[str, dict] = {}
    for ax, configs in zip(axes, groups.values()):
        rows = table[table["config_hash"].isin(configs)]
        title = ", ".join(f"{name}={cfg_text(rows[c].iloc[0])}" for c, name in names.items()
                          if rows[c].astype(str).nunique() == 1)
        _panel(ax, table, configs, tasks, title, styles)
    for ax in axes[len(groups):]:
        ax.set_axis_off()
    handles: dict[str, object] = {}
    for ax in axes[:len(groups)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    handles["single-task"] = handles.pop("single-task")  # last in the legend
    fig.legend(handles.values(), [wrap_label(k) for k in handles], loc="outside lower center", fontsize="small",
               ncols=min(4, len(handles)))
    caption = (f"Trade-off between {tasks[0]} and {tasks[1]}: multi-task mean per configuration "
               "with 95% t-intervals over paired seeds; the star is the single-task baseline; "
               "one panel per pair of baselines")
    return [*notes, Plot("tradeoff", fig, caption)]
