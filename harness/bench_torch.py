"""A PyTorch loop of the dense benchmark's model, for `python -m harness.bench --sections dense`.

It mirrors `harness.models.resnet` with `model.shared_depth = 5` and `model.head = conv`: the
stem (7 x 7 stride-2 convolution, GroupNorm, ReLU, 3 x 3 stride-2 max pooling), stages 1..4 of
basic blocks (depth 18, 34) or bottlenecks (50), strided or dilated as `model.dilation` says, a
1 x 1 projection where a block's shape changes, GroupNorm with gcd(channels, groups) groups and
Flax's epsilon, and per task a 3 x 3 convolution of `head_width` channels, GroupNorm, ReLU, a
1 x 1 convolution with bias and a bilinear upsampling (half-pixel, as jax.image.resize). The
losses are those of `harness.train.dense` (cross-entropy over labelled pixels, L1 on valid
depth, 1 - cosine on valid normals, each the mean over its valid pixels), the optimiser Adam.
The two loops are compared on time per step, so the bench asserts that this network has exactly
as many parameters as the harness's: a layer of another shape would be a different model, not
a slower or faster framework. Weights are PyTorch's default initialisation (the timing does not
depend on them); tensors are NCHW, PyTorch's native layout (the harness's are NHWC).

`equal_step` sums the losses and runs one backward; `pcgrad_step` runs one backward per task for
the shared parameters' gradients, projects them as `harness.methods.pcgrad.project_conflicts`
does (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning"; each task visits the others
in its own random order, against their original gradients) and steps along their sum, the heads
along their plain gradients.

The bench leaves torch's thread count at its default (one per core). On a CPU that other
processes load, those threads wait on each other and the figures swing by an order of
magnitude from one call to the next (PCGrad at 48 x 64 on two shared cores: 0.6 and 16 steps/s
in one process, one thread steady at 14): compare on an otherwise idle machine.
"""
from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
EPS = 1e-12  # harness.train.dense.EPS, harness.methods.solvers.EPS


def norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, groups), channels, eps=1e-6)  # nnx.GroupNorm's epsilon


def conv(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, dilation * (k - 1) // 2, dilation, bias=False)


class Block(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, dilation: int, bottleneck: bool, groups: int):
        super().__init__()
        cout = planes * (4 if bottleneck else 1)
        if bottleneck:
            layers = [conv(cin, planes, 1), norm(planes, groups), nn.ReLU(),
                      conv(planes, planes, 3, stride, dilation), norm(planes, groups), nn.ReLU(),
                      conv(planes, cout, 1), norm(cout, groups)]
        else:  # both 3 x 3 convolutions take the block's dilation, as the harness's
            layers = [conv(cin, planes, 3, stride, dilation), norm(planes, groups), nn.ReLU(),
                      conv(planes, planes, 3, 1, dilation), norm(planes, groups)]
        self.body = nn.Sequential(*layers)
        self.down = (nn.Sequential(conv(cin, cout, 1, stride), norm(cout, groups))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.body(x) + self.down(x))


def encoder(channels: int, depth: int, width: int, dilation: bool, groups: int) -> nn.Sequential:
    """The stem and stages 1..4 (`harness.models.resnet.ResNetPlan.stage`)."""
    bottleneck, expansion = depth == 50, 4 if depth == 50 else 1
    layers = [nn.Conv2d(channels, width, 7, 2, 3, bias=False), norm(width, groups), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    cin = width
    for i in range(1, 5):
        planes = width * 2 ** (i - 1)
        stride, dil, first = (1 if i == 1 else 2), 1, 1
        if dilation and i >= 3:
            stride, dil, first = 1, 2 ** (i - 2), 2 ** (i - 3)
        for b in range(BLOCKS[depth][i - 1]):
            layers.append(Block(cin, planes, stride if b == 0 else 1, first if b == 0 else dil, bottleneck,
                                groups))
            cin = planes * expansion
    return nn.Sequential(*layers)


class DenseHead(nn.Module):
    def __init__(self, cin: int, hidden: int, outputs: int, size: tuple[int, int], groups: int):
        super().__init__()
        self.body = nn.Sequential(conv(cin, hidden, 3), norm(hidden, groups), nn.ReLU(), nn.Conv2d(hidden, outputs, 1))
        self.size = size

    def forward(self, z):
        return F.interpolate(self.body(z), size=self.size, mode="bilinear", align_corners=False)


class DenseNet(nn.Module):
    """A shared encoder (`trunk`) and one DenseHead per task (`heads`, outputs per task)."""

    def __init__(self, image: tuple[int, int, int], depth: int, width: int, head_width: int, groups: int,
                 dilation: bool, outputs: dict[str, int]):
        super().__init__()
        self.trunk = encoder(image[2], depth, width, dilation, groups)
        cout = width * 8 * (4 if depth == 50 else 1)
        self.heads = nn.ModuleDict({t: DenseHead(cout, head_width, o, image[:2], groups) for t, o in outputs.items()})

    def forward(self, x):
        z = self.trunk(x)
        return {t: head(z) for t, head in self.heads.items()}


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp(min=1)


def task_loss(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`harness.train.dense.loss` in NCHW: out (B, C, H, W); y (B, H, W) labels, (B, 1, H, W)
    depth or (B, 3, H, W) normals."""
    if kind == "segmentation":
        mask = y >= 0
        return masked_mean(F.cross_entropy(out, torch.where(mask, y, 0), reduction="none"), mask)
    if kind == "depth":
        return masked_mean((out - y).abs()[:, 0], y[:, 0] != 0)
    unit = out * torch.rsqrt((out * out).sum(1, keepdim=True) + EPS)
    return masked_mean(1.0 - (unit * y).sum(1), (y != 0).any(1))


def losses(model: DenseNet, kinds: dict[str, str], x: torch.Tensor, ys: dict[str, torch.Tensor]) -> list:
    outs = model(x)
    return [task_loss(kinds[t], outs[t], ys[t]) for t in model.heads]


def equal_step(model: DenseNet, opt: torch.optim.Optimizer, kinds: dict, x, ys) -> None:
    opt.zero_grad(set_to_none=True)
    torch.stack(losses(model, kinds, x, ys)).sum().backward()
    opt.step()


def project_conflicts(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`harness.methods.pcgrad.project_conflicts`: the projected gradients (T, P)."""
    sq_norms = (grads * grads).sum(1)
    projected = []
    for i in range(grads.shape[0]):
        g = grads[i].clone()
        for j in torch.randperm(grads.shape[0], generator=generator).tolist():
            dot = g @ grads[j]
            if j != i and dot < 0:
                g -= dot / (sq_norms[j] + EPS) * grads[j]
        projected.append(g)
    return torch.stack(projected)


def pcgrad_step(model: DenseNet, opt: torch.optim.Optimizer, kinds: dict, x, ys,
                generator: torch.Generator) -> None:
    """One backward per task: the shared gradients kept apart, the heads' accumulated (a head's
    gradient comes from its own task only)."""
    shared = [p for p in model.trunk.parameters()]
    opt.zero_grad(set_to_none=True)
    per_task = losses(model, kinds, x, ys)
    grads = []
    for i, loss in enumerate(per_task):
        for p in shared:
            p.grad = None
        loss.backward(retain_graph=i < len(per_task) - 1)
        grads.append(torch.cat([p.grad.reshape(-1) for p in shared]))
    direction = project_conflicts(torch.stack(grads), generator).sum(0)
    at = 0
    for p in shared:
        p.grad = direction[at:at + p.numel()].view_as(p)
        at += p.numel()
    opt.step()


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def batches(image: tuple[int, int, int], classes: int, rows: int, seed: int = 0) -> tuple:
    """Random inputs and targets as `harness.bench_dense.write_synthetic` draws them, in NCHW."""
    g = torch.Generator().manual_seed(seed)
    h, w, c = image
    normal = torch.randn(rows, 3, h, w, generator=g)
    ys = {"segmentation": torch.randint(-1, classes, (rows, h, w), generator=g),
          "depth": torch.rand(rows, 1, h, w, generator=g) * 10,
          "normal": normal / normal.norm(dim=1, keepdim=True)}
    return torch.rand(rows, c, h, w, generator=g), ys


def steps_per_s(model: DenseNet, method: str, classes: int, batch: int, steps: int, repeats: int,
                eval_rows: int, lr: float = 1e-4) -> float:
    """Steps per second, the median over `repeats` timed calls after one untimed one. A call is
    `steps` Adam steps on random batches then, as the harness's timed call ends with an
    evaluation of val and test, one forward pass without gradients over `eval_rows` rows in
    chunks of `batch`."""
    if method not in ("equal", "pcgrad"):  # the two steps written here; any other would time equal's
        raise ValueError(f"method {method!r}: the PyTorch loop has equal and pcgrad only")
    image = model.heads[next(iter(model.heads))].size + (model.trunk[0].in_channels,)
    x, ys = batches(image, classes, 4 * batch)
    kinds = {t: t for t in model.heads}  # NYUv2's tasks are named by their kind
    opt, g = torch.optim.Adam(model.parameters(), lr=lr), torch.Generator().manual_seed(0)

    def call():
        for _ in range(steps):
            rows = torch.randint(0, x.shape[0], (batch,), generator=g)
            xb, yb = x[rows], {t: y[rows] for t, y in ys.items()}
            if method == "pcgrad":
                pcgrad_step(model, opt, kinds, xb, yb, g)
            else:
                equal_step(model, opt, kinds, xb, yb)
        with torch.no_grad():
            for at in range(0, eval_rows, batch):
                rows = torch.arange(at, min(at + batch, eval_rows)) % x.shape[0]
                losses(model, kinds, x[rows], {t: y[rows] for t, y in ys.items()})

    call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return steps / statistics.median(times)
