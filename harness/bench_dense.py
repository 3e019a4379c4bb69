"""Section `dense` of `python -m harness.bench`: a NYUv2-shaped run (data=nyuv2 reading synthetic
files in the published layout, model=resnet, three dense tasks), one run and N runs batched with
vmap, for equal and PCGrad: steps/s, compile seconds, and peak memory as the planner estimates it
(harness.run.memory) and as XLA reports it for the compiled program (arguments + temporaries +
outputs; on an accelerator also the device's peak in use).

Where PyTorch is installed (`pip install -e '.[bench-torch]'`) and JAX runs on the CPU, each one-run row also times a
PyTorch loop of the same network, losses and Adam (harness.bench_torch) in the same process, with
the same steps, repeats and median, at torch's default thread count: torch_steps_per_s and
torch_over_jax (torch's steps/s over the harness's). The bench asserts the two networks have the
same number of parameters.

On CPU the defaults are small (ResNet-18 at width 16 on 48 x 64 images, batch 4); `--dense-full`
is the published setting (dilated ResNet-50, 288 x 384, batch 8, N = 1, 4, 16), for a GPU.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from harness.config import OptimConfig, RunConfig, ScheduleConfig, TrainConfig
from harness.data.nyuv2 import CLASSES, NYUv2Config
from harness.methods import METHODS
from harness.models.resnet import ResNetConfig
from harness.run.execute import hparams
from harness.run.plan import plan
from harness.train import make_train


class DenseSizes(NamedTuple):
    image: tuple[int, int] = (48, 64)
    depth: int = 18
    width: int = 16
    head_width: int = 32
    dilation: bool = False
    batch: int = 4
    steps: int = 5  # steps per timed call (one evaluation of val and test at its end)
    repeats: int = 3
    runs: tuple[int, ...] = (1, 4)
    n_train: int = 16  # synthetic images per folder (train; val gets half)
    methods: tuple[str, ...] = ("equal", "pcgrad")


FULL = DenseSizes(image=(288, 384), depth=50, width=64, head_width=256, dilation=True, batch=8, steps=20,
                  repeats=5, runs=(1, 4, 16), n_train=32)


def write_synthetic(root: Path, image: tuple[int, int], n_train: int, seed: int = 0) -> Path:
    """Random files in NYUv2's layout: float images, labels with ignored pixels, depth with
    invalid pixels, unit normals."""
    rng = np.random.default_rng(seed)
    h, w = image
    for split, n in (("train", n_train), ("val", max(2, n_train // 2))):
        for folder in ("image", "label", "depth", "normal"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            normal = rng.normal(size=(h, w, 3)).astype(np.float32)
            arrays = {"image": rng.uniform(size=(h, w, 3)).astype(np.float32),
                      "label": rng.integers(-1, CLASSES, size=(h, w)).astype(np.float32),
                      "depth": rng.uniform(0, 10, size=(h, w, 1)).astype(np.float32),
                      "normal": normal / np.linalg.norm(normal, axis=-1, keepdims=True)}
            for folder, a in arrays.items():
                np.save(root / split / folder / f"{i}.npy", a)
    return root


def job_config(sizes: DenseSizes, root: Path, method: str) -> RunConfig:
    return RunConfig(
        data=NYUv2Config(path=str(root), eval_batch=sizes.batch),
        model=ResNetConfig(depth=sizes.depth, width=sizes.width, head_width=sizes.head_width,
                           dilation=sizes.dilation),
        method=METHODS.get(method).schema(), schedule=ScheduleConfig(), optim=OptimConfig(lr=1e-4),
        train=TrainConfig(steps=sizes.steps, batch_size=sizes.batch, eval_every=sizes.steps),
        seeds=1, seed=0, baselines=False, baseline_dir=None, study="bench", compile_cache=None)


TORCH_NOTE = "torch not installed: pip install -e '.[bench-torch]' for the PyTorch comparison"


def torch_info() -> dict | None:
    """Version and thread count of the PyTorch side, or None where torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return {"version": torch.__version__, "threads": torch.get_num_threads()}


def torch_steps_per_s(sizes: DenseSizes, job, run: RunConfig, method: str, eval_rows: int) -> float:
    """The PyTorch loop's steps/s on this job's network, after checking it has as many
    parameters as the harness's."""
    from harness import bench_torch

    h, w = sizes.image
    model = bench_torch.DenseNet((h, w, job.settings.input_dim // (h * w)), sizes.depth, sizes.width,
                                 sizes.head_width, run.model.groups, sizes.dilation,
                                 {t.name: t.output_size for t in job.parts.tasks})
    shapes = jax.eval_shape(job.parts.model.init, jax.random.key(0))
    ours = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
    if bench_torch.count(model) != ours:  # not an assert: it must hold under python -O too
        raise AssertionError(f"the PyTorch network has {bench_torch.count(model)} parameters, the harness's {ours}")
    return bench_torch.steps_per_s(model, method, CLASSES, sizes.batch, sizes.steps, sizes.repeats, eval_rows,
                                   run.optim.lr)


def peak_in_use() -> int | None:
    stats = jax.local_devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def bench_dense(sizes: DenseSizes) -> list[dict]:
    rows, with_torch = [], torch_info() is not None and jax.default_backend() == "cpu"
    if torch_info() is None:
        print(TORCH_NOTE, flush=True)
    elif not with_torch:  # the PyTorch loop runs on the CPU: set against an accelerator it would mislead
        print(f"the PyTorch loop runs on the CPU only: no comparison on {jax.default_backend()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic(Path(tmp), sizes.image, sizes.n_train)
        for method in sizes.methods:
            run = job_config(sizes, root, method)
            job = plan(run, with_baselines=False)
            data = jax.jit(job.source.generate)(jax.random.key(0), {})
            train = make_train(job.parts, job.settings).train
            for n in sizes.runs:
                fn = jax.jit(jax.vmap(lambda k, h, d: train(jax.random.key(k), h, d), in_axes=(0, 0, None)))
                keys = jnp.arange(n, dtype=jnp.uint32)
                hp = jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * n), hparams(run))
                t0 = time.perf_counter()
                exe = fn.lower(keys, hp, data).compile()
                compile_s = time.perf_counter() - t0
                stats = exe.memory_analysis()
                jax.block_until_ready(exe(keys, hp, data))  # untimed warm-up
                times = []
                for _ in range(sizes.repeats):
                    t0 = time.perf_counter()
                    jax.block_until_ready(exe(keys, hp, data))
                    times.append(time.perf_counter() - t0)
                seconds = float(np.median(times))
                xla = stats.argument_size_in_bytes + stats.temp_size_in_bytes + stats.output_size_in_bytes
                peak = peak_in_use()
                rows.append({"method": method, "runs": n, "image": "x".join(map(str, sizes.image)),
                             "model": f"resnet{sizes.depth}/{sizes.width}", "batch": sizes.batch,
                             "steps_per_s": sizes.steps / seconds, "run_steps_per_s": n * sizes.steps / seconds,
                             "compile_s": compile_s, "estimate_mib": job.memory.total(n) / 2**20,
                             "xla_mib": xla / 2**20, "device_peak_mib": peak / 2**20 if peak else "-"})
                if with_torch:  # one run only: the PyTorch loop has no batched runs
                    eval_rows = data.val.x.shape[0] + data.test.x.shape[0]
                    torch_s = torch_steps_per_s(sizes, job, run, method, eval_rows) if n == 1 else "-"
                    rows[-1].update(torch_steps_per_s=torch_s,
                                    torch_over_jax=torch_s / rows[-1]["steps_per_s"] if n == 1 else "-")
    return rows
