"""Synthetic regression tasks whose relatedness is one number.

Ma et al. 2018, "Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts" (KDD), section 3.2: orthonormal u1, u2; w1 = c u1,
w2 = c (p u1 + sqrt(1 - p^2) u2), so cos(w1, w2) = p; x ~ N(0, I);
y_k = w_k . x + sum_{i=1..m} sin(a_i w_k . x + b_i) + eps.
The paper gives no constants; we use a_i = i, b_i = i^2 (a common public choice).

For more than two tasks we use an equicorrelated extension, w_k = c (sqrt(p) u0 + sqrt(1-p) u_k),
so every pair of weight vectors has cosine p (which needs p in [0, 1]).

The correlation and the noise enter `generate` as arrays, so a sweep over them is one batched
program; x depends only on the key, so runs that differ in p see the same inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from harness.data.base import DATASETS, Dataset, DataSource, Split, regression
from harness.errors import bad
from harness.schema import Entry, dynamic


@dataclass
class RelatednessConfig:
    name: str = "relatedness"
    num_tasks: int = 2
    # p, the cosine between task weight vectors: [-1, 1] for two tasks, [0, 1] for more.
    correlation: float = dynamic(0.5)
    input_dim: int = 100
    sine_terms: int = 10  # m
    scale: float = 1.0  # c, the norm of every w_k
    noise: float = dynamic(0.01)  # std of eps
    n_train: int = 2000
    n_val: int = 1000
    n_test: int = 2000
    # Folded into the key that `generate` receives, so the dataset can change without the run seed.
    seed: int = 0
    tasks: Optional[list[str]] = None
    # Imbalanced tasks: task -> number of train rows it may use (its first n rows); each task then
    # draws its own batches. Empty: every task uses every train row.
    train_rows: dict[str, int] = field(default_factory=dict)


def task_weights(key: jax.Array, num_tasks: int, input_dim: int, correlation: jax.Array,
                 scale: float) -> jax.Array:
    """(T, D) task weight vectors of norm `scale` whose pairwise cosine is `correlation`."""
    # Two tasks follow the paper exactly; more tasks need one extra, common direction u0.
    extra = 0 if num_tasks == 2 else 1
    u = jnp.linalg.qr(jax.random.normal(key, (input_dim, num_tasks + extra)))[0].T
    p = jnp.asarray(correlation, jnp.float32)
    if num_tasks == 2:
        w = jnp.stack([u[0], p * u[0] + jnp.sqrt(1.0 - p**2) * u[1]])
    else:
        w = jnp.sqrt(p) * u[0] + jnp.sqrt(1.0 - p) * u[1:]
    return scale * w


def labels(x: jax.Array, w: jax.Array, sine_terms: int) -> jax.Array:
    """(N, T) noiseless labels w_k . x + sum_i sin(i w_k . x + i^2)."""
    z = x @ w.T
    i = jnp.arange(1, sine_terms + 1, dtype=jnp.float32)
    return z + jnp.sin(z[..., None] * i + i**2).sum(-1)


def describe(dataset: Dataset) -> dict[str, Any]:
    """Realised Pearson correlation of the task labels on the train split."""
    y = np.stack([np.asarray(v, np.float64)[:, 0] for v in dataset.train.y.values()])
    if len(y) < 2:
        return {}
    corr = np.corrcoef(y)
    if len(y) == 2:
        return {"label_correlation": float(corr[0, 1])}
    off_diagonal = corr[~np.eye(len(y), dtype=bool)]
    return {"label_correlation": float(off_diagonal.mean()),
            "label_correlation_matrix": corr.tolist()}


def check(cfg: RelatednessConfig) -> None:
    if cfg.num_tasks < 2:
        raise bad("data.num_tasks", cfg.num_tasks, "an integer >= 2")
    low = -1.0 if cfg.num_tasks == 2 else 0.0
    if not low <= cfg.correlation <= 1.0:
        why = "" if cfg.num_tasks == 2 else " (more than two tasks share one direction with weight sqrt(p))"
        raise bad("data.correlation", cfg.correlation, f"a number in [{low:g}, 1] for {cfg.num_tasks} tasks{why}")
    needed = cfg.num_tasks + (0 if cfg.num_tasks == 2 else 1)
    if cfg.input_dim < needed:
        raise bad("data.input_dim", cfg.input_dim,
                  f"at least {needed} (one orthogonal direction each) for {cfg.num_tasks} tasks")
    if cfg.sine_terms < 0:
        raise bad("data.sine_terms", cfg.sine_terms, "an integer >= 0")
    if not cfg.scale > 0:
        raise bad("data.scale", cfg.scale, "a number > 0")
    if not cfg.noise >= 0:
        raise bad("data.noise", cfg.noise, "a number >= 0")
    # Two train rows at least, so the label correlation in the run record is defined.
    for key, least in (("n_train", 2), ("n_val", 1), ("n_test", 1)):
        if getattr(cfg, key) < least:
            raise bad(f"data.{key}", getattr(cfg, key), f"an integer >= {least}")
    if cfg.seed < 0:
        raise bad("data.seed", cfg.seed, "an integer >= 0")


def build(cfg: RelatednessConfig) -> DataSource:
    check(cfg)
    sizes = (cfg.n_train, cfg.n_val, cfg.n_test)
    names = tuple(f"t{k + 1}" for k in range(cfg.num_tasks))

    def generate(key: jax.Array, hparams: dict[str, jax.Array]) -> Dataset:
        k_w, k_x, k_eps = jax.random.split(jax.random.fold_in(key, cfg.seed), 3)
        w = task_weights(k_w, cfg.num_tasks, cfg.input_dim, hparams["correlation"], cfg.scale)
        x = jax.random.normal(k_x, (sum(sizes), cfg.input_dim))
        y = labels(x, w, cfg.sine_terms)
        y = y + hparams["noise"] * jax.random.normal(k_eps, y.shape)
        cuts = np.cumsum(sizes)[:-1]
        return Dataset(*(
            Split(xs, {n: ys[:, k:k + 1] for k, n in enumerate(names)})
            for xs, ys in zip(jnp.split(x, cuts), jnp.split(y, cuts))
        ))

    return DataSource(
        tasks=tuple(regression(n) for n in names),
        input_dim=cfg.input_dim,
        generate=generate,
        dynamic={"correlation": float(cfg.correlation), "noise": float(cfg.noise)},
        describe=describe,
    )


DATASETS.register("relatedness", Entry(RelatednessConfig, build))
