"""data=nyuv2 and data=cityscapes with model=resnet end to end: records with every metric, for
equal and PCGrad, joint and alternate; separate towers equal their baselines; Cityscapes' 7 or 19
classes read from their own folder. ResNet programs compile for a minute or more each on CPU, so
these are marked slow (`pytest -m slow`)."""
from __future__ import annotations

import json
import shutil

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


def train(tmp_path, root, overrides, job="job", data="nyuv2"):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"data={data}", f"data.path={root}"] + TINY_RESNET + overrides)
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


@pytest.mark.parametrize("classes", [7, 19])
def test_cityscapes_runs_write_segmentation_and_depth_records(tmp_path, classes):
    """data.classes=7|19 reads label_7/ or label_19/: the other folder is removed from the copy
    (and label_19's values reach 18, which 7 classes would refuse), so reading the wrong one fails."""
    root = write_copy(tmp_path / "cityscapes", dataset="cityscapes", h=16, w=32)
    for split in ("train", "val"):
        shutil.rmtree(root / split / f"label_{26 - classes}")
    # 19 classes: the multi-task run alone (its baselines are the 7-class case's programs), with
    # DeepLab v3's ASPP decoders
    recs = train(tmp_path, root, [f"data.classes={classes}", "method=pcgrad"]
                 + ([] if classes == 7 else ["baselines=false", "model.head=aspp"]), data="cityscapes")
    assert len(recs) == (3 if classes == 7 else 1) and all(r["status"] == "ok" for r in recs)
    (mtl,) = [r for r in recs if r["kind"] == "mtl"]
    assert mtl["task_specs"]["segmentation"]["output_size"] == classes
    assert mtl["task_specs"]["segmentation"]["shape"] == [16, 32]
    assert mtl["config"]["model"]["head"] == ("conv" if classes == 7 else "aspp")
    for split in ("val", "test"):
        assert set(mtl["metrics"][split]) == {"segmentation", "depth"}
        assert 0 <= mtl["metrics"][split]["segmentation"] <= 1  # mIoU
        assert mtl["metrics"][split]["depth"] > 0  # absolute error
        secondary = mtl["secondary"][split]
        assert set(secondary) == {"segmentation", "depth"}
        assert 0 <= secondary["segmentation"]["pixel_acc"] <= 1 and secondary["depth"]["rel_err"] > 0
