"""The reference floor of a task: a linear model fit on the same split as its baseline.

A single-task network that does worse than logistic regression (classification) or ridge
regression (regression) on the same train rows is a weak baseline, and transfer measured
against it says little: sharing can look like help when it only makes up for a poorly trained
tower. The floor is cheap (scikit-learn on the host, once per baseline) and travels in the
baseline's records, so the transfer table can say where the network falls below it.

The regularisation strength is chosen on the validation split from a small grid. Ridge fits are
closed-form and try the whole grid. Logistic fits walk it from the strongest regularisation to
the weakest: each starts from the previous fit's coefficients (warm start), and the walk stops
at the first strength whose validation metric is worse than the best so far. On MultiMNIST's
1,296 pixel features the weakly regularised fits are both the slow ones (cold, one thread:
23, 42, 53 and 92 s for C = 0.01 ... 10) and the overfitting ones, so the stop skips fits that
would not be chosen, and warm starts cut the rest by about 40%. The test metric is reported.
Metrics are the harness's own (`harness.train.losses.metric`): accuracy, or the
mean squared error in the targets' own units. Rows without the task's label are left out of the
fit and of the metrics, as training and evaluation leave them out.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from scipy.linalg import LinAlgWarning
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge

from harness.data.base import Dataset, TaskSpec, task_inputs
from harness.data.labels import present

# Inverse regularisation (logistic C) and ridge alpha, chosen on validation.
LOGISTIC_C = (0.01, 0.1, 1.0, 10.0)
RIDGE_ALPHA = (1e-6, 1e-2, 1.0, 100.0)


def _labelled(spec: TaskSpec, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of (x, y) with a label, x flattened to (n, features)."""
    keep = present(spec.kind, y)
    return x[keep].reshape(int(keep.sum()), -1), y[keep]


def _metric(spec: TaskSpec, prediction: np.ndarray, y: np.ndarray) -> float:
    if spec.kind == "classification":
        return float(np.mean(prediction == y))
    return float(np.mean((prediction.reshape(y.shape) - y) ** 2))


def _candidates(spec: TaskSpec):
    if spec.kind == "classification":
        model = LogisticRegression(max_iter=500, warm_start=True)
        return "logistic", ((c, model.set_params(C=c)) for c in LOGISTIC_C)  # lazily: one model
    # SVD solves the tiny-alpha fits exactly even when there are fewer rows than features, where
    # the default Cholesky solver warns of a singular matrix and falls back to least squares.
    return "ridge", [(a, Ridge(alpha=a, solver="svd")) for a in RIDGE_ALPHA]


def reference_floor(spec: TaskSpec, data: Dataset, rows: int | None = None) -> dict[str, Any]:
    """Fit the task's linear reference on its train rows (the first `rows` when given), pick the
    regularisation with the best validation metric, and return
    {"model", "strength", "val", "test"} (metrics as TaskSpec.metric says)."""
    x, y = (np.asarray(a) for a in (task_inputs(data.train, spec.name), data.train.y[spec.name]))
    if rows is not None:
        x, y = x[:rows], y[:rows]
    x, y = _labelled(spec, x, y)
    y = y if spec.kind == "classification" else y.reshape(len(y), -1)
    name, candidates = _candidates(spec)
    if len(y) == 0 or spec.kind == "classification" and len(np.unique(y)) < 2:
        return {"model": name, "strength": None, "val": None, "test": None}  # nothing to fit
    orient = -1.0 if spec.lower_is_better else 1.0
    evaluated = {split: _labelled(spec, np.asarray(task_inputs(s, spec.name)), np.asarray(s.y[spec.name]))
                 for split, s in (("val", data.val), ("test", data.test))}
    best = None
    for strength, model in candidates:
        # One BLAS thread: beside JAX's own threads a multi-threaded fit of these small problems
        # is over 10x slower, and far more on a loaded machine (0.06 s against 0.9 s unloaded for
        # a 4000 x 100, 10-class logistic fit).
        with warnings.catch_warnings(), threadpool_limits(1):  # an unconverged or ill-conditioned fit is still a candidate
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", LinAlgWarning)
            model.fit(x, y)
        scores = {split: _metric(spec, model.predict(xs), ys)
                  for split, (xs, ys) in evaluated.items()}
        if name == "logistic" and best is not None and orient * scores["val"] < orient * best["val"]:
            break  # weaker regularisation only overfits further from here
        if best is None or orient * scores["val"] > orient * best["val"]:
            best = {"model": name, "strength": strength, **scores}
    return best
