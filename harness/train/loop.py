"""The compiled training run: `train(key, hparams, data)` = init + lax.scan over steps.

One pure step: a batch, the schedule's active tasks, losses and gradients from one forward pass
with the method's weights (harness.train.gradients), then the masked per-group optimiser update
(harness.train.update). Evaluation on the val and test splits runs every `eval_every` steps
inside the compiled run. Everything static is fixed by `make_train(parts, settings)`; everything
in `hparams` is an array, so `jit(vmap(trainer.train))` batches seeds and dynamic
hyper-parameters in one program. `hparams = {"optim", "method", "model", "distill"}` (each a
name -> array dict of the config group's dynamic fields), "schedule" for a schedule with state
(active sampling), and, with teachers, "teachers": task -> the parameters of that task's
teacher.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from harness.data.base import Dataset
from harness.train import losses as L
from harness.train.augment import make_augment
from harness.train.batches import draw_rows, make_draw, make_teaching
from harness.train.evaluation import evaluate, evaluate_in_chunks, window_summary
from harness.train.gradients import make_gradients, method_grad_dim
from harness.train.optim import clip, make_direction, make_learning_rate
from harness.train.parts import Carry, Parts, Settings, Trainer
from harness.train.schedules import select
from harness.train.update import apply_updates, make_update

# fold_in tags: every key of a run derives from its seed through these, so a task gets the same
# init and the same batches whether it is trained alone or among other tasks.
INIT, BATCH, METHOD, SCHEDULE, AUGMENT, VAL = 1, 2, 3, 4, 5, 6


def make_optimizer(parts: Parts, settings: Settings, hp: dict):
    """The per-group optimiser of the whole params tree for one run's dynamic values."""
    tx = make_direction(settings.optimizer, hp["optim"])
    return make_update(tx, parts.schedule, [t.name for t in parts.tasks], parts.model.shared_groups)


def make_step(parts: Parts, settings: Settings, gradients: Callable, draw: Callable, teaching: Callable,
              key: jax.Array, hp: dict, data: Dataset, scales: dict) -> Callable:
    """step(carry, s) -> (carry, (losses, weights, probes, diagnostics)) of one run. A step
    with a non-finite loss freezes the run where it was; its vmap siblings are unaffected."""
    optimizer = make_optimizer(parts, settings, hp)
    lr_at = make_learning_rate(settings.optimizer, hp["optim"], settings.steps)
    k_batch, k_method, k_sched, k_augment = (jax.random.fold_in(key, tag) for tag in (BATCH, METHOD, SCHEDULE, AUGMENT))
    k_val = jax.random.fold_in(key, VAL)

    def step(carry: Carry, s):
        params, opt, mstate, diverged_at, sstate = carry
        x, y = draw(data, k_batch, s)
        if settings.augment:
            x, y = make_augment(parts.tasks, settings.input_dim)(jax.random.fold_in(k_augment, s), x, y)
        active = parts.schedule.select(jax.random.fold_in(k_sched, s), s, sstate)
        lr = lr_at(s)
        val = None
        if parts.method.prepare is not None:  # validation rows for a method that looks ahead on them
            vx, vy = draw_rows(data.val, jax.random.fold_in(k_val, s), settings.batch_size,
                               [t.name for t in parts.tasks])
            val = (vx, L.standardize(vy, scales))
        losses, grads, out, probes = gradients(params, x, L.standardize(y, scales), mstate,
                                               jax.random.fold_in(k_method, s), hp["method"], hp["model"],
                                               active, lr, teaching(hp, x), val=val, step=s)
        grads = clip(grads, settings.optimizer.clip_norm)
        updates, new_opt = optimizer.update(grads, opt, params, active=active)
        new = (apply_updates(params, updates, lr), new_opt, out.state)
        finite = jnp.all(jnp.isfinite(losses))
        params, opt, mstate = select((diverged_at < 0) & finite, new, (params, opt, mstate))
        diverged_at = jnp.where((diverged_at < 0) & ~finite, s, diverged_at).astype(jnp.int32)
        diagnostics = out.diagnostics
        if parts.schedule.diagnostics is not None:
            diagnostics = {**diagnostics, **parts.schedule.diagnostics(sstate)}
        return Carry(params, opt, mstate, diverged_at, sstate), (losses, out.weights, probes, diagnostics)

    return step


def make_train(parts: Parts, settings: Settings) -> Trainer:
    """The Trainer of one static configuration (see harness.train.parts.Trainer)."""
    model, method, tasks = parts.model, parts.method, parts.tasks
    names, K, B = [t.name for t in tasks], settings.eval_every, settings.batch_size
    blocks = settings.task_rows is not None
    shared_shapes = jax.eval_shape(model.init, jax.random.key(0))["shared"]
    shared_size = sum(leaf.size for leaf in jax.tree.leaves(shared_shapes))
    gradients = make_gradients(model, method, tasks, shared_size, settings.diagnostics, settings.affinity, blocks,
                               settings.own_inputs)
    draw = make_draw(names, B, settings.train_size, settings.task_rows)
    teaching = make_teaching(parts.teachers, names, B, blocks)
    grad_dim = method_grad_dim(model, method, shared_shapes, settings.input_dim, B)
    scores = jnp.asarray([-1.0 if t.lower_is_better else 1.0 for t in tasks])

    def init(key: jax.Array, hp: dict) -> Carry:
        params = model.init(jax.random.fold_in(key, INIT))
        opt = make_optimizer(parts, settings, hp).init(params)
        return Carry(params, opt, method.init(len(tasks), grad_dim), jnp.asarray(-1, jnp.int32),
                     parts.schedule.init())

    def run_chunks(carry: Carry, key: jax.Array, hp: dict, data: Dataset, first, count: int):
        """Batches and keys depend on the absolute step, so a run cut into pieces is the same run."""
        scales = (L.target_scales(tasks, data.train.y, settings.task_rows)
                  if settings.standardize_targets else {})
        step = make_step(parts, settings, gradients, draw, teaching, key, hp, data, scales)

        def chunk(carry: Carry, start):
            carry, (losses, weights, probes, diagnostics) = jax.lax.scan(step, carry, start + jnp.arange(K))
            secondary = {}
            if settings.eval_batch is None:
                val, val_loss, secondary["val"] = evaluate(model, tasks, carry.params, data.val, scales)
                test, _, secondary["test"] = evaluate(model, tasks, carry.params, data.test, scales)
            else:
                val, val_loss, secondary["val"] = evaluate_in_chunks(
                    model, tasks, carry.params, data.val, scales, settings.eval_batch)
                test, _, secondary["test"] = evaluate_in_chunks(
                    model, tasks, carry.params, data.test, scales, settings.eval_batch)
            if method.on_eval is not None:
                carry = carry._replace(method=method.on_eval(carry.method, val * scores, hp["method"]))
            if parts.schedule.on_eval is not None:
                carry = carry._replace(schedule=parts.schedule.on_eval(carry.schedule, val * scores, hp["schedule"]))
            return carry, {"val": val, "test": test, "val_loss": val_loss,
                           **window_summary(losses, weights, probes, diagnostics),
                           **({"secondary": secondary} if secondary["val"] else {})}

        return jax.lax.scan(chunk, carry, (first + jnp.arange(count)) * K)

    def train(key: jax.Array, hp: dict, data: Dataset) -> dict:
        carry, curves = run_chunks(init(key, hp), key, hp, data, 0, settings.num_chunks)
        return {**curves, "diverged_at": carry.diverged_at, "final": carry}

    return Trainer(init, run_chunks, train, settings.num_chunks)
