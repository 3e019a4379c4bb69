"""harness.report: every file written atomically, tables round-trip, plot layout follows the sweep."""
import math
import os

import pandas as pd
import pytest

from harness.analysis import CONVENTIONS, transfer_table
from harness.report import plot_transfer, write_report

FILES = {"runs.parquet", "runs.csv", "transfer.parquet", "transfer.md", "transfer.png",
         "report.md"}
TASKS = {"acc": ("accuracy", False), "err": ("mse", True)}


def make_runs(configs, seeds=5, failed=()):
    """Baselines for both tasks plus one mtl config per cfg dict; mtl values move with depth.

    failed: (config index, seed) pairs whose mtl run diverged.
    """
    rows = []

    def add(kind, config, seed, values, cfg, status="ok"):
        row = {"kind": kind, "config_hash": config, "label": "", "seed": seed, "status": status,
               "diverged_step": 10.0 if status == "diverged" else math.nan,
               "task": next(iter(values)) if kind == "stl" else None,
               "compile_s": 1.5, "run_s": 3.0, "cfg.data.name": "toy"}
        for task, (metric, lower) in TASKS.items():
            value = values.get(task, math.nan) if status == "ok" else math.nan
            row.update({f"test.{task}": value, f"val.{task}": value, f"metric.{task}": metric,
                        f"lower_is_better.{task}": lower,
                        f"baseline.{task}": f"stl-{task}" if kind == "mtl" else None})
        row.update({f"cfg.{k}": v for k, v in cfg.items()})
        rows.append(row)

    for seed in range(seeds):
        add("stl", "stl-acc", seed, {"acc": 0.8 + 0.01 * seed}, {})
        add("stl", "stl-err", seed, {"err": 1.0 - 0.01 * seed}, {})
        for i, cfg in enumerate(configs):
            depth = cfg.get("model.shared_depth", 1)
            add("mtl", f"cfg{i}", seed,
                {"acc": 0.78 + 0.02 * depth + 0.01 * seed, "err": 1.05 - 0.03 * depth + 0.005 * seed},
                cfg, "diverged" if (i, seed) in failed else "ok")
    return pd.DataFrame(rows)


def grid(depths=(1, 2), schedules=("joint", "alternate"), correlations=(0.2, 0.8),
         methods=("equal",)):
    return [{"model.shared_depth": d, "schedule.name": s, "data.correlation": c, "method.name": m}
            for d in depths for s in schedules for c in correlations for m in methods]


def test_writes_every_file_atomically(tmp_path):
    runs = make_runs(grid(), failed={(0, 4)})
    paths = write_report(runs, tmp_path / "out", title="Depth study")
    assert set(paths) == FILES and all(p.parent == tmp_path / "out" for p in paths.values())
    assert set(os.listdir(tmp_path / "out")) == FILES  # no temporary file left behind
    png = paths["transfer.png"].read_bytes()
    assert len(png) > 1000 and png.startswith(b"\x89PNG\r\n\x1a\n")
    pd.testing.assert_frame_equal(pd.read_parquet(paths["transfer.parquet"]),
                                  transfer_table(runs))
    pd.testing.assert_frame_equal(pd.read_parquet(paths["runs.parquet"]), runs)
    assert len(pd.read_csv(paths["runs.csv"])) == len(runs)
    assert CONVENTIONS in paths["transfer.md"].read_text()


def test_report_text(tmp_path):
    report = write_report(make_runs(grid(), failed={(0, 4)}), tmp_path,
                          title="Depth study")["report.md"].read_text()
    assert report.startswith("# Depth study\n")
    assert "8 multi-task, 2 single-task baselines" in report
    assert "Runs: 50 (40 multi-task, 10 single-task; 49 ok, 1 diverged, 0 failed)" in report
    assert CONVENTIONS in report and "![" in report and "(transfer.png)" in report
    assert "> **Underpowered:** configurations with fewer than 5 paired seeds" in report
    assert "some task: 1 of 8;" in report
    assert "| shared_depth" in report and "correlation" in report and "method" not in report
    healthy = write_report(make_runs(grid()), tmp_path / "b")["report.md"].read_text()
    assert "> **Underpowered:**" not in healthy


def test_rewrite_replaces_files_and_failed_write_leaves_no_temp(tmp_path, monkeypatch):
    write_report(make_runs(grid(), seeds=3), tmp_path)
    write_report(make_runs(grid(), seeds=6), tmp_path)
    assert pd.read_parquet(tmp_path / "runs.parquet")["seed"].nunique() == 6
    assert set(os.listdir(tmp_path)) == FILES

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        write_report(make_runs(grid(), seeds=2), tmp_path)
    assert set(os.listdir(tmp_path)) == FILES
    assert pd.read_csv(tmp_path / "runs.csv")["seed"].nunique() == 6


def test_plot_layout_follows_varying_columns():
    table = transfer_table(make_runs(grid(methods=("equal", "pcgrad"))))
    axes = plot_transfer(table).axes
    assert len(axes) == 2 * 2  # correlation rows x task columns
    assert {ax.get_xlabel() for ax in axes} == {"model.shared_depth"}
    assert axes[0].get_title() == "acc | data.correlation=0.2"
    labels = axes[0].get_legend_handles_labels()[1]
    assert len(labels) == 4 and "schedule.name=alternate, method.name=equal" in labels


def test_plot_without_preferred_or_varying_columns(tmp_path):
    only_method = transfer_table(make_runs([{"method.name": "equal"}, {"method.name": "pcgrad"}]))
    axes = plot_transfer(only_method).axes
    assert len(axes) == 2 and axes[0].get_xlabel() == "method.name"
    single = make_runs([{"model.shared_depth": 1}], seeds=1)
    paths = write_report(single, tmp_path)
    assert paths["transfer.png"].read_bytes().startswith(b"\x89PNG")
    assert "inconclusive, underpowered" in paths["report.md"].read_text()


def test_report_without_multitask_runs(tmp_path):
    runs = make_runs([])
    paths = write_report(runs, tmp_path)
    assert transfer_table(runs).empty and set(os.listdir(tmp_path)) == FILES
