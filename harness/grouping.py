"""Task groupings from inter-task affinity (Fifty et al. 2021, "Efficiently Identifying Task
Groupings for Multi-Task Learning", NeurIPS: TAG).

`affinity.loc[a, b]` is Z_{a->b}, how much a lookahead step on task a lowers task b's loss. A
group's score is the affinity onto each member from the others (the mean of Z_{a->b} over the
other members a), summed over members; a task alone scores 0. The suggestion for a budget k is
the partition of the tasks into at most k groups with the largest total score; ties go to fewer
groups (fewer networks to train for the same affinity).

Where this differs from TAG's reference code: TAG lets a task sit in several groups and serve
only the one where it scores best (a network-selection problem, solved with Standley et al.
2020's branch-and-bound); here the groups are a partition, so every task trains in exactly one
network and the suggestion can be checked by training those networks. The search:

- up to EXHAUSTIVE_TASKS tasks, every partition is scored (exact);
- beyond, a local search that moves single tasks between groups while the total improves (a
  partition no single move improves), started from the greedy merge and from RESTARTS seeded
  random partitions, its best never worse than the greedy one; then a branch-and-bound started
  from it that assigns tasks one at a time and cuts a branch when an upper bound on its best
  completion cannot beat the best partition found. Run to the end it is exact; it stops after
  MAX_NODES nodes, and then returns the best partition found with `optimal=False`.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

EXHAUSTIVE_TASKS = 8  # 4,140 partitions of 8 tasks; 21,147 of 9, 1.9e8 of 14 (Bell numbers)
RESTARTS = 8  # local searches from seeded random partitions, besides the greedy one
MAX_NODES = 10_000  # branch-and-bound nodes per search: about a second in Python
TOL = 1e-12  # scores closer than this are a tie


class Grouping(NamedTuple):
    groups: list[list[str]]  # sorted groups, members in row order
    total: float  # summed group scores
    optimal: bool  # proven: exhaustive search, or a branch-and-bound that ran to the end


def onto_matrix(affinity: pd.DataFrame) -> np.ndarray:
    """Z_{a->b} with the diagonal and missing entries as 0, so sums skip them."""
    z = np.nan_to_num(np.array(affinity.to_numpy(float), dtype=float))
    np.fill_diagonal(z, 0.0)
    return z


def score(z: np.ndarray, group: Sequence[int]) -> float:
    return float(z[np.ix_(group, group)].sum() / (len(group) - 1)) if len(group) > 1 else 0.0


def total(z: np.ndarray, groups: Sequence[Sequence[int]]) -> float:
    return sum(score(z, g) for g in groups)


def _better(a: float, a_groups: int, b: float, b_groups: int) -> bool:
    """Total a with a_groups groups beats total b with b_groups: higher, or tied with fewer."""
    return a > b + TOL or (a > b - TOL and a_groups < b_groups)


def group_affinity(affinity: pd.DataFrame, group: Sequence[str]) -> float:
    """Affinity onto each member of `group` from the others, summed over members.

    `affinity.loc[a, b]` is Z_{a->b}; onto b counts the mean of Z_{a->b} over the other
    members a, as in TAG (Fifty et al. 2021). A single task scores 0; missing entries count as 0.
    """
    index = [list(affinity.index).index(t) for t in group]
    return score(onto_matrix(affinity[list(affinity.index)]), index)


def partitions(items: list[int], max_blocks: int):
    """Every partition of items into at most max_blocks blocks."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for p in partitions(rest, max_blocks):
        if len(p) < max_blocks:
            yield [[first]] + p
        for i in range(len(p)):
            yield p[:i] + [[first] + p[i]] + p[i + 1:]


def exhaustive(z: np.ndarray, budget: int) -> list[list[int]]:
    best, best_score = [], -np.inf
    for p in partitions(list(range(len(z))), budget):
        s = total(z, p)
        if _better(s, len(p), best_score, len(best)):
            best, best_score = p, s
    return best


def greedy(z: np.ndarray, budget: int) -> list[list[int]]:
    """Merge the pair of groups that gains most: forced while over budget, then while a merge
    does not lose (a tie merges: fewer groups)."""
    groups = [[i] for i in range(len(z))]
    while len(groups) > 1:
        gains = {(i, j): score(z, groups[i] + groups[j]) - score(z, groups[i]) - score(z, groups[j])
                 for i, j in itertools.combinations(range(len(groups)), 2)}
        (i, j), gain = max(gains.items(), key=lambda kv: kv[1])
        if len(groups) <= budget and gain < -TOL:
            break
        groups[i] += groups.pop(j)
    return groups


def _means(sums: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    # A group's score from its within-group sum: divided by size - 1; 0 for a single task.
    return np.divide(sums, sizes - 1, out=np.zeros(np.shape(sums)), where=sizes > 1)


def improve(z: np.ndarray, budget: int, groups: list[list[int]]) -> list[list[int]]:
    """Local search: apply the best single-task move (to another group, or to a new one while
    under budget) while it raises the total by more than TOL or, at an equal total, removes a
    group. Every move's gain comes from per-group sums at once, so a pass costs O(T^2 k)."""
    n, rows = len(z), np.arange(len(z))
    label = np.empty(n, int)
    for g, members in enumerate(groups):
        label[members] = g
    while True:
        label = np.unique(label, return_inverse=True)[1]  # groups 0..k-1, none empty
        k = int(label.max()) + 1
        member = np.eye(k)[label]  # (T, k)
        both = z.T @ member + z @ member  # [t, g]: Z onto t from g plus Z from t onto g
        sums = np.einsum("ag,ab,bg->g", member, z, member)
        sizes = member.sum(0)
        current = _means(sums, sizes)
        own = label
        left = _means(sums[own] - both[rows, own], sizes[own] - 1) - current[own]  # (T,)
        gain = left[:, None] + (sums + both) / sizes - current  # [t, g]: t moves to group g
        gain[rows, own] = -np.inf
        emptied = sizes[own] == 1
        change = np.broadcast_to(-emptied[:, None].astype(int), gain.shape)
        if k < budget:  # a new group of t alone
            gain = np.column_stack([gain, np.where(emptied, -np.inf, left)])
            change = np.column_stack([change, np.ones(n, int)])
        if gain.max() > TOL:
            t, g = np.unravel_index(np.argmax(gain), gain.shape)
        elif (fewer := (gain > -TOL) & (change < 0)).any():
            t, g = np.unravel_index(np.argmax(np.where(fewer, gain, -np.inf)), gain.shape)
        else:
            return [list(np.flatnonzero(label == g)) for g in range(k)]
        label[t] = g


def restarts(z: np.ndarray, budget: int, count: int = RESTARTS) -> list[list[int]]:
    """The best local optimum from the greedy partition and from `count` seeded random ones."""
    rng, n = np.random.default_rng(0), len(z)
    best = improve(z, budget, greedy(z, budget))
    for _ in range(count):
        label = rng.integers(0, min(budget, n), n)
        found = improve(z, budget, [list(np.flatnonzero(label == g)) for g in np.unique(label)])
        if _better(total(z, found), len(found), total(z, best), len(best)):
            best = found
    return best


def branch_and_bound(z: np.ndarray, budget: int, start: list[list[int]],
                     max_nodes: int = MAX_NODES) -> tuple[list[list[int]], bool]:
    """The best partition into at most `budget` groups, and whether that is proven.

    Tasks are assigned one at a time (each to an existing group, or to one new group while
    under budget: groups are unlabelled, so one new-group branch suffices). The bound on a
    branch: a task's final score is the mean of Z_{a->b} over its final group-mates, which is at
    most the larger of its current mean and the largest Z_{a->b} from a task not yet assigned
    (a mean of a union lies between the parts' means); an unassigned task scores at most
    max(0, max_a Z_{a->b}). A branch whose bound does not beat the best total by more than TOL is
    cut, so a proven result can tie with a partition of fewer groups only where `start` had it.
    """
    n = len(z)
    # Tasks with the strongest affinities first: the bound tightens sooner.
    order = list(np.argsort(-(np.abs(z).sum(0) + np.abs(z).sum(1)), kind="stable"))
    unassigned_max = np.full((n + 1, n), -np.inf)  # [k, b]: max over a in order[k:] of z[a, b]
    for k in range(n - 1, -1, -1):
        unassigned_max[k] = np.maximum(unassigned_max[k + 1], z[order[k]])
    alone_bound = np.maximum(z.max(axis=0), 0.0)  # the diagonal is 0, so this is max(0, max_a)
    rest_bound = np.concatenate([np.cumsum(alone_bound[order][::-1])[::-1], [0.0]])
    inside = np.zeros(n)  # sum of Z_{a->b} over b's current group-mates a
    mates = np.zeros(n)
    assigned = np.zeros(n, bool)
    groups: list[list[int]] = []
    best, best_total = [list(g) for g in start], total(z, start)
    nodes = 0

    def bound(k: int) -> float:
        ceiling = unassigned_max[k]
        mean = np.divide(inside, mates, out=np.zeros(n), where=mates > 0)
        onto = np.where(mates > 0, np.maximum(mean, ceiling), np.maximum(ceiling, 0.0))
        return float(onto[assigned].sum() + rest_bound[k])

    def visit(k: int) -> None:
        nonlocal nodes, best, best_total
        nodes += 1
        if k == n:
            value = bound(n)  # every task assigned: the bound is the exact total
            if value > best_total + TOL:
                best, best_total = [list(g) for g in groups], value
            return
        if nodes >= max_nodes or bound(k) <= best_total + TOL:
            return
        b = order[k]
        options = [(score(z, g + [b]) - score(z, g), i) for i, g in enumerate(groups)]
        if len(groups) < budget:
            options.append((0.0, len(groups)))
        for _, i in sorted(options, reverse=True):
            if i == len(groups):
                groups.append([])
            members = groups[i]
            inside[members] += z[b, members]
            mates[members] += 1
            inside[b], mates[b] = z[members, b].sum(), len(members)
            members.append(b)
            assigned[b] = True
            visit(k + 1)
            assigned[b] = False
            members.pop()
            inside[members] -= z[b, members]
            mates[members] -= 1
            inside[b] = mates[b] = 0
            if not members:
                groups.pop()
            if nodes >= max_nodes:
                return

    visit(0)
    return best, nodes < max_nodes


def best_grouping(affinity: pd.DataFrame, budget: int, max_nodes: int = MAX_NODES) -> Grouping:
    """TAG's grouping for at most `budget` groups (see the module docstring for the search).

    `affinity` is square, rows the source task a and columns the target b (Z_{a->b}); the
    diagonal is ignored. Groups and members follow the row order.
    """
    tasks = list(affinity.index)
    if budget < 1:
        raise ValueError(f"budget={budget!r}: at least 1")
    if sorted(map(str, affinity.columns)) != sorted(map(str, tasks)):
        raise ValueError("affinity must be square with the same tasks as rows and columns")
    z = onto_matrix(affinity[tasks])
    if len(tasks) <= EXHAUSTIVE_TASKS:
        found, optimal = exhaustive(z, budget), True
    else:
        found, optimal = branch_and_bound(z, budget, restarts(z, budget), max_nodes)
    groups = sorted(sorted(g) for g in found)
    return Grouping([[tasks[i] for i in g] for g in groups], total(z, groups), optimal)


def suggest_groups(affinity: pd.DataFrame, budget: int) -> list[list[str]]:
    """The groups of `best_grouping`."""
    return best_grouping(affinity, budget).groups
