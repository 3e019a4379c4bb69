"""data=nyuv2 with model=resnet end to end: records with every metric, for equal and PCGrad,
joint and alternate; separate towers equal their baselines. ResNet programs compile for a
minute or more each on CPU, so these are marked slow (`pytest -m slow`)."""
from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir

from dense_fakes import write_copy
from harness.config import register_configs, resolve
from harness.run.sweep import run_job
from test_experiments import ROOT

register_configs()
pytestmark = pytest.mark.slow
TINY_RESNET = ["model=resnet", "model.depth=18", "model.width=4", "model.head_width=8", "model.groups=2",
               "train.steps=2", "train.eval_every=1", "train.batch_size=2", "seeds=1", "study=dense"]


def train(tmp_path, root, overrides, job="job"):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["data=nyuv2", f"data.path={root}"] + TINY_RESNET + overrides)
    paths = run_job(resolve(cfg), tmp_path / job, tmp_path / "baselines", job)
    return [json.loads(p.read_text()) for p in paths]


@pytest.mark.parametrize("method, schedule", [("equal", "joint"), ("pcgrad", "joint"), ("equal", "alternate")])
def test_nyuv2_runs_write_records_with_every_metric(tmp_path, method, schedule):
    root = write_copy(tmp_path / "nyuv2")
    recs = train(tmp_path, root, [f"method={method}", f"schedule={schedule}", "data.augment=true"])
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    (mtl,) = [r for r in recs if r["kind"] == "mtl"]
    assert set(mtl["metrics"]["test"]) == {"segmentation", "depth", "normal"}
    assert 0 <= mtl["metrics"]["test"]["segmentation"] <= 1 and mtl["metrics"]["test"]["normal"] > 0
    assert set(mtl["curves"]["test_secondary"]) == {
        "segmentation.pixel_acc", "depth.rel_err", "normal.median_angle", "normal.within_11.25",
        "normal.within_22.5", "normal.within_30"}
    assert mtl["task_specs"]["depth"]["shape"] == [16, 24]


def test_separate_resnets_equal_their_baselines(tmp_path):
    """Depth 0: each task's tower trains exactly as its single-task baseline (r_t = 0)."""
    root = write_copy(tmp_path / "nyuv2")
    recs = train(tmp_path, root, ["model.shared_depth=0"])
    (mtl,) = [r for r in recs if r["kind"] == "mtl"]
    for r in recs:
        if r["kind"] == "stl":
            for split in ("val", "test"):
                assert mtl["metrics"][split][r["task"]] == pytest.approx(r["metrics"][split][r["task"]], rel=1e-5)
