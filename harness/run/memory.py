"""Device memory of a compiled program, estimated before anything is compiled or generated.

A run that cannot fit the device otherwise ends, minutes later, in an out-of-memory traceback
(or a hard abort) from deep inside XLA. The planner instead estimates what one program holds
and refuses it in one line that names the keys driving the estimate.

The estimate is an upper bound of the dominant terms, in float32 bytes:

- the data splits, once per program (shared by its runs; it is replicated on each device);
- per run: parameters, their gradient, the optimiser's slots (one set per task for
  `schedule.optimizer_state=per_task`), the per-task gradients of gradient methods (T x shared
  parameters), the final training state handed back, and the larger of a training step's
  activations (every intermediate value of the forward pass at `train.batch_size` rows, kept
  for the backward pass, once per task when each task has its own backward pass) and an
  evaluation's (the same at the size of the larger of the val and test splits).

Intermediate values come from the forward pass's jaxpr (traced on shapes only), so convolutional
and mixture models are counted as faithfully as dense ones. XLA reuses buffers, so the real peak
is lower; the check refuses only what exceeds the device's whole memory. Against XLA's own
figures for the compiled program (`compiled.memory_analysis()`: arguments + temporaries +
outputs), the estimate is 1.2x to 2.5x as large on the shipped models
(tests/test_memory.py holds it within 0.5x..4x).
"""
from __future__ import annotations

import math
import os
from typing import Any, Iterator, NamedTuple

import jax
import numpy as np

from harness.data.base import task_sizes
from harness.errors import ConfigError
from harness.methods.base import Needs

FLOAT = 4  # bytes


class Estimate(NamedTuple):
    """Bytes of one program: `data` once, `per_run` for each run it holds."""

    data: int
    params: int  # parameters, gradients, optimiser slots, per-task gradients (one run)
    activations: int  # the larger of a training step's and an evaluation's (one run)
    num_params: int

    @property
    def per_run(self) -> int:
        return self.params + self.activations

    def total(self, runs: int) -> int:
        return self.data + runs * self.per_run


def _size(aval) -> int:
    return int(np.prod(aval.shape, dtype=np.int64)) * aval.dtype.itemsize


# The layers' products: element-wise operations around them fuse into them in XLA, so counting
# every equation's output would count each layer several times.
LAYERS = ("dot_general", "conv_general_dilated")


def _outputs(jaxpr) -> Iterator[int]:
    """Sizes of the values the layers of `jaxpr` (and of the jaxprs inside it) produce."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in LAYERS:
            yield from (_size(var.aval) for var in eqn.outvars)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _outputs(inner)


def forward_values(model, param_shapes, rows: int, input_dim: int) -> int:
    """Bytes of the intermediate values of a forward pass over `rows` rows: each layer's product
    and its activation."""
    x = jax.ShapeDtypeStruct((rows, input_dim), np.float32)
    return 2 * sum(_outputs(jax.make_jaxpr(model.apply)(param_shapes, x).jaxpr))


def optimizer_slots(optimizer) -> int:
    """Arrays the optimiser keeps per parameter (Adam's two moments, SGD's momentum)."""
    if optimizer.name in ("adam", "adamw"):
        return 2
    return 1 if optimizer.momentum else 0


def estimate(parts, settings, data_shapes) -> Estimate:
    """The memory of one program of a planned job (`data_shapes`: its Dataset of shapes)."""
    model, tasks = parts.model, parts.tasks
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    count = lambda tree: int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(tree)))  # noqa: E731
    total, shared = count(shapes), count(shapes["shared"])
    num_tasks = len(tasks)
    slots = optimizer_slots(settings.optimizer)
    per_task = parts.method.needs is not Needs.LOSSES
    # Parameters, gradients and optimiser slots while training, and again in the outputs (the
    # final training state comes back to the host).
    state = total * (3 + 2 * slots)
    state += shared * 2 * slots * (num_tasks - 1 if parts.schedule.per_task_state else 0)
    state += num_tasks * shared if per_task else 0
    train_acts = forward_values(model, shapes, settings.batch_size, settings.input_dim)
    # evaluation's splits (a task at a time where each task has its own inputs)
    rows = max(*task_sizes(data_shapes.val).values(), *task_sizes(data_shapes.test).values())
    if getattr(settings, "eval_batch", None):  # evaluated a chunk at a time
        rows = min(rows, settings.eval_batch)
    eval_acts = forward_values(model, shapes, rows, settings.input_dim)
    data = sum(_size(leaf) for leaf in jax.tree.leaves(data_shapes))
    return Estimate(data, state * FLOAT, max(train_acts * (num_tasks if per_task else 1), eval_acts), total)


def device_memory() -> tuple[int, int, str]:
    """(bytes of one device, number of local devices, the device's name). Accelerators report
    their limit; a CPU has the machine's physical memory."""
    devices = jax.local_devices()
    stats = devices[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]), len(devices), devices[0].device_kind
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), 1, "host memory"


def fits(est: Estimate, limit: int) -> int:
    """How many runs one program can hold within `limit` bytes (0: not even one)."""
    room = limit - est.data
    return 0 if room < est.per_run else int(room // max(est.per_run, 1))


def gib(n: float) -> str:
    """Bytes in the largest binary unit that keeps a number >= 1 (up to TiB)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 2**10:.1f} KiB"


def check(run, est: Estimate, runs: int, memory: tuple[int, int, str] | None = None) -> None:
    """Refuse a program of `runs` runs that cannot fit the device, in one line naming the keys
    that drive its estimate; raises ConfigError."""
    limit, devices, name = memory or device_memory()
    per_device = math.ceil(runs / devices)
    need = est.total(per_device)
    if need <= limit:
        return
    drivers = _drivers(run, est, per_device)
    can = fits(est, limit)
    fewer = (f"; at most {can * devices} runs fit in one program: lower seeds or "
             f"hydra.launcher.max_batch" if can and runs > 1 else "")
    raise ConfigError(f"memory: {run.study or 'this job'} needs about {gib(need)} per device "
                      f"({gib(est.data)} data + {per_device} run(s) x {gib(est.per_run)}: "
                      f"{est.num_params:,} parameters) but the {name} has {gib(limit)}; "
                      f"it is driven by {drivers}{fewer}")


def _drivers(run, est: Estimate, runs: int) -> str:
    """The config keys behind the largest term of the estimate, with their values."""
    terms = {"data": est.data, "params": runs * est.params, "activations": runs * est.activations}
    largest = max(terms, key=terms.get)
    d, m, t = run.data, run.model, run.train
    keys: dict[str, Any] = {
        "data": {f"data.{k}": getattr(d, k, None) for k in ("n_train", "n_val", "n_test")},
        "params": {"model.width": getattr(m, "width", None), "model.depth": getattr(m, "depth", None),
                   "model.target_params": getattr(m, "target_params", None)},
        "activations": {"train.batch_size": t.batch_size, "model.width": getattr(m, "width", None),
                        "data.n_val": getattr(d, "n_val", None), "data.n_test": getattr(d, "n_test", None),
                        "data.eval_batch": getattr(d, "eval_batch", None)},
    }[largest]
    named = ", ".join(f"{k}={v}" for k, v in keys.items() if v is not None)
    if runs > 1 and runs * est.per_run > est.data:
        named += f", seeds={run.seeds}"
    return named or largest
