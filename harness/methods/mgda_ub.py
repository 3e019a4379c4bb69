"""MGDA-UB, MGDA on the gradients of the shared representation (Sener & Koltun 2018).

The min-norm weights are computed from the gradients of each task loss with respect to the
shared representation Z (one backward pass to Z per task instead of to every shared parameter),
an upper bound of the MGDA problem. The weights then scale the task losses for every parameter,
as in the reference implementation; same solver and normalisers as `mgda`. Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.data.base import TaskSpec
from harness.methods.base import METHODS, Method, MethodOutput, Needs, no_state
from harness.methods.mgda import check, min_norm_weights
from harness.schema import Entry


@dataclass
class MGDAUBConfig:
    name: str = "mgda_ub"
    normaliser: str = "none"  # none | l2 | loss | loss+
    iters: int = 1000  # most pairwise Frank-Wolfe steps for more than two tasks (it stops on convergence)


def build(cfg: MGDAUBConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    check(cfg.normaliser, cfg.iters)

    def update(losses, grads, state, key, hparams):
        return MethodOutput(min_norm_weights(losses, grads, cfg.normaliser, cfg.iters), None, state, {})

    return Method(Needs.REPR_GRADS, no_state, update, schedules=("joint",))


METHODS.register("mgda_ub", Entry(MGDAUBConfig, build))
