"""`resnet`: a ResNet encoder with per-task decoders, shared up to a chosen stage.

He, Zhang, Ren and Sun 2016, "Deep Residual Learning for Image Recognition" (CVPR), in
torchvision's layout (stride on the 3 x 3 convolution of a bottleneck): `model.depth` 18 and 34
use basic blocks, 50 bottleneck blocks. The encoder is five stages, the stem (7 x 7 stride-2
convolution, normalisation, ReLU, 3 x 3 stride-2 max pooling) and stages 1..4; the first
`model.shared_depth` of them are one trunk for every task and the rest are each task's own
copy, so `shared_depth = 5` is the shared encoder of the multi-task papers (MTAN, Nash-MTL,
CAGrad, FAMO: a ResNet-50 with per-task heads), `0` one network per task (the single-task
baseline) and a sweep over it moves the split stage by stage. `model.dilation=true` keeps stages
3 and 4 at stride 1 with dilation 2 and 4 (output stride 8), as the dilated ResNets of those
papers do for dense tasks.

Decoders, one per task: a dense task (segmentation, depth, normal) gets, with `model.head=conv`
(the default), a 3 x 3 convolution of `model.head_width` channels, normalisation and ReLU, a
1 x 1 convolution to its outputs and a bilinear upsampling to the input's resolution (a small
version of the DeepLab head those papers use); with `model.head=aspp`, that DeepLab v3 head itself
(`ASPPHead`, below); a one-target-per-image task gets global average pooling and a linear layer.

Normalisation is GroupNorm (Wu and He 2018), not BatchNorm: it keeps no running statistics, so
the parameters are the whole state, a masked alternate update leaves an inactive task's layers
bit-identical with nothing else to guard, and `vmap` over runs needs no mutable collections.
Groups: `model.groups`, or the largest divisor of a layer's channels below it. A group of one
channel over a 1 x 1 feature map normalises to zero: at tiny widths and resolutions (tests) use
fewer groups.

Initialisation keys are tied to the stage, not to the split: stage i of the shared trunk comes
from fold_in(shared_key, i), stage i of task t from fold_in(task_key(t), i), its decoder from
fold_in(task_key(t), 5), so a task's tower is bit-identical alone or among other tasks. Each
stage draws all its weights in one call (`draw`: convolutions He-normal on fan-out as in
torchvision, the decoders' last layer LeCun-normal, truncated at two standard deviations as
Flax's initialisers; norms scale 1, biases 0): XLA compiles one random-number kernel per stage
instead of one per layer, which took most of a CPU compile.

`model.pretrained=<file.npz>` loads encoder weights into every copy of every stage (shared or
a task's); `from_torchvision` converts a torchvision state dict to such a file.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.models.base import MODELS, Model
from harness.models.layers import Template, pure, shared_key, task_key
from harness.models.plans import check_shared_depth
from harness.models import pretrained as weights
from harness.schema import Entry

STAGES = 5  # stem, stage 1..4
HEADS = ("conv", "aspp")
BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
BOTTLENECK = {18: False, 34: False, 50: True}
KAIMING = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


@dataclass
class ResNetConfig:
    name: str = "resnet"
    depth: int = 50  # 18, 34 (basic blocks) or 50 (bottleneck blocks)
    width: int = 64  # channels of the stem; stage s has width * 2^(s-1) (x 4 out of a bottleneck)
    shared_depth: int = 5  # encoder stages shared: 0..5 (stem, stage 1..4)
    dilation: bool = False  # stages 3 and 4 dilated instead of strided (output stride 8)
    head: str = "conv"  # a dense task's decoder: conv (3 x 3 conv, 1 x 1 conv) | aspp (DeepLab v3's)
    head_width: int = 256  # channels of a dense decoder's hidden convolutions (each ASPP branch's too)
    aspp_rates: list[int] = field(default_factory=lambda: [12, 24, 36])  # the 3 x 3 branches' dilations
    groups: int = 32  # GroupNorm groups (fewer where a layer has fewer channels)
    # [H, W, C] of the flattened inputs; empty: from the dense tasks' (H, W) and the input size.
    image_shape: list[int] = field(default_factory=list)
    pretrained: Optional[str] = None  # .npz of encoder weights (harness.models.pretrained)

    def single_task(self) -> "ResNetConfig":
        """A task's own network: the same ResNet with nothing shared."""
        return dataclasses.replace(self, shared_depth=0)


def norm(channels: int, groups: int, key: jax.Array) -> nnx.GroupNorm:
    return nnx.GroupNorm(channels, num_groups=math.gcd(channels, groups), rngs=nnx.Rngs(params=key))


def conv(cin: int, cout: int, k: int, key: jax.Array, stride: int = 1, dilation: int = 1) -> nnx.Conv:
    pad = dilation * (k - 1) // 2  # torchvision's padding: same spatial rounding
    return nnx.Conv(cin, cout, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                    kernel_dilation=(dilation, dilation), use_bias=False, kernel_init=KAIMING,
                    rngs=nnx.Rngs(params=key))


class Stem(nnx.Module):
    def __init__(self, cin: int, width: int, groups: int, key: jax.Array):
        k = jax.random.split(key)
        self.conv = nnx.Conv(cin, width, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                             kernel_init=KAIMING, rngs=nnx.Rngs(params=k[0]))
        self.norm = norm(width, groups, k[1])

    def __call__(self, x):
        x = jax.nn.relu(self.norm(self.conv(x)))
        return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class Block(nnx.Module):
    """A basic block (two 3 x 3 convolutions) or a bottleneck (1 x 1, 3 x 3, 1 x 1 to 4 x planes),
    with a 1 x 1 projection of the input where the shape changes."""

    def __init__(self, cin: int, planes: int, stride: int, dilation: int, bottleneck: bool, groups: int,
                 key: jax.Array):
        k = jax.random.split(key, 8)
        cout = planes * (4 if bottleneck else 1)
        if bottleneck:
            self.conv1, self.norm1 = conv(cin, planes, 1, k[0]), norm(planes, groups, k[1])
            self.conv2, self.norm2 = conv(planes, planes, 3, k[2], stride, dilation), norm(planes, groups, k[3])
            self.conv3, self.norm3 = conv(planes, cout, 1, k[4]), norm(cout, groups, k[5])
        else:
            self.conv1, self.norm1 = conv(cin, planes, 3, k[0], stride, dilation), norm(planes, groups, k[1])
            self.conv2, self.norm2 = conv(planes, planes, 3, k[2], 1, dilation), norm(planes, groups, k[3])
            self.conv3 = self.norm3 = None
        if stride != 1 or cin != cout:
            self.down_conv, self.down_norm = conv(cin, cout, 1, k[6], stride), norm(cout, groups, k[7])
        else:
            self.down_conv = self.down_norm = None

    def __call__(self, x):
        y = jax.nn.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        if self.conv3 is not None:
            y = self.norm3(self.conv3(jax.nn.relu(y)))
        skip = x if self.down_conv is None else self.down_norm(self.down_conv(x))
        return jax.nn.relu(y + skip)


class Stage(nnx.Module):
    def __init__(self, blocks: list[Block]):
        self.blocks = nnx.List(blocks)

    def __call__(self, x):
        for block in self.blocks:
            x = block(x)
        return x


@dataclass(frozen=True)
class ResNetPlan:
    """Stage i of the encoder and the channels entering it."""

    image: tuple[int, int, int]
    depth: int
    width: int
    dilation: bool
    groups: int
    head: str = "conv"  # a dense task's decoder: DenseHead (conv) or ASPPHead (aspp)
    aspp_rates: tuple[int, ...] = (12, 24, 36)

    @property
    def expansion(self) -> int:
        return 4 if BOTTLENECK[self.depth] else 1

    def channels(self, i: int) -> int:
        """Channels entering stage i (i = STAGES: the encoder's output)."""
        if i == 0:
            return self.image[2]
        return self.width if i == 1 else self.width * 2 ** (i - 2) * self.expansion

    def stage(self, i: int, key: jax.Array) -> nnx.Module:
        if i == 0:
            return Stem(self.image[2], self.width, self.groups, key)
        planes, cin = self.width * 2 ** (i - 1), self.channels(i)
        stride, dilation, first_dilation = (1 if i == 1 else 2), 1, 1
        if self.dilation and i >= 3:  # torchvision's replace_stride_with_dilation=[False, True, True]
            stride, dilation, first_dilation = 1, 2 ** (i - 2), 2 ** (i - 3)
        blocks = []
        for b in range(BLOCKS[self.depth][i - 1]):
            blocks.append(Block(cin, planes, stride if b == 0 else 1, first_dilation if b == 0 else dilation,
                                BOTTLENECK[self.depth], self.groups, jax.random.fold_in(key, b)))
            cin = planes * self.expansion
        return Stage(blocks)


class Encoder(nnx.Module):
    """Stages start..stop-1, stage i from fold_in(key, i)."""

    def __init__(self, plan: ResNetPlan, key: jax.Array, start: int, stop: int):
        self.stages = nnx.List([plan.stage(i, jax.random.fold_in(key, i)) for i in range(start, stop)])

    def __call__(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


class DenseHead(nnx.Module):
    """3 x 3 conv, GroupNorm, ReLU, 1 x 1 conv, bilinear upsampling to the input's (H, W)."""

    def __init__(self, cin: int, hidden: int, outputs: int, size: tuple[int, int], groups: int, key: jax.Array):
        k = jax.random.split(key, 3)
        self.conv = conv(cin, hidden, 3, k[0])
        self.norm = norm(hidden, groups, k[1])
        self.out = nnx.Conv(hidden, outputs, (1, 1), rngs=nnx.Rngs(params=k[2]))
        self.size = size

    def __call__(self, z):
        y = self.out(jax.nn.relu(self.norm(self.conv(z))))
        return jax.image.resize(y, y.shape[:-3] + self.size + y.shape[-1:], "bilinear")


class ASPPHead(nnx.Module):
    """DeepLab v3's decoder (Chen, Papandreou, Schroff and Adam 2017, "Rethinking Atrous
    Convolution for Semantic Image Segmentation", arXiv:1706.05587, section 3.3), as the
    multi-task dense benchmarks use it (LibMTL's `DeepLabHead`, after torchvision's): atrous
    spatial pyramid pooling, i.e. in parallel a 1 x 1 convolution, one 3 x 3 convolution per rate
    in `model.aspp_rates` (dilated by it; 12, 24, 36 as LibMTL's, the paper's 6, 12, 18 doubled
    for output stride 8) and image pooling (global average, 1 x 1 convolution, broadcast back over
    the map), each with normalisation and ReLU; their concatenation projected by a 1 x 1
    convolution (normalisation, ReLU), then a 3 x 3 convolution (normalisation, ReLU) and the
    1 x 1 output convolution, upsampled bilinearly to the input's (H, W).

    Differences from the reference code: GroupNorm instead of BatchNorm (module docstring; the
    pooled branch's norm therefore normalises over channel groups of one position, not over the
    batch); no dropout after the projection (the reference's 0.5: the harness's models have no
    train/eval mode or dropout key); `model.head_width` channels instead of a fixed 256; He-normal
    initialisation as the encoder's (`draw`) instead of PyTorch's default; half-pixel bilinear
    upsampling (jax.image.resize) where LibMTL aligns corners.
    """

    def __init__(self, cin: int, hidden: int, outputs: int, size: tuple[int, int], groups: int,
                 rates: tuple[int, ...], key: jax.Array):
        k = iter(jax.random.split(key, 2 * len(rates) + 10))
        self.branches = nnx.List([conv(cin, hidden, 1, next(k))] + [conv(cin, hidden, 3, next(k), dilation=r)
                                                                     for r in rates])
        self.branch_norms = nnx.List([norm(hidden, groups, next(k)) for _ in range(len(rates) + 1)])
        self.pool_conv, self.pool_norm = conv(cin, hidden, 1, next(k)), norm(hidden, groups, next(k))
        self.project = conv((len(rates) + 2) * hidden, hidden, 1, next(k))
        self.project_norm = norm(hidden, groups, next(k))
        self.conv, self.norm = conv(hidden, hidden, 3, next(k)), norm(hidden, groups, next(k))
        self.out = nnx.Conv(hidden, outputs, (1, 1), rngs=nnx.Rngs(params=next(k)))
        self.size = size

    def __call__(self, z):
        ys = [jax.nn.relu(n(c(z))) for c, n in zip(self.branches, self.branch_norms)]
        pooled = jax.nn.relu(self.pool_norm(self.pool_conv(z.mean(axis=(-3, -2), keepdims=True))))
        ys.append(jnp.broadcast_to(pooled, ys[0].shape))  # bilinear upsampling of a 1 x 1 map
        y = jax.nn.relu(self.project_norm(self.project(jnp.concatenate(ys, axis=-1))))
        y = self.out(jax.nn.relu(self.norm(self.conv(y))))
        return jax.image.resize(y, y.shape[:-3] + self.size + y.shape[-1:], "bilinear")


class PooledHead(nnx.Module):
    """Global average pooling and a linear layer."""

    def __init__(self, cin: int, outputs: int, key: jax.Array):
        self.linear = nnx.Linear(cin, outputs, rngs=nnx.Rngs(params=key))

    def __call__(self, z):
        return self.linear(z.mean(axis=(-3, -2)))


class Tower(nnx.Module):
    """A task's own stages k..4 and its decoder (from fold_in(key, STAGES))."""

    def __init__(self, plan: ResNetPlan, key: jax.Array, k: int, spec: TaskSpec, head_width: int):
        self.encoder = Encoder(plan, key, k, STAGES)
        head_key, cin = jax.random.fold_in(key, STAGES), plan.channels(STAGES)
        if not spec.dense:
            self.head = PooledHead(cin, spec.output_size, head_key)
        elif plan.head == "aspp":
            self.head = ASPPHead(cin, head_width, spec.output_size, plan.image[:2], plan.groups, plan.aspp_rates,
                                 head_key)
        else:
            self.head = DenseHead(cin, head_width, spec.output_size, plan.image[:2], plan.groups, head_key)

    def __call__(self, z):
        return self.head(self.encoder(z))


def image_shape(cfg: ResNetConfig, tasks: tuple[TaskSpec, ...], input_dim: int) -> tuple[int, int, int]:
    """(H, W, C) of the inputs: model.image_shape, or the dense tasks' (H, W)."""
    shapes = {t.shape for t in tasks if t.dense}
    if cfg.image_shape:
        image = tuple(cfg.image_shape)
        if len(image) != 3 or min(image) < 1 or math.prod(image) != input_dim or (shapes and {image[:2]} != shapes):
            raise bad("model.image_shape", list(cfg.image_shape),
                      f"[H, W, C] with H * W * C = {input_dim} (the data's input size)"
                      + (f" and H, W those of the dense tasks' images {sorted(shapes)[0]}" if shapes else ""))
        return image
    if len(shapes) != 1:
        raise bad("model.image_shape", [], "[H, W, C] of the input images (no dense task gives their size)")
    (h, w), = shapes
    if input_dim % (h * w):
        raise bad("model.image_shape", [], f"[H, W, C]: the inputs ({input_dim}) are not {h} x {w} images")
    return h, w, input_dim // (h * w)


def make_plan(cfg: ResNetConfig, tasks: tuple[TaskSpec, ...], input_dim: int) -> ResNetPlan:
    if cfg.depth not in BLOCKS:
        raise bad("model.depth", cfg.depth, f"one of {', '.join(map(str, BLOCKS))}")
    for key in ("width", "head_width", "groups"):
        if getattr(cfg, key) < 1:
            raise bad(f"model.{key}", getattr(cfg, key), "an integer >= 1")
    if cfg.head not in HEADS:
        raise bad("model.head", cfg.head, f"one of {', '.join(HEADS)}")
    rates = tuple(cfg.aspp_rates)
    if cfg.head == "aspp" and (not rates or min(rates) < 1):
        raise bad("model.aspp_rates", list(cfg.aspp_rates), "a non-empty list of dilations >= 1")
    check_shared_depth(cfg.shared_depth, STAGES, bound="the encoder's stages: stem, stage 1..4")
    return ResNetPlan(image_shape(cfg, tasks, input_dim), cfg.depth, cfg.width, cfg.dilation, cfg.groups,
                      cfg.head, rates)


TRUNCATED_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]


def draw(shapes: Any, key: jax.Array, head: bool = False) -> Any:
    """Initial values of one stage's (or decoder's) parameter tree from one random draw."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    total = sum(math.prod(s.shape) for path, s in leaves if path_name(path).endswith("kernel"))
    noise = jax.random.truncated_normal(key, -2.0, 2.0, (max(total, 1),))
    values, at = [], 0
    for path, s in leaves:
        name = path_name(path)
        if name.endswith("kernel"):
            n = math.prod(s.shape)
            receptive = math.prod(s.shape[:-2])
            last = head and ("out" in name or "linear" in name)  # a decoder's output layer
            fan = receptive * s.shape[-2] if last else receptive * s.shape[-1]
            std = math.sqrt((1.0 if last else 2.0) / fan) / TRUNCATED_STD
            values.append((noise[at:at + n] * std).reshape(s.shape))
            at += n
        else:
            values.append(jnp.ones(s.shape) if name.endswith("scale") else jnp.zeros(s.shape))
    return jax.tree_util.tree_unflatten(treedef, values)


def path_name(path) -> str:
    return "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)


def init_encoder(shapes: dict, key: jax.Array, start: int) -> dict:
    """An Encoder's params (stages start.. as laid out in `shapes`), stage i from fold_in(key, i)."""
    if not shapes:
        return {}
    return {"stages": {j: draw(s, jax.random.fold_in(key, start + j)) for j, s in shapes["stages"].items()}}


def build(cfg: ResNetConfig, tasks: tuple[TaskSpec, ...], input_dim: int) -> Model:
    plan, k = make_plan(cfg, tasks, input_dim), cfg.shared_depth
    trunk_template = Template(lambda key: Encoder(plan, key, 0, k))
    towers = {t.name: Template(lambda key, t=t: Tower(plan, key, k, t, cfg.head_width)) for t in tasks}
    load = weights.loader(cfg.pretrained, lambda: jax.eval_shape(lambda: pure(Encoder(plan, jax.random.key(0), 0, STAGES))))

    def init_tower(template: Template, key: jax.Array) -> dict:
        shapes = nnx.to_pure_dict(template.graph[1])
        tower = {"head": draw(shapes["head"], jax.random.fold_in(key, STAGES), head=True)}
        if "encoder" in shapes:
            tower["encoder"] = init_encoder(shapes["encoder"], key, k)
        return tower

    def init(key):
        params = {"shared": init_encoder(nnx.to_pure_dict(trunk_template.graph[1]), shared_key(key), 0),
                  "tasks": {name: init_tower(template, task_key(key, name)) for name, template in towers.items()}}
        return load(params, k)

    def trunk(params, x):
        z = x.reshape(x.shape[:-1] + plan.image)
        return trunk_template(params["shared"])(z) if k > 0 else z

    def heads(task_params, z):
        return {name: template(task_params[name])(z) for name, template in towers.items()}

    def last_shared(shared):
        return shared["stages"][k - 1] if k > 0 else shared

    return Model(init, trunk, heads, last_shared, width=cfg.width)


MODELS.register("resnet", Entry(ResNetConfig, build))
