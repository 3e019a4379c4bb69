"""Every study in experiments/ composes and its first sweep point trains for a couple of steps,
on every dataset, so no study rots."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from harness.config import register_configs, resolve
from harness.records import collect
from harness.run.plan import build_source
from harness.run.sweep import run_job
from harness.run.tuned import front_weights

ROOT = Path(__file__).resolve().parents[1]
register_configs()
TINY = ["seeds=2", "train.steps=4", "train.eval_every=2", "train.batch_size=8"]


def compose_with(overrides, hydra_node=False):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra_node)


def first_point(cfg) -> list[str]:
    """The first value of every swept key, parsed as Hydra parses it (a value may be a list)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, point = OverridesParser.create(), []
    for k, v in (cfg.hydra.sweeper.params or {}).items():
        override = parser.parse_override(f"{k}={v}")
        value = (next(override.sweep_string_iterator()) if override.is_sweep_override()
                 else override.get_value_element_as_str())
        point.append(f"{k}={value}")
    return point


# A tuned study's search shrunk to one drawn candidate and a one-point front, on one tuning seed.
TINY_TUNED = ["protocol.tune_seeds=1", "protocol.search=random", "protocol.budget=1", "protocol.front=2"]


def train_tiny(tmp_path, overrides):
    sweep = first_point(compose_with(overrides, hydra_node=True))
    tuned = compose_with(overrides).protocol.name == "tuned"
    cfg = compose_with(overrides + sweep + TINY + (TINY_TUNED if tuned else []))
    run = resolve(cfg)
    paths = run_job(run, tmp_path / "job", tmp_path / "baselines", "tiny")
    return run, paths


# Many-task tables train a subset here (each task is a baseline program of its own to compile);
# the subset keeps a classification and a regression task where the study mixes them.
FEWER_TASKS = {"yeast": ["data.tasks=[Class1,Class2]"], "penguins": ["data.tasks=[species,body_mass_g]"]}


def needs(tmp_path, name: str) -> list[str]:
    """Studies of the user's own files run on a fake copy the test writes, with a tiny network."""
    if name != "nyuv2":
        return FEWER_TASKS.get(name, [])
    from dense_fakes import write_copy

    return [f"data.path={write_copy(tmp_path / 'nyuv2')}", "model.depth=18", "model.width=4",
            "model.head_width=8", "model.groups=2"]


DENSE = {"nyuv2", "multimnist"}  # a ResNet program compiles for minutes on CPU; tests/test_lenet.py runs MultiMNIST


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in DENSE else n
                                  for n in sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))])
def test_every_experiment_trains_a_couple_of_steps(tmp_path, name):
    run, paths = train_tiny(tmp_path, [f"experiment={name}"] + needs(tmp_path, name))
    assert run.study == name
    num_tasks = len(build_source(run).tasks)
    if run.protocol.name == "tuned":  # its confirmation runs, its front's and one baseline per task
        # protocol.front=2: one lattice point for 2-3 tasks, two Dirichlet draws beyond
        front = len(front_weights(num_tasks, run.protocol.front))
        runs = collect(tmp_path)
        assert len(runs) == run.seeds * (1 + front + num_tasks) and set(runs["phase"]) == {"confirm"}
        assert runs["front"].sum() == run.seeds * front
        return
    assert len(paths) == run.seeds * (1 + num_tasks)  # its runs and one baseline per task


def test_digits_mixes_classification_and_regression(tmp_path):
    import json

    _, paths = train_tiny(tmp_path, ["data=digits", "data.n_train=64", "data.n_val=32", "data.n_test=32"])
    rec = json.loads(next(p for p in paths if "runs" in p.parts).read_text())
    assert {s["kind"] for s in rec["task_specs"].values()} == {"classification", "regression"}
    accuracy = rec["metrics"]["test"]["left"]
    assert 0.0 <= accuracy <= 1.0


def test_user_files_train_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    np.savez(tmp_path / "mine.npz", X=x, kind=(x[:, 0] > 0).astype(np.int64), size=x[:, 1] * 2)
    _, paths = train_tiny(tmp_path, ["data=files", f"data.path={tmp_path / 'mine.npz'}",
                                     "+data.targets={kind: classification, size: regression}"])
    assert len(paths) == 2 * 3
