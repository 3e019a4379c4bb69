"""The newer methods against their reference updates, written out here in plain numpy (float64)
from the papers and the authors' code, on random inputs over a few steps."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.data.base import regression
from harness.methods import METHODS, aggregate
from harness.methods.rlw import sample_weights
from harness.schema import dynamic_values


def run(name: str, grads: np.ndarray, losses: np.ndarray, **overrides):
    """The method's outputs over the steps of grads (S, T, P) and losses (S, T)."""
    num_tasks = grads.shape[1]
    entry = METHODS.get(name)
    cfg = entry.schema(**overrides)
    method = entry.build(cfg, tuple(regression(f"t{t}") for t in range(num_tasks)))
    hp = {k: jnp.asarray(v) for k, v in dynamic_values(cfg).items()}
    update = jax.jit(method.update)
    state, outs = method.init(num_tasks, grads.shape[2]), []
    for s, (g, loss) in enumerate(zip(grads, losses)):
        out = update(jnp.asarray(loss, jnp.float32), jnp.asarray(g, jnp.float32), state, jax.random.key(s), hp)
        state = out.state
        outs.append(out)
    return outs


def random_steps(seed: int, steps: int = 4, num_tasks: int = 3, num_params: int = 6):
    rng = np.random.default_rng(seed)
    grads = rng.normal(size=(steps, num_tasks, num_params)) * rng.uniform(0.2, 3.0, size=(1, num_tasks, 1))
    return grads, rng.uniform(0.3, 2.0, size=(steps, num_tasks))


def proj_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the simplex, as the SDMGrad reference writes it."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(v) + 1) > (css - 1))[0][-1]
    return np.maximum(v - (css[rho] - 1) / (rho + 1.0), 0.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_excessmtl_follows_the_reference_update(seed):
    grads, losses = random_steps(seed, steps=5)
    step_size = 0.5
    outs = run("excessmtl", grads, losses, step_size=step_size)
    weights, squares, first = np.ones(3), np.zeros_like(grads[0]), None
    for g, out in zip(grads, outs):
        squares += g**2
        w = np.sum(g * g / np.sqrt(squares + 1e-7), axis=1)
        if first is None:
            first = w
        else:
            weights = weights * np.exp(step_size * w / first)
            weights = weights / weights.sum() * 3
        np.testing.assert_allclose(out.weights, weights, rtol=1e-5)
    assert not np.allclose(weights, 1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_moco_follows_the_papers_update(seed):
    grads, losses = random_steps(seed)
    beta, beta_sigma, gamma, gamma_sigma, rho = 0.5, 0.5, 0.3, 0.5, 0.05
    outs = run("moco", grads, losses, beta=beta, beta_sigma=beta_sigma, gamma=gamma, gamma_sigma=gamma_sigma, rho=rho)
    y, lam = np.zeros_like(grads[0]), np.full(3, 1 / 3)
    for k, (g, loss, out) in enumerate(zip(grads, losses, outs), start=1):
        scaled = g / (np.linalg.norm(g, axis=1, keepdims=True) + 1e-8) * loss[:, None]
        y = y - beta / k**beta_sigma * (y - scaled)
        lam = proj_simplex(lam - gamma / k**gamma_sigma * (y @ y.T + rho * np.eye(3)) @ lam)
        np.testing.assert_allclose(out.diagnostics["lambda"], lam, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out.direction, lam @ y, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.weights, 1.0)


@pytest.mark.parametrize("seed, inner_lr", [(0, 0.2), (1, 0.2), (2, 5.0)])
def test_sdmgrad_follows_the_reference_update(seed, inner_lr):
    """The reference's inner loop (SGD with momentum 0.5, projected; step 5 there) with the
    previous step's gradients as the second sample of the Gram estimate (the current ones on the
    first step). At step 5 the iterates bounce between vertices and float32 rounding can send
    them elsewhere, so that step size is compared on the first update only."""
    grads, losses = random_steps(seed, steps=4 if inner_lr < 1 else 1)
    lamda, iters = 0.3, 20
    outs = run("sdmgrad", grads, losses, lamda=lamda, iters=iters, inner_lr=inner_lr)
    w, previous = np.full(3, 1 / 3), grads[0]
    for g, out in zip(grads, outs):
        gg = previous @ g.T
        gg = gg / (np.mean(np.sqrt(np.maximum(np.diag(gg), 0))) ** 2 + 1e-8)
        gg_mean = gg.mean(axis=1)
        buf = None
        for _ in range(iters):
            grad = gg @ w + lamda * gg_mean
            buf = grad if buf is None else 0.5 * buf + grad
            w = proj_simplex(w - inner_lr * buf)
        np.testing.assert_allclose(out.diagnostics["w"], w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.direction, (w @ g + lamda * g.mean(axis=0)) / (1 + lamda), rtol=1e-3, atol=1e-4)
        previous = g


def test_sdmgrad_weights_stay_on_the_simplex_when_the_gram_estimate_is_near_singular():
    """Gradients that flip sign between steps (as Adam's oscillations make) give a two-sample
    Gram estimate with a negative diagonal, so the reference's scale is its 1e-8 guard and the
    inner steps land ~1e8 outside the simplex. The reference projects in float64; our float32
    projection returned inf there, and the run stopped on NaN (every digits run of the
    weighting study). Now both land on the same vertex."""
    g = np.random.default_rng(4).normal(size=(2, 6))
    grads, losses = np.stack([g, -g]), np.ones((2, 2))
    outs = run("sdmgrad", grads, losses, lamda=0.3, iters=20, inner_lr=5.0)
    w = np.full(2, 0.5)
    for step, (gs, out) in enumerate(zip(grads, outs)):
        gg = (grads[step - 1] if step else gs) @ gs.T
        gg = gg / (np.mean(np.sqrt(np.maximum(np.diag(gg), 0))) ** 2 + 1e-8)
        buf = None
        for _ in range(20):
            grad = gg @ w + 0.3 * gg.mean(axis=1)
            buf = grad if buf is None else 0.5 * buf + grad
            w = proj_simplex(w - 5.0 * buf)
        np.testing.assert_allclose(out.diagnostics["w"], w, atol=1e-6)
        assert np.all(np.isfinite(out.direction))
    assert np.max(np.abs(np.diag(grads[0] @ grads[1].T))) > 1  # the diagonal was negative, not tiny


@pytest.mark.parametrize("seed", [0, 1])
def test_modo_follows_the_reference_update(seed):
    grads, losses = random_steps(seed)
    gamma, rho = 0.05, 0.1
    outs = run("modo", grads, losses, gamma=gamma, rho=rho)
    lam, previous = np.full(3, 1 / 3), grads[0]
    for g, out in zip(grads, outs):
        lam = proj_simplex(lam - gamma * (previous @ (g.T @ lam) + rho * lam))
        np.testing.assert_allclose(out.diagnostics["lambda"], lam, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out.direction, lam @ g, rtol=1e-4, atol=1e-5)
        previous = g


@pytest.mark.parametrize("distribution", ["normal", "dirichlet", "uniform", "bernoulli"])
def test_rgw_weights_the_shared_gradients_with_rlws_random_weights(distribution):
    grads, losses = random_steps(3, steps=2)
    outs = run("rgw", grads, losses, distribution=distribution)
    for s, (g, out) in enumerate(zip(grads, outs)):
        lam = 3 * np.asarray(jax.jit(sample_weights, static_argnums=(1, 2))(jax.random.key(s), 3, distribution), float)
        np.testing.assert_allclose(out.diagnostics["lambda"], lam, rtol=1e-5)
        np.testing.assert_allclose(lam.sum(), 3.0, rtol=1e-5)
        np.testing.assert_allclose(out.direction, lam @ g, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.weights, 1.0)  # heads keep their plain gradients
    if distribution != "bernoulli":  # two draws of one task out of three may coincide
        assert not np.allclose(outs[0].diagnostics["lambda"], outs[1].diagnostics["lambda"])


def test_cr_mogm_is_a_moving_average_of_the_wrapped_weights():
    """Wrapping mgda: the weights are the moving average of MGDA's min-norm weights; wrapping
    pcgrad (which returns a direction): on the first step the weights reproduce its direction."""
    grads, losses = random_steps(4, steps=4, num_params=5)
    alpha = 0.3
    outs = run("cr_mogm", grads, losses, alpha=alpha)
    lam = None
    for out, mgda in zip(outs, run("mgda", grads, losses)):  # mgda has no state: fresh each step
        fresh = np.asarray(mgda.weights, float)
        lam = fresh if lam is None else alpha * fresh + (1 - alpha) * lam
        np.testing.assert_allclose(out.weights, lam, rtol=1e-4, atol=1e-6)
    first = run("cr_mogm", grads[:1], losses[:1], wrapped="upgrad")[0]
    np.testing.assert_allclose(first.weights @ grads[0], aggregate("upgrad", grads[0]), rtol=1e-3, atol=1e-4)


def test_geometric_mean_weights_are_the_gradient_of_the_weighted_geometric_mean():
    losses = np.asarray([0.5, 2.0, 0.1])
    for prefs in [None, [1.0, 2.0, 1.0], [0.0, 1.0, 3.0]]:
        p = np.ones(3) / 3 if prefs is None else np.asarray(prefs) / np.sum(prefs)
        expected = 3 * p * np.prod(losses**p) / losses  # d/dL_t of 3 prod_i L_i^p_i
        out = run("geometric_mean", np.zeros((1, 3, 2)), losses[None], preferences=prefs)[0]
        np.testing.assert_allclose(out.weights, expected, rtol=1e-5)
    gls = run("gls", np.zeros((1, 3, 2)), losses[None])[0].weights
    np.testing.assert_allclose(run("geometric_mean", np.zeros((1, 3, 2)), losses[None])[0].weights, 3 * gls, rtol=1e-5)
