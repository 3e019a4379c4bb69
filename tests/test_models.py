"""Sharing architectures: each degenerate case equals a known model, every model trains under vmap
with both schedules and a gradient method, masked updates leave other tasks bit-identical, sizes
match a parameter target, and bad trees fail with one line naming the key. Every model is tested
with both trunks, an MLP and a conv trunk (harness.models.plans)."""
from __future__ import annotations

import dataclasses
import functools
import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from harness.config import ScheduleConfig, identity, register_configs, resolve
from harness.data.base import regression
from harness.data.relatedness import RelatednessConfig
from harness.run.execute import hparams
from harness.run.sweep import run_job
from harness.errors import ConfigError
from harness.methods.pcgrad import PCGradConfig
from harness.models.base import MODELS
from harness.models.conv import HardConvConfig
from harness.models.cross_stitch import CrossStitchConfig
from harness.models.hard import HardConfig
from harness.models.lenet import LeNetConfig
from harness.models.moe import MMoEConfig, OMoEConfig
from harness.models.sizing import count_params, match_width
from harness.models.soft import SoftConfig
from harness.models.tree import TreeConfig, TreeGroup
from harness.records import config_hash
from harness.train import INIT
from helpers import execute, small_data, small_run, trainer

CONF = Path(__file__).resolve().parents[1] / "conf"
register_configs()
SMALL = dict(depth=2, width=16)
# The inputs (8 features) as 2 x 4 images: a conv block of 4 channels, then one dense layer, so
# hidden layer 0 is a convolution and the plan has SMALL's two hidden layers. The width (6)
# differs from the conv block's output (1 x 2 x 4 = 8 features), so nothing may confuse them.
CONV = dict(depth=1, width=6, channels=[4], image_shape=[2, 4])
TRUNKS = {"mlp": SMALL, "conv": CONV}
THREE_TASKS = RelatednessConfig(num_tasks=3, input_dim=8, n_train=256, n_val=64, n_test=64)
TASKS = tuple(regression(f"t{i}") for i in (1, 2, 3))


def every_model(trunk: dict) -> dict:
    return {
        "hard": HardConfig(**trunk, shared_depth=1),
        "soft": SoftConfig(**trunk, shared_depth=2, coupling=0.1),
        "cross_stitch": CrossStitchConfig(**trunk, shared_depth=2),
        "mmoe": MMoEConfig(**trunk, shared_depth=1, num_experts=2),
        "omoe": OMoEConfig(**trunk, shared_depth=1, num_experts=2),
        "tree": TreeConfig(**trunk, groups=[TreeGroup(depth=1), TreeGroup(["t1", "t2"], 2),
                                            TreeGroup(["t3", "t4"], 2)]),
    }


EVERY_MODEL = {**every_model(SMALL),
               "hard_conv": HardConvConfig(image_shape=[2, 4], channels=[4], depth=1, width=8,
                                           shared_depth=1),
               # 1 x 1 kernels: a pooled conv block fits the 2 x 4 inputs (1 x 2 x 4 features out).
               "lenet": LeNetConfig(image_shape=[2, 4], channels=[4], kernel=1, depth=1, width=8,
                                    shared_depth=1)}
CONV_MODEL = every_model(CONV)


def leaves_equal(a, b) -> bool:
    return all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@functools.cache
def hard_run(shared_depth: int, trunk: str = "mlp") -> dict:
    """The reference: hard sharing at this depth, two seeds of the small two-task run."""
    return train_two_seeds(HardConfig(**TRUNKS[trunk], shared_depth=shared_depth))


def train_two_seeds(model) -> dict:
    run = small_run(model=model)
    source, data = small_data(run)
    return execute(run, source.tasks, data, [0, 1])[0]


DEGENERATE = [
    ("cross_stitch, frozen identity = separate towers",
     lambda trunk: CrossStitchConfig(**trunk, shared_depth=2, alpha_self=1.0, learn_mixing=False), 0),
    ("mmoe, one expert = shared bottom", lambda trunk: MMoEConfig(**trunk, shared_depth=2, num_experts=1), 2),
    ("tree, one group of every task = hard sharing",
     lambda trunk: TreeConfig(**trunk, groups=[TreeGroup(depth=2)]), 2),
]
# The MLP's soft lambda = 0 case is checked batched with lambda = 1 below.
DEGENERATE_CONV = DEGENERATE + [
    ("soft, no coupling = separate towers",
     lambda trunk: SoftConfig(**trunk, shared_depth=2, coupling=0.0), 0)]
DEGENERATE_CASES = [(*d[1:], "mlp") for d in DEGENERATE] + [(*d[1:], "conv") for d in DEGENERATE_CONV]
DEGENERATE_IDS = [f"mlp: {d[0]}" for d in DEGENERATE] + [f"conv: {d[0]}" for d in DEGENERATE_CONV]


@pytest.mark.parametrize("make,hard_depth,trunk", DEGENERATE_CASES, ids=DEGENERATE_IDS)
def test_degenerate_case_trains_like_hard_sharing(make, hard_depth, trunk):
    out, reference = train_two_seeds(make(TRUNKS[trunk])), hard_run(hard_depth, trunk)
    for key in ("val", "test", "train_loss"):
        np.testing.assert_allclose(out[key], reference[key], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("trunk", TRUNKS)
def test_degenerate_cases_are_not_vacuous(trunk):
    """Away from the degenerate settings the same models compute something else."""
    x, trunk = jax.random.normal(jax.random.key(1), (5, 8)), TRUNKS[trunk]
    towers = MODELS.get("hard").build(HardConfig(**trunk, shared_depth=0), TASKS, 8)
    params = towers.init(jax.random.key(0))
    expected = towers.apply(params, x)
    for cfg in (CrossStitchConfig(**trunk, shared_depth=2, alpha_self=0.9),
                CrossStitchConfig(**trunk, shared_depth=2, alpha_self=1.0)):
        model = MODELS.get("cross_stitch").build(cfg, TASKS, 8)
        out = model.apply(model.init(jax.random.key(0)), x)
        same = all(np.allclose(out[t], expected[t], rtol=1e-6) for t in expected)
        assert same == (cfg.alpha_self == 1.0)  # identity units: exactly the towers, learned or not
    moe = MODELS.get("mmoe").build(MMoEConfig(**trunk, shared_depth=2, num_experts=2), TASKS, 8)
    hard = MODELS.get("hard").build(HardConfig(**trunk, shared_depth=2), TASKS, 8)
    a, b = moe.apply(moe.init(jax.random.key(0)), x), hard.apply(hard.init(jax.random.key(0)), x)
    assert not np.allclose(a["t1"], b["t1"], rtol=1e-4)


def test_soft_coupling_is_the_sum_of_pairwise_distances_and_is_dynamic():
    model = MODELS.get("soft").build(SoftConfig(depth=3, width=4, shared_depth=2), TASKS, 8)
    params = model.init(jax.random.key(0))
    layers = {n: params["tasks"][n]["layers"] for n in ("t1", "t2", "t3")}
    naive = sum(float(jnp.sum((layers[a][i][w] - layers[b][i][w]) ** 2))
                for a, b in itertools.combinations(layers, 2) for i in (0, 1) for w in ("kernel", "bias"))
    penalty = model.penalty(params, {"coupling": jnp.asarray(0.5)})
    np.testing.assert_allclose(float(penalty), 0.5 * naive, rtol=1e-5)
    # Batched over the coupling in one program: 0 reproduces separate towers, 1 does not.
    run = small_run(model=SoftConfig(**SMALL, shared_depth=2))
    source, data = small_data(run)
    train = trainer(run).train
    hp = hparams(run)
    hp["model"] = {"coupling": jnp.asarray([0.0, 1.0])}
    axes = {**{group: None for group in hp}, "model": {"coupling": 0}}  # batched over the coupling only
    out = jax.jit(jax.vmap(train, in_axes=(None, axes, None)))(jax.random.key(0), hp, data)
    towers = hard_run(0)
    np.testing.assert_allclose(out["test"][0], towers["test"][0], rtol=2e-5, atol=1e-6)
    assert not np.allclose(out["test"][1], towers["test"][0], rtol=1e-3)
    # With a conv trunk the conv kernels are coupled like any hidden layer.
    model = MODELS.get("soft").build(SoftConfig(**CONV, shared_depth=1), TASKS, 8)
    params = model.init(jax.random.key(0))
    blocks = {n: params["tasks"][n]["layers"][0]["conv"] for n in ("t1", "t2", "t3")}
    assert blocks["t1"]["kernel"].shape == (3, 3, 1, 4)
    naive = sum(float(jnp.sum((blocks[a][w] - blocks[b][w]) ** 2))
                for a, b in itertools.combinations(blocks, 2) for w in ("kernel", "bias"))
    penalty = model.penalty(params, {"coupling": jnp.asarray(0.5)})
    np.testing.assert_allclose(float(penalty), 0.5 * naive, rtol=1e-5)


@pytest.mark.parametrize("trunk", TRUNKS)
@pytest.mark.parametrize("name", ["mmoe", "omoe"])
def test_gates_sum_to_one(name, trunk):
    """With every expert a copy of expert 0, each task's gated sum is expert 0's output exactly
    when its gate weights sum to one. With the conv trunk the experts end in a conv block, whose
    flattened output (8 features) is not the width (6)."""
    cfg = dataclasses.replace(every_model(TRUNKS[trunk])[name], num_experts=4)
    model = MODELS.get(name).build(cfg, TASKS, 8)
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 8))
    copies = jax.tree.map(lambda a: jnp.broadcast_to(a[:1], a.shape), params["shared"]["experts"])
    z = model.trunk({**params, "shared": {**params["shared"], "experts": copies}}, x)
    h = jax.tree.map(lambda a: a[0], params["shared"]["experts"])
    hard = MODELS.get("hard").build(HardConfig(**TRUNKS[trunk], shared_depth=1), TASKS, 8)
    bottom = hard.trunk({"shared": h}, x)
    assert bottom.shape == (6, 16 if trunk == "mlp" else 8)
    for zt in (z.values() if name == "mmoe" else [z]):
        np.testing.assert_allclose(zt, bottom, rtol=1e-5, atol=1e-6)


def initial_params(model, seeds):
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    return jax.vmap(lambda k: model.init(jax.random.fold_in(k, INIT)))(keys)


SCHEDULES = {
    "joint+pcgrad": dict(schedule=ScheduleConfig(name="joint"), method=PCGradConfig()),
    "alternate": dict(schedule=ScheduleConfig(name="alternate", sampling="round_robin")),
}


# Every model with each trunk. Each case compiles a training program (~4 s), so the conv trunks
# run under the alternate schedule, whose checks are the strict ones, and meet joint + PCGrad
# through `hard_conv` (the builder of `hard` with a conv trunk): models build their trunks the
# same way whatever the schedule, and the schedules treat every layer alike. `omoe` is `mmoe`'s
# builder with one shared gate on x, whatever the trunk.
TRAINED = ([(name, "mlp", schedule) for name in EVERY_MODEL for schedule in SCHEDULES]
           + [(name, "conv", "alternate") for name in CONV_MODEL if name not in ("hard", "omoe")])


@pytest.mark.parametrize("name,trunk,schedule", TRAINED, ids=["-".join(case) for case in TRAINED])
def test_every_model_trains_under_vmap_and_masks_other_tasks(name, trunk, schedule):
    """Two seeds in one program. Alternate round robin for 2 steps trains t1 then t2: the other
    tasks' own parameters must stay bit-identical to their initial values, while t1's, t2's and
    the shared ones move. The tree gets a fourth task so that one group (t3+t4) serves neither
    trained task; it must not move either."""
    alternate = schedule == "alternate"
    data = dataclasses.replace(THREE_TASKS, num_tasks=4 if name == "tree" else 3)
    cfg = (EVERY_MODEL if trunk == "mlp" else CONV_MODEL)[name]
    run = small_run(data=data, model=cfg, **SCHEDULES[schedule],
                    train=dataclasses.replace(small_run().train, steps=2, eval_every=1))
    source, data = small_data(run)
    train = trainer(run).train
    keys = jax.vmap(jax.random.key)(jnp.asarray([0, 1], jnp.uint32))
    out = jax.jit(jax.vmap(train, in_axes=(0, None, None)))(keys, hparams(run), data)
    assert np.all(np.isfinite(out["test"])) and np.all(out["diverged_at"] == -1)
    assert not np.allclose(out["test"][0], out["test"][1])  # the seeds really differ
    if not alternate:
        return
    model = MODELS.get(name).build(run.model, source.tasks, 8)
    init, final = initial_params(model, [0, 1]), out["final"].params
    for task in [t.name for t in source.tasks]:
        assert leaves_equal(final["tasks"][task], init["tasks"][task]) == (task not in ("t1", "t2"))
    if name == "tree":
        assert leaves_equal(final["shared"]["t3+t4"], init["shared"]["t3+t4"])
        assert not leaves_equal(final["shared"]["t1+t2"], init["shared"]["t1+t2"])
    elif jax.tree.leaves(init["shared"]):
        assert not leaves_equal(final["shared"], init["shared"])


@pytest.mark.parametrize("name", EVERY_MODEL)
def test_target_params_picks_the_closest_width(name):
    target, tasks = 20_000, tuple(regression(f"t{i}") for i in (1, 2, 3, 4))
    cfg, entry = dataclasses.replace(EVERY_MODEL[name], target_params=target), MODELS.get(name)

    def count(width):
        return count_params(entry.build(dataclasses.replace(cfg, target_params=None, width=width), tasks, 8))

    width = match_width(cfg, entry.build, tasks, 8).width
    model = entry.build(cfg, tasks, 8)
    assert model.width == width != cfg.width  # the model says which width it was built with
    assert count_params(model) == count(width)
    assert abs(count(width) - target) / target < 0.03
    assert abs(count(width) - target) <= min(abs(count(width + d) - target) for d in (-1, 1))
    # The single-task baseline keeps the config's own width.
    assert cfg.single_task().width == cfg.width and cfg.single_task().target_params is None


def test_conv_trunk_keeps_the_meaning_of_sharing_depth():
    """Conv blocks first, then dense layers: each unit of depth moves one layer into the trunk,
    and the shared conv layers really are 3 x 3 convolutions."""
    counts = []
    for k in range(4):
        cfg = HardConvConfig(image_shape=[10, 10], channels=[4, 8], depth=2, width=16, shared_depth=k)
        params = jax.eval_shape(MODELS.get("hard_conv").build(cfg, TASKS, 100).init, jax.random.key(0))
        counts.append(sum(leaf.size for leaf in jax.tree.leaves(params["shared"])))
        if k == 2:
            assert params["shared"]["layers"][1]["conv"]["kernel"].shape == (3, 3, 4, 8)
    assert counts[0] == 0 and counts == sorted(set(counts))
    with pytest.raises(ConfigError, match="^model.image_shape"):
        MODELS.get("hard_conv").build(HardConvConfig(image_shape=[8, 8]), TASKS, 100)


def job(tmp_path: Path, overrides: list[str]):
    small = ["seeds=2", "train.steps=20", "train.eval_every=10", "data.num_tasks=3",
             "data.n_train=64", "data.n_val=32", "data.n_test=32", "model=tree"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        run = resolve(compose("config", overrides=small + overrides))
    return run_job(run, tmp_path / "job", tmp_path / "baselines", "test")


BAD_TREES = [
    ("unknown task", "[{tasks: [t1, zz], depth: 1}]", "model.groups[0].tasks"),
    ("task missing", "[{tasks: [t1, t2], depth: 1}]", "model.groups"),
    ("not nested", "[{tasks: [t1, t2], depth: 1}, {tasks: [t2, t3], depth: 2}]", "model.groups"),
    ("depth not increasing inward", "[{depth: 2}, {tasks: [t1, t2], depth: 2}]", "model.groups[1].depth"),
    ("deeper than the model", "[{depth: 4}]", "model.groups[0].depth"),
]


@pytest.mark.parametrize("groups,key", [b[1:] for b in BAD_TREES], ids=[b[0] for b in BAD_TREES])
def test_bad_trees_fail_with_one_line_naming_the_key(tmp_path, groups, key):
    with pytest.raises(ConfigError) as err:
        job(tmp_path, [f"model.groups={groups}"])
    message = str(err.value)
    assert message.startswith(f"{key}=") and "\n" not in message
    assert not list(tmp_path.rglob("*.json"))


def test_conv_fields_leave_existing_config_hashes_unchanged():
    """`channels` and `image_shape` were added to every model after records were written: while
    they hold their defaults a configuration keeps the hash its records were filed under; once
    set, they count. (The literals were recomputed when `train.standardize_targets` and the
    `train.select=best` default changed what every run computes, and so every hash.)"""
    def hash_of(model):
        return config_hash(identity(small_run(model=model)))

    assert hash_of(HardConfig()) == "e364907d5f7e"
    assert hash_of(MMoEConfig()) == "fd7c03b34824"
    assert hash_of(HardConvConfig()) == "246720c9fc92"
    assert hash_of(HardConfig(channels=[4], image_shape=[2, 4])) != "e364907d5f7e"


BAD_CONV = [
    ("image not the input size", dict(image_shape=[3, 3]), "model.image_shape"),
    ("image shape missing", dict(image_shape=[]), "model.image_shape"),
    ("image of one dimension", dict(image_shape=[8]), "model.image_shape"),
    ("empty channel count", dict(channels=[4, 0]), "model.channels"),
    ("negative dense depth", dict(depth=-1), "model.depth"),
    ("shared deeper than blocks plus dense layers", dict(shared_depth=3), "model.shared_depth"),
    ("no dense width to match", dict(depth=0, target_params=1000), "model.target_params"),
    ("an MLP's image shape is checked too", dict(channels=[], image_shape=[3, 3]), "model.image_shape"),
]


@pytest.mark.parametrize("change,key", [b[1:] for b in BAD_CONV], ids=[b[0] for b in BAD_CONV])
def test_bad_conv_trunks_fail_with_one_line_naming_the_key(change, key):
    for name, cfg in CONV_MODEL.items():
        if not all(hasattr(cfg, field) for field in change):
            continue  # the tree has groups, not a shared_depth
        with pytest.raises(ConfigError) as err:
            MODELS.get(name).build(dataclasses.replace(cfg, **change), TASKS, 8)
        message = str(err.value)
        assert message.startswith(f"{key}=") and "\n" not in message, (name, message)
        if key == "model.shared_depth":  # the bound counts the conv blocks
            assert "..2 (the number of model.channels plus model.depth)" in message
    tree = dataclasses.replace(CONV_MODEL["tree"], groups=[TreeGroup(depth=3)])
    with pytest.raises(ConfigError, match=r"^model.groups\[0\].depth=3: an integer in 1..2 \(the number of"):
        MODELS.get("tree").build(tree, TASKS, 8)


def test_conv_trunk_without_dense_layers():
    """depth = 0 after a conv block: the heads read the flattened feature map."""
    cfg = HardConfig(channels=[4], image_shape=[2, 4], depth=0, shared_depth=1)
    model = MODELS.get("hard").build(cfg, TASKS, 8)
    params = model.init(jax.random.key(0))
    assert params["tasks"]["t1"]["layers"][0]["kernel"].shape == (8, 1)  # the head, on 1 x 2 x 4 features
    out = model.apply(params, jax.random.normal(jax.random.key(1), (5, 8)))
    assert {t: o.shape for t, o in out.items()} == {t.name: (5, 1) for t in TASKS}


@pytest.mark.parametrize("name", CONV_MODEL)
def test_single_task_baseline_keeps_the_conv_trunk(name):
    """Every model's baseline is a tower of the same kind: conv blocks, nothing shared."""
    baseline = CONV_MODEL[name].single_task()
    assert (baseline.name, baseline.shared_depth) == ("hard", 0)
    assert (baseline.channels, baseline.image_shape, baseline.depth, baseline.width) == ([4], [2, 4], 1, 6)
    params = jax.eval_shape(MODELS.get("hard").build(baseline, TASKS[:1], 8).init, jax.random.key(0))
    assert not jax.tree.leaves(params["shared"])
    assert params["tasks"]["t1"]["layers"][0]["conv"]["kernel"].shape == (3, 3, 1, 4)


def test_init_stream_draws_towers_independent_of_the_baselines_and_is_dropped_by_single_task():
    tasks = (regression("t1"), regression("t2"))
    cfg = HardConfig(depth=2, width=4, shared_depth=0)
    build = MODELS.get("hard").build
    key = jax.random.key(0)
    base = build(cfg, tasks, 3).init(key)
    moved = build(dataclasses.replace(cfg, init_stream=1), tasks, 3).init(key)
    same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)) and bool(jnp.any(a != 0)), base, moved)
    assert not any(jax.tree.leaves(same))  # every random tower weight is drawn afresh (biases start at 0)
    assert jax.tree.structure(base) == jax.tree.structure(moved)
    assert dataclasses.replace(cfg, init_stream=1).single_task().init_stream == 0
    assert "init_stream" not in identity_of(cfg) and "init_stream" in identity_of(dataclasses.replace(cfg, init_stream=1))
    with pytest.raises(ConfigError, match="model.init_stream=-1"):
        build(dataclasses.replace(cfg, init_stream=-1), tasks, 3)


def identity_of(model: HardConfig) -> dict:
    from harness.schema import unset_additions

    return {f.name for f in dataclasses.fields(model)} - set(unset_additions(model))
