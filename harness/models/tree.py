"""Branched (grouped) hard sharing from a user-given tree (Lu et al. 2017, "Fully-adaptive Feature
Sharing in Multi-Task Networks"; Standley et al. 2020, "Which Tasks Should Be Learned Together in
Multi-task Learning?"; Vandenhende et al. 2020, "Branched Multi-Task Networks: Deciding What
Layers To Share").

`groups` lists task groups, each sharing the hidden layers up to its `depth`, e.g.

    groups: [{depth: 1}, {tasks: [a, b], depth: 2}]

(tasks omitted: every task): all tasks share layer 0, a and b also share layer 1, and every task
has its own layers from its deepest group's depth on (with a conv trunk, harness.models.plans,
depths count the conv blocks first). The groups must form a tree: any two are nested or
disjoint, a group is deeper than every group containing it, and every task is in one.

A group owns the layers between its parent's depth and its own, in params["shared"][name] with
name = its tasks joined by "+"; `shared_groups` tells the trainer which tasks use each group, so
under the alternate schedule a group moves only on its own tasks' steps. A group of every task
is initialised like hard sharing's trunk, and towers like its towers, so one group of every task
at depth k is hard sharing at depth k.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import jax

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.models.base import MODELS, Model
from harness.models.hard import OwnTowers
from harness.models.layers import Template, hidden, pure, shared_key, task_key, task_tag, tower
from harness.models.plans import depth_bound, make_plan
from harness.models.sizing import match_width
from harness.schema import Entry


@dataclass
class TreeGroup:
    tasks: Optional[list[str]] = None  # null: every task of the data
    depth: int = 1  # the group shares hidden layers up to this depth


@dataclass
class TreeConfig(OwnTowers):  # channels, image_shape, single_task()
    name: str = "tree"
    depth: int = 3
    width: int = 64
    groups: list[TreeGroup] = field(default_factory=lambda: [TreeGroup()])
    activation: str = "relu"
    target_params: Optional[int] = None  # see harness.models.sizing


class Group(NamedTuple):
    name: str
    tasks: tuple[str, ...]  # in data order
    start: int  # the parent's depth (0 for a root)
    stop: int  # the group's depth
    parent: Optional[str]


def resolve_groups(groups: list[TreeGroup], names: list[str], depth: int,
                   bound: str = "model.depth") -> list[Group]:
    """Validated groups, parents before children; raises a one-line ConfigError naming the key."""
    sets = []
    for i, g in enumerate(groups):
        key, listed = f"model.groups[{i}]", names if g.tasks is None else list(g.tasks)
        unknown = [n for n in listed if n not in names]
        if unknown:
            raise bad(f"{key}.tasks", listed,
                      f"names of the data's tasks ({', '.join(names)}); unknown: {', '.join(unknown)}")
        if len(set(listed)) != len(listed) or len(listed) < 2:
            raise bad(f"{key}.tasks", listed, "two or more distinct task names (a group shares layers)")
        if not 1 <= g.depth <= depth:
            raise bad(f"{key}.depth", g.depth, f"an integer in 1..{depth} ({bound})")
        sets.append(frozenset(listed))
    for i, a in enumerate(sets):
        for j, b in enumerate(sets[:i]):
            if a == b or not (a <= b or b <= a or not a & b):
                raise bad("model.groups", [sorted(s) for s in sets],
                          f"a tree: groups {j} and {i} must be disjoint or one inside the other, and differ")
    missing = [n for n in names if not any(n in s for s in sets)]
    if missing:
        raise bad("model.groups", [sorted(s) for s in sets],
                  f"groups covering every task; missing: {', '.join(missing)}")
    # Outer groups first: a group's parent is the smallest group strictly containing it.
    order = sorted(range(len(sets)), key=lambda i: -len(sets[i]))
    resolved: dict[int, Group] = {}
    for i in order:
        parents = [j for j in resolved if sets[i] < sets[j]]
        parent = min(parents, key=lambda j: len(sets[j])) if parents else None
        start = groups[parent].depth if parent is not None else 0
        if groups[i].depth <= start:
            raise bad(f"model.groups[{i}].depth", groups[i].depth,
                      f"deeper than the group containing it (model.groups[{parent}].depth = {start})")
        tasks = tuple(n for n in names if n in sets[i])
        resolved[i] = Group("+".join(tasks), tasks, start, groups[i].depth,
                            resolved[parent].name if parent is not None else None)
    return [resolved[i] for i in order]


def build(cfg: TreeConfig, tasks: tuple[TaskSpec, ...], input_dim: int) -> Model:
    plan = make_plan(cfg, input_dim)
    names = [t.name for t in tasks]
    groups = resolve_groups(cfg.groups, names, plan.depth, depth_bound(cfg))
    cfg = match_width(cfg, build, tasks, input_dim)
    plan = dataclasses.replace(plan, width=cfg.width)
    # Each task reads the output of its deepest group (groups are listed outer first).
    leaf = {n: [g for g in groups if n in g.tasks][-1] for n in names}
    stacks = {g.name: Template(lambda key, g=g: hidden(plan, key, g.start, g.stop)) for g in groups}
    towers = {t.name: Template(lambda key, t=t: tower(plan, key, leaf[t.name].stop, t.output_size))
              for t in tasks}

    def group_key(key, g):
        base = shared_key(key)
        return base if len(g.tasks) == len(names) else jax.random.fold_in(base, task_tag(g.name))

    def init(key):
        return {"shared": {g.name: pure(hidden(plan, group_key(key, g), g.start, g.stop)) for g in groups},
                "tasks": {t.name: pure(tower(plan, task_key(key, t.name), leaf[t.name].stop, t.output_size))
                          for t in tasks}}

    def trunk(params, x):
        out = {}
        for g in groups:
            out[g.name] = stacks[g.name](params["shared"][g.name])(x if g.parent is None else out[g.parent])
        return {n: out[leaf[n].name] for n in names}

    def heads(task_params, z):
        return {n: template(task_params[n])(z[n]) for n, template in towers.items()}

    def last_shared(shared):
        # The roots' last layers: the deepest layers shared by every task of a root.
        return {g.name: shared[g.name]["layers"][g.stop - g.start - 1] for g in groups if g.parent is None}

    return Model(init, trunk, heads, last_shared, shared_groups={g.name: g.tasks for g in groups},
                 width=plan.width)


MODELS.register("tree", Entry(TreeConfig, build))
