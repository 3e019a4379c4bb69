"""Fixed-iteration solvers shared by the gradient-aggregation methods.

They run inside `jit`, `vmap` and `lax.scan`: iteration counts are static, there is no early exit
(a converged iterate simply stays put), and every division is guarded so that a task with a zero
gradient gives finite results. All of them work on the T x T Gram matrix M = G G^T, never on the
(T, P) gradients, so their cost does not grow with the model.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

EPS = 1e-12


def gram(grads: jax.Array) -> jax.Array:
    """M = G G^T for gradients G of shape (T, P)."""
    return grads @ grads.T


def normalised(m: jax.Array) -> jax.Array:
    """M divided by its mean diagonal: the solvers below are invariant to this scale, and it
    makes their small guards (EPS) mean the same thing for tiny and huge gradients."""
    return m / (jnp.mean(jnp.diag(m)) + EPS)


def project_simplex(v: jax.Array) -> jax.Array:
    """Euclidean projection onto the probability simplex (sort-based; Duchi et al. 2008)."""
    u = jnp.sort(v)[::-1]
    css = jnp.cumsum(u) - 1.0
    k = jnp.arange(1, v.shape[-1] + 1, dtype=v.dtype)
    count = jnp.sum(u - css / k > 0)
    tau = css[count - 1] / count.astype(v.dtype)
    return jnp.maximum(v - tau, 0.0)


def segment_min_norm(v11: jax.Array, v12: jax.Array, v22: jax.Array) -> jax.Array:
    """gamma in [0, 1] minimising ||gamma x1 + (1 - gamma) x2||^2, given x1.x1, x1.x2, x2.x2."""
    den = v11 + v22 - 2.0 * v12
    return jnp.clip((v22 - v12) / jnp.maximum(den, EPS), 0.0, 1.0)


def min_norm_simplex(m: jax.Array, iters: int) -> jax.Array:
    """alpha = argmin over the simplex of alpha^T M alpha (Sener & Koltun 2018).

    Two tasks: the closed form. More: start from the best pair, then Frank-Wolfe steps towards
    the vertex t* = argmin_t (M alpha)_t with exact line search, `iters` times.
    """
    num_tasks = m.shape[0]
    if num_tasks == 1:
        return jnp.ones((1,), m.dtype)
    m = normalised(m)
    d = jnp.diag(m)
    gamma = segment_min_norm(d[:, None], m, d[None, :])  # weight of i in the pair (i, j)
    cost = gamma**2 * d[:, None] + 2 * gamma * (1 - gamma) * m + (1 - gamma) ** 2 * d[None, :]
    cost = jnp.where(jnp.eye(num_tasks, dtype=bool), jnp.inf, cost)
    i, j = jnp.divmod(jnp.argmin(cost), num_tasks)
    eye = jnp.eye(num_tasks, dtype=m.dtype)
    alpha = gamma[i, j] * eye[i] + (1 - gamma[i, j]) * eye[j]
    if num_tasks == 2:
        return alpha

    def step(_, alpha):
        m_alpha = m @ alpha
        t = jnp.argmin(m_alpha)
        g = segment_min_norm(alpha @ m_alpha, m_alpha[t], m[t, t])
        return g * alpha + (1 - g) * eye[t]

    return jax.lax.fori_loop(0, iters, step, alpha)


def minimize_on_simplex(f: Callable[[jax.Array], jax.Array], w0: jax.Array, iters: int,
                        num_steps: int = 24) -> jax.Array:
    """Projected gradient descent of a convex f over the simplex.

    Each iteration tries the step sizes 1, 1/2, ..., 2^-(num_steps-1) at once and keeps the best
    point (or stays put): a backtracking line search without data-dependent loop lengths, which
    also copes with the kink of a norm term. Expects f scaled so that its gradient is O(1).
    """
    steps = 2.0 ** -jnp.arange(num_steps, dtype=w0.dtype)

    def body(_, w):
        g = jax.grad(f)(w)
        candidates = jax.vmap(lambda s: project_simplex(w - s * g))(steps)
        candidates = jnp.concatenate([w[None], candidates])
        return candidates[jnp.argmin(jax.vmap(f)(candidates))]

    return jax.lax.fori_loop(0, iters, body, w0)


def lower_bounded_qp(m: jax.Array, lower: jax.Array, sweeps: int) -> jax.Array:
    """For each row u of `lower` (K, T): v = argmin_{v >= u} v^T M v, by cyclic coordinate
    descent (each coordinate minimised exactly, then clipped to its bound) for `sweeps` sweeps.

    The KKT conditions of the solution are (M v)_t >= 0 with equality where v_t > u_t; the
    Jacobian-descent paper (Quinton & Rey 2024, Prop. 1) uses them to project onto a dual cone.
    """
    diag = jnp.maximum(jnp.diag(m), EPS)

    def coordinate(t, v):
        vt = jnp.maximum(lower[:, t], v[:, t] - (v @ m[:, t]) / diag[t])
        return v.at[:, t].set(vt)

    def sweep(_, v):
        return jax.lax.fori_loop(0, m.shape[0], coordinate, v)

    return jax.lax.fori_loop(0, sweeps, sweep, lower)
