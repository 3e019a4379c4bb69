"""The ranking section: mean rank with its bootstrap interval, hypervolume, the front's verdict
and the cost of each configuration (harness.ranking), and, for two tasks with a scalarization
front, every configuration's point against the front."""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis import fmt_number
from harness.ranking import DRAWS, RANKING_TEXT, ranking
from harness.report.common import new_figure, wrap_label
from harness.report.document import Block, Plot, Table, skipped


def format_ranking(frame: pd.DataFrame) -> pd.DataFrame:
    shown = pd.DataFrame({"configuration": frame["label"].astype(str)})
    shown["mean rank [lo, hi]"] = [f"{fmt_number(m)} [{fmt_number(lo)}, {fmt_number(hi)}]"
                                   for m, lo, hi in frame[["mean_rank", "rank_lo", "rank_hi"]].to_numpy()]
    shown["delta_m %"] = frame["delta_m"].map(fmt_number)
    if frame["hypervolume"].notna().any():
        shown["hypervolume"] = frame["hypervolume"].map(fmt_number)
    if frame["front"].notna().any():
        shown["dominated by the front"] = frame["front"].fillna("").astype(str)
    shown["s / run"] = frame["s_per_run"].map(fmt_number)
    shown["compile s"] = frame["compile_s"].map(fmt_number)
    shown["MiB / run"] = frame["mib_per_run"].map(fmt_number)
    return shown


def _front_plot(table: pd.DataFrame, runs: pd.DataFrame, tasks: list[str]) -> Plot:
    """r of task 1 against r of task 2: the front's points joined in weight order, every other
    configuration with its intervals."""
    marked = runs["front"].fillna(False).astype(bool)
    front = set(runs.loc[runs["kind"].eq("mtl") & marked, "config_hash"])
    by_task = {t: table[table["task"].eq(t)].set_index("config_hash") for t in tasks}
    fig = new_figure(6.4, 5.2)
    ax = fig.subplots()
    points = [(c, by_task[tasks[0]].loc[c], by_task[tasks[1]].loc[c]) for c in by_task[tasks[0]].index
              if c in by_task[tasks[1]].index]
    line = sorted(((x["r_mean"], y["r_mean"]) for c, x, y in points if c in front))
    if line:
        ax.plot(*zip(*line), color="black", marker="s", linestyle="--", label="front (tuned static weights)")
    for i, (c, x, y) in enumerate(p for p in points if p[0] not in front):
        err = [[[x["r_mean"] - x["r_lo"]], [x["r_hi"] - x["r_mean"]]], [[y["r_mean"] - y["r_lo"]], [y["r_hi"] - y["r_mean"]]]]
        err = [np.nan_to_num(e) for e in err]
        ax.errorbar(x["r_mean"], y["r_mean"], xerr=err[0], yerr=err[1], capsize=3, linestyle="none",
                    marker="os^Dv"[i // 10 % 5], color=f"C{i % 10}", label=wrap_label(str(x["label"])))
    ax.axhline(0, color="grey", linestyle=":", linewidth=1)
    ax.axvline(0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(f"r_{tasks[0]} % (higher better)")
    ax.set_ylabel(f"r_{tasks[1]} % (higher better)")
    fig.legend(loc="outside lower center", fontsize="small", ncols=2)
    return Plot("front", fig, f"Relative change of {tasks[0]} against {tasks[1]}: each configuration's mean "
                "with 95% t-intervals over seeds, and the scalarization front of tuned static weightings")


def ranking_blocks(table: pd.DataFrame, pairs: pd.DataFrame, runs: pd.DataFrame) -> list[Block]:
    """The ranking table (and the front plot), or a note saying why there is none."""
    if table["config_hash"].nunique() < 2:
        return [skipped("ranking needs two configurations or more; this report has one.")]
    frame = ranking(table, pairs, runs)
    blocks: list[Block] = [RANKING_TEXT.format(draws=DRAWS), Table(format_ranking(frame))]
    tasks = list(dict.fromkeys(table["task"]))
    if "front" in runs and runs["front"].fillna(False).astype(bool).any():
        if len(tasks) == 2:
            blocks.append(_front_plot(table, runs, tasks))
        else:
            blocks.append(skipped(f"the front plot needs exactly two tasks; this report has {len(tasks)}."))
    return blocks

