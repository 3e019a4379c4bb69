"""Heatmaps of delta_m and per-task r_t over two config columns, one row of panels per value of
the remaining varying columns.

Preferred axes: sharing depth (x) by method (y), one panel row per schedule. When those do not
vary, any other varying config columns stand in, so a study over, say, task correlation still
gets its map.
"""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.image import AxesImage

from harness.analysis import cfg_text, short_names, varying_columns
from harness.report.common import new_figure, ordered, symmetric_limit
from harness.report.document import Block, Plot, skipped

X_COLUMN, Y_COLUMN, PANEL_COLUMN = "cfg.model.shared_depth", "cfg.method.name", "cfg.schedule.name"
MAX_PANELS = 8
CAPTION = ("Heatmaps of delta_m and of mean r_t per task (%, positive = multi-task helped); "
           "* marks a Holm-corrected positive or negative verdict; grey: no configuration")


def heatmap_layout(varying: list[str]) -> tuple[str, str, list[str]] | None:
    """(x column, y column, panel columns) from the varying config columns; None below two."""
    if len(varying) < 2:
        return None
    # The schedule is the last resort for an axis: it reads best as one panel row per schedule.
    spare = [c for c in varying if c not in (X_COLUMN, Y_COLUMN, PANEL_COLUMN)]
    if PANEL_COLUMN in varying:
        spare.append(PANEL_COLUMN)
    x = X_COLUMN if X_COLUMN in varying else spare.pop(0)
    y = Y_COLUMN if Y_COLUMN in varying else spare.pop(0)
    panels = [c for c in varying if c not in (x, y)]
    panels.sort(key=lambda c: c != PANEL_COLUMN)
    return x, y, panels


def _splitting(table: pd.DataFrame, fixed: list[str], candidates: list[str]) -> list[str]:
    """The candidates that split some cell further: a method's own coefficient, set only for
    that method, adds no panel row of its own."""
    kept: list[str] = []
    for c in candidates:
        text = table[[*fixed, *kept, c]].map(cfg_text)
        if text.groupby([*fixed, *kept])[c].nunique().max() > 1:
            kept.append(c)
    return kept


def _panels(table: pd.DataFrame, columns: list[str], names: dict[str, str]
            ) -> tuple[pd.Series, list[str]]:
    """Each row's panel name ("name=value, ..." over `columns`) and the names in value order."""
    if not columns:
        return pd.Series("", index=table.index), [""]
    rank = {c: {v: i for i, v in enumerate(map(cfg_text, ordered(table[c])))} for c in columns}
    text = table[columns].map(cfg_text)
    order = sorted(set(map(tuple, text.to_numpy())),
                   key=lambda t: [rank[c][v] for c, v in zip(columns, t)])

    def name(values) -> str:
        return ", ".join(f"{names[c]}={v}" for c, v in zip(columns, values))
    return text.apply(name, axis=1), [name(t) for t in order]


def _grid(rows: pd.DataFrame, x: str, y: str, xs: list[str], ys: list[str], value: str
          ) -> tuple[np.ndarray, np.ndarray]:
    """Matrix of `value` (ys by xs) and a matrix of cell marks ("*" for a clear verdict)."""
    grid, marks = np.full((len(ys), len(xs)), np.nan), np.full((len(ys), len(xs)), "", object)
    for _, r in rows.iterrows():
        i, j = ys.index(cfg_text(r[y])), xs.index(cfg_text(r[x]))
        grid[i, j] = r[value]
        if "verdict" in r and r["verdict"] in ("positive", "negative"):
            marks[i, j] = "*"
    return grid, marks


def _draw(ax: Axes, grid: np.ndarray, marks: np.ndarray, xs: list[str], ys: list[str],
          limit: float, title: str, xlabel: str, ylabel: str) -> AxesImage:
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-limit, vmax=limit,
                      aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            dark = abs(v) > 0.6 * limit
            ax.text(j, i, f"{v:.2f}{marks[i, j]}", ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    return image


def heatmap_blocks(table: pd.DataFrame) -> list[Block]:
    """The heatmap figure of a transfer table, or a note saying why there is none."""
    varying = varying_columns(table)
    layout = heatmap_layout(varying)
    if table.empty or layout is None:
        return [skipped(f"a heatmap needs two varying config columns; this sweep varies "
                        f"{len(varying)} ({', '.join(short_names(varying).values()) or 'none'}).")]
    x, y, panel_columns = layout
    panel_columns = _splitting(table, [x, y], panel_columns)
    names = short_names(varying)
    xs = [cfg_text(v) for v in ordered(table[x])]
    ys = [cfg_text(v) for v in ordered(table[y])]
    keys, panels = _panels(table, panel_columns, names)
    notes = []
    if len(panels) > MAX_PANELS:
        notes.append(f"Showing {MAX_PANELS} of {len(panels)} panel rows.")
        panels = panels[:MAX_PANELS]
    tasks = list(dict.fromkeys(table["task"]))
    # delta_m has no verdict of its own: the first task's must not mark its cells.
    configs = table.drop_duplicates("config_hash").drop(columns="verdict")
    columns = [("delta_m", configs, "delta_m")] + [
        (f"r_t {t}", table[table["task"].eq(t)], "r_mean") for t in tasks]
    # One symmetric scale for the whole figure: the same colour is the same % in every panel,
    # so delta_m and each task's r_t can be compared by eye.
    limit = symmetric_limit(np.concatenate([rows[value].to_numpy(float) for _, rows, value in columns]))
    limits = [limit] * len(columns)
    fig = new_figure(len(columns) * (2.2 + 0.7 * len(xs)),
                     len(panels) * (1.3 + 0.45 * len(ys)) + 0.3)
    # One subfigure per panel row: its name once above the row, not in every crowded title.
    for subfig, panel in zip(np.atleast_1d(fig.subfigures(len(panels), 1)), panels):
        if panel:
            subfig.suptitle(panel, fontsize="medium")
        for ax, (name, rows, value), limit in zip(subfig.subplots(1, len(columns)), columns,
                                                  limits):
            grid, marks = _grid(rows[keys.loc[rows.index].eq(panel)], x, y, xs, ys, value)
            image = _draw(ax, grid, marks, xs, ys, limit, name, names[x], names[y])
            subfig.colorbar(image, ax=ax, shrink=0.9, label="%")
    return [*notes, Plot("heatmaps", fig, CAPTION)]
