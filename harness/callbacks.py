"""Hydra callback: collect the table and report when a run or sweep ends."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def finish(out_dir: Path, title: str) -> None:
    """Collect every record under out_dir, write the tables and report, say where they went.

    Files that are not readable records (an unknown schema version, empty, truncated, foreign)
    are skipped: one line each, their count at the end and in the report's header.
    """
    from harness.records import collect, skipped_summary
    from harness.report import write_report

    skipped = []
    runs = collect(out_dir, skipped)
    for err in skipped:
        print(f"skipped {err}")
    if runs.empty or not (runs["kind"] == "mtl").any():
        print(f"no multi-task runs under {out_dir}: nothing to tabulate")
    else:
        paths = write_report(runs, out_dir, title=title, skipped=len(skipped))
        print(f"table:  {paths.get('transfer.md', out_dir)}")
        print(f"report: {paths.get('report.md', out_dir)}")
        print(f"html:   {paths.get('report.html', out_dir)}")
    if skipped:
        print(skipped_summary(skipped))


class CollectTable(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish(Path(config.hydra.sweep.dir), title=f"Study: {config.study}")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish(Path(config.hydra.run.dir), title=f"Run: {config.study}")
