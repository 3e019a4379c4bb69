"""Pairing, relative change, intervals, Holm and verdicts of harness.analysis on synthetic runs."""
import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.analysis import (CONVENTIONS, detectable_effect, format_transfer, holm, metric_table, paired,
                              relative_change, to_markdown, transfer_table)

TASKS = {"acc": ("accuracy", False), "err": ("mse", True), "aux": ("accuracy", False)}


def run(kind, config, seed, values, status="ok", cfg=None, label=""):
    """One row of the runs table as harness.records.collect would produce it."""
    row = {"kind": kind, "config_hash": config, "label": label, "seed": seed, "status": status,
           "diverged_step": 50.0 if status == "diverged" else math.nan,
           "task": next(iter(values)) if kind == "stl" else None,
           "compile_s": 1.0, "run_s": 2.0, "cfg.data.name": "toy"}
    for task, (metric, lower) in TASKS.items():
        value = values.get(task, math.nan) if status == "ok" else math.nan
        row.update({f"test.{task}": value, f"val.{task}": value, f"metric.{task}": metric,
                    f"lower_is_better.{task}": lower,
                    f"baseline.{task}": f"stl-{task}" if kind == "mtl" and task in values
                    else None})
    row.update({f"cfg.{k}": v for k, v in (cfg or {}).items()})
    return row


def mtl(config, values, failed=None, **cfg):
    """Rows of one mtl config; values[task][seed], None = no run; failed: {seed: status}."""
    failed = failed or {}
    seeds = range(max(len(v) for v in values.values()))
    return [run("mtl", config, s, {t: v[s] for t, v in values.items()}, failed.get(s, "ok"), cfg,
                label=",".join(f"{k}={v}" for k, v in cfg.items()))
            for s in seeds if any(v[s] is not None for v in values.values())]


def stl(task, values, failed=None):
    """Rows of the baseline of one task; values[seed], None = no run."""
    failed = failed or {}
    return [run("stl", f"stl-{task}", s, {task: v}, failed.get(s, "ok"))
            for s, v in enumerate(values) if v is not None]


def table_of(*groups):
    return pd.DataFrame([row for group in groups for row in group])


def test_sign_convention_positive_means_mtl_helped():
    runs = table_of(stl("acc", [0.8] * 3), stl("err", [2.0] * 3),
                    mtl("m", {"acc": [0.6] * 3, "err": [1.5] * 3}))
    r = paired(runs).groupby("task")["r"].mean()
    assert r["acc"] == pytest.approx(-25.0)  # accuracy fell: hurt
    assert r["err"] == pytest.approx(25.0)  # mse fell: helped
    assert relative_change(np.array([3.0]), np.array([-2.0]), False)[0] == pytest.approx(250.0)


def test_pairs_by_seed_and_drops_missing_or_failed_seeds():
    base = [0.5 + 0.05 * s for s in range(7)]
    base[3] = None  # no baseline run for seed 3
    runs = table_of(stl("acc", base, failed={5: "diverged"}),
                    mtl("m", {"acc": [0.6 + 0.05 * s for s in range(7)]}, failed={4: "diverged"}))
    runs = runs.sample(frac=1.0, random_state=0).reset_index(drop=True)
    p = paired(runs)
    assert list(p.columns) == ["config_hash", "label", "task", "seed", "mtl", "stl", "r",
                               "cfg.data.name"]
    assert list(p["seed"]) == [0, 1, 2, 6]
    expected = [(0.1 / (0.5 + 0.05 * s)) * 100 for s in (0, 1, 2, 6)]
    np.testing.assert_allclose(p["r"], expected)
    row = transfer_table(runs).iloc[0]
    assert (row["n"], row["n_mtl_failed"]) == (4, 1)


def test_duplicated_seed_is_an_error():
    runs = table_of(stl("acc", [0.5, 0.5]), stl("acc", [0.5]), mtl("m", {"acc": [0.6, 0.6]}))
    with pytest.raises(ValueError, match="stl-acc"):
        paired(runs)


def test_intervals_and_p_value_match_scipy():
    mtl_acc = [1.01, 1.03, 0.99, 1.05]
    runs = table_of(stl("acc", [1.0] * 4), mtl("m", {"acc": mtl_acc}))
    row = transfer_table(runs).iloc[0]
    r = np.array([1.0, 3.0, -1.0, 5.0])
    half = stats.t.ppf(0.975, 3) * stats.sem(r)
    assert (row["r_mean"], row["r_lo"], row["r_hi"]) == pytest.approx((2.0, 2 - half, 2 + half))
    assert row["p_value"] == pytest.approx(stats.ttest_1samp(r, 0).pvalue)
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(mtl_acc), scale=stats.sem(mtl_acc))
    assert (row["mtl_lo"], row["mtl_hi"]) == pytest.approx((lo, hi))
    narrow = transfer_table(runs, level=0.8).iloc[0]
    assert narrow["r_hi"] - 2 == pytest.approx(stats.t.ppf(0.9, 3) * stats.sem(r))


def test_holm_hand_example():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.02, math.nan, 0.5]), [0.04, math.nan, 0.5])
    assert holm([0.6, 0.7]).max() == 1.0


def test_holm_runs_across_tasks_of_one_config_only():
    noise = np.array([0.0, 0.02, -0.01, 0.03, -0.02, 0.01])
    baselines = (stl("acc", [0.8] * 6), stl("err", [1.0] * 6), stl("aux", [0.5] * 6))
    a = mtl("a", {"acc": list(0.81 + noise), "err": list(0.97 + noise[::-1] / 2),
                  "aux": list(0.5 + noise)}, depth=1)
    b = mtl("b", {"acc": list(0.9 + noise)}, depth=2)
    alone = transfer_table(table_of(*baselines, a))
    p = alone["p_value"].to_numpy()
    assert len(set(np.round(p, 6))) == 3 and 1e-4 < p.min() < p.max() < 0.9
    order = np.argsort(p)
    expected = np.empty(3)
    expected[order[0]] = min(1, 3 * p[order[0]])
    expected[order[1]] = max(expected[order[0]], min(1, 2 * p[order[1]]))
    expected[order[2]] = max(expected[order[1]], min(1, p[order[2]]))
    np.testing.assert_allclose(alone["p_holm"], expected)
    both = transfer_table(table_of(*baselines, a, b))
    np.testing.assert_allclose(both[both["config_hash"].eq("a")]["p_holm"], expected)


def test_verdicts_on_constructed_data():
    noise = np.array([0.0, 0.01, -0.01, 0.02, -0.02, 0.005])
    runs = table_of(stl("acc", [0.8] * 6), stl("err", [1.0] * 6), stl("aux", [0.5] * 6),
                    mtl("m", {"acc": list(0.88 + noise), "err": list(1.3 + noise),
                              "aux": list(0.5 + noise)}))
    verdicts = transfer_table(runs).set_index("task")["verdict"]
    assert verdicts.to_dict() == {"acc": "positive", "err": "negative", "aux": "inconclusive"}


def test_zero_variance_and_single_seed_do_not_crash():
    runs = table_of(stl("acc", [0.8] * 3), stl("err", [1.0] * 3), stl("aux", [0.5] * 3),
                    mtl("m", {"acc": [0.88] * 3, "err": [1.0] * 3, "aux": [0.6, None, None]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = transfer_table(runs).set_index("task")
    assert t.loc["acc", "p_value"] == 0.0 and t.loc["acc", "verdict"] == "positive"
    assert t.loc["acc", "r_lo"] == t.loc["acc", "r_hi"] == t.loc["acc", "r_mean"]
    assert t.loc["err", "p_value"] == 1.0 and t.loc["err", "verdict"] == "inconclusive"
    single = t.loc["aux"]
    assert single["n"] == 1 and single["underpowered"] and single["verdict"] == "inconclusive"
    assert math.isnan(single["r_lo"]) and math.isnan(single["p_value"])


def test_delta_m_is_mean_of_per_task_means():
    runs = table_of(stl("acc", [0.8, 0.8, 0.8]), stl("err", [2.0, 2.0, 2.0]),
                    mtl("a", {"acc": [0.84, 0.88, 0.8], "err": [1.0, 1.5, 2.0]}, depth=1),
                    mtl("b", {"acc": [0.8, 0.8, 0.8], "err": [3.0, 3.0, 3.0]}, depth=2),
                    mtl("c", {"acc": [0.9] * 3, "err": [1.0] * 3},
                        failed={0: "diverged", 1: "failed", 2: "diverged"}, depth=3))
    t = transfer_table(runs)
    for config, want in (("a", (5.0 + 25.0) / 2), ("b", (0.0 - 50.0) / 2)):
        rows = t[t["config_hash"].eq(config)]
        assert rows["delta_m"].tolist() == pytest.approx([want, want])
        assert want == pytest.approx(rows["r_mean"].mean())
    dead = t[t["config_hash"].eq("c")]
    assert dead["n"].tolist() == [0, 0] and dead["n_mtl_failed"].tolist() == [3, 3]
    assert dead["delta_m"].isna().all() and (dead["verdict"] == "inconclusive").all()


def with_secondary(rows, task, metric, lower, values):
    """The rows with a secondary metric of `task` as records that hold one give it (values by row)."""
    for row, value in zip(rows, values):
        row.update({f"secondary.{task}": metric, f"lower_is_better.{task}.{metric}": lower,
                    f"test.{task}.{metric}": value, f"val.{task}.{metric}": value})
    return rows


def two_metric_runs(old_acc_baseline=False):
    """acc (accuracy, macro_f1) and err (mse, mae) with two metrics each, aux with one."""
    base_acc = stl("acc", [0.8, 0.8])
    if not old_acc_baseline:
        with_secondary(base_acc, "acc", "macro_f1", False, [0.5, 0.5])
    m = mtl("m", {"acc": [0.84, 0.88], "err": [1.5, 2.0], "aux": [0.72, 0.72]})
    with_secondary(m, "acc", "macro_f1", False, [0.4, 0.6])
    for row, mae in zip(m, [1.3, 0.9]):  # a second task's secondary metric on the same rows
        with_secondary([row], "err", "mae", True, [mae])
    return table_of(base_acc, with_secondary(stl("err", [2.0, 2.0]), "err", "mae", True, [1.0, 1.0]),
                    stl("aux", [0.8, 0.8]), m)


def test_delta_m_averages_each_tasks_metrics_first_then_the_tasks():
    # r per seed: accuracy +5, +10; macro_f1 -20, +20; mse +25, 0; mae -30, +10; aux -10, -10.
    t = transfer_table(two_metric_runs()).set_index("task")
    acc, err, aux = (7.5 + 0.0) / 2, (12.5 - 10.0) / 2, -10.0
    assert t["delta_m"].tolist() == pytest.approx([(acc + err + aux) / 3] * 3)  # not the flat mean, 0
    assert t["delta_m_primary"].iloc[0] == pytest.approx((7.5 + 12.5 - 10.0) / 3)
    assert t.loc["acc", "metric"] == "accuracy" and t.loc["acc", "r_mean"] == pytest.approx(7.5)
    m = metric_table(two_metric_runs()).set_index(["task", "metric"])
    # Tasks in the transfer table's (natural) order, each task's primary metric first.
    assert m.index.tolist() == [("acc", "accuracy"), ("acc", "macro_f1"), ("aux", "accuracy"),
                                ("err", "mse"), ("err", "mae")]
    assert m["primary"].tolist() == [True, False, True, True, False]
    assert m.loc[("err", "mae"), ["n", "r_mean", "stl_mean", "mtl_mean"]].tolist() == pytest.approx([2, -10.0, 1.0, 1.1])
    assert m.loc[("acc", "macro_f1"), "r_lo"] < 0 < m.loc[("acc", "macro_f1"), "r_hi"]
    # A baseline written before secondary metrics existed: its task counts its primary metric only.
    old = transfer_table(two_metric_runs(old_acc_baseline=True))
    assert old["delta_m"].iloc[0] == pytest.approx((7.5 + err + aux) / 3)
    assert ("acc", "macro_f1") not in metric_table(two_metric_runs(old_acc_baseline=True)).set_index(["task", "metric"]).index


def test_with_one_metric_per_task_delta_m_is_exactly_the_mean_of_the_tasks_r():
    runs = table_of(stl("acc", [0.8, 0.81, 0.79]), stl("err", [2.0, 2.1, 1.9]), stl("aux", [0.7, 0.6, 0.65]),
                    mtl("a", {"acc": [0.84, 0.88, 0.8], "err": [1.0, 1.5, 2.0], "aux": [0.71, 0.62, 0.6]}, depth=1),
                    mtl("b", {"acc": [0.8, 0.83, 0.8], "err": [3.0, 2.9, 3.1], "aux": [0.3, 0.9, 0.6]}, depth=2))
    t = transfer_table(runs)
    before = t.groupby("config_hash", sort=False)["r_mean"].transform(lambda r: r.mean(skipna=False))
    assert t["delta_m"].tolist() == before.tolist() == t["delta_m_primary"].tolist()
    assert metric_table(runs)["primary"].all()


def test_underpowered_below_five_seeds():
    runs = table_of(stl("acc", [0.8] * 5), mtl("four", {"acc": [0.9, 0.9, 0.9, 0.9]}, depth=1),
                    mtl("five", {"acc": [0.9] * 5}, depth=2))
    flags = transfer_table(runs).set_index("config_hash")["underpowered"]
    assert flags.to_dict() == {"four": True, "five": False}


@pytest.mark.parametrize("n,alpha", [(3, 0.05), (5, 0.05), (10, 0.025), (20, 0.05), (200, 0.0167)])
def test_detectable_effect_matches_statsmodels_power_solver(n, alpha):
    power = pytest.importorskip("statsmodels.stats.power")
    d = power.TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=0.8,
                                       alternative="two-sided")
    assert detectable_effect(2.5, n, alpha) == pytest.approx(2.5 * d, rel=1e-4)


@pytest.mark.parametrize("n,alpha", [(3, 0.05), (5, 0.025), (10, 0.05)])
def test_detectable_effect_is_detected_at_80_percent_power_by_simulation(n, alpha):
    # Independent of the noncentral t: draw many samples whose true mean is the mde and count how
    # often the one-sample t-test rejects.
    sd = 3.0
    mde = detectable_effect(sd, n, alpha)
    draws = np.random.default_rng(0).normal(mde, sd, size=(40_000, n))
    rate = np.mean(stats.ttest_1samp(draws, 0.0, axis=1).pvalue < alpha)
    assert rate == pytest.approx(0.8, abs=0.01)
    # the large-n normal approximation from above, and the degenerate cases
    assert mde > (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(0.8)) * sd / np.sqrt(n)
    assert detectable_effect(0.0, n, alpha) == 0.0 and np.isnan(detectable_effect(sd, 1, alpha))


def test_mde_column_uses_the_paired_spread_and_the_holm_family():
    rng = np.random.default_rng(1)
    acc, err = 0.8 + rng.normal(0, 0.02, 6), 2.0 + rng.normal(0, 0.1, 6)
    runs = table_of(stl("acc", [0.8] * 6), stl("err", [2.0] * 6),
                    mtl("m", {"acc": list(acc), "err": list(err)}))
    table = transfer_table(runs).set_index("task")
    for task in ("acc", "err"):
        r = paired(runs).query("task == @task")["r"]
        assert table.loc[task, "mde"] == pytest.approx(detectable_effect(r.std(ddof=1), 6, 0.05 / 2))
    assert "mde" in to_markdown(transfer_table(runs))
    assert "Minimum detectable effect" in CONVENTIONS


def test_markdown_shows_varying_columns_and_flags():
    runs = table_of(stl("acc", [0.8] * 5),
                    mtl("a", {"acc": [0.9] * 4}, **{"model.shared_depth": 1,
                                                    "schedule.name": "joint"}),
                    mtl("b", {"acc": [0.7, 0.72, 0.71, 0.69, 0.7]},
                        **{"model.shared_depth": 2, "schedule.name": "joint"}))
    text = to_markdown(transfer_table(runs))
    header = text.splitlines()[0]
    assert "shared_depth" in header and "verdict" in header and "delta_m" in header
    assert "schedule" not in header and "toy" not in text
    assert "positive, underpowered" in text and "| negative " in text
    assert "[" in text and "cfg." not in text


def test_conventions_text_states_the_rules():
    for phrase in ("s_t = +1", "-1` where lower is better", "per task first", "Student-t",
                   "95%", "Holm", "fewer than 5", "disagrees", "schedule=alternate",
                   "steps/T updates", "train.select", "standardised on the train split", "below ref"):
        assert phrase in CONVENTIONS


def with_checks(rows, reference=None, trend=None):
    """Baseline rows with a linear reference (test split) and per-seed validation trends."""
    for row in rows:
        task = row["task"]
        if reference is not None:
            row[f"reference.test.{task}"], row[f"reference.model.{task}"] = reference, "logistic"
        if trend is not None:
            row[f"val_trend.{task}"] = trend[row["seed"]]
    return rows


def test_baseline_below_its_linear_reference_is_flagged():
    runs = table_of(with_checks(stl("acc", [0.80, 0.81, 0.79]), reference=0.9),
                    with_checks(stl("err", [2.0, 2.1, 1.9]), reference=2.5),
                    mtl("m", {"acc": [0.85] * 3, "err": [2.0] * 3}))
    table = transfer_table(runs).set_index("task")
    assert table.loc["acc", "ref_mean"] == 0.9 and table.loc["acc", "ref_model"] == "logistic"
    assert table.loc["acc", "baseline_check"] == "below ref"  # accuracy 0.8 < 0.9
    assert table.loc["err", "baseline_check"] == ""  # mse 2.0 < 2.5: better than the reference
    text = to_markdown(transfer_table(runs))
    assert "below ref" in text and "0.9" in text


def test_baseline_still_moving_at_the_end_is_flagged():
    runs = table_of(with_checks(stl("acc", [0.8] * 3), trend=[5.0, 3.0, 4.0]),
                    with_checks(stl("err", [2.0] * 3), trend=[-9.0, -6.0, -3.0]),
                    with_checks(stl("aux", [0.5] * 3), trend=[1.0, -1.0, 0.5]),
                    mtl("m", {"acc": [0.85] * 3, "err": [2.0] * 3, "aux": [0.5] * 3}))
    table = transfer_table(runs).set_index("task")
    assert table.loc["acc", "stl_trend"] == pytest.approx(4.0)
    assert table.loc["acc", "baseline_check"] == "improving"
    assert table.loc["err", "baseline_check"] == "worsening"
    assert table.loc["aux", "baseline_check"] == ""


def test_tables_without_baseline_checks_still_build():
    """Runs recorded before references and trends existed give empty checks, not errors."""
    table = transfer_table(table_of(stl("acc", [0.8] * 3), mtl("m", {"acc": [0.85] * 3})))
    assert np.isnan(table["ref_mean"].iloc[0]) and table["baseline_check"].iloc[0] == ""


def test_format_transfer_is_the_markdown_table():
    runs = table_of(stl("acc", [0.8] * 3), mtl("a", {"acc": [0.9, 0.92, 0.88]}, depth=1),
                    mtl("b", {"acc": [0.7, 0.72, 0.71]}, depth=2))
    shown = format_transfer(transfer_table(runs))
    assert list(shown.columns) == ["depth", "task", "metric", "n", "stl [lo, hi]", "ref", "mtl [lo, hi]",
                                   "r_t % [lo, hi]", "mde", "p_holm", "verdict", "delta_m", "baseline"]
    assert shown.to_markdown(index=False, disable_numparse=True) == to_markdown(
        transfer_table(runs))


def test_a_configuration_whose_runs_all_diverged_says_so():
    runs = table_of(stl("acc", [0.8] * 3),
                    mtl("fine", {"acc": [0.9, 0.92, 0.88]}, failed={2: "diverged"}, depth=1),
                    mtl("gone", {"acc": [0.9] * 3}, failed={s: "diverged" for s in range(3)}, depth=2))
    shown = format_transfer(transfer_table(runs)).set_index("depth")
    assert shown.loc["1", "n"] == "2 (+1 not ok)" and "no paired" not in shown.loc["1", "verdict"]
    assert shown.loc["2", "n"] == "0 (+3 not ok)" and shown.loc["2", "verdict"] == "no paired runs"


def test_every_row_says_its_metric_and_which_way_is_better():
    runs = table_of(stl("acc", [0.8] * 3), stl("err", [2.0] * 3),
                    mtl("m", {"acc": [0.9, 0.92, 0.88], "err": [1.5, 1.6, 1.4]}))
    shown = format_transfer(transfer_table(runs)).set_index("task")
    assert shown.loc["acc", "metric"] == "accuracy (higher better)"
    assert shown.loc["err", "metric"] == "mse (lower better)"
