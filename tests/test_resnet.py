"""model=resnet: torchvision's stage layout, sharing by encoder stage, towers initialised the same
alone or together (with either dense head), dilation, DeepLab v3's ASPP head, and encoder weights
from a torchvision-named file."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.data.base import classification, depth, normal, segmentation
from harness.errors import ConfigError
from harness.models.base import MODELS
from harness.models.pretrained import flatten, from_torchvision, save
from harness.models.resnet import ResNetConfig

H, W = 16, 24
TASKS = (segmentation("segmentation", 13, (H, W)), depth("depth", (H, W)), normal("normal", (H, W)))
TINY = ResNetConfig(depth=18, width=4, head_width=8, groups=2)


def build(cfg, tasks=TASKS):
    return MODELS.get("resnet").build(cfg, tasks, H * W * 3)


def shapes(cfg, tasks=TASKS):
    return jax.tree.map(lambda a: a.shape, jax.eval_shape(build(cfg, tasks).init, jax.random.key(0)))


def test_stages_follow_torchvision():
    """ResNet-50 at width 64: stem 7 x 7 to 64, stages of 3, 4, 6, 3 bottlenecks, 2048 out."""
    enc = shapes(ResNetConfig(depth=50), TASKS[:1])["shared"]["stages"]
    assert enc[0]["conv"]["kernel"] == (7, 7, 3, 64)
    assert [len(enc[i]["blocks"]) for i in (1, 2, 3, 4)] == [3, 4, 6, 3]
    assert enc[1]["blocks"][0]["conv3"]["kernel"] == (1, 1, 64, 256)
    assert enc[4]["blocks"][2]["conv3"]["kernel"] == (1, 1, 512, 2048)
    assert enc[2]["blocks"][0]["down_conv"]["kernel"] == (1, 1, 256, 512)
    count = sum(np.prod(s) for s in jax.tree.leaves(enc, is_leaf=lambda s: isinstance(s, tuple)))
    assert count == 23_508_032  # torchvision's resnet50 without fc (its BatchNorm has the same affine count)
    basic = shapes(ResNetConfig(depth=34), TASKS[:1])["shared"]["stages"]
    assert [len(basic[i]["blocks"]) for i in (1, 2, 3, 4)] == [3, 4, 6, 3] and "conv3" not in basic[1]["blocks"][0]


def test_sharing_depth_moves_one_stage_at_a_time():
    counts = []
    for k in range(6):
        params = shapes(dataclasses.replace(TINY, shared_depth=k))
        counts.append(sum(np.prod(s) for s in jax.tree.leaves(params["shared"], is_leaf=lambda s: isinstance(s, tuple))))
        assert len(params["tasks"]["depth"].get("encoder", {}).get("stages", {})) == 5 - k
    assert counts[0] == 0 and counts == sorted(set(counts))
    assert TINY.single_task().shared_depth == 0


@pytest.mark.parametrize("head, k", [("conv", 0), ("conv", 3), ("aspp", 0)])
def test_towers_are_the_same_alone_or_together(head, k):
    """A task's tower (and, at depth 0, its whole network: the single-task baseline) has the same
    initial parameters and outputs in the three-task model as alone."""
    cfg = dataclasses.replace(TINY, shared_depth=k, head=head)
    together, alone = build(cfg, TASKS[:2]), build(cfg, TASKS[1:2])
    p_together, p_alone = jax.jit(together.init)(jax.random.key(0)), jax.jit(alone.init)(jax.random.key(0))
    tree_equal = lambda a, b: all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # noqa: E731
    assert tree_equal(p_together["tasks"]["depth"], p_alone["tasks"]["depth"])
    assert tree_equal(p_together["shared"], p_alone["shared"])
    x = jax.random.uniform(jax.random.key(1), (2, H * W * 3))
    np.testing.assert_array_equal(jax.jit(together.apply)(p_together, x)["depth"], jax.jit(alone.apply)(p_alone, x)["depth"])
    if k == 0:  # the depth-0 model alone is the task's single-task baseline
        assert cfg.single_task() == cfg
    else:  # not vacuous: another task's tower differs
        assert not tree_equal(p_together["tasks"]["depth"]["encoder"], p_together["tasks"]["segmentation"]["encoder"])


def test_dense_heads_give_the_input_resolution_and_image_tasks_a_vector():
    tasks = TASKS[:2] + (classification("scene", 5),)
    for dilation, side in ((False, (1, 1)), (True, (2, 3))):  # output stride 32 vs 8
        model = build(dataclasses.replace(TINY, dilation=dilation), tasks)
        params = model.init(jax.random.key(0))
        z = model.trunk(params, jnp.ones((2, H * W * 3)))
        assert z.shape[1:3] == side
        out = model.heads(params["tasks"], z)
        assert out["segmentation"].shape == (2, H, W, 13) and out["depth"].shape == (2, H, W, 1)
        assert out["scene"].shape == (2, 5)


def test_aspp_head_has_deeplab_v3_branches_and_gives_the_input_resolution():
    """model.head=aspp: a 1 x 1 branch, one 3 x 3 branch per rate (dilated by it), image pooling,
    a 1 x 1 projection of the five, a 3 x 3 conv and the output conv; per-pixel outputs at the
    input's (H, W), and image-level tasks keep their pooled linear head."""
    cfg = dataclasses.replace(TINY, head="aspp", dilation=True)
    tasks = TASKS[:2] + (classification("scene", 5),)
    model = build(cfg, tasks)
    params = model.init(jax.random.key(0))
    head, cin, hw = params["tasks"]["segmentation"]["head"], 8 * TINY.width, TINY.head_width
    assert [b["kernel"].shape for b in head["branches"].values()] == [(1, 1, cin, hw)] + [(3, 3, cin, hw)] * 3
    assert head["pool_conv"]["kernel"].shape == (1, 1, cin, hw)
    assert head["project"]["kernel"].shape == (1, 1, 5 * hw, hw) and head["conv"]["kernel"].shape == (3, 3, hw, hw)
    assert head["out"]["kernel"].shape == (1, 1, hw, 13) and set(params["tasks"]["scene"]["head"]) == {"linear"}
    x = jax.random.uniform(jax.random.key(1), (2, H * W * 3))
    out = jax.jit(model.apply)(params, x)
    assert out["segmentation"].shape == (2, H, W, 13) and out["depth"].shape == (2, H, W, 1)
    assert out["scene"].shape == (2, 5)
    # The rates reach the convolutions: at rate 1 the 3 x 3 branches see the 2 x 3 map's
    # neighbours; at 12, 24, 36 only its centre taps (the rest falls in the padding).
    near = build(dataclasses.replace(cfg, aspp_rates=[1, 1, 1]), tasks)
    assert not np.allclose(jax.jit(near.apply)(params, x)["segmentation"], out["segmentation"])


@pytest.mark.parametrize("change, key", [
    (dict(head="unet"), "model.head"), (dict(head="aspp", aspp_rates=[12, 0]), "model.aspp_rates"),
    (dict(depth=20), "model.depth"), (dict(shared_depth=6), "model.shared_depth"),
    (dict(width=0), "model.width"), (dict(image_shape=[W, H, 3]), "model.image_shape")])
def test_bad_configs_fail_with_one_line_naming_the_key(change, key):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')}="):
        build(dataclasses.replace(TINY, **change))
    with pytest.raises(ConfigError, match=r"^model\.image_shape=\[\]: \[H, W, C\] of the input images"):
        build(TINY, (classification("scene", 5),))


def torchvision_state_dict(width: int, rng) -> dict[str, np.ndarray]:
    """Random arrays under torchvision's resnet18 names and layouts (conv weights O x I x kh x kw),
    BatchNorm statistics and the classifier included."""
    sd = {}

    def conv(name, o, i, k):
        sd[f"{name}.weight"] = rng.normal(size=(o, i, k, k)).astype(np.float32)

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            sd[f"{name}.{p}"] = rng.normal(size=(c,)).astype(np.float32)
        sd[f"{name}.num_batches_tracked"] = np.asarray(1)

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    cin = width
    for s in range(1, 5):
        planes = width * 2 ** (s - 1)
        for b in range(2):
            p = f"layer{s}.{b}"
            conv(f"{p}.conv1", planes, cin if b == 0 else planes, 3)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            if b == 0 and s > 1:
                conv(f"{p}.downsample.0", planes, cin, 1)
                bn(f"{p}.downsample.1", planes)
        cin = planes
    sd["fc.weight"], sd["fc.bias"] = rng.normal(size=(1000, cin)), rng.normal(size=(1000,))
    return sd


def test_pretrained_encoder_from_a_torchvision_state_dict(tmp_path):
    sd = torchvision_state_dict(4, np.random.default_rng(0))
    save(str(tmp_path / "r18.npz"), from_torchvision(sd))
    cfg = dataclasses.replace(TINY, shared_depth=2, pretrained=str(tmp_path / "r18.npz"))
    params = build(cfg).init(jax.random.key(0))
    shared = params["shared"]["stages"]
    np.testing.assert_array_equal(shared[0]["conv"]["kernel"], sd["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(shared[0]["norm"]["scale"], sd["bn1.weight"])
    np.testing.assert_array_equal(shared[1]["blocks"][1]["norm2"]["bias"], sd["layer1.1.bn2.bias"])
    for task in ("segmentation", "normal"):  # stages 2..4 are each task's copy, all loaded
        own = params["tasks"][task]["encoder"]["stages"]
        np.testing.assert_array_equal(own[0]["blocks"][0]["down_conv"]["kernel"],
                                      sd["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(own[2]["blocks"][1]["conv2"]["kernel"],
                                      sd["layer4.1.conv2.weight"].transpose(2, 3, 1, 0))
    fresh = build(dataclasses.replace(cfg, pretrained=None)).init(jax.random.key(0))
    np.testing.assert_array_equal(params["tasks"]["depth"]["head"]["out"]["kernel"],
                                  fresh["tasks"]["depth"]["head"]["out"]["kernel"])  # decoders keep their init
    assert len(flatten(shared)) + len(flatten(params["tasks"]["depth"]["encoder"])) == len(from_torchvision(sd))


def test_a_pretrained_file_that_does_not_fit_is_one_line(tmp_path):
    arrays = from_torchvision(torchvision_state_dict(4, np.random.default_rng(0)))
    save(str(tmp_path / "wide.npz"), arrays)
    with pytest.raises(ConfigError, match=r"^model\.pretrained=.*stages/0/conv/kernel has shape \(7, 7, 3, 4\), the model's \(7, 7, 3, 8\)$"):
        build(dataclasses.replace(TINY, width=8, pretrained=str(tmp_path / "wide.npz")))
    del arrays["stages/4/blocks/1/conv2/kernel"]
    save(str(tmp_path / "short.npz"), arrays)
    with pytest.raises(ConfigError, match=r"^model\.pretrained=.*has no stages/4/blocks/1/conv2/kernel"):
        build(dataclasses.replace(TINY, pretrained=str(tmp_path / "short.npz")))
    with pytest.raises(ConfigError, match=r"^model\.pretrained=.*an existing \.npz file"):
        build(dataclasses.replace(TINY, pretrained=str(tmp_path / "none.npz")))
    with pytest.raises(ValueError, match="layer5.0.conv1.weight: not a torchvision ResNet parameter name"):
        from_torchvision({"layer5.0.conv1.weight": np.zeros((1, 1, 1, 1))})
