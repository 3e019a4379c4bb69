"""Device memory of a compiled program, estimated before anything is compiled or generated.

A run that cannot fit the device otherwise ends, minutes later, in an out-of-memory traceback
(or a hard abort) from deep inside XLA. The planner instead estimates what one program holds
and refuses it in one line that names the keys driving the estimate.

The estimate is an upper bound of the dominant terms, in float32 bytes:

- the data splits, once per program (shared by its runs; it is replicated on each device);
- per run: parameters, their gradient, the optimiser's slots (one set per task for
  `schedule.optimizer_state=per_task`), the method's state, the final training state handed
  back, and the per-task gradients of methods that read shared-parameter gradients (T x shared
  parameters, three times: the per-task pytree, its (T, P) flattening and the method's (T, P)
  result, e.g. PCGrad's projected copies);
- per run, the larger of a training step's activations and an evaluation's. A step's are
  every intermediate value of the forward pass at the rows it draws (`train.batch_size`, or T
  blocks of it where tasks draw their own batches: `data.train_rows` or per-task inputs), kept
  for the backward pass; with per-task gradients, a backward of the heads per task and T of the
  trunk at once (a vmap), or for representation gradients (mgda_ub) the (T, rows x Z) gradients
  of the representation instead of the trunk's; with a `prepare` hook (auto_lambda, great),
  which differentiates through a gradient, a virtual copy of the parameters with the gradients
  at both points and the second-order pass's cotangents, and T + 3 more forward passes' values.
  An evaluation's are the same forward values at the size of the larger of the val and test
  splits (or `data.eval_batch`).

Intermediate values come from the forward pass's jaxpr (traced on shapes only), so convolutional
and mixture models are counted as faithfully as dense ones. XLA reuses buffers, so the real peak
is lower; the check refuses only what exceeds the device's whole memory. Against XLA's own
figures for the compiled program (`compiled.memory_analysis()`: arguments + temporaries +
outputs), the estimate is 1.1x to 2.9x as large on the measured models: MLPs with equal, PCGrad,
mgda_ub, Auto-Lambda and GREAT, with and without per-task batches, ResNet-18 (widths 8 and
16, 32 x 32 images) with equal, PCGrad and mgda_ub, and a LeNet convolving by patches on CPU
with equal and PCGrad (1.37x, 2.03x); tests/test_memory.py holds it within 1x..4x.
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
from harness.train.gradients import method_grad_dim

FLOAT = 4  # bytes


class Estimate(NamedTuple):
    """Bytes of one program: `data` once, `per_run` for each run it holds."""

    data: int
    params: int  # parameters, gradients, optimiser slots, method state, per-task gradients (one run)
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
# every equation's output would count each layer several times. A convolution computed by patches
# (harness.models.patches, on CPU) concatenates k x k shifted copies of its input before its dot:
# that matrix is kept for the backward pass, and is larger than the product.
LAYERS = ("dot_general", "conv_general_dilated", "concatenate")


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


def representation(model, param_shapes, rows: int, input_dim: int) -> int:
    """Bytes of the shared representation of `rows` rows (any pytree of arrays)."""
    x = jax.ShapeDtypeStruct((rows, input_dim), np.float32)
    return sum(_size(leaf) for leaf in jax.tree.leaves(jax.eval_shape(model.trunk, param_shapes, x)))


def trunk_values(model, param_shapes, rows: int, input_dim: int) -> int:
    """Bytes of the intermediate values of the trunk alone (forward_values' shared part)."""
    x = jax.ShapeDtypeStruct((rows, input_dim), np.float32)
    return 2 * sum(_outputs(jax.make_jaxpr(model.trunk)(param_shapes, x).jaxpr))


def optimizer_slots(optimizer) -> int:
    """Arrays the optimiser keeps per parameter (Adam's two moments, SGD's momentum)."""
    if optimizer.name in ("adam", "adamw"):
        return 2
    return 1 if optimizer.momentum else 0


def _per_task(method, settings, shared: int) -> tuple[Needs, bool, bool]:
    """(what the trainer computes for the method, whether it takes a backward pass per task,
    whether probes ask for per-task shared gradients of any method), as
    harness.train.gradients decides them."""
    needs = method.needs if shared > 0 else Needs.LOSSES
    probing = shared > 0 and (getattr(settings, "diagnostics", False) or getattr(settings, "affinity", False))
    return needs, needs is not Needs.LOSSES or probing, probing


def estimate(parts, settings, data_shapes) -> Estimate:
    """The memory of one program of a planned job (`data_shapes`: its Dataset of shapes)."""
    model, tasks, method = parts.model, parts.tasks, parts.method
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    count = lambda tree: int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(tree)))  # noqa: E731
    total, shared = count(shapes), count(shapes["shared"])
    num_tasks = len(tasks)
    slots = optimizer_slots(settings.optimizer)
    needs, per_task, probing = _per_task(method, settings, shared)
    # Tasks that draw their own batches stack T blocks of batch_size rows (harness.train.batches).
    rows = settings.batch_size * (num_tasks if settings.task_rows is not None else 1)
    # Parameters, gradients and optimiser slots while training, and again in the outputs (the
    # final training state comes back to the host).
    state = total * (3 + 2 * slots)
    state += shared * 2 * slots * (num_tasks - 1 if parts.schedule.per_task_state else 0)
    # The method's own state (a carry of the loop, updated, and handed back).
    grad_dim = method_grad_dim(model, method, shapes["shared"], settings.input_dim, settings.batch_size)
    state += 3 * count(jax.eval_shape(lambda: method.init(num_tasks, grad_dim)))
    trunk_per_task = (per_task and needs is not Needs.REPR_GRADS) or probing
    if trunk_per_task:
        # The per-task shared gradients as a pytree (a vmap of the trunk's backward), flattened
        # to (T, P), and the (T, P) the method makes of them (PCGrad's projected copies).
        state += 3 * num_tasks * shared
    fwd = forward_values(model, shapes, rows, settings.input_dim)
    z = representation(model, shapes, rows, settings.input_dim)
    # A step keeps its forward pass for the backward. Per-task gradients take a backward pass
    # of the heads per task, and T of the trunk under one vmap (T sets of cotangents at once);
    # representation gradients stop at the representation: (T, rows x Z), stacked and flattened.
    train_acts = fwd
    if per_task:
        trunk = trunk_values(model, shapes, rows, settings.input_dim)
        train_acts += num_tasks * (fwd - trunk)
        train_acts += num_tasks * trunk if trunk_per_task else 2 * num_tasks * z
    if method.prepare is not None:
        # A lookahead hook differentiates through gradients: a virtual copy of the parameters,
        # the gradients at both points and the second-order pass's cotangents (Auto-Lambda), or
        # the gradient through per-example representation gradients (GREAT), each with
        # a forward and backward pass of its own, per task for the representation gradients.
        state += 4 * total
        train_acts += fwd * (3 + num_tasks) + 2 * num_tasks * z
    # evaluation's splits (a task at a time where each task has its own inputs)
    eval_rows = max(*task_sizes(data_shapes.val).values(), *task_sizes(data_shapes.test).values())
    if getattr(settings, "eval_batch", None):  # evaluated a chunk at a time
        eval_rows = min(eval_rows, settings.eval_batch)
    eval_acts = forward_values(model, shapes, eval_rows, settings.input_dim)
    data = sum(_size(leaf) for leaf in jax.tree.leaves(data_shapes))
    return Estimate(data, state * FLOAT, max(train_acts, eval_acts), total)


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
