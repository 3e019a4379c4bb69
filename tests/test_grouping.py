"""TAG task groupings (harness.grouping): the score, the exhaustive search, and the search that
scales past EXHAUSTIVE_TASKS (local search + branch-and-bound)."""
from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
import pytest

from harness import grouping
from harness.grouping import best_grouping, group_affinity, suggest_groups


def affinity(tasks, pairs):
    """Affinity matrix with Z[a, b] = pairs.get((a, b), -1); rows a (source), columns b."""
    return pd.DataFrame([[pairs.get((a, b), -1.0) for b in tasks] for a in tasks],
                        index=tasks, columns=tasks)


def brute_force(matrix, budget):
    """Best total affinity over every labelling of the tasks with at most `budget` groups."""
    tasks = list(matrix.index)
    best = -np.inf
    for labels in itertools.product(range(budget), repeat=len(tasks)):
        groups = [[t for t, g in zip(tasks, labels) if g == k] for k in range(budget)]
        best = max(best, sum(group_affinity(matrix, g) for g in groups if g))
    return best


def test_suggest_groups_finds_two_obvious_clusters_and_respects_the_budget():
    tasks = ["a", "b", "c", "d", "e"]
    close = {(x, y): 1.0 for grp in ("ace", "bd") for x in grp for y in grp if x != y}
    m = affinity(tasks, close)
    assert suggest_groups(m, 2) == [["a", "c", "e"], ["b", "d"]]
    assert suggest_groups(m, 5) == [["a", "c", "e"], ["b", "d"]]  # splitting further loses
    assert suggest_groups(m, 1) == [tasks]
    assert group_affinity(m, ["a", "c", "e"]) == pytest.approx(3.0)  # 3 tasks x mean 1.0
    assert group_affinity(m, ["b"]) == 0.0
    assert group_affinity(m, ["a", "b"]) == pytest.approx(-2.0)


def test_suggest_groups_is_optimal_on_random_matrices():
    rng = np.random.default_rng(0)
    tasks = list("pqrst")
    for _ in range(5):
        m = pd.DataFrame(rng.normal(size=(5, 5)), index=tasks, columns=tasks)
        for budget in (1, 2, 3):
            groups = suggest_groups(m, budget)
            assert len(groups) <= budget and sorted(sum(groups, [])) == tasks
            assert sum(group_affinity(m, g) for g in groups) == pytest.approx(
                brute_force(m, budget))


def test_suggest_groups_ties_direction_and_validation():
    tasks = ["x", "y", "z"]
    assert suggest_groups(affinity(tasks, {}).mul(0), 3) == [tasks]  # no signal: one network
    # Z[x -> y] large, Z[y -> x] very negative: the direction matters, the sum decides.
    m = affinity(tasks, {("x", "y"): 3.0, ("y", "x"): -4.0, ("y", "z"): 1.0, ("z", "y"): 1.0})
    assert suggest_groups(m, 3) == [["x"], ["y", "z"]]
    m.iloc[0, 0] = 100.0  # the diagonal is ignored
    assert suggest_groups(m, 3) == [["x"], ["y", "z"]]
    with pytest.raises(ValueError, match="budget=0"):
        suggest_groups(m, 0)
    with pytest.raises(ValueError, match="square"):
        suggest_groups(m.drop(columns="z"), 2)


def test_suggest_groups_beyond_exhaustive_search_still_finds_clusters():
    tasks = [f"t{i}" for i in range(10)]
    clusters = (tasks[:4], tasks[4:7], tasks[7:])
    m = affinity(tasks, {(x, y): 1.0 for grp in clusters for x in grp for y in grp if x != y})
    assert suggest_groups(m, 3) == [list(c) for c in clusters]
    assert len(suggest_groups(m, 2)) == 2


def random_affinity(n: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).normal(size=(n, n))
    np.fill_diagonal(z, 0.0)
    return z


@pytest.mark.parametrize("n", [3, 5, 7])
def test_branch_and_bound_finds_the_exhaustive_optimum_from_any_start(n):
    """Run to the end, the branch-and-bound is exact: from the worst start (one group) and from
    the local search's, it reaches the exhaustive optimum on random matrices, for every budget."""
    for seed in range(4):
        z = random_affinity(n, seed)
        for budget in range(1, n + 1):
            optimum = grouping.total(z, grouping.exhaustive(z, budget))
            for start in ([list(range(n))], grouping.restarts(z, budget)):
                found, proven = grouping.branch_and_bound(z, budget, start, max_nodes=10**6)
                assert proven and len(found) <= budget and sorted(sum(found, [])) == list(range(n))
                assert grouping.total(z, found) == pytest.approx(optimum, abs=1e-9)


def test_local_search_ends_where_no_single_move_improves():
    z = random_affinity(11, 0)
    for budget in (2, 4, 11):
        groups = grouping.improve(z, budget, grouping.greedy(z, budget))
        base = grouping.total(z, groups)
        assert len(groups) <= budget
        for src, task in ((s, t) for s, g in enumerate(groups) for t in g):
            for dst in range(len(groups) + 1):
                if dst == src or (dst == len(groups) and len(groups) == budget):
                    continue
                moved = [[t for t in g if t != task] + ([task] if d == dst else []) for d, g in enumerate(groups)]
                moved = [g for g in moved if g] + ([[task]] if dst == len(groups) else [])
                assert grouping.total(z, moved) <= base + grouping.TOL


@pytest.mark.parametrize("n", [14, 40])
def test_many_tasks_are_grouped_fast_and_planted_clusters_are_found(n):
    rng = np.random.default_rng(n)
    planted = rng.permutation(n) % 4  # four clusters of tasks that help each other
    z = 0.3 * rng.normal(size=(n, n)) + np.where(planted[:, None] == planted[None, :], 1.0, -1.0)
    tasks = [f"t{i}" for i in range(n)]
    m = pd.DataFrame(z, index=tasks, columns=tasks)
    for budget in (2, 4, n):
        start = time.perf_counter()
        found = best_grouping(m, budget)
        assert time.perf_counter() - start < 10.0  # about a second on one shared CPU core
        assert len(found.groups) <= budget and sorted(sum(found.groups, [])) == sorted(tasks)
        greedy = grouping.greedy(grouping.onto_matrix(m), budget)
        assert found.total >= grouping.total(grouping.onto_matrix(m), greedy) - 1e-9
        assert found.total == pytest.approx(sum(group_affinity(m, g) for g in found.groups))
        if budget == 4:  # with more groups, splitting a cluster costs nothing: its members keep mean 1
            clusters = sorted(sorted(np.flatnonzero(planted == c)) for c in range(4))
            assert found.groups == [[tasks[i] for i in c] for c in clusters]


def test_the_report_lists_budgets_up_to_six_then_no_limit():
    from harness.report.affinity import budgets

    assert budgets(3) == [2, 3] and budgets(6) == [2, 3, 4, 5, 6]
    assert budgets(14) == [2, 3, 4, 5, 6, 14]
