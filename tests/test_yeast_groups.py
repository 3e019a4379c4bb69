"""TAG's groupings against the transfer measured for the trained groups (harness.report.groups),
on hand-made tables: which partitions count as measured, r = 0 for a task alone, the summary's
means, and the override that trains the groups."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.report.groups import (measured, natural_order, override, per_task, random_partition, suggested, summary,
                                   to_train)

TASKS = ["t1", "t2", "t3", "t10"]
# Z[a -> b]: t1 and t2 help each other most, t3 helps and is helped by both; t10 hurts and is
# hurt by everyone.
Z = {("t1", "t2"): 1.0, ("t2", "t1"): 1.0, **{(a, b): 0.4 for a, b in
                                           (("t1", "t3"), ("t3", "t1"), ("t2", "t3"), ("t3", "t2"))}}


def curves(config: str) -> pd.DataFrame:
    rows = [{"config_hash": config, "series": "affinity", "key": f"{a}>{b}", "seed": 0, "step": 10,
             "value": Z.get((a, b), -0.2)} for a in TASKS for b in TASKS if a != b]
    return pd.DataFrame(rows)


def tables(configs: dict[str, list[str]], r: dict[tuple[str, str], float]):
    """Transfer and metric tables: accuracy (primary) r from `r`, auc r twice that."""
    table = pd.DataFrame([{"config_hash": c, "task": t, "verdict": "positive" if r[c, t] > 1 else "inconclusive"}
                          for c, ts in configs.items() for t in ts])
    metrics = pd.DataFrame([{"config_hash": c, "task": t, "metric": m, "primary": m == "accuracy",
                             "r_mean": r[c, t] * (1 if m == "accuracy" else 2), "r_lo": -9.0, "r_hi": 9.0}
                            for c, ts in configs.items() for t in ts for m in ("accuracy", "auc")])
    return table, metrics


def test_natural_order_and_random_partitions_of_given_sizes():
    assert natural_order(["Class10", "Class2", "Class1"]) == ["Class1", "Class2", "Class10"]
    groups = random_partition(TASKS, [3, 1])
    assert sorted(map(len, groups)) == [1, 3] and sorted(t for g in groups for t in g) == sorted(TASKS)
    assert groups == random_partition(TASKS, [3, 1])  # seeded


def test_suggestion_override_lists_each_group_of_two_or_more_once():
    matrix = pd.DataFrame([[Z.get((a, b), -0.2) if a != b else np.nan for b in TASKS] for a in TASKS],
                          index=TASKS, columns=TASKS)
    parts = suggested(matrix, [2, 3], random=[2])
    assert parts["TAG k=2"] == [["t1", "t2", "t3"], ["t10"]]
    assert parts["TAG k=3"] == [["t1", "t2"], ["t3"], ["t10"]]  # 1 + 1 beats 0.7 + 0.7 + 0.4
    assert sorted(map(len, parts["random k=2"])) == [1, 3]
    assert override(to_train({"TAG k=2": parts["TAG k=2"], "TAG k=3": parts["TAG k=3"]}, TASKS)) \
        == "data.tasks=[t1,t2,t3],[t1,t2]"


def test_measured_partitions_use_each_groups_own_r_and_zero_for_a_task_alone():
    configs = {"all": TASKS, "g123": ["t1", "t2", "t3"], "g12": ["t1", "t2"]}
    r = {("all", "t1"): -1.0, ("all", "t2"): -2.0, ("all", "t3"): 0.5, ("all", "t10"): -4.0,
         ("g123", "t1"): 2.0, ("g123", "t2"): 1.0, ("g123", "t3"): 3.0, ("g12", "t1"): 5.0, ("g12", "t2"): 5.0}
    table, metrics = tables(configs, r)
    frame = measured(table, metrics, curves("all"), random=[])
    assert list(dict.fromkeys(frame["partition"])) == ["all in one", "TAG k=2", "TAG k=3"]
    tag = frame[frame["partition"].eq("TAG k=2")]
    assert list(dict.fromkeys(tag["task"])) == TASKS  # natural order
    alone = tag[tag["task"].eq("t10")]  # t10 alone is its own baseline: r = 0 on every metric
    assert len(alone) == 2 and (alone["r_mean"] == 0).all() and set(alone["trained"]) == {"baseline"}
    # t1's r is the one of the group it sits in ({t1, t2, t3}), not of another trained group.
    assert tag[tag["task"].eq("t1") & tag["primary"]]["r_mean"].item() == 2.0
    rows = summary(frame).set_index("partition")
    assert rows.at["TAG k=2", "mean r accuracy"] == pytest.approx((2 + 1 + 3 + 0) / 4)
    assert rows.at["TAG k=2", "mean r auc"] == pytest.approx(2 * 6 / 4)
    assert rows.at["TAG k=2", "delta_m"] == pytest.approx(1.5 * 6 / 4)
    assert rows.at["TAG k=2", "tasks above all in one"] == 4  # t10: 0 > -4
    assert rows.at["TAG k=2", "affinity score"] == pytest.approx(0.7 + 0.7 + 0.4)
    assert rows.at["all in one", "mean r accuracy"] == pytest.approx(-6.5 / 4)
    assert rows.at["all in one", "positive"] == 0 and rows.at["TAG k=2", "positive"] == 2
    wide = per_task(frame).set_index("task")
    assert list(wide["group in TAG k=2"]) == ["#1 (3)"] * 3 + ["#2 (1)"]
    assert wide.at["t1", "r TAG k=2"] == "2 [-9, 9]" and wide.at["t10", "r TAG k=2"] == "0 [0, 0]"
    # A suggestion is measured only where every group of two or more tasks was trained.
    table, metrics = tables({k: v for k, v in configs.items() if k != "g123"}, r)
    assert list(dict.fromkeys(measured(table, metrics, curves("all"), random=[])["partition"])) == [
        "all in one", "TAG k=3"]
    table, metrics = tables({"all": TASKS}, r)
    assert measured(table, metrics, curves("all"), random=[]).empty
    # Two configurations of one group (say, two methods): no way to tell which one counts.
    table, metrics = tables({**configs, "g12b": ["t1", "t2"]}, {**r, ("g12b", "t1"): 0.0, ("g12b", "t2"): 0.0})
    assert measured(table, metrics, curves("all"), random=[]).empty
