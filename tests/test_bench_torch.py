"""The PyTorch loop of the dense benchmark (harness.bench_torch) against the harness's ResNet.
Skipped where torch is not installed (it is an optional extra, `bench-torch`)."""
import math

import jax
import pytest

torch = pytest.importorskip("torch")

from harness import bench_torch  # noqa: E402
from harness.data.nyuv2 import CLASSES, TARGETS, spec  # noqa: E402
from harness.models.resnet import ResNetConfig, build  # noqa: E402

IMAGE = (16, 16, 3)


@pytest.fixture(autouse=True)
def one_thread():
    """torch's intra-op threads spin against each other on a shared, loaded machine (a tiny
    step took seconds with two); one thread keeps the test to milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("depth", [18, 50])
def test_parameter_counts_match(depth):
    tasks = tuple(spec(t, IMAGE[:2]) for t in TARGETS)
    cfg = ResNetConfig(depth=depth, width=4, head_width=8, groups=2)
    shapes = jax.eval_shape(build(cfg, tasks, math.prod(IMAGE)).init, jax.random.key(0))
    ours = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
    model = bench_torch.DenseNet(IMAGE, depth, 4, 8, 2, False, {t.name: t.output_size for t in tasks})
    assert bench_torch.count(model) == ours
    # The count sees a head one channel wider: the check can fail.
    assert bench_torch.count(bench_torch.DenseNet(IMAGE, depth, 4, 9, 2, False, {t.name: t.output_size
                                                                                  for t in tasks})) != ours


def test_equal_and_pcgrad_steps_move_every_parameter_group():
    torch.manual_seed(0)
    tasks = tuple(spec(t, IMAGE[:2]) for t in TARGETS)
    model = bench_torch.DenseNet(IMAGE, 18, 4, 8, 2, False, {t.name: t.output_size for t in tasks})
    x, ys = bench_torch.batches(IMAGE, CLASSES, 2)
    kinds = {t.name: t.kind for t in tasks}
    opt, g = torch.optim.Adam(model.parameters(), lr=1e-3), torch.Generator().manual_seed(0)
    for step in (lambda: bench_torch.equal_step(model, opt, kinds, x, ys),
                 lambda: bench_torch.pcgrad_step(model, opt, kinds, x, ys, g)):
        before = [p.detach().clone() for p in model.parameters()]
        step()
        moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
        assert all(moved) and all(torch.isfinite(p).all() for p in model.parameters())


def test_project_conflicts_removes_the_conflict():
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    out = bench_torch.project_conflicts(grads, torch.Generator().manual_seed(0))
    # g_0' = g_0 - (g_0.g_1 / |g_1|^2) g_1 = [0.5, 0.5]; g_1' = g_1 - (-1) g_0 = [0, 1].
    assert torch.allclose(out, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
