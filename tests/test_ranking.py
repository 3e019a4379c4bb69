"""Aggregate ranking (harness.ranking): mean rank with a seed bootstrap, hypervolume, front
dominance."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.ranking import bootstrap_ranks, dominates, hypervolume, mean_ranks, ranking


def test_mean_rank_averages_task_ranks_with_ties_and_gaps():
    means = np.array([[3.0, 1.0], [2.0, 2.0], [2.0, np.nan]])
    # task 1: a=1, b and c tie at 2.5; task 2: b=1, a=2, c has no rank
    assert mean_ranks(means) == pytest.approx([1.5, 1.75, 2.5])


def test_bootstrap_interval_brackets_a_clear_order_and_widens_when_unclear():
    rng = np.random.default_rng(0)
    clear = np.stack([rng.normal(5, 1, (2, 10)), rng.normal(0, 1, (2, 10))])  # (configs, tasks, seeds)
    lo_hi = bootstrap_ranks(clear, draws=200)
    assert lo_hi[0].tolist() == [1, 1] and lo_hi[1].tolist() == [2, 2]
    unclear = rng.normal(0, 1, (2, 2, 10))
    spans = bootstrap_ranks(unclear, draws=200)
    assert (spans[:, 0] < spans[:, 1]).all()


def test_hypervolume_and_dominance():
    assert hypervolume([3.0, 2.0], [1.0, 1.0]) == 2.0
    assert hypervolume([0.5, 2.0], [1.0, 1.0]) == 0.0
    assert dominates([1, 2], [1, 1]) and not dominates([1, 1], [1, 1]) and not dominates([2, 0], [1, 1])


def _table_and_pairs(front: bool):
    """Two configurations (a better on both tasks) and, optionally, one front point above a."""
    configs = {"a": (2.0, 1.0), "b": (1.0, 0.0), **({"f": (3.0, 1.5)} if front else {})}
    pairs, table, runs = [], [], []
    for c, (r1, r2) in configs.items():
        for task, r in (("t1", r1), ("t2", r2)):
            table.append({"config_hash": c, "label": f"cfg {c}", "task": task, "r_mean": r, "delta_m": (r1 + r2) / 2})
            pairs += [{"config_hash": c, "task": task, "seed": s, "r": r + d} for s, d in enumerate([-0.1, 0.0, 0.1])]
        runs += [{"kind": "mtl", "config_hash": c, "status": "ok", "run_s": 2.0, "batch": 4, "compile_s": 1.0,
                  "program_bytes": 4 * 2**20, "program_runs": 4, "front": c == "f"} for _ in range(3)]
    return pd.DataFrame(table), pd.DataFrame(pairs), pd.DataFrame(runs)


def test_ranking_orders_configurations_and_reports_front_and_cost():
    table, pairs, runs = _table_and_pairs(front=True)
    frame = ranking(table, pairs, runs, draws=100)
    assert frame["config_hash"].tolist() == ["a", "b"]  # the front is a reference, not ranked
    assert frame["mean_rank"].tolist() == [1.0, 2.0]
    assert frame["front"].tolist() == ["cfg f", "cfg f"]
    # reference point: the worst per-seed r of each task over all configurations (0.9, -0.1)
    assert frame["hypervolume"].tolist() == pytest.approx([(2.0 - 0.9) * (1.0 + 0.1), (1.0 - 0.9) * 0.1])
    assert frame["s_per_run"].tolist() == [0.5, 0.5] and frame["mib_per_run"].tolist() == [1.0, 1.0]
    table, pairs, runs = _table_and_pairs(front=False)
    assert ranking(table, pairs, runs, draws=100)["front"].isna().all()
