"""The compiled training run: `train(key, hparams, data)` = init + lax.scan over steps.

One pure step: a forward pass split at the shared representation z, per-task losses, the method's
weights (and, when it asks, per-task gradients from a vmap over task cotangents of the same
forward pass), then optimiser updates per parameter group, masked by the schedule so that a task
step moves only the shared parameters and that task's own parameters. Evaluation on the val and
test splits runs every `train.eval_every` steps inside the compiled run. Everything static is
fixed by `make_train`; everything in `hparams` is an array, so `jit(vmap(train))` batches seeds
and dynamic hyper-parameters in one program.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from harness import losses as L
from harness.config import RunConfig, single_task
from harness.data.base import Dataset, Split, TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs
from harness.models.base import MODELS, Model
from harness.models.layers import task_tag
from harness.optim import clip, make_direction, make_learning_rate
from harness.schedules import make_selector, select

# fold_in tags: every key of a run derives from its seed through these, so a task gets the same
# init and the same batches whether it is trained alone or among other tasks.
INIT, BATCH, METHOD, SCHEDULE = 1, 2, 3, 4
# From this many tasks on, per-task gradients come from one backward per task through its own
# loss, instead of a vmap over one-hot cotangents of all the losses (T^2 head backwards, then one
# more with the weights). Step time / equal's on `python -m harness.bench --sections methods
# --tasks 2 3 4` (2 CPU cores), vmap vs per-task: mgda_ub 1.37 vs 1.45 at T = 2, 1.72 vs 1.54 at
# T = 3, 1.80 vs 1.55 at T = 4; pcgrad, mgda and gradnorm move the same way.
PER_TASK_BACKWARD_FROM = 3


class Carry(NamedTuple):
    params: Any
    opt: Any
    method: Any
    diverged_at: jax.Array  # first step with a non-finite loss, -1 while healthy


def build_parts(run: RunConfig, tasks: tuple[TaskSpec, ...], input_dim: int) -> tuple[Model, Method]:
    """Model and method for a job; raises ConfigError for invalid combinations."""
    model = MODELS.get(run.model.name).build(run.model, tasks, input_dim)
    method = METHODS.get(run.method.name).build(run.method, tasks)
    if run.schedule.name not in method.schedules:
        raise bad("method", run.method.name,
                  f"works with schedule {' or '.join(method.schedules)}, not {run.schedule.name} "
                  "(its docstring says why)")
    return model, method


class Teaching(NamedTuple):
    """Knowledge distillation on one step: the teachers' outputs on the step's batch (per task, in
    the rows the task's loss reads) and the dynamic weight and temperature."""

    outputs: dict[str, jax.Array]
    weight: jax.Array
    temperature: jax.Array


def task_losses(model: Model, tasks: tuple[TaskSpec, ...], blocks: bool = False):
    """(task_params, z, y, teaching=None) -> (T,) losses. With `blocks`, the rows of z come in T
    blocks, one per task's own batch, and each task's loss reads only its block. With `teaching`,
    each loss is (1 - weight) * its loss + weight * its distillation term."""
    def one(t, out, y, teaching):
        if teaching is None:
            return L.loss(t, out, y[t.name])
        return L.distilled(t, out, y[t.name], teaching.outputs[t.name], teaching.weight, teaching.temperature)

    def heads_losses(task_params, z, y, teaching=None):
        if not blocks:
            out = model.heads(task_params, z)
            return jnp.stack([one(t, out[t.name], y, teaching) for t in tasks])
        size = y[tasks[0].name].shape[0]
        return jnp.stack([
            one(t, model.heads(task_params, jax.tree.map(lambda a: a[i * size:(i + 1) * size], z))[t.name], y, teaching)
            for i, t in enumerate(tasks)])

    return heads_losses


def make_gradients(model: Model, method: Method, tasks: tuple[TaskSpec, ...], shared_size: int,
                   diagnostics: bool = False, affinity: bool = False, blocks: bool = False):
    """(params, x, y, method_state, key, hparams, model_hparams, active, lr, teaching=None)
    -> (losses, grads, MethodOutput, probes).

    One forward pass. Per-task gradients, when the method (or a probe) needs them, come from a
    vmap over one-hot cotangents of that pass and the final gradient from one more backward with
    the weights; or, from PER_TASK_BACKWARD_FROM tasks on, from one backward per task whose
    results the weights combine. probes: {"cos" (T, T), "norm" (T,)} with diagnostics, {"affinity" (T, T)} with
    affinity; empty otherwise.
    """
    num_tasks = len(tasks)
    heads_losses = task_losses(model, tasks, blocks)
    needs = method.needs if shared_size > 0 else Needs.LOSSES
    probing = shared_size > 0 and (diagnostics or affinity)
    eye = jnp.eye(num_tasks)

    def gradients(params, x, y, mstate, key, hp, hp_model, active, lr, teaching=None):
        def losses_of(task_params, zz):
            return heads_losses(task_params, zz, y, teaching)

        z, trunk_vjp = jax.vjp(lambda p: model.trunk(p, x), params)
        G, unravel, probes = None, None, {}
        if (needs is not Needs.LOSSES or probing) and num_tasks >= PER_TASK_BACKWARD_FROM:
            # One backward per task through its own loss (XLA prunes the other heads): the
            # per-task cotangents of z and head gradients, which the method's weights then
            # combine, so the heads are not traversed again.
            per_task = [jax.vjp(lambda tp, zz, i=i: losses_of(tp, zz)[i], params["tasks"], z)
                        for i in range(num_tasks)]
            losses = jnp.stack([loss for loss, _ in per_task])
            parts = [vjp(jnp.ones((), loss.dtype)) for loss, vjp in per_task]
            g_heads = jax.tree.map(lambda *a: jnp.stack(a), *(g for g, _ in parts))
            gz = jax.tree.map(lambda *a: jnp.stack(a), *(g for _, g in parts))

            def heads_vjp(w):
                return jax.tree.map(lambda a: jnp.tensordot(w, a, 1), (g_heads, gz))
        else:
            losses, heads_vjp = jax.vjp(losses_of, params["tasks"], z)
            if needs is not Needs.LOSSES or probing:
                gz = jax.vmap(lambda c: heads_vjp(c)[1])(eye)  # T backwards through all heads
        if needs is not Needs.LOSSES or probing:
            if needs is Needs.REPR_GRADS:
                G = jax.vmap(lambda tree: ravel_pytree(tree)[0])(gz)
            if needs in (Needs.SHARED_GRADS, Needs.LAST_SHARED_GRADS) or probing:
                gshared = jax.vmap(lambda g: trunk_vjp(g)[0]["shared"])(gz)
                flat = jax.vmap(lambda tree: ravel_pytree(tree)[0])(gshared)
                if needs is Needs.SHARED_GRADS:
                    G, unravel = flat, ravel_pytree(jax.tree.map(lambda a: a[0], gshared))[1]
                elif needs is Needs.LAST_SHARED_GRADS:
                    G = jax.vmap(lambda tree: ravel_pytree(tree)[0])(model.last_shared(gshared))
                if diagnostics:
                    probes.update(gradient_probes(flat))
                if affinity:
                    probes["affinity"] = lookahead_affinity(model, losses_of, params, gshared, x, losses, lr)
        if needs is Needs.LOSSES and method.needs is not Needs.LOSSES:
            # Nothing is shared: a gradient method has nothing to combine; plain sum of losses.
            out = MethodOutput(jnp.ones_like(losses), None, mstate, {})
        else:
            out = method.update(jax.lax.stop_gradient(losses), G, mstate, key, hp)
        weights = out.weights * active
        g_tasks, g_z = heads_vjp(weights.astype(losses.dtype))
        (grads,) = trunk_vjp(g_z)
        grads = {"shared": grads["shared"], "tasks": jax.tree.map(jnp.add, grads["tasks"], g_tasks)}
        if out.direction is not None and unravel is not None:
            grads["shared"] = unravel(out.direction)
        if model.penalty is not None:
            grads = jax.tree.map(jnp.add, grads, jax.grad(model.penalty)(params, hp_model))
        return losses, grads, out._replace(weights=weights), probes

    return gradients


def gradient_probes(G: jax.Array) -> dict[str, jax.Array]:
    """Cosine similarity between task gradients (T, T) and their norms (T,)."""
    norms = jnp.linalg.norm(G, axis=1)
    cos = (G @ G.T) / jnp.maximum(norms[:, None] * norms[None, :], 1e-12)
    return {"cos": cos, "norm": norms}


def lookahead_affinity(model: Model, losses_of, params, gshared, x, losses, lr) -> jax.Array:
    """TAG inter-task affinity (Fifty et al. 2021, "Efficiently Identifying Task Groupings"):
    Z[i, j] = (1 - L_j(shared after an SGD step on task i alone) / L_j(now)) / lr, on the
    same batch. Positive: a step on i lowers j's loss."""
    def after_step_on(g_i):
        shared = jax.tree.map(lambda p, g: p - lr * g, params["shared"], g_i)
        moved = {"shared": shared, "tasks": params["tasks"]}
        return losses_of(moved["tasks"], model.trunk(moved, x))

    ahead = jax.vmap(after_step_on)(gshared)  # (T_i, T_j)
    return (1.0 - ahead / losses[None, :]) / lr


def method_grad_dim(model: Model, method: Method, shared_shapes, input_dim: int, batch: int) -> int:
    """P, the width of the gradients the method will receive (0 when it gets none)."""
    def size(tree):
        return int(sum(leaf.size for leaf in jax.tree.leaves(tree)))

    if method.needs is Needs.LOSSES or size(shared_shapes) == 0:
        return 0
    if method.needs is Needs.SHARED_GRADS:
        return size(shared_shapes)
    if method.needs is Needs.LAST_SHARED_GRADS:
        return size(model.last_shared(shared_shapes))
    x = jax.ShapeDtypeStruct((batch, input_dim), jnp.float32)
    return size(jax.eval_shape(lambda k, xx: model.trunk(model.init(k), xx), jax.random.key(0), x))


def evaluate(model: Model, tasks: tuple[TaskSpec, ...], params, split: Split,
             scales: dict[str, L.Scale] | None = None) -> tuple[jax.Array, jax.Array]:
    """(metrics (T,), losses (T,)) on a whole split: metrics in the targets' own units, losses
    in the units training sees (standardised regression targets where `scales` has them)."""
    scales = scales or {}
    out = model.apply(params, split.x)
    shown = L.in_target_units(out, scales)
    metrics = jnp.stack([L.metric(t, shown[t.name], split.y[t.name]) for t in tasks])
    y = L.standardize(split.y, scales)
    losses = jnp.stack([L.loss(t, out[t.name], y[t.name]) for t in tasks])
    return metrics, losses


def make_train(run: RunConfig, tasks: tuple[TaskSpec, ...], input_dim: int, train_size: int,
               task_rows: dict[str, int] | None = None) -> Callable:
    """Build `train(key, hparams, data) -> outputs` for one static configuration.

    task_rows: None, every task trains on all `train_size` rows and each step draws one batch
    for all tasks; or task -> n_t, each task trains on its first n_t rows and draws its own
    batch from its own key stream (so alone or among others it sees the same batches).

    hparams = {"optim": {...}, "method": {...}, "model": {...}, "distill": {...}} (dynamic values
    as arrays); with `distill.enabled`, also "teachers": task -> the parameters of that task's
    single-task baseline of the same seed (`harness.config.single_task`), whose outputs on each
    batch are the distillation targets.
    outputs = {"val", "test", "val_loss", "train_loss", "weights", "grad_norm": (E, T) per
               evaluation; "grad_cos", "conflict", "affinity": (E, T, T) when probed;
               "diverged_at": int32 scalar; "final": the last Carry (params, optimiser state,
               method state)}.
    `train.init(key, hparams)` and `train.run_chunks(carry, key, hparams, data, first, count)`
    run the same program in pieces (for checkpointed long runs); `train.teachers` is
    task -> teacher Model with distillation, None without.
    """
    model, method = build_parts(run, tasks, input_dim)
    num_tasks, steps, K, B = len(tasks), run.train.steps, run.train.eval_every, run.train.batch_size
    if steps % K:
        raise bad("train.eval_every", K, f"a divisor of train.steps ({steps})")
    joint = run.schedule.name == "joint"
    per_task_state = not joint and run.schedule.optimizer_state == "per_task"
    names = [t.name for t in tasks]
    rows = [task_rows.get(n, train_size) for n in names] if task_rows is not None else [train_size] * num_tasks
    # The draw may be over more tasks than this run trains (a single-task baseline matched to an
    # alternate run): draw as that run does, then keep this run's tasks.
    draw = list(run.schedule.draw_from or names)
    all_rows = getattr(run.data, "train_rows", None) or {}
    selector = make_selector(run.schedule, tuple(all_rows.get(n, train_size) for n in draw))
    drawn = jnp.asarray([draw.index(n) for n in names])
    scores = jnp.asarray([-1.0 if t.lower_is_better else 1.0 for t in tasks])
    shared_shapes = jax.eval_shape(model.init, jax.random.key(0))["shared"]
    shared_size = sum(leaf.size for leaf in jax.tree.leaves(shared_shapes))
    gradients = make_gradients(model, method, tasks, shared_size, run.train.diagnostics, run.train.affinity,
                               blocks=task_rows is not None)

    def draw_batch(data: Dataset, k_batch: jax.Array, s):
        if task_rows is None:
            idx = jax.random.randint(jax.random.fold_in(k_batch, s), (B,), 0, train_size)
            return data.train.x[idx], {n: data.train.y[n][idx] for n in names}
        step_key = jax.random.fold_in(k_batch, s)
        idx = {n: jax.random.randint(jax.random.fold_in(step_key, task_tag(n)), (B,), 0, r)
               for n, r in zip(names, rows)}
        return jnp.concatenate([data.train.x[idx[n]] for n in names]), {n: data.train.y[n][idx[n]] for n in names}
    grad_dim = method_grad_dim(model, method, shared_shapes, input_dim, B)
    teachers = None
    if run.distill.enabled:
        stl = {t.name: single_task(run, t.name, names).model for t in tasks}
        teachers = {t.name: MODELS.get(stl[t.name].name).build(stl[t.name], (t,), input_dim) for t in tasks}

    def teaching(hp: dict, x: jax.Array) -> Teaching | None:
        """The teachers' outputs on the rows each task's loss reads; constants to the student."""
        if teachers is None:
            return None
        outputs = {}
        for i, n in enumerate(names):
            rows = x if task_rows is None else x[i * B:(i + 1) * B]
            outputs[n] = jax.lax.stop_gradient(teachers[n].apply(hp["teachers"][n], rows)[n])
        return Teaching(outputs, hp["distill"]["weight"], hp["distill"]["temperature"])
    # Shared groups and the task indices using each; None: one group serving every task.
    if model.shared_groups is None:
        group_users = {None: None}
    else:
        group_users = {g: jnp.asarray([names.index(n) for n in users])
                       for g, users in model.shared_groups.items()}

    def per_group(fn, *trees, outputs: int = 1):
        """fn(group, *subtrees) for each shared group, reassembled in the shape of
        params["shared"] (`outputs` results as a tuple); the whole tree when there are no
        groups. The count is explicit: an optax state is itself a tuple."""
        if model.shared_groups is None:
            return fn(None, *trees)
        outs = {g: fn(g, *(t[g] for t in trees)) for g in model.shared_groups}
        if outputs == 1:
            return outs
        return tuple({g: o[i] for g, o in outs.items()} for i in range(outputs))

    def parts(key: jax.Array, hp: dict, data: Dataset | None):
        """(init_carry, chunk) closures of one run; data may be None for init_carry only."""
        tx = make_direction(run.optim, hp["optim"])
        lr_at = make_learning_rate(run.optim, hp["optim"], steps)
        scales = (L.target_scales(tasks, data.train.y, task_rows)
                  if data is not None and run.train.standardize_targets else {})
        k_batch, k_method, k_sched = (jax.random.fold_in(key, tag) for tag in (BATCH, METHOD, SCHEDULE))

        def init_group(group, sub):
            state = tx.init(sub)
            if per_task_state:  # one set of moments per task, as with one optimiser per task
                state = jax.tree.map(lambda leaf: jnp.stack([leaf] * num_tasks), state)
            return state

        def update_group(state, g, p, lr):
            u, new_state = tx.update(g, state, p)
            return jax.tree.map(lambda pp, uu: pp - lr * uu, p, u), new_state

        def update_shared(group, state, g, p, lr, active):
            users = group_users[group]
            if per_task_state:
                a = jnp.argmax(active)
                new_p, state_a = update_group(jax.tree.map(lambda st: st[a], state), g, p, lr)
                new_state = jax.tree.map(lambda st, n: st.at[a].set(n), state, state_a)
            else:
                new_p, new_state = update_group(state, g, p, lr)
            if joint or users is None:
                return new_p, new_state
            # A group shared by some tasks only moves on their steps (bit-identical otherwise).
            return select(jnp.max(active[users]) > 0, (new_p, new_state), (p, state))

        def step(carry: Carry, s):
            params, opt, mstate, diverged_at = carry
            x, y = draw_batch(data, k_batch, s)
            y = L.standardize(y, scales)
            active = selector(jax.random.fold_in(k_sched, s), s)[drawn]
            lr = lr_at(s)
            losses, grads, out, probes = gradients(params, x, y, mstate, jax.random.fold_in(k_method, s),
                                                   hp["method"], hp["model"], active, lr, teaching(hp, x))
            grads = clip(grads, run.optim.clip_norm)
            new_tasks, new_task_opt = {}, {}
            for i, n in enumerate(names):
                p_n, s_n = update_group(opt["tasks"][n], grads["tasks"][n], params["tasks"][n], lr)
                if not joint:  # inactive tasks keep parameters and optimiser state bit-identical
                    p_n, s_n = select(active[i] > 0, (p_n, s_n), (params["tasks"][n], opt["tasks"][n]))
                new_tasks[n], new_task_opt[n] = p_n, s_n
            new_shared, shared_opt = per_group(
                lambda group, st, g, p: update_shared(group, st, g, p, lr, active),
                opt["shared"], grads["shared"], params["shared"], outputs=2)
            new = ({"shared": new_shared, "tasks": new_tasks}, {"shared": shared_opt, "tasks": new_task_opt}, out.state)
            finite = jnp.all(jnp.isfinite(losses))
            healthy = (diverged_at < 0) & finite
            # A diverged run freezes where it was; its vmap siblings are unaffected.
            params, opt, mstate = select(healthy, new, (params, opt, mstate))
            diverged_at = jnp.where((diverged_at < 0) & ~finite, s, diverged_at).astype(jnp.int32)
            return Carry(params, opt, mstate, diverged_at), (losses, out.weights, probes)

        def init_carry() -> Carry:
            params = model.init(jax.random.fold_in(key, INIT))
            opt = {"shared": per_group(init_group, params["shared"]),
                   "tasks": {n: tx.init(params["tasks"][n]) for n in names}}
            return Carry(params, opt, method.init(num_tasks, grad_dim), jnp.asarray(-1, jnp.int32))

        def chunk(carry: Carry, start):
            carry, (losses, weights, probes) = jax.lax.scan(step, carry, start + jnp.arange(K))
            val, val_loss = evaluate(model, tasks, carry.params, data.val, scales)
            test, _ = evaluate(model, tasks, carry.params, data.test, scales)
            if method.on_eval is not None:
                carry = carry._replace(method=method.on_eval(carry.method, val * scores, hp["method"]))
            summary = {"val": val, "test": test, "val_loss": val_loss,
                       "train_loss": losses.mean(0), "weights": weights.mean(0)}
            if "cos" in probes:
                summary.update(grad_cos=probes["cos"].mean(0), conflict=(probes["cos"] < 0).mean(0),
                               grad_norm=probes["norm"].mean(0))
            if "affinity" in probes:
                summary["affinity"] = probes["affinity"].mean(0)
            return carry, summary

        return init_carry, chunk

    def init(key: jax.Array, hp: dict) -> Carry:
        return parts(key, hp, None)[0]()

    def run_chunks(carry: Carry, key: jax.Array, hp: dict, data: Dataset, first, count: int):
        """Evaluation windows first..first+count-1 from `carry`; (carry, curves (count, ...)).
        Batches and keys depend on the absolute step, so a run cut into pieces is the same run."""
        carry, curves = jax.lax.scan(parts(key, hp, data)[1], carry, (first + jnp.arange(count)) * K)
        return carry, curves

    def train(key: jax.Array, hp: dict, data: Dataset) -> dict:
        carry, curves = run_chunks(init(key, hp), key, hp, data, 0, steps // K)
        return {**curves, "diverged_at": carry.diverged_at, "final": carry}

    train.init, train.run_chunks, train.num_chunks, train.teachers = init, run_chunks, steps // K, teachers
    return train
