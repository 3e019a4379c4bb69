"""The transfer plot: mean r_t per task with its interval, against the varying config columns."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.analysis import cfg_text, natural, varying_columns
from harness.report.common import new_figure, ordered, panel_grid, wrap_label

# Preferred roles in the plot, used when the column varies: x axis, lines, panel rows.
X_COLUMN, LINE_COLUMN, ROW_COLUMN = ("cfg.model.shared_depth", "cfg.schedule.name",
                                     "cfg.data.correlation")
LONG_TICK = 16  # x values longer than this (a task list, say) are numbered, with a key below
PLOT_TITLE = ("r_t = s_t (M_mtl - M_stl) / |M_stl| x 100, positive = multi-task helped\n"
              "mean and t-interval over paired seeds")


def _layout(varying: list[str]) -> tuple[str, list[str], str | None]:
    """Pick the x column, the line columns (all left over) and the panel-row column."""
    x = X_COLUMN if X_COLUMN in varying else varying[0]
    rest = [c for c in varying if c != x]
    line = LINE_COLUMN if LINE_COLUMN in rest else rest[0] if rest else None
    others = [c for c in rest if c != line]
    row = (ROW_COLUMN if ROW_COLUMN in others else others[0]) if others else None
    lines = [c for c in rest if c != row]
    return x, lines, row


def _errors(part: pd.DataFrame) -> np.ndarray:
    # Rows without an interval (fewer than 2 seeds) are drawn as bare points.
    return np.nan_to_num(np.abs(part[["r_lo", "r_hi"]].to_numpy(float).T
                                - part["r_mean"].to_numpy(float)))


def plot_transfer(table: pd.DataFrame) -> Figure:
    """Per task a panel of mean r_t with its interval against the varying config columns."""
    tasks = sorted(dict.fromkeys(table["task"]), key=natural)
    varying = varying_columns(table)
    if not varying:
        return _plot_bars(table, tasks)
    x, lines, row = _layout(varying)
    text = table[varying].map(cfg_text)
    x_ticks = list(dict.fromkeys(map(cfg_text, ordered(table[x]))))
    # Long values (data.tasks lists) would run into each other under the panels: number them.
    numbered = max(map(len, x_ticks), default=0) > LONG_TICK
    tick_labels = [str(i + 1) for i in range(len(x_ticks))] if numbered else x_ticks
    row_names = list(dict.fromkeys(map(cfg_text, ordered(table[row])))) if row else [""]
    keys = pd.Series(list(map(tuple, text[lines].to_numpy())), index=table.index)
    line_keys = sorted(set(keys))
    # Joining points only means something along a numeric axis such as depth.
    style = "-" if pd.api.types.is_numeric_dtype(table[x]) else "none"
    # Without a row column, many tasks wrap into rows of panels rather than one wide row.
    grid = panel_grid(len(tasks)) if row is None else (len(row_names), len(tasks))
    fig = new_figure(max(4 * grid[1], 6), 3 * grid[0] + (0.2 * len(x_ticks) if numbered else 0))
    axes = fig.subplots(*grid, squeeze=False, sharey=True if row is None else "row")
    for ax in axes.ravel()[len(tasks) * len(row_names):]:
        ax.set_axis_off()
    for i, row_name in enumerate(row_names):
        for j, task in enumerate(tasks):
            ax = axes[i, j] if row else axes.ravel()[j]
            in_panel = table["task"].eq(task) & (text[row].eq(row_name) if row else True)
            for k, key in enumerate(line_keys):
                part = table[in_panel & keys.map(key.__eq__)]
                pos = np.array([x_ticks.index(v) for v in text.loc[part.index, x]], dtype=int)
                part = part.iloc[np.argsort(pos)]
                # Offset the lines a little so their error bars do not overlap.
                shift = (k - (len(line_keys) - 1) / 2) * 0.08
                label = ", ".join(f"{c.removeprefix('cfg.')}={v}" for c, v in zip(lines, key))
                ax.errorbar(np.sort(pos) + shift, part["r_mean"], yerr=_errors(part),
                            marker="o", linestyle=style, capsize=3, label=label)
            ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
            ax.set_xticks(range(len(x_ticks)), tick_labels)
            ax.set_xlabel(x.removeprefix("cfg."))
            ax.set_title(task + (f" | {row.removeprefix('cfg.')}={row_name}" if row else ""))
            if ax in axes[:, 0]:
                ax.set_ylabel("r_t (%)")
    if lines:
        axes[0, 0].legend(fontsize="small")
    if numbered:
        fig.supxlabel("\n".join(f"{i + 1}: {x.removeprefix('cfg.')}={v}" for i, v in enumerate(x_ticks)),
                      fontsize="small", ha="left", x=0.02)
    fig.suptitle(PLOT_TITLE, fontsize="medium")
    return fig


def _plot_bars(table: pd.DataFrame, tasks: list[str]) -> Figure:
    # Nothing varies: one bar per configuration and task.
    names = table["label"].fillna("").astype(str)
    names = names.where(names.ne(""), table["config_hash"].str[:8]).map(wrap_label)
    lines = max((n.count("\n") + 1 for n in names), default=1)
    nrows, ncols = panel_grid(len(tasks))
    fig = new_figure(max(4 * ncols, 6), (3 + 0.15 * lines) * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[max(len(tasks), 1):]:
        ax.set_axis_off()
    for ax, task in zip(axes, tasks):
        part = table[table["task"].eq(task)]
        ax.bar(range(len(part)), part["r_mean"].fillna(0.0), yerr=_errors(part), capsize=3)
        ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(part)), list(names[part.index]), fontsize="small")
        ax.set_title(task)
        ax.set_ylabel("r_t (%)")
    if not tasks:
        axes[0].text(0.5, 0.5, "no multi-task configuration", ha="center", va="center")
    fig.suptitle(PLOT_TITLE, fontsize="medium")
    return fig

