"""harness.report: every file written atomically, tables round-trip, plot layout follows the sweep,
the HTML report is self-contained, and each section appears exactly when its data exists."""
import base64
import math
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from harness.analysis import CONVENTIONS, transfer_table
from harness.report import plot_transfer, write_report
from harness.report.__main__ import main
from harness.report.curves import curve_frame
from harness.report.diagnostics import diagnostics_blocks
from harness.report.heatmaps import heatmap_blocks, heatmap_layout
from harness.report.learning import learning_blocks
from harness.report.tradeoff import tradeoff_blocks
from harness.records import collect, load_record, load_records, write_json, write_record

TOP = {"runs.parquet", "runs.csv", "transfer.parquet", "transfer.md", "transfer.png",
       "report.md", "report.html", "figures"}
FILES = TOP - {"figures"} | {"figures/heatmaps.png", "figures/tradeoff.png"}
TASKS = {"acc": ("accuracy", False), "err": ("mse", True)}
SECTIONS = ("Conventions", "Transfer", "Heatmaps", "Learning curves", "Trade-off",
            "Gradient conflict", "Task affinity")
PNG = b"\x89PNG\r\n\x1a\n"


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


SMALL = grid(schedules=("joint",), correlations=(0.5,), methods=("equal", "pcgrad"))

# A sweep on disk, laid out as harness.run.write writes it.
STEPS = [10, 20, 30]
SPECS = {"acc": ("accuracy", False), "err": ("mse", True), "aux": ("accuracy", False)}
COS, CONFLICT, NORMS = (-0.2, -0.1, 0.0), 0.25, {"acc": 2.0, "err": 1.0, "aux": 4.0}
AFFINITY = {"acc>err": 0.3, "err>acc": 0.1, "acc>aux": -0.2, "aux>acc": -0.1,
            "err>aux": -0.3, "aux>err": -0.2}


def curve(base, seed):
    """A task's metric per evaluation: rises by 0.01 per evaluation and by 0.1 per seed."""
    return [base + 0.1 * seed + 0.01 * i for i in range(len(STEPS))]


def record(kind, config, seed, bases, diagnostics=False, affinity=False):
    tasks = list(bases)
    curves = {"steps": STEPS, **{series: {t: curve(b, seed) for t, b in bases.items()}
                                 for series in ("val", "test", "val_loss", "train_loss")}}
    pairs = [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1:]]
    if diagnostics and pairs:
        curves["grad_cos"] = {f"{a}|{b}": [COS[seed]] * len(STEPS) for a, b in pairs}
        curves["conflict"] = {f"{a}|{b}": [CONFLICT] * len(STEPS) for a, b in pairs}
        curves["grad_norm"] = {t: [NORMS[t]] * len(STEPS) for t in tasks}
    if affinity and pairs:
        curves["affinity"] = {k: [v] * len(STEPS) for k, v in AFFINITY.items()
                              if set(k.split(">")) <= set(tasks)}
    return {
        "kind": kind, "config_hash": config["hash"], "label": config.get("label", ""),
        "seed": seed, "status": "ok", "diverged_step": None,
        "task": tasks[0] if kind == "stl" else None, "tasks": tasks,
        "timing": {"compile_s": 1.0, "run_s": 2.0},
        "metrics": {s: {t: v[-1] for t, v in curves[s].items()} for s in ("val", "test")},
        "task_specs": {t: {"metric": SPECS[t][0], "lower_is_better": SPECS[t][1]} for t in tasks},
        "config": config["cfg"], "curves": curves}


def make_sweep(root, seeds=3, tasks=("acc", "err"), depths=(1, 2), methods=("equal", "pcgrad"),
               diagnostics=False, affinity=False):
    """MTL configs (depth x method, joint schedule) with their STL baselines under root."""
    for t in tasks:
        cfg = {"hash": f"stl{t}", "cfg": {"data": {"name": "toy"}, "model": {"shared_depth": 0},
                                          "task": t}}
        for s in range(seeds):
            write_json(root / "baselines" / cfg["hash"] / f"seed_{s}.json",
                       record("stl", cfg, s, {t: 1.0}))
    for d in depths:
        for m in methods:
            label = f"model.shared_depth={d},method={m}"
            cfg = {"hash": f"mtl{d}{m}", "label": label, "cfg": {
                "data": {"name": "toy"}, "model": {"shared_depth": d}, "method": {"name": m},
                "schedule": {"name": "joint"}}}
            for s in range(seeds):
                rec = record("mtl", cfg, s, {t: 1.0 + 0.05 * d for t in tasks},
                             diagnostics, affinity)
                rec.update(baselines={t: f"stl{t}" for t in tasks},
                           baseline_dir="../../baselines")
                write_json(root / label / "runs" / f"seed_{s}.json", rec)
    return root


def report(root, **kwargs):
    paths = write_report(collect(root), root, title="Sweep", **kwargs)
    return paths, paths["report.md"].read_text(), paths["report.html"].read_text()


def test_writes_every_file_atomically(tmp_path):
    runs = make_runs(grid(), failed={(0, 4)})
    paths = write_report(runs, tmp_path / "out", title="Depth study")
    assert set(paths) == FILES and all(p == tmp_path / "out" / k for k, p in paths.items())
    assert set(os.listdir(tmp_path / "out")) == TOP  # no temporary file left behind
    assert set(os.listdir(tmp_path / "out" / "figures")) == {"heatmaps.png", "tradeoff.png"}
    png = paths["transfer.png"].read_bytes()
    assert len(png) > 1000 and png.startswith(PNG)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["transfer.parquet"]),
                                  transfer_table(runs))
    pd.testing.assert_frame_equal(pd.read_parquet(paths["runs.parquet"]), runs)
    assert len(pd.read_csv(paths["runs.csv"])) == len(runs)
    assert CONVENTIONS in paths["transfer.md"].read_text()


def test_report_text(tmp_path):
    report_md = write_report(make_runs(grid(), failed={(0, 4)}), tmp_path,
                             title="Depth study")["report.md"].read_text()
    assert report_md.startswith("# Depth study\n")
    assert "8 multi-task, 2 single-task baselines" in report_md
    assert "Runs: 50 (40 multi-task, 10 single-task; 49 ok, 1 diverged, 0 failed)" in report_md
    assert CONVENTIONS in report_md and "(transfer.png)" in report_md
    assert "> **Underpowered:** configurations with fewer than 5 paired seeds" in report_md
    assert "some task: 1 of 8;" in report_md
    assert "| shared_depth" in report_md and "correlation" in report_md
    assert "| method" not in report_md
    healthy = write_report(make_runs(SMALL), tmp_path / "b")["report.md"].read_text()
    assert "> **Underpowered:**" not in healthy


def test_secondary_metrics_get_their_own_section_and_table_only_when_recorded(tmp_path):
    runs = make_runs(SMALL)
    plain = write_report(runs, tmp_path / "plain")
    assert "metrics.parquet" not in plain and "## Secondary metrics" not in plain["report.md"].read_text()
    with_mae = runs.copy()
    err = with_mae["kind"].eq("mtl") | with_mae["config_hash"].eq("stl-err")
    with_mae.loc[err, "secondary.err"] = "mae"
    with_mae.loc[err, "lower_is_better.err.mae"] = True
    # mtl's MAE is 10% above its baseline's on every seed: r = -10 however the seeds differ.
    mae = 0.5 + 0.01 * with_mae["seed"] * with_mae["kind"].eq("stl")
    mae = mae.where(with_mae["kind"].eq("stl"), 0.55 + 0.011 * with_mae["seed"])
    with_mae.loc[err, "test.err.mae"] = with_mae.loc[err, "val.err.mae"] = mae[err]
    paths = write_report(with_mae, tmp_path / "mae")
    section = paths["report.md"].read_text().split("## Secondary metrics")[1].split("\n## ")[0]
    assert "| err" in section and "mae (lower better)" in section and "-10 [-10, -10]" in section
    assert "accuracy" not in section and "mse" not in section  # the primary ones are in Transfer
    table = pd.read_parquet(paths["metrics.parquet"])
    assert table[["task", "metric"]].values.tolist()[:3] == [["acc", "accuracy"], ["err", "mse"], ["err", "mae"]]


def test_rewrite_replaces_files_and_failed_write_leaves_no_temp(tmp_path, monkeypatch):
    write_report(make_runs(SMALL, seeds=3), tmp_path)
    write_report(make_runs(SMALL, seeds=6), tmp_path)
    assert pd.read_parquet(tmp_path / "runs.parquet")["seed"].nunique() == 6
    assert set(os.listdir(tmp_path)) == TOP

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        write_report(make_runs(SMALL, seeds=2), tmp_path)
    assert set(os.listdir(tmp_path)) == TOP
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
    assert paths["transfer.png"].read_bytes().startswith(PNG)
    assert "inconclusive, underpowered" in paths["report.md"].read_text()


def test_report_without_multitask_runs(tmp_path):
    runs = make_runs([])
    paths = write_report(runs, tmp_path)
    assert transfer_table(runs).empty and set(os.listdir(tmp_path)) == TOP - {"figures"}
    assert "no multi-task configuration" not in paths["report.md"].read_text()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The report of a sweep with every optional field (rendered once: figures are slow)."""
    return report(make_sweep(tmp_path_factory.mktemp("full"), diagnostics=True, affinity=True))


def test_html_is_self_contained_and_sortable(full):
    paths, _, html = full
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "<link" not in html and "<script src" not in html and "@import" not in html
    images = re.findall(r'<img [^>]*src="([^"]*)"', html)
    figures = [k for k in paths if k.endswith(".png")]
    # transfer, heatmaps, trade-off, affinity; learning curves and conflict per configuration
    assert len(images) == len(figures) == 4 + 2 * 4
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG)
    assert html.count('<table class="sortable">') == 4  # transfer, ranking, conflict, groupings
    script = html[html.index("<script>"):html.index("</script>")]
    assert 'addEventListener("click"' in script and "aria-sort" in script


def test_every_section_appears_with_its_data(full):
    paths, md, html = full
    for title in SECTIONS:
        assert f"## {title}\n" in md and f">{title}</h2>" in html
    assert "Skipped" not in md and "Skipped" not in html
    for name in ("heatmaps", "tradeoff", "affinity", *(f"{kind}_mtl{d}{m}" for kind in
                 ("curves", "conflict") for d in (1, 2) for m in ("equal", "pcgrad"))):
        assert f"(figures/{name}.png)" in md and paths[f"figures/{name}.png"].exists()
    # Conflict summary: cosine mean over seeds, conflict fraction, |g_acc| / |g_err| = 2.
    assert re.search(r"\| 1 +\| equal +\| acc\\\|err +\| 3 +\| -0\.1 \[[^]]+\] +\| 0\.25 +\| 2 ",
                     md)
    # Two tasks, positive affinity both ways: with a budget of 2 they stay together.
    assert re.search(r"\| 2 +\| \{acc, err\} +\| 0\.4 ", md)


def test_sections_skipped_with_a_note_without_their_data(tmp_path):
    root = make_sweep(tmp_path / "sweep", tasks=("acc", "err", "aux"), methods=("equal",))
    _, md, html = report(root)
    for title in SECTIONS:
        assert f"## {title}\n" in md and f">{title}</h2>" in html
    notes = {"Heatmaps": "needs two varying config columns; this sweep varies 1 (shared_depth)",
             "Trade-off": "needs exactly two tasks; this report has 3",
             "Gradient conflict": "`train.diagnostics=true`",
             "Task affinity": "`train.affinity=true`"}
    sections = dict(re.findall(r"## (.+?)\n(.*?)(?=\n## |\Z)", md, re.S))
    for title, note in notes.items():
        assert "> *Skipped:*" in sections[title] and note in sections[title]
        assert "<em>Skipped:</em>" in html
    assert "Skipped" not in sections["Learning curves"]
    # The same runs without their records: no curves to draw.
    elsewhere = write_report(collect(root), tmp_path / "elsewhere")["report.md"].read_text()
    assert "no multi-task record of this report has `test` learning curves" in elsewhere


@pytest.mark.parametrize("seeds,warned", [(4, True), (5, False)])
def test_underpowered_warning_iff_fewer_than_five_seeds(tmp_path, seeds, warned):
    root = make_sweep(tmp_path, seeds=seeds, depths=(1,), methods=("equal",))
    _, md, html = report(root)
    assert ("> **Underpowered:**" in md) == warned
    assert ("<blockquote><p><strong>Underpowered:</strong>" in html) == warned
    assert f"paired seeds per configuration and task: {seeds} to {seeds}" in md


def test_learning_curves_show_seed_mean_and_band_against_the_baseline(tmp_path):
    root = make_sweep(tmp_path, depths=(2,), methods=("equal",))
    runs = collect(root)
    curves = curve_frame(load_records(root))
    [gallery] = learning_blocks(transfer_table(runs), runs, curves, "test")
    [plot] = gallery.plots
    ax = plot.figure.axes[0]
    mtl, stl = ax.lines
    np.testing.assert_allclose(mtl.get_xdata(), STEPS)
    np.testing.assert_allclose(mtl.get_ydata(), [1.2, 1.21, 1.22])  # 1.1 + mean seed shift 0.1
    np.testing.assert_allclose(stl.get_ydata(), [1.1, 1.11, 1.12])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(1.1) and band.max() == pytest.approx(1.32)
    assert ax.get_ylabel() == "test accuracy (higher is better)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "multi-task (3 seeds)", "single-task (3 seeds)"]


def test_method_diagnostics_section_iff_a_record_has_them(tmp_path):
    root = make_sweep(tmp_path, depths=(1,), methods=("equal",))
    _, md, html = report(root)
    assert "Method diagnostics" not in md and "Method diagnostics" not in html
    assert not list((root / "figures").glob("diagnostics_*"))
    for seed, path in enumerate(sorted((root / "model.shared_depth=1,method=equal" / "runs")
                                       .glob("seed_*.json"))):
        rec = load_record(path)
        rec.curves["diagnostics"] = {"z.acc": [1.0 + seed] * 3, "z.err": [2.0] * 3,
                                     "residual": [0.1, 0.2, 0.3]}
        write_record(path, rec)
    paths, md, html = report(root)
    assert "## Method diagnostics\n" in md and ">Method diagnostics</h2>" in html
    name = "figures/diagnostics_mtl1equal.png"
    assert f"({name})" in md and paths[name].read_bytes().startswith(PNG)
    runs = collect(root)
    [_, gallery] = diagnostics_blocks(transfer_table(runs), curve_frame(load_records(root)))
    residual, z = gallery.plots[0].figure.axes  # one panel per name, one line per task
    assert (residual.get_title(), z.get_title()) == ("residual", "z")
    assert [t.get_text() for t in z.get_legend().get_texts()] == ["acc", "err"]
    np.testing.assert_allclose(z.lines[0].get_ydata(), [2.0] * 3)  # mean over seeds 0, 1, 2
    np.testing.assert_allclose(residual.lines[0].get_ydata(), [0.1, 0.2, 0.3])


def test_heatmap_layout_prefers_depth_by_method_per_schedule():
    d, m, s, c = ("cfg.model.shared_depth", "cfg.method.name", "cfg.schedule.name",
                  "cfg.data.correlation")
    assert heatmap_layout([c, m, d, s]) == (d, m, [s, c])
    assert heatmap_layout([c, d, s]) == (d, c, [s])  # the schedule stays the panel
    assert heatmap_layout([m, s]) == (s, m, [])
    assert heatmap_layout([d]) is None


def test_heatmap_cells_hold_delta_m_and_r_t():
    table = transfer_table(make_runs(grid(schedules=("joint",), correlations=(0.5,),
                                          methods=("equal", "pcgrad"))))
    [plot] = heatmap_blocks(table)
    delta_m, r_acc, r_err = plot.figure.axes[:3]
    assert delta_m.get_xlabel() == "shared_depth" and delta_m.get_ylabel() == "method"
    want = table.drop_duplicates("config_hash").pivot(
        index="cfg.method.name", columns="cfg.model.shared_depth", values="delta_m")
    np.testing.assert_allclose(delta_m.images[0].get_array(), want.to_numpy())
    acc = table[table["task"].eq("acc")].pivot(
        index="cfg.method.name", columns="cfg.model.shared_depth", values="r_mean")
    np.testing.assert_allclose(r_acc.images[0].get_array(), acc.to_numpy())
    assert "*" not in "".join(t.get_text() for t in delta_m.texts)  # no verdict for delta_m


def test_tradeoff_marks_single_task_and_better_direction():
    table = transfer_table(make_runs(grid(schedules=("joint",), correlations=(0.5,))))
    [plot] = tradeoff_blocks(table, make_runs(grid(schedules=("joint",), correlations=(0.5,))))
    ax = plot.figure.axes[0]
    assert ax.get_xlabel() == "acc: accuracy (higher is better \u2192)"
    assert ax.get_ylabel() == "err: mse (lower is better \u2190)"
    points = {bars.get_label(): (bars.lines[0].get_xdata()[0], bars.lines[0].get_ydata()[0])
              for bars in ax.containers}
    star = points.pop("single-task")
    acc, err = (table[table["task"].eq(t)] for t in ("acc", "err"))
    assert star == pytest.approx((acc["stl_mean"].iloc[0], err["stl_mean"].iloc[0]))
    np.testing.assert_allclose(sorted(points.values()),
                               sorted(zip(acc["mtl_mean"], err["mtl_mean"])))


def test_stale_figures_are_removed(tmp_path):
    root = make_sweep(tmp_path, depths=(1, 2), methods=("equal",))
    report(root)
    assert (root / "figures" / "curves_mtl2equal.png").exists()
    for path in (root / "model.shared_depth=2,method=equal" / "runs").glob("*.json"):
        path.unlink()
    report(root)
    assert not (root / "figures" / "curves_mtl2equal.png").exists()
    assert (root / "figures" / "curves_mtl1equal.png").exists()


def test_cli_writes_the_report_and_rejects_a_missing_directory(tmp_path, capsys):
    root = make_sweep(tmp_path / "sweep", depths=(1,), methods=("equal",))
    assert main([str(root)]) == 0
    assert "report.html: " in capsys.readouterr().out and (root / "report.html").exists()
    missing = tmp_path / "nope"
    res = subprocess.run([sys.executable, "-m", "harness.report", str(missing)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [
        f"error: sweep_dir='{missing}': an existing directory of run records"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "empty")])
    assert exit_.value.code == 2 and "error: sweep_dir=" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "report.md").exists()


def test_heatmap_adds_no_panel_for_a_method_coefficient():
    configs = [{"model.shared_depth": d, "method.name": m, **({"method.c": 0.4} if m == "cagrad"
                                                              else {})}
               for d in (1, 2) for m in ("equal", "cagrad")]
    table = transfer_table(make_runs(configs))
    [plot] = heatmap_blocks(table)
    assert len(plot.figure.axes) == 3 + 3  # delta_m and two tasks, one colour bar each
    assert np.isfinite(plot.figure.axes[0].images[0].get_array()).all()


def test_report_names_baselines_below_their_linear_reference(tmp_path):
    runs = make_runs([{"model.shared_depth": 1}])
    stl = runs["kind"].eq("stl") & runs["task"].eq("acc")
    runs.loc[stl, "reference.test.acc"], runs.loc[stl, "reference.model.acc"] = 0.95, "logistic"
    runs.loc[runs["kind"].eq("stl") & runs["task"].eq("err"), "reference.test.err"] = 2.0
    md = write_report(runs, tmp_path / "out")["report.md"].read_text()
    assert "> **Baseline below ref:** tasks acc in 1 of 1 configurations" in md
    assert "| below ref" in md and "0.95" in md  # the table's ref and baseline columns
    plain = write_report(make_runs([{"model.shared_depth": 1}]), tmp_path / "plain")["report.md"].read_text()
    assert "Baseline below ref" not in plain


def test_a_long_configuration_label_keeps_the_plot_laid_out():
    """A command line's overrides as the one configuration's label: wrapped, not squeezing the
    axes to nothing (matplotlib would warn and skip the layout)."""
    import warnings

    from harness.report.document import Plot

    runs = make_runs([{"model.shared_depth": 1}], seeds=2)
    runs["label"] = ",".join(f"group.key_{i}={i}" for i in range(12))
    fig = plot_transfer(transfer_table(runs))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Plot("transfer", fig, "").png.startswith(PNG)
    tick = fig.axes[0].get_xticklabels()[0].get_text()
    assert tick.count("\n") == 5 and tick.endswith("...")


def test_latex_table_escapes_marks_verdicts_and_states_the_conventions():
    from harness.report.latex import to_latex

    table = transfer_table(make_runs(grid(schedules=("joint",), correlations=(0.5,), methods=("equal", "pcgrad"))))
    text = to_latex(table)
    body = text[text.index(r"\midrule") + len(r"\midrule"):text.index(r"\bottomrule")].strip().splitlines()
    header = text[text.index(r"\toprule") + len(r"\toprule"):text.index(r"\midrule")].strip()
    columns = header.count("&") + 1
    assert len(body) == len(table) and all(line.count("&") == columns - 1 for line in body)
    assert r"shared\_depth" in header and r"$\Delta_m$" in header and "metric" in header
    assert r"mse $\downarrow$" in text and r"accuracy $\uparrow$" in text
    verdicts = set(table["verdict"])
    assert ("positive" in verdicts) == (r"\textbf{positive $\uparrow$}" in text)
    assert ("negative" in verdicts) == (r"\textit{negative $\downarrow$}" in text)
    # every % is escaped (a bare one would comment out the rest of the line) and braces balance
    assert not re.search(r"(?<!\\)%", text) and text.count("{") - text.count(r"\{") == text.count("}") - text.count(r"\}")
    assert "Holm-corrected" in text and r"\usepackage" not in text


def test_collect_writes_the_latex_table_on_request(tmp_path, capsys):
    from harness.collect import main as collect_main

    sweep = make_sweep(tmp_path / "sweep")
    collect_main([str(sweep), "--latex"])
    assert (sweep / "transfer.tex").read_text().startswith(r"\begin{table*}")
    assert f"latex:  {sweep / 'transfer.tex'}" in capsys.readouterr().out


def test_html_verdict_cells_are_coloured_by_their_verdict(tmp_path):
    paths = write_report(make_runs(grid(schedules=("joint",), correlations=(0.5,), methods=("equal", "pcgrad"))), tmp_path)
    page = paths["report.html"].read_text()
    verdicts = transfer_table(make_runs(grid(schedules=("joint",), correlations=(0.5,), methods=("equal", "pcgrad"))))["verdict"]
    for kind in ("positive", "negative"):
        cells = re.findall(rf'<td class="verdict {kind}">{kind}', page)
        assert len(cells) == int((verdicts == kind).sum()) > 0
    assert "td.verdict.positive" in page and "td.verdict.negative" in page


def test_heatmaps_share_one_symmetric_colour_scale():
    from harness.report.document import Plot

    table = transfer_table(make_runs(grid(methods=("equal", "pcgrad"))))
    plot = next(b for b in heatmap_blocks(table) if isinstance(b, Plot))
    images = [im for ax in plot.figure.axes for im in ax.get_images()]
    limits = {im.get_clim() for im in images}
    values = np.concatenate([table["r_mean"].to_numpy(float), table["delta_m"].to_numpy(float)])
    assert len(images) > 3 and limits == {(-np.nanmax(np.abs(values)), np.nanmax(np.abs(values)))}


def test_many_tasks_draw_the_extreme_tasks_and_pairs_in_grids():
    """With 14 tasks the per-task figures keep the 6 lowest and 6 highest mean r_t (table order),
    panels wrap four to a row, and the conflict section keeps the 5 lowest and 5 highest cosines."""
    from harness.report.common import extreme_tasks, panel_grid
    from harness.report.conflict import shown_pairs

    tasks = [f"t{i}" for i in range(14)]
    r = [5.0, -3.0, 0.1, 0.2, 9.0, -7.0, 0.3, 0.0, 4.0, -1.0, 2.0, -2.0, 0.4, 1.0]
    table = pd.DataFrame({"task": tasks * 2, "r_mean": r + [v + 1.0 for v in r]})
    shown, notes = extreme_tasks(table)
    assert shown == [t for t in tasks if t not in ("t3", "t6")]  # r 0.2 and 0.3: the 7th and 8th of 14
    assert len(notes) == 1 and "12 of 14 tasks" in notes[0]
    assert extreme_tasks(table[table["task"].isin(tasks[:5])]) == (tasks[:5], [])
    assert panel_grid(14) == (4, 4) and panel_grid(3) == (1, 3) and panel_grid(0) == (1, 1)
    pairs = [f"{a}|{b}" for i, a in enumerate(tasks) for b in tasks[i + 1:]]
    cos = np.linspace(-1, 1, len(pairs))[::-1]  # the first pair the most aligned
    curves = pd.DataFrame({"kind": "mtl", "config_hash": "c", "seed": 0, "series": "grad_cos",
                           "key": pairs, "step": 10, "value": cos})
    assert shown_pairs(curves, "c") == sorted(pairs[:5] + pairs[-5:])


def test_tasks_and_values_sort_with_their_numbers_by_value_and_long_values_are_numbered():
    """Class2 comes before Class10 in panels and axes; a task-list value too long for a tick is
    shown as its number, with the key under the figure."""
    from harness.analysis import natural
    from harness.report.common import ordered
    from harness.report.transfer_plot import plot_transfer

    assert sorted(["Class10", "Class2", "Class1"], key=natural) == ["Class1", "Class2", "Class10"]
    assert ordered(pd.Series(["t10", "t9", "t10"])) == ["t9", "t10"]
    groups = ['["Class1", "Class2", "Class10"]', '["Class2", "Class10"]']
    rows = [{"config_hash": f"h{i}", "label": "", "task": task, "cfg.data.tasks": g,
             "r_mean": 1.0, "r_lo": 0.0, "r_hi": 2.0}
            for i, g in enumerate(groups) for task in ["Class10", "Class2"]]
    fig = plot_transfer(pd.DataFrame(rows))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["Class2", "Class10"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["1", "2"]
    key = fig._supxlabel.get_text()
    assert key.splitlines() == [f"1: data.tasks={groups[0]}", f"2: data.tasks={groups[1]}"]
