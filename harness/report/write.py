"""Write a sweep's report: tables (parquet, CSV, markdown), figures, report.md and report.html.

Every file goes through `harness.records.atomic_write_bytes`, so a reader never sees a
half-written file. Figures of report.md live in `figures/`; report.html embeds them.
"""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.analysis import (MIN_SEEDS, conventions, format_transfer, metric_table, natural, paired,
                              to_markdown, transfer_table)
from harness.report import document, html
from harness.report.affinity import affinity_blocks
from harness.report.conflict import conflict_blocks
from harness.report.common import extreme_tasks
from harness.report.curves import curve_frame
from harness.report.diagnostics import diagnostics_blocks
from harness.report.document import Plot, Section, Table
from harness.report.groups import groups_blocks, groups_markdown, measured
from harness.report.heatmaps import heatmap_blocks
from harness.report.learning import learning_blocks
from harness.report.metrics import secondary_blocks
from harness.report.ranking import ranking_blocks
from harness.report.tradeoff import tradeoff_blocks
from harness.report.transfer_plot import plot_transfer
from harness.records import Record, atomic_write_bytes, atomic_write_text, load_records


def _summary(runs: pd.DataFrame, table: pd.DataFrame, split: str) -> str:
    kinds = runs["kind"].value_counts()
    statuses = runs["status"].value_counts()
    n = table["n"]
    return "\n".join([
        f"- Configurations: {runs.loc[runs['kind'].eq('mtl'), 'config_hash'].nunique()} "
        f"multi-task, {runs.loc[runs['kind'].eq('stl'), 'config_hash'].nunique()} "
        "single-task baselines",
        f"- Runs: {len(runs)} ({kinds.get('mtl', 0)} multi-task, {kinds.get('stl', 0)} "
        f"single-task; {statuses.get('ok', 0)} ok, {statuses.get('diverged', 0)} diverged, "
        f"{statuses.get('failed', 0)} failed)",
        f"- Seeds: {runs['seed'].nunique()} distinct; paired seeds per configuration and task: "
        + (f"{n.min()} to {n.max()}" if len(n) else "none"),
        f"- Metrics on the `{split}` split",
    ])


def _underpowered_warning(table: pd.DataFrame) -> list[str]:
    weak = table[table["underpowered"]]
    if weak.empty:
        return []
    return [f"> **Underpowered:** configurations with fewer than {MIN_SEEDS} paired seeds on "
            f"some task: {weak['config_hash'].nunique()} of {table['config_hash'].nunique()}; "
            "their verdicts are marked underpowered."]


def _baseline_warning(table: pd.DataFrame) -> list[str]:
    """One quote per kind of baseline check that fired, naming the tasks (see CONVENTIONS)."""
    lines = []
    checks = table["baseline_check"].fillna("")
    for flag, meaning in (("below ref", "their single-task baseline is worse than a linear model "
                                        "on the same split, so a positive r_t may only make up "
                                        "for a weak baseline"),
                          ("improving", "their baseline's validation metric was still improving at "
                                        "the end: more steps would move the comparison"),
                          ("worsening", "their baseline's validation metric was getting worse at "
                                        "the end (overfitting; the selected evaluation is earlier)")):
        hit = table[checks.str.contains(flag)]
        if not hit.empty:
            tasks = ", ".join(sorted(hit["task"].astype(str).unique(), key=natural))
            lines.append(f"> **Baseline {flag}:** tasks {tasks} in {hit['config_hash'].nunique()} of "
                         f"{table['config_hash'].nunique()} configurations: {meaning}.")
    return lines


def _sections(runs: pd.DataFrame, table: pd.DataFrame, metrics: pd.DataFrame, curves: pd.DataFrame,
              split: str, groupings: pd.DataFrame) -> list[Section]:
    tasks, task_notes = extreme_tasks(table)
    transfer = Plot("transfer", plot_transfer(table[table["task"].isin(tasks)]),
                    "mean r_t per task with its interval", folder="")
    # Only methods that report diagnostics have them: no section (not even a note) otherwise.
    diagnostics = diagnostics_blocks(table, curves)
    secondary = secondary_blocks(metrics)
    return [
        Section("Conventions", [conventions(table)]),
        Section("Transfer", [
            "Negative-transfer table: per configuration and task, the single-task (stl) and "
            "multi-task (mtl) metric with 95% intervals, the linear reference (ref), the relative "
            "change r_t, the smallest change the row could have detected at 80% power (mde), the "
            "Holm-corrected verdict, delta_m and the baseline checks. In report.html, click a "
            "header to sort.",
            Table(format_transfer(table)), *task_notes, transfer]),
        *([Section("Secondary metrics", secondary)] if secondary else []),
        Section("Ranking", ranking_blocks(table, paired(runs, split), runs)),
        Section("Heatmaps", heatmap_blocks(table)),
        Section("Learning curves", learning_blocks(table, runs, curves, split)),
        Section("Trade-off", tradeoff_blocks(table, runs)),
        Section("Gradient conflict", conflict_blocks(table, curves)),
        Section("Task affinity", affinity_blocks(table, curves)),
        *([Section("Task groupings, trained", groups_blocks(groupings))] if not groupings.empty else []),
        *([Section("Method diagnostics", diagnostics)] if diagnostics else []),
    ]


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_report(runs: pd.DataFrame, out_dir: str | os.PathLike,
                 title: str = "Multi-task transfer report", split: str = "test",
                 records: Sequence[Record | dict] | None = None, skipped: int = 0) -> dict[str, Path]:
    """Write runs.{parquet,csv}, transfer.{parquet,md,png}, figures/*.png, report.md and
    report.html into out_dir; metrics.parquet (every metric's r, harness.analysis.metric_table)
    too where tasks have secondary metrics; groupings.{csv,md} (harness.report.groups) where the
    sweep trained the groups TAG suggested from one of its configurations' affinity.

    `runs` is the runs table of `harness.records.collect`; `records` (default: every record
    found under out_dir) supply learning curves and diagnostics; `skipped` counts the record files
    collect could not read (said in the report's header). Returns the written paths keyed
    by their path relative to out_dir.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, metrics = transfer_table(runs, split), metric_table(runs, split)
    curves = curve_frame(load_records(out) if records is None else records)
    groupings = measured(table, metrics, curves)
    sections = _sections(runs, table, metrics, curves, split, groupings)
    figures = document.plots(sections)
    intro = [_summary(runs, table, split), *_underpowered_warning(table), *_baseline_warning(table)]
    if skipped:
        intro.append(f"{skipped} record file{' was' if skipped == 1 else 's were'} skipped (unreadable, or of "
                     "a schema version this harness does not read); `python -m harness.collect` lists them.")
    files = {
        "runs.parquet": _parquet(runs), "runs.csv": runs.to_csv(index=False).encode(),
        "transfer.parquet": _parquet(table),
        "transfer.md": f"# Transfer\n\n{conventions(table)}\n{to_markdown(table)}\n".encode(),
        **{plot.path: plot.png for plot in figures},
    }
    if not metrics["primary"].all():  # tasks with secondary metrics: every metric's r
        files["metrics.parquet"] = _parquet(metrics)
    if not groupings.empty:
        files["groupings.csv"] = groupings.to_csv(index=False).encode()
        files["groupings.md"] = groups_markdown(groupings).encode()
    paths = {name: out / name for name in files}
    for name, data in files.items():
        atomic_write_bytes(paths[name], data)
    _remove_stale_figures(out / "figures", {plot.path for plot in figures}, out)
    for name, render in (("report.md", document.to_markdown), ("report.html", html.to_html)):
        paths[name] = out / name
        atomic_write_text(paths[name], render(title, intro, sections))
    return paths


def _remove_stale_figures(folder: Path, keep: set[str], out: Path) -> None:
    # Figures of configurations no longer in the sweep would otherwise linger.
    for path in folder.glob("*.png"):
        if path.relative_to(out).as_posix() not in keep:
            path.unlink()
