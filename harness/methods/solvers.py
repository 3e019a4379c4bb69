"""Iterative solvers shared by the gradient-aggregation methods.

They run inside `jit`, `vmap` and `lax.scan`: each is a `lax.while_loop` that stops once its
optimality residual falls below a tolerance (or its answer is exact) or after a static maximum of
iterations (under `vmap` the batch runs until its slowest member stops), and every
division is guarded so that a task with a zero gradient gives finite results. All of them work
on the T x T Gram matrix M = G G^T, never on the (T, P) gradients, so their cost does not grow
with the model.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

EPS = 1e-12
# Stopping tolerance on the residuals below, which are measured on matrices of unit scale
# (`normalised` or cosine matrices): well under the 1e-3 accuracy the tests ask of the final
# direction and well above float32 rounding.
TOL = 1e-5


def gram(grads: jax.Array) -> jax.Array:
    """M = G G^T for gradients G of shape (T, P)."""
    return grads @ grads.T


def normalised(m: jax.Array) -> jax.Array:
    """M divided by its mean diagonal: the solvers below are invariant to this scale, and it
    makes their small guards (EPS) mean the same thing for tiny and huge gradients."""
    return m / (jnp.mean(jnp.diag(m)) + EPS)


def cosines(m: jax.Array, floor: float = 1e-10) -> tuple[jax.Array, jax.Array]:
    """(C, norms): the cosine matrix C = D^-1/2 M D^-1/2 and the gradient norms sqrt(diag M).

    A task whose norm is below `floor` times the largest (a vanished gradient) gets a zero row
    and column with a one on the diagonal, so it decouples from the others, and a norm of 0.
    Solving on C instead of M makes the solvers blind to gradient scales spread over many
    orders of magnitude, which float32 could not resolve in M itself.
    """
    norms = jnp.sqrt(jnp.maximum(jnp.diag(m), 0.0))
    alive = norms > floor * jnp.max(norms)
    safe = jnp.where(alive, norms, 1.0)
    c = m / safe[:, None] / safe[None, :]
    c = jnp.where(alive[:, None] & alive[None, :], c, 0.0)
    c = jnp.where(jnp.eye(m.shape[0], dtype=bool), jnp.where(alive, jnp.diag(c), 1.0), c)
    return c, jnp.where(alive, norms, 0.0)


def per_gradient(unit_weights: jax.Array, norms: jax.Array) -> jax.Array:
    """Weights of the unit gradients u_t = g_t / ||g_t|| turned into weights of the g_t; a
    vanished gradient (norm 0, see cosines) gets weight 0."""
    return jnp.where(norms > 0, unit_weights / jnp.where(norms > 0, norms, 1.0), 0.0)


def iterate(step: Callable, residual: Callable, x0, max_iters: int, tol: float = TOL):
    """x <- step(x) until residual(x) <= tol or `max_iters` steps: a `lax.while_loop`."""
    def cond(carry):
        i, x = carry
        return (i < max_iters) & (residual(x) > tol)

    return jax.lax.while_loop(cond, lambda carry: (carry[0] + 1, step(carry[1])), (0, x0))[1]


def project_simplex(v: jax.Array) -> jax.Array:
    """Euclidean projection onto the probability simplex (sort-based; Duchi et al. 2008).

    Computed on v - max(v) (the projection does not change when a constant is added to every
    coordinate): the largest coordinate is then 0, so it always counts in the support and the
    others are not lost to rounding. On v itself, float32 returned inf or all zeros once |v|
    passed about 1e7 (a step from far outside the simplex, as SDMGrad's inner steps on a
    near-singular Gram matrix make), and the NaN it led to stopped the training run."""
    v = v - jnp.max(v)
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


def min_norm_simplex(m: jax.Array, max_iters: int) -> jax.Array:
    """alpha = argmin over the simplex of alpha^T M alpha (Sener & Koltun 2018).

    Two tasks: the closed form. More: start from the best pair, as the reference does, then
    pairwise steps: move weight from the task in the support with the largest (M alpha)_t to
    the task with the smallest, with exact line search (the pairwise Frank-Wolfe of
    Lacoste-Julien & Jaggi 2015, SMO in the SVM literature). Unlike the plain Frank-Wolfe steps
    of the reference it can take weight off a vertex, which makes it converge linearly.
    Stops when the duality gap max_{alpha_t > 0} (M alpha)_t - min_t (M alpha)_t <= TOL.
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

    def gap_pair(alpha):
        m_alpha = m @ alpha
        away = jnp.argmax(jnp.where(alpha > 0, m_alpha, -jnp.inf))
        toward = jnp.argmin(m_alpha)
        return m_alpha[away] - m_alpha[toward], away, toward

    def step(alpha):
        gap, away, toward = gap_pair(alpha)
        curvature = m[away, away] + m[toward, toward] - 2 * m[away, toward]
        g = jnp.clip(gap / jnp.maximum(curvature, EPS), 0.0, alpha[away])
        return alpha + g * (eye[toward] - eye[away])

    return iterate(step, lambda a: gap_pair(a)[0], alpha, max_iters)


def minimize_on_simplex(f: Callable[[jax.Array], jax.Array], w0: jax.Array, max_iters: int,
                        num_steps: int = 24) -> jax.Array:
    """Projected gradient descent of a convex f over the simplex.

    Each iteration tries the step sizes 1, 1/2, ..., 2^-(num_steps-1) at once and keeps the best
    point (or stays put): a backtracking line search without data-dependent loop lengths, which
    also copes with the kink of a norm term. Expects f scaled so that its gradient is O(1).
    Stops when an iteration moves no weight by more than TOL (a projected-gradient residual
    would never vanish at the kink).
    """
    steps = 2.0 ** -jnp.arange(num_steps, dtype=w0.dtype)

    def step(carry):
        w, _ = carry
        g = jax.grad(f)(w)
        candidates = jax.vmap(lambda s: project_simplex(w - s * g))(steps)
        candidates = jnp.concatenate([w[None], candidates])
        best = candidates[jnp.argmin(jax.vmap(f)(candidates))]
        return best, jnp.max(jnp.abs(best - w))

    start = (w0, jnp.asarray(jnp.inf, w0.dtype))
    return iterate(step, lambda carry: carry[1], start, max_iters)[0]


def lower_bounded_qp(m: jax.Array, lower: jax.Array, max_steps: int) -> jax.Array:
    """For each row u of `lower` (K, T): v = argmin_{v >= u} v^T M v, M positive definite.

    The active-set method of Lawson & Hanson (1974, NNLS) on z = v - u >= 0: free coordinates
    solve (M v)_t = 0 exactly with the others held at their bound; a free coordinate that would
    cross its bound is stopped there and fixed; then the fixed coordinate with the most negative
    (M v)_t is freed. It ends when no fixed coordinate has (M v)_t < -TOL: then (M v)_t >= 0 and
    v_t >= u_t with equality in one of the two for every t, the KKT conditions the
    Jacobian-descent paper (Quinton & Rey 2024, Prop. 1) uses to project onto a dual cone. Exact
    in a few steps per task (at most `max_steps`), also when M is nearly singular (more tasks
    than parameters), where coordinate descent needs 1e5 sweeps and more.
    """
    num_tasks = m.shape[0]
    eye = jnp.eye(num_tasks, dtype=bool)

    def restricted_solve(free, u):
        """v with v_t = u_t where fixed and (M v)_t = 0 where free."""
        both = free[:, None] & free[None, :]
        k = jnp.where(both, m, 0.0) + jnp.where(eye & ~free[:, None], 1.0, 0.0)
        rhs = jnp.where(free, -(m @ jnp.where(free, 0.0, u)), u)
        exact = jnp.linalg.solve(k, rhs)
        # free columns that rounding made dependent: the least-norm solution instead
        return jnp.where(jnp.all(jnp.isfinite(exact)), exact, jnp.linalg.pinv(k, hermitian=True) @ rhs)

    def one(u):
        def step(carry):
            i, v, free, _ = carry
            s = restricted_solve(free, u)
            feasible = jnp.all(jnp.where(free, s > u, True))
            # infeasible: walk from v towards s until the first free coordinate hits its bound
            ratio = jnp.where(free & (s <= u), (v - u) / jnp.maximum(v - s, EPS), jnp.inf)
            alpha = jnp.clip(jnp.min(ratio), 0.0, 1.0)
            walked = v + alpha * (s - v)
            v_new = jnp.where(feasible, s, walked)
            hit = free & (jnp.arange(num_tasks) == jnp.argmin(ratio))
            free_after = jnp.where(feasible, free, free & ~hit & (walked > u))
            pull = jnp.where(free_after, -jnp.inf, -(m @ v_new))
            j = jnp.argmax(pull)
            grow = feasible & (pull[j] > TOL)
            free_new = jnp.where(grow, free_after | (jnp.arange(num_tasks) == j), free_after)
            return i + 1, v_new, free_new, feasible & ~grow

        def cond(carry):
            i, _, _, done = carry
            return (i < max_steps) & ~done

        start = (0, u, jnp.zeros((num_tasks,), bool), False)
        return jax.lax.while_loop(cond, step, start)[1]

    return jax.vmap(one)(lower)
