"""Helpers shared by the report's figures: value ordering, configuration names, bands, caps."""
from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.analysis import cfg_text, natural, short_names, varying_columns

# Figures drawn per configuration stop here; the report says how many were left out.
MAX_CONFIGS = 24
# Per-task panels in one figure stop here; beyond, the tasks with the extreme mean r_t.
MAX_TASK_PANELS = 12
PANEL_COLUMNS = 4  # per-task panels wrap into rows of this many


def new_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas (no display, no pyplot state)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def ordered(values: pd.Series) -> list:
    """Distinct values, numbers in numeric order, anything else by its text with the numbers
    inside it in numeric order (as the tables sort)."""
    unique = pd.Series(values.unique())
    if pd.api.types.is_numeric_dtype(unique):
        return list(unique.sort_values())
    return sorted(unique, key=lambda v: natural(str(v)))


def config_names(table: pd.DataFrame, columns: Sequence[str] | None = None) -> dict[str, str]:
    """Per config hash, in table order, "name=value, ..." over `columns` (default: the varying
    config columns, short names); the label or hash prefix when none vary."""
    columns = varying_columns(table) if columns is None else list(columns)
    first = table.drop_duplicates("config_hash").set_index("config_hash")
    if not columns:
        label = first["label"].fillna("").astype(str)
        return {h: label[h] or h[:8] for h in first.index}
    names = short_names(columns)
    return {h: ", ".join(f"{names[c]}={cfg_text(first.at[h, c])}" for c in columns)
            for h in first.index}


def config_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Per config hash (the index), the varying config columns as text under their short names;
    one `config` column (label or hash prefix) when none vary. Leading columns of summary tables."""
    varying = varying_columns(table)
    first = table.drop_duplicates("config_hash").set_index("config_hash")
    if not varying:
        return pd.DataFrame({"config": pd.Series(config_names(table))})
    return first[varying].map(cfg_text).rename(columns=short_names(varying))


def capped(items: list, what: str, limit: int = MAX_CONFIGS) -> tuple[list, list[str]]:
    """The first `limit` items, and a note saying how many were left out (none if all fit)."""
    if len(items) <= limit:
        return items, []
    return items[:limit], [f"Showing the first {limit} of {len(items)} {what}, in table order."]


def extreme_tasks(table: pd.DataFrame, limit: int = MAX_TASK_PANELS) -> tuple[list[str], list[str]]:
    """The tasks to draw, in natural order (Class2 before Class10): every task up to `limit`; beyond, the limit/2 with the
    lowest and the limit/2 with the highest mean r_t over configurations (with 14 or 40 tasks
    the extremes are what a reader looks for); and a note saying so."""
    tasks = sorted(dict.fromkeys(table["task"]), key=natural)
    if len(tasks) <= limit:
        return tasks, []
    ranked = table.groupby("task", sort=False)["r_mean"].mean().dropna().sort_values(kind="stable")
    low = limit // 2
    keep = {*ranked.index[:low], *ranked.index[max(low, len(ranked) - (limit - low)):]}
    shown = [t for t in tasks if t in keep]
    return shown, [f"Showing {len(shown)} of {len(tasks)} tasks: the {low} with the lowest and the "
                   f"{limit - low} with the highest mean r_t over configurations; the transfer "
                   "table has every task."]


def panel_grid(count: int) -> tuple[int, int]:
    """(rows, columns) for `count` per-task panels, PANEL_COLUMNS to a row."""
    columns = max(1, min(count, PANEL_COLUMNS))
    return -(-max(count, 1) // columns), columns


def band(values: pd.DataFrame) -> pd.DataFrame:
    """Per step: mean, min and max over seeds of `value` (columns seed, step, value)."""
    return values.groupby("step")["value"].agg(mean="mean", lo="min", hi="max", n="count")


def draw_band(ax: Axes, b: pd.DataFrame, label: str, color, linestyle: str = "-") -> None:
    """Mean line with a shaded min-max band over seeds."""
    ax.plot(b.index, b["mean"], color=color, linestyle=linestyle, label=label)
    ax.fill_between(b.index, b["lo"], b["hi"], color=color, alpha=0.2, linewidth=0)


def symmetric_limit(values: np.ndarray) -> float:
    """Half-width of a colour scale centred on 0 that holds every finite value."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def wrap_label(label: str, width: int = 28, max_lines: int = 6) -> str:
    """A configuration's label wrapped at its commas: a command line's overrides on one line
    would squeeze a plot's axes to nothing or run off the figure."""
    lines = textwrap.wrap(label.replace(",", ", "), width) or [""]
    return "\n".join(lines[:max_lines - 1] + ["..."] if len(lines) > max_lines else lines)
