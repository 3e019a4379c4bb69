"""ROC AUC of a two-class task from additive counts, so a split evaluated chunk by chunk
(harness.train.evaluation) gives the same value as one evaluated at once.

AUC = P(s_pos > s_neg) + 0.5 P(s_pos = s_neg) over pairs of a positive and a negative row, s the
predicted probability of class 1 (Hanley and McNeil 1982: the Mann-Whitney statistic;
scikit-learn's `roc_auc_score` computes it from the sorted scores). A sort does not add up over
chunks; a histogram does. Each labelled row adds 1 to the bin of its score, one histogram for
the positives and one for the negatives, over BINS equal-width bins of [0, 1]; the AUC counts a
pair in different bins by the order of its bins and a pair in one bin as a tie (0.5).

Binning error: only pairs that share a bin can be counted wrong, each by at most 0.5, so

    |AUC_binned - AUC| <= 0.5 * sum_b (P_b / P) (N_b / N) <= 0.5 * max_b N_b / N,

P_b and N_b the positives and negatives in bin b (P, N in all). Scores spread over [0, 1] put
about 1 / BINS of each class in a bin, an error of about 0.5 / BINS (1.2e-4 at 4,096 bins); the
bound grows where both classes crowd into one bin (a rare label whose every score is below
1 / BINS), and `auc_bound` computes it from the counts. Exact ties in the scores (sklearn
counts them 0.5 too) fall in one bin and are counted exactly.

A split whose labelled rows are all of one class has no pair to order: its AUC is 0.5, the value
of an uninformative score, not NaN. The class mix is the data's, the same for a multi-task run
and its baselines, so both read 0.5, r is 0 on that metric, and delta_m stays defined
(harness.analysis averages without skipping NaN, so a NaN would blank the configuration's
delta_m).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

BINS = 4096


def histogram(logits: jax.Array, y: jax.Array, mask: jax.Array, bins: int = BINS) -> jax.Array:
    """(2, bins) int32 counts of the class-1 probability of `logits` (N, 2), row 0 over the rows of
    `mask` labelled 0 (negatives), row 1 over those labelled 1 (positives)."""
    score = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[..., 1]
    b = jnp.clip(jnp.floor(score * bins).astype(jnp.int32), 0, bins - 1)  # score 1.0 in the last bin
    cls = jnp.where(y == 1, 1, 0)
    return jnp.zeros((2, bins), jnp.int32).at[cls, b].add(mask.astype(jnp.int32))


def auc(counts: jax.Array) -> jax.Array:
    """P(s_pos > s_neg) + 0.5 P(same bin) from the (2, bins) counts of `histogram`; 0.5 when one
    class has no row."""
    neg, pos = counts[0].astype(jnp.float32), counts[1].astype(jnp.float32)
    below = jnp.cumsum(neg) - neg  # negatives in lower bins than each bin
    pairs = jnp.sum(neg) * jnp.sum(pos)
    won = jnp.sum(pos * (below + 0.5 * neg))
    return jnp.where(pairs > 0, won / jnp.maximum(pairs, 1.0), 0.5)


def auc_bound(counts: jax.Array) -> jax.Array:
    """The largest |binned - exact| AUC the counts allow: 0.5 * sum_b (P_b / P) (N_b / N)."""
    neg, pos = counts[0].astype(jnp.float32), counts[1].astype(jnp.float32)
    pairs = jnp.sum(neg) * jnp.sum(pos)
    return jnp.where(pairs > 0, 0.5 * jnp.sum(neg * pos) / jnp.maximum(pairs, 1.0), 0.0)
