"""The calibration of the verdicts (harness.calibration) on synthetic paired data whose truth is
known: the null rate is computed by judging replications, not taken from a formula."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.analysis import family_verdicts, transfer_table
from harness.calibration import calibration_table, rate_interval, replicate, seed_groups, to_markdown

SEEDS = 2000


def pairs(means: dict[str, float], sd: float = 1.0, seed: int = 0, **cfg) -> pd.DataFrame:
    """Paired rows of one configuration: r_t ~ N(mean_t, sd) per task and seed."""
    rng = np.random.default_rng(seed)
    config = "-".join(f"{k}{v}" for k, v in cfg.items())
    return pd.DataFrame([{"config_hash": config, "label": config, "task": task, "seed": s,
                          "r": rng.normal(mean, sd), **{f"cfg.{k}": v for k, v in cfg.items()}}
                         for task, mean in means.items() for s in range(SEEDS)])


DESIGNS = [{"name": "null", "truth": "none", "match": {"design": 0}},
           {"name": "harm", "truth": {"t1": "negative", "t2": "none"}, "match": {"design": 1}},
           {"name": "help", "truth": "positive", "match": {"design": 2}}]


def test_seed_groups_are_disjoint_and_drop_the_rest():
    assert seed_groups([4, 0, 1, 2, 3, 5, 6], 3) == [[0, 1, 2], [3, 4, 5]]
    assert seed_groups(range(2), 3) == []


def test_null_rate_is_near_the_nominal_level_and_effects_are_found():
    data = pd.concat([pairs({"t1": 0.0, "t2": 0.0}, design=0),
                      pairs({"t1": -3.0, "t2": 0.0}, seed=1, design=1),
                      pairs({"t1": 2.0, "t2": 2.0}, seed=2, design=2)])
    table = calibration_table(data, DESIGNS, counts=(5, 20)).set_index(["design", "task", "n"])
    null = table.loc[("null", "any", 5)]
    assert null["replications"] == SEEDS // 5
    # Holm over two independent tasks keeps the family-wise rate at or a little under 5%.
    assert 0.02 <= null["rate"] <= 0.08 and null["rate_lo"] < 0.05 < null["rate_hi"]
    assert table.loc[("harm", "t1", 20), "rate"] == 1.0
    assert table.loc[("harm", "t1", 20), "opposite"] == 0.0
    assert table.loc[("harm", "t2", 20), "rate"] <= 0.08  # a null task: rate of wrong verdicts
    assert table.loc[("help", "t2", 20), "rate"] == 1.0
    assert table.loc[("help", "t1", 5), "rate"] < table.loc[("help", "t1", 20), "rate"]
    assert "rate % [95% CI]" in to_markdown(table.reset_index())


def test_replications_judge_as_the_transfer_table_does():
    from tests.test_analysis import mtl, stl, table_of  # the runs-table builders

    rng = np.random.default_rng(3)
    runs = table_of(stl("acc", [0.8] * 5), stl("err", [2.0] * 5),
                    mtl("m", {"acc": list(0.82 + rng.normal(0, 0.01, 5)), "err": list(2.0 + rng.normal(0, 0.2, 5))}))
    from harness.analysis import paired

    reps = replicate(paired(runs), 5).set_index("task")["verdict"]
    table = transfer_table(runs).set_index("task")["verdict"]
    assert reps.to_dict() == table.to_dict()
    assert family_verdicts([np.array([1.0, 1.0]), np.array([0.0, 0.0])]) == ["positive", "inconclusive"]


def test_rate_interval_is_clopper_pearson():
    rate, lo, hi = rate_interval(0, 20)
    assert rate == 0 and lo == 0 and hi == pytest.approx(1 - 0.025 ** (1 / 20))
    assert np.isnan(rate_interval(0, 0)[0])
