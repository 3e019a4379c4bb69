"""TAG's task groupings set against the transfer measured when each suggested group is trained
as its own network (Fifty et al. 2021, "Efficiently Identifying Task Groupings for Multi-Task
Learning": the affinity of one run predicts which groups to train; this checks the prediction).

The reference is the multi-task configuration with recorded affinity (`train.affinity=true`)
whose task list holds every other configuration's tasks: its affinity matrix gives the
suggestions (harness.grouping.best_grouping, per budget k). Every other multi-task configuration
of the sweep whose tasks are a proper subset of the reference's is a trained group. A partition
(TAG's suggestion for a budget, or a seeded random partition into groups of the same sizes, the
control) is measured when each of its groups of two or more tasks was trained; a task alone in
its group is its single-task baseline, so its r is 0 on every metric. Every r is the transfer
table's: the mean over paired seeds against the same baselines as the reference's.

Fifty et al. choose among overlapping groups (a task may sit in several, serving in the best);
here, as in harness.grouping, the groups are a partition, so each task has one measured r.

`python -m harness.report.groups <sweep_dir> --budgets 2,3 [--random 3]` prints the
`data.tasks=[...],[...]` sweep override that trains the groups of those budgets' suggestions
(and of the random partitions of budget 3's sizes) from the reference's records.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from harness.analysis import fmt_number, natural
from harness.grouping import best_grouping, group_affinity
from harness.report.affinity import affinity_matrix, budgets
from harness.report.curves import configs_with
from harness.report.document import Block, Table

SEED = 0  # the random partitions' shuffle: fixed, so the groups to train can be printed first
USAGE = "usage: python -m harness.report.groups <sweep_dir> --budgets K[,K...] [--random K[,K...]]"


def natural_order(tasks: Sequence[str]) -> list[str]:
    """Tasks in natural order: Class2 before Class10."""
    return sorted(tasks, key=natural)


def random_partition(tasks: Sequence[str], sizes: Sequence[int], seed: int = SEED) -> list[list[str]]:
    """The tasks, shuffled with `seed`, cut into groups of `sizes` (the control for a suggestion)."""
    order = list(np.random.default_rng(seed).permutation(list(tasks)))
    cuts = np.cumsum(sizes)[:-1]
    return [natural_order(g) for g in np.split(np.array(order, dtype=object), cuts)]


def suggested(matrix: pd.DataFrame, budgets_: Sequence[int], random: Sequence[int] = ()) -> dict[str, list[list[str]]]:
    """Name -> partition: TAG's for each budget ("TAG k=3"), and a random one with the sizes of
    TAG's for each budget in `random` ("random k=3")."""
    tasks = natural_order(list(matrix.index))
    matrix = matrix.loc[tasks, tasks]
    out = {}
    for k in budgets_:
        out[f"TAG k={k}"] = [natural_order(g) for g in best_grouping(matrix, k).groups]
    for k in random:
        sizes = sorted((len(g) for g in out.get(f"TAG k={k}") or best_grouping(matrix, k).groups), reverse=True)
        out[f"random k={k}"] = random_partition(tasks, sizes)
    return out


def to_train(partitions: dict[str, list[list[str]]], tasks: Sequence[str]) -> list[list[str]]:
    """The distinct groups of two or more tasks, short of all of them, that the partitions need."""
    seen = {}
    for groups in partitions.values():
        for g in groups:
            if 1 < len(g) < len(tasks):
                seen.setdefault(frozenset(g), natural_order(g))
    return list(seen.values())


def override(groups: list[list[str]]) -> str:
    """The Hydra sweep override that trains each group as one configuration."""
    return "data.tasks=" + ",".join("[" + ",".join(g) + "]" for g in groups)


def _task_sets(table: pd.DataFrame) -> dict[str, frozenset]:
    return {c: frozenset(part["task"]) for c, part in table.groupby("config_hash", sort=False)}


def reference(table: pd.DataFrame, curves: pd.DataFrame) -> str | None:
    """The configuration with affinity whose tasks hold every configuration's tasks (None: no
    such single one)."""
    sets = _task_sets(table)
    everything = frozenset().union(*sets.values()) if sets else frozenset()
    found = [c for c in sets if c in configs_with(curves, "affinity") and sets[c] == everything]
    return found[0] if len(found) == 1 else None


def measured(table: pd.DataFrame, metrics: pd.DataFrame, curves: pd.DataFrame,
             random: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per (partition, task, metric) of every measured partition: the reference ("all
    in one"), TAG's suggestions and the random controls (`random`: their budgets; default every
    budget shown). Columns partition, budget, groups (the partition as text), task, group, score
    (the group's TAG affinity), trained (config hash or "baseline"), metric, primary, r_mean,
    r_lo, r_hi, verdict (Holm, within the group's configuration; primary metric only). Empty
    when the sweep has no reference, no measured suggestion, or two configurations of one group."""
    ref = reference(table, curves)
    if ref is None:
        return pd.DataFrame()
    sets = _task_sets(table)
    tasks = natural_order(list(sets[ref]))
    matrix = affinity_matrix(curves, ref, tasks)
    shown = [k for k in budgets(len(tasks)) if k < len(tasks)]
    partitions = {"all in one": [tasks], **suggested(matrix, shown, shown if random is None else random)}
    others = [(s, c) for c, s in sets.items() if c != ref]
    trained = dict(others)
    if len(trained) != len(others):  # two configurations train one group: which one counts is unclear
        return pd.DataFrame()
    trained[frozenset(tasks)] = ref
    verdicts = table.set_index(["config_hash", "task"])["verdict"]
    rows = []
    for name, groups in partitions.items():
        if any(len(g) > 1 and frozenset(g) not in trained for g in groups):
            continue
        if name != "all in one" and all(len(g) == 1 for g in groups):
            continue
        text = " ".join("{" + ", ".join(g) + "}" for g in groups)
        for g in groups:
            config = trained.get(frozenset(g)) if len(g) > 1 else None
            score = group_affinity(matrix, g)
            for task in g:
                part = metrics[metrics["task"].eq(task) & metrics["config_hash"].eq(
                    config if config else ref)]
                for _, m in part.iterrows():
                    alone = config is None
                    rows.append({
                        "partition": name, "groups": text, "task": task, "group": ", ".join(g), "score": score,
                        "trained": config or "baseline", "metric": m["metric"], "primary": bool(m["primary"]),
                        "r_mean": 0.0 if alone else m["r_mean"], "r_lo": 0.0 if alone else m["r_lo"],
                        "r_hi": 0.0 if alone else m["r_hi"],
                        "verdict": ("alone" if alone else verdicts.get((config, task))) if m["primary"] else None})
    frame = pd.DataFrame(rows)
    if frame.empty or frame["partition"].nunique() < 2:
        return pd.DataFrame()
    order = {t: i for i, t in enumerate(tasks)}
    return frame.sort_values(["partition", "task"], key=lambda s: s.map(order) if s.name == "task" else s.map(
        {p: i for i, p in enumerate(partitions)}), kind="stable", ignore_index=True)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per measured partition: its groups, TAG's predicted score (the summed group affinities,
    the quantity the suggestion maximises), the mean over tasks of each metric's r, delta_m
    (mean over tasks of the mean over a task's metrics, as in the transfer table), how many
    tasks gain on the primary metric over the all-in-one network, and the Holm verdicts."""
    rows = []
    base = frame[frame["partition"].eq("all in one") & frame["primary"]].set_index("task")["r_mean"]
    for name, part in frame.groupby("partition", sort=False):
        primary = part[part["primary"]]
        scores = part.drop_duplicates("group")["score"]
        row = {"partition": name, "groups": part["groups"].iloc[0], "affinity score": scores.sum()}
        for metric, m in part.groupby("metric", sort=False):
            row[f"mean r {metric}"] = m["r_mean"].mean()
        row["delta_m"] = part.groupby("task", sort=False)["r_mean"].mean().mean()
        row["tasks above all in one"] = (
            int((primary.set_index("task")["r_mean"] > base.reindex(primary["task"]).to_numpy()).sum())
            if name != "all in one" else None)
        row["positive"] = int(primary["verdict"].eq("positive").sum())
        row["negative"] = int(primary["verdict"].eq("negative").sum())
        rows.append(row)
    return pd.DataFrame(rows)


def per_task(frame: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Per task (rows) and measured partition (columns): "r [lo, hi]" of `metric` (default the
    primary one), after the task's group in each TAG partition ("#2 (4)": the partition's second
    group, of 4 tasks, as the summary lists them)."""
    rows = frame[frame["primary"]] if metric is None else frame[frame["metric"].eq(metric)]
    cell = rows.assign(text=[f"{fmt_number(m)} [{fmt_number(lo)}, {fmt_number(hi)}]"
                             for m, lo, hi in zip(rows["r_mean"], rows["r_lo"], rows["r_hi"])])
    tasks = list(dict.fromkeys(cell["task"]))
    partitions = list(dict.fromkeys(cell["partition"]))
    out = pd.DataFrame({"task": tasks})
    for p in partitions:
        if p.startswith("TAG"):  # the group by its place in the partition and its size: names are long
            part = cell[cell["partition"].eq(p)]
            place = {g: i + 1 for i, g in enumerate(dict.fromkeys(part["group"]))}
            label = {g: f"#{place[g]} ({len(g.split(', '))})" for g in place}
            out[f"group in {p}"] = part.set_index("task")["group"].map(label).reindex(tasks).to_numpy()
    for p in partitions:
        out[f"r {p}"] = cell[cell["partition"].eq(p)].set_index("task")["text"].reindex(tasks).to_numpy()
    return out


def formatted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.map(lambda v: fmt_number(v) if isinstance(v, float) else ("" if v is None else v))


EXPLAIN = ("Each TAG suggestion (and a random partition into groups of the same sizes, seed "
           f"{SEED}) trained as its own networks, one per group, against the same single-task "
           "baselines as the network of all tasks; a task alone in its group is its baseline "
           "(r = 0). `affinity score`: the summed group affinities the suggestion maximises "
           "(the all-in-one network's is its one group's). `mean r <metric>`: mean over tasks of "
           "the mean paired r (%); delta_m: mean over tasks of the mean over their metrics; "
           "`tasks above all in one`: tasks whose primary r beats their r in the network of all "
           "tasks; positive / negative: Holm verdicts within each group's configuration.")


def groups_blocks(frame: pd.DataFrame) -> list[Block]:
    """The summary and the per-task table (primary metric) of the measured partitions."""
    return [EXPLAIN, Table(formatted(summary(frame))),
            "Per task, r_t % [95% interval] of the primary metric in each measured partition:",
            Table(per_task(frame))]


def groups_markdown(frame: pd.DataFrame) -> str:
    """groupings.md: the summary, then one per-task table per metric."""
    parts = ["# TAG groupings, trained", "", EXPLAIN, "", formatted(summary(frame)).to_markdown(index=False)]
    for metric in dict.fromkeys(frame["metric"]):
        parts += ["", f"## r_t % [95% interval] of {metric}", "", per_task(frame, metric).to_markdown(index=False)]
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    """Print the override that trains the groups of the reference's suggestions."""
    from harness.records import collect, load_records
    from harness.analysis import transfer_table
    from harness.report.curves import curve_frame

    args = dict(zip(argv[1::2], argv[2::2]))
    if len(argv) < 3 or len(argv) % 2 == 0 or set(args) - {"--budgets", "--random"} or "--budgets" not in args:
        print(USAGE, file=sys.stderr)
        return 2
    sweep = Path(argv[0])
    runs = collect(sweep)
    table, curves = transfer_table(runs), curve_frame(load_records(sweep))
    ref = reference(table, curves)
    if ref is None:
        print(f"{sweep}: no single configuration with affinity over all of the sweep's tasks", file=sys.stderr)
        return 2
    tasks = natural_order(list(_task_sets(table)[ref]))
    ks = [int(k) for k in args["--budgets"].split(",")]
    rs = [int(k) for k in args["--random"].split(",")] if "--random" in args else []
    print(override(to_train(suggested(affinity_matrix(curves, ref, tasks), ks, rs), tasks)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
