"""protocol=tuned (harness.run.tuned): search, selection on validation only, confirmation on
fresh seeds."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from harness.config import OptimConfig, ProtocolConfig, validate
from harness.data.files import FilesConfig
from harness.errors import ConfigError
from harness.methods.cagrad import CAGradConfig
from harness.records import collect
from harness.run.plan import plan
from harness.run.sweep import run_job
from harness.analysis import transfer_table
from harness.run.tuned import (applicable, front_weights, candidates, choose_baseline, choose_config, points, run_tuned,
                               seeds_of, validation_view)
from tests.helpers import small_run

SPACE = {"optim.lr": [3e-3, 3e-2], "optim.weight_decay": [0.0, 1e-3]}


def tuned(space=None, **changes):
    space = space or {"optim.lr": [3e-3, 3e-2]}
    nested = {}
    for key, values in space.items():
        nested.setdefault(key.split(".")[0], {})[key.split(".")[1]] = values
    protocol = ProtocolConfig(name="tuned", space=nested, tune_seeds=2, confirm_seeds=2)
    return small_run(protocol=protocol, **changes)


def test_grid_is_every_point_and_random_a_seeded_subset():
    grid = points(SPACE, "grid", 2, 0)
    assert grid == [{"optim.lr": a, "optim.weight_decay": b} for a in SPACE["optim.lr"] for b in SPACE["optim.weight_decay"]]
    drawn = points(SPACE, "random", 3, 7)
    assert len(drawn) == 3 and all(p in grid for p in drawn) and len({str(p) for p in drawn}) == 3
    assert drawn == points(SPACE, "random", 3, 7)
    assert {str(p) for s in range(20) for p in points(SPACE, "random", 3, s)} == {str(p) for p in grid}
    assert points(SPACE, "random", 10, 0) == grid  # a budget above the grid is the grid
    assert points({}, "grid", 4, 0) == [{}]


def test_a_key_is_searched_only_where_the_configuration_has_it():
    space = {"optim.lr": [1e-3], "method.c": [0.2, 0.5]}
    assert applicable(small_run(), space) == {"optim.lr": [1e-3]}  # equal has no c
    assert applicable(small_run(method=CAGradConfig()), space) == space
    job = plan(tuned(space, method=CAGradConfig()))
    cands = candidates(job)
    assert [v for v, _ in cands.mtl] == [{"optim.lr": 1e-3, "method.c": 0.2}, {"optim.lr": 1e-3, "method.c": 0.5}]
    assert all([v for v, _ in cs] == [{"optim.lr": 1e-3}] for cs in cands.stl.values())  # baselines: equal weights


def test_tuning_and_confirmation_seeds_are_disjoint():
    run = dataclasses.replace(tuned(), seed=4)
    tune, confirm = seeds_of(run)
    assert tune == [4, 5] and confirm == [6, 7]
    run = dataclasses.replace(run, seeds=5, protocol=dataclasses.replace(run.protocol, confirm_seeds=None, tune_seeds=3))
    tune, confirm = seeds_of(run)
    assert not set(tune) & set(confirm) and len(confirm) == 5


@pytest.mark.parametrize("change, key", [
    (dict(protocol=ProtocolConfig(name="tuned", space={"optim": {"lrr": [1.0]}})), "protocol.space.optim.lrr"),
    (dict(protocol=ProtocolConfig(name="tuned", space={"optim": {"lr": []}})), "protocol.space.optim.lr"),
    (dict(protocol=ProtocolConfig(name="tuned", space={"loss": {"lr": [1.0]}})), "protocol.space.loss"),
    (dict(protocol=ProtocolConfig(name="tuned", search="bayes")), "protocol.search"),
    (dict(protocol=ProtocolConfig(name="tuned", tune_seeds=0)), "protocol.tune_seeds"),
    (dict(protocol=ProtocolConfig(name="tuning")), "protocol.name"),
])
def test_bad_protocol_values_are_one_line_errors(change, key):
    with pytest.raises(ConfigError, match=rf"^{key}="):
        validate(small_run(**change))


def test_a_bad_candidate_is_refused_before_training_and_an_unused_key_not_searched():
    with pytest.raises(ConfigError, match=r"^optim.lr=-0.1"):
        candidates(plan(tuned({"optim.lr": [1e-3, -0.1]})))
    # Weight decay changes nothing under adam: it is searched only under adamw.
    assert [v for v, _ in candidates(plan(tuned(SPACE))).mtl] == [{"optim.lr": 3e-3}, {"optim.lr": 3e-2}]
    assert len(candidates(plan(tuned(SPACE, optim=OptimConfig(name="adamw")))).mtl) == 4


def _frame(values: dict[str, list[float]], task="a", lower=True, kind="stl"):
    rows = []
    for h, vals in values.items():
        for seed, v in enumerate(vals):
            rows.append({"kind": kind, "config_hash": h, "seed": seed, "status": "ok", "task": task if kind == "stl" else None,
                         f"val.{task}": v, f"test.{task}": -v, f"lower_is_better.{task}": lower})
    return pd.DataFrame(rows)


def test_selection_reads_validation_and_refuses_test_columns():
    runs = _frame({"x": [1.0, 1.2], "y": [0.9, 1.0], "z": [0.5, np.nan]})
    runs.loc[runs["config_hash"].eq("z") & runs["seed"].eq(1), "status"] = "diverged"
    with pytest.raises(ValueError, match="test metrics"):
        choose_baseline(runs, "a", 2)
    assert choose_baseline(validation_view(runs), "a", 2) == ("y", pytest.approx(0.95))  # z: not every seed ok
    higher = _frame({"x": [1.0, 1.2], "y": [0.9, 1.0]}, lower=False)
    assert choose_baseline(validation_view(higher), "a", 2)[0] == "x"
    base = validation_view(_frame({"b": [1.0, 2.0]}))
    mtl = validation_view(_frame({"m1": [1.1, 2.2], "m2": [0.9, 2.0]}, kind="mtl"))
    (h, score) = choose_config(mtl, base, ["a"], 2)
    assert h == "m2" and score == pytest.approx(5.0)  # lower is better: (10% + 0%) / 2
    # A secondary metric enters as in delta_m: m1's MAE 30% below the baseline's outweighs its mse.
    for frame, mae in ((base, [1.0, 1.0]), (mtl, [0.7, 0.7, 1.0, 1.0])):
        frame["secondary.a"], frame["lower_is_better.a.mae"], frame["val.a.mae"] = "mae", True, mae
    (h, score) = choose_config(mtl, base, ["a"], 2)
    assert h == "m1" and score == pytest.approx((-10.0 + 30.0) / 2)


@pytest.fixture(scope="module")
def permuted_test_labels(tmp_path_factory):
    """One tuned job on two copies of a file that differ only in their test labels."""
    rng = np.random.default_rng(0)
    n, d = 300, 6
    x = rng.normal(size=(n, d))
    y = {"a": x @ rng.normal(size=d) + rng.normal(size=n), "b": x[:, 0] - x[:, 1] + rng.normal(size=n)}
    # The rows of the test split (harness.data.files: a seeded permutation, test last).
    order = np.random.default_rng(0).permutation(n)
    test_rows = order[n - int(n * 0.15):]
    out = {}
    for name, permute in (("plain", False), ("permuted", True)):
        ys = {k: v.copy() for k, v in y.items()}
        if permute:
            for v in ys.values():
                v[test_rows] = v[rng.permutation(test_rows)]
        path = tmp_path_factory.mktemp(name) / "data.npz"
        np.savez(path, X=x, **ys)
        run = tuned(data=FilesConfig(path=str(path), targets={"a": "regression", "b": "regression"}))
        run = dataclasses.replace(run, protocol=dataclasses.replace(run.protocol, front=3))
        root = path.parent
        chosen = run_tuned(run, root / "job", root / "baselines", "job")
        out[name] = (chosen, collect(root), collect(root, tuning=True))
    return out


def test_permuting_the_test_labels_changes_no_choice(permuted_test_labels):
    (plain, runs, _), (permuted, runs_p, _) = permuted_test_labels["plain"], permuted_test_labels["permuted"]
    assert plain["candidates"] == 2 and plain == permuted
    mtl, mtl_p = (r[r["kind"].eq("mtl")].sort_values("seed") for r in (runs, runs_p))
    assert np.allclose(mtl["val.a"], mtl_p["val.a"])
    assert not np.allclose(mtl["test.a"], mtl_p["test.a"])  # the permutation reached the test split


def test_only_confirmation_runs_enter_the_table(permuted_test_labels):
    chosen, runs, everything = permuted_test_labels["plain"]
    mtl = runs[runs["kind"].eq("mtl") & ~runs["front"]]
    assert sorted(mtl["seed"]) == [2, 3] and set(mtl["phase"]) == {"confirm"}
    assert set(runs.loc[runs["kind"].eq("stl"), "phase"]) == {"confirm"}
    tune = everything[everything["phase"].eq("tune")]
    assert set(tune["seed"]) == {0, 1}
    assert tune[tune["kind"].eq("mtl")]["config_hash"].nunique() == 2 * 3  # both candidates of 3 configs
    lr = chosen["values"]["optim.lr"]
    assert set(mtl["cfg.optim.lr"]) == {lr} and set(mtl["chosen"]) == {f"optim.lr={lr}"}
    # Each confirmation baseline is the one chosen for its task.
    for task, info in chosen["baselines"].items():
        base = runs[runs["kind"].eq("stl") & runs["task"].eq(task)]
        assert set(base["cfg.optim.lr"]) == {info["values"]["optim.lr"]} and sorted(base["seed"]) == [2, 3]


def test_a_one_point_space_is_the_fixed_protocol_on_the_confirmation_seeds(tmp_path):
    run = tuned({"optim.lr": [1e-2]})
    run_tuned(run, tmp_path / "tuned" / "job", tmp_path / "tuned" / "baselines", "job")
    fixed = dataclasses.replace(run, protocol=ProtocolConfig(), seed=2, seeds=2)
    run_job(fixed, tmp_path / "fixed" / "job", tmp_path / "fixed" / "baselines", "job")
    a, b = collect(tmp_path / "tuned"), collect(tmp_path / "fixed")
    keep = ["kind", "config_hash", "seed", "val.t1", "val.t2", "test.t1", "test.t2"]
    pd.testing.assert_frame_equal(a[keep].sort_values(keep[:3], ignore_index=True),
                                  b[keep].sort_values(keep[:3], ignore_index=True))


def test_front_weights_are_the_simplex_lattice_summing_to_the_task_count():
    assert front_weights(2, 4) == [[0.5, 1.5], [1.0, 1.0], [1.5, 0.5]]
    three = front_weights(3, 4)
    assert len(three) == 3 and all(sum(w) == pytest.approx(3) and min(w) > 0 for w in three)
    many = front_weights(5, 6, seed=1)
    assert len(many) == 6 and all(sum(w) == pytest.approx(5) for w in many) and many == front_weights(5, 6, seed=1)


def test_the_front_is_tuned_and_confirmed_beside_the_configuration(permuted_test_labels):
    _, runs, _ = permuted_test_labels["plain"]
    front = runs[runs["kind"].eq("mtl") & runs["front"]]
    assert sorted(front["cfg.method.weights"].unique()) == ["[0.666667, 1.333333]", "[1.333333, 0.666667]"]
    assert set(front["seed"]) == {2, 3} and set(front["candidates"]) == {2}
    # Paired with the same chosen baselines as the configuration.
    own = runs[runs["kind"].eq("mtl") & ~runs["front"]]
    assert set(front["baseline.a"]) == set(own["baseline.a"])
    table = transfer_table(runs)
    assert table["config_hash"].nunique() == 3 and table["chosen"].notna().all()


def test_the_report_states_the_protocol_and_ranks_against_the_front(permuted_test_labels, tmp_path):
    from harness.report import write_report

    _, runs, _ = permuted_test_labels["plain"]
    paths = write_report(runs, tmp_path, records=[])
    text = paths["report.md"].read_text()
    assert "**Tuned comparison**" in text and "## Ranking" in text and "figures/front.png" in text
    assert "(of 2)" in paths["transfer.md"].read_text()
