"""Every config composes and type-checks; every bad value fails early with a one-line error
naming the key, and nothing is written."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from harness.config import register_configs, resolve
from harness.run.sweep import run_job
from harness.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
register_configs()


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["data", "model", "method", "schedule", "optim"])
def test_every_option_composes_with_its_schema(group):
    for option in options(group):
        overrides = [f"{group}={option}"]
        if group == "data" and option in ("files", "table"):
            overrides += ["data.path=x.npz", "+data.targets={y: regression}"]
        if group == "data" and option in ("celeba", "nyuv2", "cityscapes", "image_folders"):  # the user's own copy
            overrides += ["data.path=x"]
        cfg = composed(overrides)
        # schedule presets (alternate_proportional...) set fields of the one schedule schema
        assert cfg[group].name == option or group == "schedule"
        if group != "data" or option not in ("files", "table"):
            resolve(cfg)  # to_object type-checks against the dataclass schema


def test_schema_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(Exception, match="foo"):
        composed(["model.foo=1"])
    with pytest.raises(Exception, match="steps"):
        composed(["train.steps=abc"])


def job(tmp_path: Path, overrides: list[str]):
    small = ["seeds=2", "train.steps=20", "train.eval_every=10"]
    if not any(o.startswith("data=") for o in overrides):
        small += ["data.n_train=64", "data.n_val=32", "data.n_test=32"]
    run = resolve(composed(small + overrides))  # the test's overrides win
    return run_job(run, tmp_path / "job", tmp_path / "baselines", "test")


# The whole table of bad inputs runs through the command line in tests/test_bad_inputs.py; these
# go through the Python entry point (run_job) that the task function uses.
BAD = [
    (["model.shared_depth=4"], "model.shared_depth"),
    (["+data.train_rows={zz: 5}"], "data.train_rows"),
    (["optim=sgd", "optim.momentum=1.5"], "optim.momentum=1.5"),
]


@pytest.mark.parametrize("overrides,key", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_values_fail_early_with_one_line_and_write_nothing(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as err:
        job(tmp_path, overrides)
    message = str(err.value)
    assert message.startswith(key) and "\n" not in message
    assert not list(tmp_path.rglob("*.json"))


def test_a_valid_job_writes_one_record_per_seed_and_baseline(tmp_path):
    paths = job(tmp_path, [])
    mtl = sorted((tmp_path / "job" / "runs").glob("seed_*.json"))
    stl = sorted((tmp_path / "baselines").rglob("seed_*.json"))
    assert len(mtl) == 2 and len(stl) == 4 and len(paths) == 6
    again = job(tmp_path, [])  # same config: every record exists, nothing is retrained
    assert again == []


def test_a_failed_run_is_retried_and_a_diverged_one_kept(tmp_path):
    """A failed record (e.g. a transient out-of-memory) does not count as done on a re-run; a
    diverged one is a result and stays."""
    import json

    job(tmp_path, [])
    failed, diverged = (tmp_path / "job" / "runs" / f"seed_{s}.json" for s in (0, 1))
    for path, status in ((failed, "failed"), (diverged, "diverged")):
        rec = json.loads(path.read_text())
        path.write_text(json.dumps({**rec, "status": status}))
    assert job(tmp_path, []) == [failed]
    assert json.loads(failed.read_text())["status"] == "ok"
    assert json.loads(diverged.read_text())["status"] == "diverged"


def test_baselines_are_shared_between_configurations(tmp_path):
    job(tmp_path, ["model.shared_depth=1"])
    job(tmp_path, ["model.shared_depth=2"])
    assert len(list((tmp_path / "baselines").iterdir())) == 2  # one per task, reused
    job(tmp_path, ["model.shared_depth=2", "schedule=alternate"])
    job(tmp_path, ["model.shared_depth=1", "schedule=round_robin"])
    # An alternate run's baselines train at the steps its draw picks their task: their own.
    assert len(list((tmp_path / "baselines").iterdir())) == 6
    import json

    recs = [json.loads(p.read_text()) for p in (tmp_path / "baselines").rglob("seed_0.json")]
    assert {r["task"] for r in recs} == {"t1", "t2"}
    assert all(np.isfinite(list(r["metrics"]["test"].values())).all() for r in recs)


def test_added_fields_count_in_the_identity_only_once_set():
    """A schema field added after records exist leaves their config hash alone at its default."""
    import dataclasses

    from harness.config import identity
    from harness.schema import added
    from helpers import small_run

    @dataclasses.dataclass
    class Before:
        name: str = "m"
        width: int = 4

    @dataclasses.dataclass
    class After(Before):
        extra: list = added(default_factory=list)

    old, new = small_run(model=Before()), small_run(model=After())
    assert identity(new) == identity(old)
    assert identity(small_run(model=After(extra=[1])))["model"]["extra"] == [1]


def test_runs_table_holds_parameter_counts_and_the_matched_width(tmp_path):
    from harness.records import collect

    job(tmp_path, ["model.target_params=2000"])
    runs = collect(tmp_path)
    mtl, stl = runs[runs.kind == "mtl"], runs[runs.kind == "stl"]
    assert (mtl["cfg.model.width"] == 64).all() and (mtl["params.width"] != 64).all()
    assert abs(mtl["params.total"].iloc[0] - 2000) / 2000 < 0.05
    assert (stl["params.width"] == 64).all() and (stl["params.shared"] == 0).all()


def test_job_directory_names_are_one_component_and_long_ones_stay_distinct():
    from harness.config import job_dirname

    assert job_dirname("data.path=data/x.npz,seeds=2") == "data.path=data%2Fx.npz,seeds=2"
    assert job_dirname("") == "job" and job_dirname("..") == "%2E%2E"
    a, b = (job_dirname("method.weights=[" + ",".join(["1.0"] * 80) + f"],optim.lr={lr}") for lr in (0.1, 0.2))
    assert len(a) == len(b) == 120 and a != b and "/" not in a
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        sweep = compose("config", return_hydra_config=True).hydra.sweep
    assert sweep._get_node("subdir")._value() == "${job_dirname:${hydra.job.override_dirname}}"
