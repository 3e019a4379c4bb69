"""data=image_folders: tasks with their own inputs, on small image folders written by the tests.

Every image is a solid colour that names it: red = its number within its task, green = 40 x its
class, blue = 250 for task `b` and 0 for task `a`. PNG keeps the colours exactly and resizing a
solid image keeps them too, so each row of x says which image it is."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from harness.config import ScheduleConfig, TrainConfig, single_task
from harness.data.base import Split, own_inputs, select_tasks
from harness.data.image_folders import ImageFoldersConfig, build
from harness.errors import ConfigError
from harness.models.hard import HardConfig
from harness.run.plan import only, plan
from harness.train.batches import draw_rows, make_draw
from harness.train.evaluation import evaluate, evaluate_in_chunks
from helpers import execute, small_data, small_run

# task -> images per class (different counts, and task b has a third class)
LAYOUT = {"a": [10, 10], "b": [8, 9, 13]}
BLUE = {"a": 0, "b": 250}


def write_folders(root, layout=LAYOUT):
    for task, counts in layout.items():
        number = 0
        for k, count in enumerate(counts):
            (root / task / f"class{k}").mkdir(parents=True)
            for _ in range(count):
                colour = (number, 40 * k, BLUE[task])
                Image.new("RGB", (8, 8), colour).save(root / task / f"class{k}" / f"img{number:03d}.png")
                number += 1
    return root


@pytest.fixture
def folders(tmp_path):
    return write_folders(tmp_path / "images")


def image_ids(x) -> np.ndarray:
    """(red, green / 40, blue / 250) of each row of x: image number, class, task (0 a, 1 b)."""
    pixel = np.rint(np.asarray(x).reshape(len(x), -1, 3)[:, 0] * 255).astype(int)
    return pixel // np.array([1, 40, 250])


def test_each_task_keeps_its_own_images_split_by_the_seed(folders):
    source = build(ImageFoldersConfig(path=str(folders), image_size=4))
    assert source.task_names == ("a", "b") and source.input_dim == 4 * 4 * 3
    assert [t.output_size for t in source.tasks] == [2, 3]
    data = source.generate(jax.random.key(0), {})
    for task, counts in LAYOUT.items():
        seen = []
        for split, expected in zip(data, (12, 4, 4) if task == "a" else (18, 6, 6)):
            ids = image_ids(split.x[task])
            assert len(ids) == expected and (ids[:, 2] == (task == "b")).all()  # its own images only
            np.testing.assert_array_equal(ids[:, 1], np.asarray(split.y[task]))  # labels are the class folders
            seen += ids[:, 0].tolist()
        assert sorted(seen) == list(range(sum(counts)))  # disjoint splits covering every image
    again = build(ImageFoldersConfig(path=str(folders), image_size=4)).generate(jax.random.key(1), {})
    other = build(ImageFoldersConfig(path=str(folders), image_size=4, seed=1)).generate(jax.random.key(0), {})
    alone = select_tasks(build(ImageFoldersConfig(path=str(folders), image_size=4)), ["b"]).generate(
        jax.random.key(0), {})
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(data), jax.tree.leaves(again)))
    assert not np.array_equal(data.train.y["a"], other.train.y["a"])
    # a task's split does not depend on the other tasks picked
    assert np.array_equal(alone.test.x["b"], data.test.x["b"]) and list(alone.test.x) == ["b"]
    assert source.describe(data)["b_train_rows"] == 18.0


def image_run(root, **changes):
    """A small run on the folders at `root` (4 x 4 images), with changes to its fields."""
    run = small_run(data=ImageFoldersConfig(path=str(root), image_size=4),
                    train=TrainConfig(steps=20, batch_size=8, eval_every=10))
    return dataclasses.replace(run, **changes)


def test_each_task_draws_its_batch_from_its_own_inputs(folders):
    run = image_run(folders)
    job = plan(run)
    source, data = small_data(run)
    sizes = {"a": 12, "b": 18}
    assert job.settings.task_rows == sizes and job.settings.own_inputs
    draw = make_draw(["a", "b"], 8, job.settings.train_size, job.settings.task_rows)
    for step in range(3):
        x, y = draw(data, jax.random.key(0), step)
        for block, task in enumerate("ab"):
            ids = image_ids(x[8 * block:8 * (block + 1)])
            assert (ids[:, 2] == block).all()  # task b's loss reads b's images only
            np.testing.assert_array_equal(ids[:, 1], np.asarray(y[task]))  # with their own labels
            assert set(ids[:, 0]) <= set(image_ids(data.train.x[task])[:, 0].tolist())  # from its train rows
    x, y = draw_rows(data.val, jax.random.key(0), 5, ["b", "a"])  # a looking-ahead method's val rows
    assert (image_ids(x)[:5, 2] == 1).all() and (image_ids(x)[5:, 2] == 0).all()
    # The baseline of a task keeps only its own inputs and draws them as the job does.
    base = only(data, "b")
    assert list(base.train.x) == ["b"] and list(base.train.y) == ["b"]
    assert job.baselines["b"].settings.task_rows == {"b": 18}


# Alternate covers joint's draws and evaluation and adds the schedule's; joint alone is slow-marked.
@pytest.mark.parametrize("schedule", [pytest.param(ScheduleConfig(name="joint"), marks=pytest.mark.slow),
                                      ScheduleConfig(name="alternate", sampling="proportional")],
                         ids=["joint", "alternate"])
def test_separate_towers_equal_their_baselines_on_tasks_with_their_own_inputs(folders, schedule):
    """Depth 0: each task trains and is evaluated exactly as its baseline, which sees only that
    task's images; under alternate, proportional to each task's own train rows (12 and 18)."""
    run = image_run(folders, model=HardConfig(depth=2, width=16, shared_depth=0), schedule=schedule)
    source, data = small_data(run)
    mtl, _, _ = execute(run, source.tasks, data, [0, 1])
    for j, task in enumerate(source.tasks):
        stl, _, _ = execute(single_task(run, task.name, ["a", "b"]), (task,), only(data, task.name), [0, 1])
        np.testing.assert_array_equal(mtl["val"][..., j], stl["val"][..., 0])
        np.testing.assert_array_equal(mtl["test"][..., j], stl["test"][..., 0])
        np.testing.assert_array_equal(mtl["train_loss"][..., j], stl["train_loss"][..., 0])


@pytest.mark.slow  # 18 s of CPU: three conv programs compiled in a fresh interpreter
def test_the_command_line_trains_a_conv_trunk_on_image_folders(folders, tmp_path):
    """`python -m harness data=image_folders ...`, as tests/test_cli.py runs it (a subprocess)."""
    args = ["data=image_folders", f"data.path={folders}", "data.image_size=8", "model=hard_conv",
            "model.image_shape=[8,8,3]", "model.channels=[4]", "seeds=1", "train.steps=4", "train.eval_every=2",
            "train.batch_size=4", "compile_cache=null", f"hydra.run.dir={tmp_path}/run"]
    done = subprocess.run([sys.executable, "-m", "harness", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    recs = [json.loads(p.read_text()) for p in tmp_path.rglob("seed_*.json")]
    assert sorted(r["kind"] for r in recs) == ["mtl", "stl", "stl"]
    mtl = next(r for r in recs if r["kind"] == "mtl")
    assert mtl["tasks"] == ["a", "b"] and mtl["status"] == "ok"
    assert mtl["data_info"]["a_val_rows"] == 4.0
    assert all(0 <= mtl["metrics"][s][t] <= 1 for s in ("val", "test") for t in "ab")


def broken(root, what):
    if what == "no class folders":
        (root / "c").mkdir()
    elif what == "one class":
        (root / "c" / "only").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / "c" / "only" / "x.png")
    elif what == "no images":
        (root / "a" / "class2").mkdir()
        (root / "a" / "class2" / "notes.txt").write_text("not an image")
    elif what == "unreadable":
        (root / "b" / "class1" / "broken.jpg").write_text("not an image")
    elif what == "too few":
        for k in range(2):
            (root / "c" / f"class{k}").mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(root / "c" / f"class{k}" / "x.png")


@pytest.mark.parametrize("what, change, says", [
    ("no class folders", {}, "a directory of task folders, each with one folder of images per class; "
                             "c/ has 0 class folders, at least 2 needed"),
    ("one class", {}, "c/ has 1 class folders, at least 2 needed"),
    ("no images", {}, "a/class2/ has no .jpg, .jpeg, .png images"),
    ("unreadable", {}, "readable images; b/class1/broken.jpg is not one (UnidentifiedImageError)"),
    ("too few", {}, "non-empty train/val/test splits at val_fraction=0.2, test_fraction=0.2; c/ has 2"),
    (None, {"image_size": 0}, "data.image_size=0: an integer >= 1"),
    (None, {"eval_batch": 0}, "data.eval_batch=0: an integer >= 1, or null"),
    (None, {"val_fraction": 1.5}, "data.val_fraction=1.5: a number in (0, 1)"),
    (None, {"test_fraction": 0.8}, "data.test_fraction=0.8: val_fraction + test_fraction < 1"),
    (None, {"path": "/no/such/dir"}, "data.path='/no/such/dir': a directory of task folders, each with one "
                                     "folder of images per class; no such directory"),
])
def test_a_bad_layout_or_value_is_one_line_naming_the_key(folders, what, change, says):
    broken(folders, what)
    with pytest.raises(ConfigError) as err:
        build(ImageFoldersConfig(**{"path": str(folders), "image_size": 4, **change}))
    assert "\n" not in str(err.value) and says in str(err.value)


def test_an_unknown_task_is_one_line_listing_the_folders(folders):
    with pytest.raises(ConfigError, match=r"^data\.tasks='dslr': this dataset's tasks are a, b$"):
        plan(image_run(folders, data=ImageFoldersConfig(path=str(folders), image_size=4, tasks=["a", "dslr"])))


def test_a_root_without_task_folders_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.path='.*': a directory of task folders.*; it has no folders$"):
        build(ImageFoldersConfig(path=str(tmp_path)))


def test_each_task_is_evaluated_on_its_own_rows_whole_or_in_chunks(folders):
    job = plan(image_run(folders), with_baselines=False)
    model, tasks = job.parts.model, job.parts.tasks
    _, data = small_data(job.run)
    params = model.init(jax.random.key(0))
    metrics, losses, secondary = evaluate(model, tasks, params, data.val)
    for j, t in enumerate(tasks):  # each task alone on its own split, as its baseline is evaluated
        alone = evaluate(model, (t,), params, Split(data.val.x[t.name], {t.name: data.val.y[t.name]}))
        assert metrics[j] == alone[0][0] and losses[j] == alone[1][0]
        assert secondary[f"{t.name}.macro_f1"] == alone[2][f"{t.name}.macro_f1"]
    chunked = evaluate_in_chunks(model, tasks, params, data.val, None, 3)  # 4 and 6 rows: a ragged last chunk
    np.testing.assert_allclose(chunked[0], metrics, rtol=1e-6)
    np.testing.assert_allclose(chunked[1], losses, rtol=1e-5)


def test_a_task_subset_keeps_each_tasks_own_inputs(folders):
    source = select_tasks(build(ImageFoldersConfig(path=str(folders), image_size=4)), ["b", "a"])
    data = source.generate(jax.random.key(0), {})
    assert source.task_names == ("b", "a") and own_inputs(data.train) and list(data.train.x) == ["b", "a"]
