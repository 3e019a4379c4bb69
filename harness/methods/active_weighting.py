"""Active sampling's task distribution (Sharma et al. 2017, "Learning to Multi-Task by Active
Sampling", ICLR 2018: the task choice of their A5C agent), and the loss weighting made of it.

Each task t has a target score (its single-task result) and a current score (its latest
validation score); the further a task is below its target, the more it is trained:
  m_t = (target_t - current_t) / |target_t|,   p = softmax(m / temperature).
The paper writes m_t = (target_t - current_t) / target_t with positive game scores. Here scores
are oriented higher-is-better (accuracy, or minus the mse), so a target can be negative; dividing
by |target_t| keeps the gap's sign right for both: an mse target of 0.2 is the oriented target
-0.2, and a current mse of 0.3 (oriented -0.3) gives m = (-0.2 + 0.3) / 0.2 = +0.5, below target.
`active_probabilities` is the sampling distribution of `schedule.sampling=active`
(harness.train.schedules); `method=active_weighting` (this module) uses it under joint as loss
weights: after each evaluation (on_eval) the weights become T * p, so a task further below its
target weighs more and the weights sum to T. Before the first evaluation every weight is 1;
between evaluations the weights stay constant.

Where it differs from the reference: the paper samples one task per episode with these
probabilities (that is `schedule.sampling=active` here); weighting every task's loss by them
in one joint step is the expectation of that choice, not the paper's algorithm. Targets are
declared (`method.targets`, one per task in task order, in the metrics' own units) or, when
null, the same-seed single-task baselines' final validation scores (harness.run.execute).
Schedules: joint only (under alternate the schedule's own active sampling is the method).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Method, MethodOutput, Needs, dynamic
from harness.schema import Entry

EPS = 1e-8  # a zero target: the gap is then in absolute units over EPS, still ordered by score


def active_probabilities(scores: jax.Array, targets: jax.Array, temperature: jax.Array) -> jax.Array:
    """softmax over tasks of (targets - scores) / |targets| / temperature; scores and targets
    (T,) oriented higher-is-better. A task at or above its target keeps some probability."""
    gap = (targets - scores) / jnp.maximum(jnp.abs(targets), EPS)
    return jax.nn.softmax(gap / temperature)


@dataclass
class ActiveWeightingConfig:
    name: str = "active_weighting"
    temperature: float = dynamic(0.1)  # tau of the softmax over the target gaps (as schedule.temperature)
    # one per task, in task order, in the metrics' own units; null: the baselines' final val scores
    targets: Optional[list[float]] = field(default=None, metadata={"dynamic": True})


class ActiveState(NamedTuple):
    weights: jax.Array  # (T,) summing to T


def build(cfg: ActiveWeightingConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.temperature > 0:
        raise bad("method.temperature", cfg.temperature, "a number > 0")
    names = [t.name for t in tasks]
    if cfg.targets is not None and len(cfg.targets) != len(tasks):
        raise bad("method.targets", list(cfg.targets), f"one target per task, in task order ({', '.join(names)})")
    signs = jnp.asarray([-1.0 if t.lower_is_better else 1.0 for t in tasks], jnp.float32)

    def init(num_tasks: int, grad_dim: int) -> ActiveState:
        return ActiveState(jnp.ones((num_tasks,), jnp.float32))

    def update(losses, grads, state, key, hparams):
        return MethodOutput(state.weights, None, state, {})

    def on_eval(state, val_scores, hparams):
        probs = active_probabilities(val_scores, signs * hparams["targets"], hparams["temperature"])
        return ActiveState(probs * val_scores.shape[0])

    return Method(Needs.LOSSES, init, update, schedules=("joint",), on_eval=on_eval)


METHODS.register("active_weighting", Entry(ActiveWeightingConfig, build))
