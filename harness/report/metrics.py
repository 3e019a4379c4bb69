"""The report's table of the tasks' secondary metrics (harness.analysis.metric_table): the
primary ones are in the transfer table, so only the others are shown here."""
from __future__ import annotations

import pandas as pd

from harness.analysis import format_transfer
from harness.report.document import Block, Table

TEXT = ("Secondary metrics: per configuration, task and metric other than the primary one, the "
        "single-task (stl) and multi-task (mtl) metric with 95% intervals over the paired seeds and "
        "the relative change r (%, positive = better in that metric's own direction). No verdict: "
        "the verdict is on the primary metric. delta_m averages each task's metrics, these "
        "included, before averaging over tasks (Conventions).")


def secondary_blocks(metrics: pd.DataFrame) -> list[Block]:
    """The text and table of the secondary metrics; nothing when no task has any."""
    secondary = metrics[~metrics["primary"]]
    if secondary.empty:
        return []
    # Config columns that vary across the whole table, so rows line up with the transfer table.
    shown = format_transfer(metrics, ("task", "metric", "n", "stl", "mtl", "r"))
    return [TEXT, Table(shown[~metrics["primary"].to_numpy()].reset_index(drop=True))]
