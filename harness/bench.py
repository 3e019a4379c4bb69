"""Speed benchmark of the compiled training run: `python -m harness.bench [--quick] [--sections ...]`.

Everything is measured side by side in one process and reported as medians over repeats, with
ratios, since machines are shared and noisy. Reference job: the hard-sharing MLP (input 64, three
hidden layers of 256, the first two shared), T regression heads on synthetic relatedness data
(Ma et al. 2018) generated in memory, batch 256, Adam. Sections:
  methods   each method's step time / equal's, T = 2 and 4, against the targets;
  overhead  the harness step vs a hand-written jnp MLP + optax.adam lax.scan with the same sampling;
  flops     achieved GFLOP/s of the step (analytic count) vs a 1024^2 float32 matmul's;
  sweep     N jobs differing only in the learning rate: N programs compiled one by one vs the
            batched launcher's one jit(vmap) over lr x seeds;
  compile   compile vs run seconds of one job (harness.run.execute.execute);
  conv      the LeNet trunk's gradient step, XLA's convolution vs the patch product, alone and in a scan
            (harness.bench_conv);
  dense     a NYUv2-shaped ResNet run, one and N batched, equal and PCGrad: steps/s and peak
            memory (harness.bench_dense; not in the default set: --sections dense).
Writes bench.json and bench.md (with machine info) under --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from harness import bench_conv, bench_dense
from harness.config import OptimConfig, RunConfig, ScheduleConfig, TrainConfig
from harness.data.relatedness import RelatednessConfig
from harness.run.execute import execute, execute_units, hparams
from harness.run.plan import Unit, build_source, plan
from harness.methods import METHODS
from harness.methods.base import Needs
from harness.models.hard import HardConfig
from harness.records import environment
from harness.train import make_train
from harness.train.loop import BATCH, INIT

SECTIONS = ("methods", "overhead", "flops", "sweep", "compile", "memory", "conv", "dense")
DEFAULT_SECTIONS = SECTIONS[:-1]  # dense compiles ResNets for minutes on CPU: asked for by name


class Sizes(NamedTuple):
    input_dim: int = 64
    width: int = 256
    batch: int = 256
    steps: int = 200  # steps per timed call (one evaluation at the end)
    repeats: int = 7
    tasks: tuple[int, ...] = (2, 4)
    methods: tuple[str, ...] | None = None  # None: the whole registry
    sweep_sizes: tuple[int, ...] = (8, 32, 128)
    sweep_steps: int = 100
    seeds: int = 2
    job_steps: int = 1000


# A smoke run (about 30 s on 2 cores, nearly all of it compiling): tiny model, two methods.
QUICK = Sizes(input_dim=16, width=32, batch=32, steps=20, repeats=2, tasks=(2,),
              methods=("equal", "pcgrad"), sweep_sizes=(2,), sweep_steps=10, seeds=1, job_steps=20)


def reference(sizes: Sizes, num_tasks: int, method: str = "equal", steps: int | None = None) -> RunConfig:
    """The reference job; small val and test splits keep the one evaluation per call cheap."""
    steps = steps or sizes.steps
    schema = METHODS.get(method).schema
    # A method with targets takes them from the baselines, which the bench does not train:
    # declared ones (any values time the same).
    takes_targets = "targets" in {f.name for f in dataclasses.fields(schema)}
    return RunConfig(
        data=RelatednessConfig(num_tasks=num_tasks, input_dim=sizes.input_dim, n_train=4096, n_val=256, n_test=256),
        model=HardConfig(depth=3, width=sizes.width, shared_depth=2),
        method=schema(targets=[1.0] * num_tasks) if takes_targets else schema(),
        schedule=ScheduleConfig(), optim=OptimConfig(lr=1e-3),
        train=TrainConfig(steps=steps, batch_size=sizes.batch, eval_every=steps),
        seeds=1, seed=0, baselines=False, baseline_dir=None, study="bench", compile_cache=None)


@functools.lru_cache(maxsize=None)
def dataset(sizes: Sizes, num_tasks: int):
    """(task specs, data) of the reference job, generated once per process."""
    source = build_source(reference(sizes, num_tasks))
    hp = {k: jnp.asarray(v) for k, v in source.dynamic.items()}
    return source.tasks, jax.jit(source.generate)(jax.random.key(0), hp)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed round by round so that noise hits all of them alike."""
    times = {n: [] for n in fns}
    for fn in fns.values():  # untimed warm-up: a program's first call pays one-off set-up
        jax.block_until_ready(fn())
    for _ in range(repeats):
        for n, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(t) for n, t in times.items()}


@functools.lru_cache(maxsize=None)
def compiled_run(sizes: Sizes, num_tasks: int, method: str = "equal") -> Callable[[], object]:
    """One reference training run as a compiled program with its arguments bound (compiled once
    per process: sections a, b and c time the same equal program)."""
    run = reference(sizes, num_tasks, method)
    tasks, data = dataset(sizes, num_tasks)
    job = plan(run, with_baselines=False)
    train = make_train(job.parts, job.settings).train
    key, hp = jax.random.key(0), hparams(run)
    exe = jax.jit(train).lower(key, hp, data).compile()
    return lambda: exe(key, hp, data)


def target(needs: Needs, num_tasks: int, lookahead: bool = False) -> tuple[float, str]:
    """A method's step-time limit relative to equal's. A method with a `prepare` hook
    (auto_lambda's virtual step, great's per-task representation gradients and their double
    backward) asks for more than its losses whatever its `needs`, so it gets the per-task limit."""
    if lookahead:
        return 1.25 * (1 + 2 * num_tasks) / 3, "lookahead (prepare hook): <= 1.25 (1+2T)/3"
    if needs is Needs.LOSSES:
        return 1.1, "loss-only: <= 1.1"
    if needs is Needs.REPR_GRADS:
        return 1.25, "close to equal: <= 1.25"
    return 1.25 * (1 + 2 * num_tasks) / 3, "per-task grads: <= 1.25 (1+2T)/3"


def bench_methods(sizes: Sizes) -> list[dict]:
    """Step time of every method relative to equal's, for each task count."""
    names = list(sizes.methods or METHODS.names())
    names = ["equal"] + [n for n in names if n != "equal"]
    rows = []
    for num_tasks in sizes.tasks:
        times = interleaved({n: compiled_run(sizes, num_tasks, n) for n in names}, sizes.repeats)
        tasks = dataset(sizes, num_tasks)[0]
        for n in names:
            method = METHODS.get(n).build(reference(sizes, num_tasks, n).method, tasks)
            needs = method.needs
            step, base = times[n], times["equal"]
            limit, rule = target(needs, num_tasks, method.prepare is not None)
            rows.append({"method": n, "T": num_tasks, "needs": needs.value, "step_ms": 1e3 * step / sizes.steps,
                         "ratio": step / base, "target": limit, "rule": rule, "met": bool(step / base <= limit)})
    return rows


def hand_written(sizes: Sizes, data) -> Callable:
    """The reference job's model, loss, optimiser and batch sampling as a minimal jnp + optax program."""
    dims = [(sizes.input_dim, sizes.width), (sizes.width, sizes.width)]
    head = [(sizes.width, sizes.width), (sizes.width, 1)]
    names = list(data.train.y)
    tx = optax.adam(1e-3)

    def dense(key, i, o):
        return {"w": jax.nn.initializers.lecun_normal()(key, (i, o)), "b": jnp.zeros((o,))}

    def init(key):
        keys = iter(jax.random.split(key, 2 + 2 * len(names)))
        return {"shared": [dense(next(keys), i, o) for i, o in dims],
                "tasks": [[dense(next(keys), i, o) for i, o in head] for _ in names]}

    def loss(params, x, ys):
        for layer in params["shared"]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        total = 0.0
        for (hidden, out), y in zip(params["tasks"], ys):
            pred = jax.nn.relu(x @ hidden["w"] + hidden["b"]) @ out["w"] + out["b"]
            total += jnp.mean((pred - y) ** 2)
        return total

    def train(key):
        params = init(jax.random.fold_in(key, INIT))
        k_batch, n = jax.random.fold_in(key, BATCH), data.train.x.shape[0]

        def step(carry, s):
            params, opt = carry
            idx = jax.random.randint(jax.random.fold_in(k_batch, s), (sizes.batch,), 0, n)
            grads = jax.grad(loss)(params, data.train.x[idx], [data.train.y[t][idx] for t in names])
            updates, opt = tx.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), None

        return jax.lax.scan(step, (params, tx.init(params)), jnp.arange(sizes.steps))[0][0]

    exe = jax.jit(train).lower(jax.random.key(0)).compile()
    return lambda: exe(jax.random.key(0))


def bench_overhead(sizes: Sizes) -> list[dict]:
    _, data = dataset(sizes, 2)
    t = interleaved({"harness": compiled_run(sizes, 2), "hand": hand_written(sizes, data)}, sizes.repeats)
    ratio = t["harness"] / t["hand"]
    return [{"harness_step_ms": 1e3 * t["harness"] / sizes.steps, "hand_step_ms": 1e3 * t["hand"] / sizes.steps,
             "ratio": ratio, "target": 1.2, "met": bool(ratio <= 1.2)}]


def step_flops(sizes: Sizes, num_tasks: int) -> float:
    """Analytic FLOPs of one equal-weighting step: forward 2 B sum(in * out), backward ~2x that."""
    layers = [(sizes.input_dim, sizes.width), (sizes.width, sizes.width)]
    layers += [(sizes.width, sizes.width), (sizes.width, 1)] * num_tasks
    return 3 * 2 * sizes.batch * sum(i * o for i, o in layers)


def bench_flops(sizes: Sizes) -> list[dict]:
    a = jax.random.normal(jax.random.key(1), (1024, 1024))
    matmul = jax.jit(jnp.dot).lower(a, a).compile()
    t = interleaved({"step": compiled_run(sizes, 2), "matmul": lambda: matmul(a, a)}, sizes.repeats)
    achieved, peak = step_flops(sizes, 2) * sizes.steps / t["step"], 2 * 1024**3 / t["matmul"]
    return [{"step_gflop": step_flops(sizes, 2) / 1e9, "step_ms": 1e3 * t["step"] / sizes.steps,
             "achieved_gflops": achieved / 1e9, "matmul_gflops": peak / 1e9, "ratio": achieved / peak,
             "target": 0.5, "met": bool(achieved / peak >= 0.5)}]


def bench_sweep(sizes: Sizes) -> list[dict]:
    """Separate: every job is planned and goes through run.execute.execute on its own after jax.clear_caches(), so it
    builds and compiles a fresh program (a launcher starting a process per job pays process
    start-up on top; measured once and reported, not added). Batched: the batched launcher's
    run.execute.execute_units, one jit(vmap(train)) over lr x seeds."""
    run = reference(sizes, 2, steps=sizes.sweep_steps)
    tasks, data = dataset(sizes, 2)
    seeds = list(range(sizes.seeds))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import harness.train"], check=True)
    start_up, rows = time.perf_counter() - t0, []
    for n in sizes.sweep_sizes:
        jobs = [dataclasses.replace(run, optim=OptimConfig(lr=float(lr))) for lr in np.logspace(-4, -2, n)]
        t0 = time.perf_counter()
        for job in jobs:
            jax.clear_caches()
            execute(plan(job), data, seeds)
        separate = time.perf_counter() - t0
        jax.clear_caches()
        t0 = time.perf_counter()
        outs, _, _ = execute_units([Unit("mtl", plan(job), data, seeds, Path("."), {}) for job in jobs])
        batched = time.perf_counter() - t0
        runs = n * sizes.seeds
        rows.append({"N": n, "seeds": sizes.seeds, "separate_s": separate, "batched_s": batched,
                     "separate_per_run_s": separate / runs, "batched_per_run_s": batched / runs,
                     "process_start_s": start_up, "ratio": separate / batched, "target": 4.0,
                     "met": bool(separate / batched >= 4.0)})
    return rows


def bench_compile(sizes: Sizes) -> list[dict]:
    run = reference(sizes, 2, steps=sizes.job_steps)
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, eval_every=sizes.job_steps // 10 or 1))
    tasks, data = dataset(sizes, 2)
    _, compile_s, run_s = execute(plan(run), data, list(range(sizes.seeds)))
    return [{"steps": sizes.job_steps, "seeds": sizes.seeds, "compile_s": compile_s, "run_s": run_s,
             "compile_share": compile_s / (compile_s + run_s)}]


def bench_memory(sizes: Sizes) -> list[dict]:
    """The planner's memory estimate (harness.run.memory) against XLA's own figure for the same
    compiled program (arguments + temporaries + outputs of jit(vmap(train)) over 4 runs): the
    estimate is meant as an upper bound within a small factor, so a row meets its target when
    1 <= ratio <= 4 (`target` is the upper end)."""
    rows, runs = [], 4
    for num_tasks in sizes.tasks:
        tasks, data = dataset(sizes, num_tasks)
        for method in sizes.methods or ("equal", "nash_mtl"):
            run = reference(sizes, num_tasks, method)
            job = plan(run, with_baselines=False)
            train = make_train(job.parts, job.settings).train
            fn = jax.jit(jax.vmap(lambda k, h, d: train(jax.random.key(k), h, d), in_axes=(0, 0, None)))
            keys = jnp.arange(runs, dtype=jnp.uint32)
            hp = jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * runs), hparams(run))
            stats = fn.lower(keys, hp, data).compile().memory_analysis()
            xla = stats.argument_size_in_bytes + stats.temp_size_in_bytes + stats.output_size_in_bytes
            estimate = job.memory.total(runs)
            rows.append({"method": method, "T": num_tasks, "runs": runs, "estimate_mib": estimate / 2**20,
                         "xla_mib": xla / 2**20, "ratio": estimate / xla, "target": 4.0,
                         "met": bool(1.0 <= estimate / xla <= 4.0)})
    return rows


def machine() -> dict:
    info = Path("/proc/cpuinfo")
    models = [ln.split(":", 1)[1].strip() for ln in (info.read_text().splitlines() if info.exists() else [])
              if ln.startswith("model name")]
    return {"cpu": models[0] if models else platform.processor(), "cores": len(os.sched_getaffinity(0)),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), **environment()}


def table(rows: list[dict], keys: list[str]) -> list[str]:
    def cell(x) -> str:
        return ("yes" if x else "NO") if isinstance(x, bool) else f"{x:.3g}" if isinstance(x, float) else str(x)

    return ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + [
        "| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]


TITLES = {
    "methods": "a) Step time relative to equal",
    "overhead": "b) Harness step vs a hand-written jnp + optax loop (equal, T = 2)",
    "flops": "c) Achieved GFLOP/s of the step vs a 1024^2 float32 matmul (equal, T = 2)",
    "sweep": "d) Sweep over the learning rate: N separately compiled jobs vs one batched program",
    "compile": "e) Compile vs run of one job (run.execute.execute, equal, T = 2)",
    "memory": "f) The planner's memory estimate vs XLA's figure for the compiled program (4 runs)",
    "conv": "g) LeNet trunk step (MultiMNIST canvas): XLA's convolution vs the patch product, alone and in a scan",
    "dense": "h) NYUv2-shaped run (data=nyuv2 on synthetic files, model=resnet), one and N runs batched",
}
NOTES = {
    "dense": "steps_per_s: steps of one run per second (each of the N batched runs makes that many); "
             "run_steps_per_s: N times that. Each timed call ends with one chunked evaluation of val and test. "
             "estimate_mib: the planner's bound (harness.run.memory); xla_mib: arguments + temporaries + "
             "outputs of the compiled program; device_peak_mib: the accelerator's peak in use (none on CPU). "
             "torch_steps_per_s (one run, where torch is installed): a PyTorch loop of the same network "
             "(parameter counts asserted equal), losses and Adam, timed the same way in the same process at "
             "torch's default thread count (harness.bench_torch; dense_torch in bench.json); torch_over_jax: "
             "its ratio to steps_per_s.",
    "conv": "step_ms_alone: one jitted step called from Python, per step; step_ms_in_scan: `steps` steps inside "
            "one compiled lax.scan, per step; scan_over_alone: their ratio; xla_scan_over_this_scan: XLA's route in "
            "the scan over this route in the scan (harness.models.patches takes the patch route on CPU).",
    "sweep": "Each separate job runs run.execute.execute after jax.clear_caches(): a fresh program, compiled on "
             "its own. The batched path is run.execute.execute_units: one jit(vmap(train)) over lr x seeds. "
             "Both include compiling. process_start_s is what a fresh process per job would add to each "
             "separate job (measured once, not included).",
}


def report(res: dict) -> str:
    m = res["machine"]
    lines = ["# Harness benchmark", "", f"Command: `{res['command']}`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['device']}, jax {m['versions']['jax']}, "
             f"XLA_FLAGS={m['xla_flags'] or '(none)'}. Sizes: {res['sizes']}. Times are medians over "
             "repeats, interleaved; ratios are of medians."]
    for name in SECTIONS:
        if name in res:
            lines += ["", f"## {TITLES[name]}", ""] + ([NOTES[name], ""] if name in NOTES else [])
            lines += table(res[name], list(res[name][0]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(DEFAULT_SECTIONS))
    parser.add_argument("--dense-full", action="store_true",
                        help="section dense at the published size (dilated ResNet-50, 288 x 384, N = 1 4 16): for a GPU")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of about 30 s")
    parser.add_argument("--steps", type=int, help="steps per timed run (default 200)")
    parser.add_argument("--repeats", type=int, help="timed repeats (default 7)")
    parser.add_argument("--tasks", type=int, nargs="+", help="task counts for section a (default 2 4)")
    parser.add_argument("--methods", nargs="+", help="methods for section a (default: all)")
    parser.add_argument("--sweep-sizes", type=int, nargs="+", help="N for section d (default 8 32 128)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args(argv)
    # Every compile timed here must be a real one, even where a persistent cache is configured.
    jax.config.update("jax_enable_compilation_cache", False)
    sizes = QUICK if args.quick else Sizes()
    changes = {"steps": args.steps, "repeats": args.repeats, "methods": args.methods and tuple(args.methods),
               "tasks": args.tasks and tuple(args.tasks), "sweep_sizes": args.sweep_sizes and tuple(args.sweep_sizes)}
    sizes = sizes._replace(**{k: v for k, v in changes.items() if v is not None})
    conv_sizes = bench_conv.ConvSizes(8, 5, 2) if args.quick else bench_conv.ConvSizes()
    dense_sizes = bench_dense.FULL if args.dense_full else bench_dense.DenseSizes()
    runners = {"methods": bench_methods, "overhead": bench_overhead, "flops": bench_flops,
               "sweep": bench_sweep, "compile": bench_compile, "memory": bench_memory,
               "conv": lambda _: bench_conv.bench_conv(conv_sizes), "dense": lambda _: bench_dense.bench_dense(dense_sizes)}
    res = {"command": " ".join(["python -m harness.bench", *(sys.argv[1:] if argv is None else argv)]),
           "machine": machine(), "sizes": sizes._asdict()}
    if "dense" in args.sections:
        res["dense_sizes"] = dense_sizes._asdict()
        res["dense_torch"] = bench_dense.torch_info()
    for name in SECTIONS:
        if name in args.sections:
            t0 = time.perf_counter()
            res[name] = runners[name](sizes)
            print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    text = report(res)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(res, indent=1, default=str))
    (args.out / "bench.md").write_text(text)
    return res


if __name__ == "__main__":
    main()
