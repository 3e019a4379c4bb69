"""Method diagnostics: the values a weighting method reports about itself over training (e.g. a
task's loss scale or weighted gradient norm, a solver's residual), per configuration.

Records carry them as curves["diagnostics"]: "<name>.<task>" for a per-task value, "<name>" for a
scalar one, each a list with one value per evaluation (the mean over that evaluation window).
"""
from __future__ import annotations

import pandas as pd

from harness.report.common import band, capped, config_names, draw_band, new_figure, wrap_label
from harness.report.curves import configs_with, select
from harness.report.document import Block, Gallery, Plot

SERIES = "diagnostics"
MAX_PANELS = 6  # diagnostic names drawn per configuration; the caption counts the rest
EXPLAIN = ("Per multi-task configuration, the values its method reports about itself over "
           "training, one panel per diagnostic and one line per task (a scalar diagnostic has "
           "one line): mean over seeds with a min-max band; each evaluation averages the steps "
           "since the previous one.")


def panels(keys: list[str], tasks: set[str]) -> dict[str, list[str]]:
    """Diagnostic name -> its keys, in order: "<name>.<task>" keys share their name's panel."""
    grouped: dict[str, list[str]] = {}
    for key in keys:
        name, _, task = key.rpartition(".")
        grouped.setdefault(name if name and task in tasks else key, []).append(key)
    return grouped


def _plot_config(values: pd.DataFrame, config: str, name: str, tasks: set[str]) -> Plot:
    grouped = panels(sorted(values["key"].unique()), tasks)
    shown = list(grouped)[:MAX_PANELS]
    fig = new_figure(max(2.8 * len(shown), 4.0), 2.7)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, panel in zip(axes, shown):
        for k, key in enumerate(grouped[panel]):
            label = key.removeprefix(f"{panel}.") if key != panel else panel
            draw_band(ax, band(values[values["key"].eq(key)]), label, f"C{k % 10}")
        ax.set_title(panel, fontsize="medium")
        ax.set_xlabel("step")
        if grouped[panel] != [panel]:  # per-task lines
            ax.legend(fontsize="x-small")
    fig.suptitle(wrap_label(name, width=70, max_lines=3), fontsize="medium")
    left_out = len(grouped) - len(shown)
    caption = (f"{name}: method diagnostics over training; mean and min-max band over seeds"
               + (f" ({left_out} more diagnostics not drawn)" if left_out else ""))
    return Plot(f"diagnostics_{config}", fig, caption)


def diagnostics_blocks(table: pd.DataFrame, curves: pd.DataFrame) -> list[Block]:
    """Explanation and one figure per configuration with diagnostics (capped); no blocks when
    no record of the report has any (the section is then left out)."""
    having = configs_with(curves, SERIES)
    configs = [c for c in dict.fromkeys(table["config_hash"]) if c in having]
    if not configs:
        return []
    shown, notes = capped(configs, "configurations")
    names = config_names(table)
    plots = []
    for config in shown:
        tasks = set(table.loc[table["config_hash"].eq(config), "task"].astype(str))
        plots.append(_plot_config(select(curves, config, SERIES), config, names[config], tasks))
    return [EXPLAIN, *notes, Gallery(plots)]
