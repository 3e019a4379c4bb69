"""`train.select`: which evaluation of a run's curves its reported metrics come from."""
from __future__ import annotations

import numpy as np
import pytest

from harness.run.write import select_evaluation

# Five evaluations (rows) of two tasks (columns): t0 higher is better and peaks at evaluation 1,
# t1 lower is better and is lowest at evaluation 3.
VAL = np.array([[0.5, 9.0], [0.9, 8.0], [0.7, 7.0], [0.6, 2.0], [0.4, 3.0]])
TEST = VAL * 10 + 1  # distinct numbers, so a wrong row or column shows
LOWER = [False, True]


def test_best_reads_each_tasks_best_validation_evaluation():
    val, test, pick = select_evaluation(VAL, TEST, LOWER, "best")
    assert pick.tolist() == [1, 3]
    np.testing.assert_array_equal(val, [0.9, 2.0])
    np.testing.assert_array_equal(test, [10.0, 21.0])


def test_final_reads_the_last_evaluation():
    val, test, pick = select_evaluation(VAL, TEST, LOWER, "final")
    assert pick.tolist() == [4, 4]
    np.testing.assert_array_equal(test, TEST[-1])


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_last_k_is_the_mean_of_the_last_k_evaluations(k):
    val, test, pick = select_evaluation(VAL, TEST, LOWER, "last_k", k)
    np.testing.assert_allclose(val, VAL[-k:].mean(axis=0))
    np.testing.assert_allclose(test, TEST[-k:].mean(axis=0))
    assert pick.tolist() == [4, 4]


def test_the_test_curve_never_chooses():
    shuffled = TEST[::-1].copy()
    for select in ("best", "final", "last_k"):
        assert select_evaluation(VAL, TEST, LOWER, select, 2)[2].tolist() == \
            select_evaluation(VAL, shuffled, LOWER, select, 2)[2].tolist()
