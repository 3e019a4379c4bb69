"""Methods: every registered method through one parametrised suite (shapes, finiteness, vmap,
no recompilation, permutation symmetry, zero gradients, config files), then the property each
method's paper or reference sheet promises."""
from __future__ import annotations

import dataclasses
import functools
import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy.linalg import sqrtm

from harness.data.base import regression
from harness.errors import ConfigError
from harness.methods import METHODS, aggregate
from harness.methods.base import Method, Needs, no_state
from harness.methods.gradvac import vaccinate
from harness.methods.solvers import gram
from harness.schema import dynamic_values

P = 7
CONF = Path(__file__).resolve().parents[1] / "conf" / "method"
# Deterministic and symmetric in the tasks (pcgrad and gradvac draw random visiting orders,
# rlw and rgw random weights, graddrop random masks, static reads per-task weights from the config).
SYMMETRIC = sorted(set(METHODS.names()) - {"pcgrad", "gradvac", "rlw", "rgw", "static", "graddrop"})
# Methods whose state is the empty tuple (imtl too, in mode "g").
STATELESS = ["aligned_mtl", "cagrad", "con_fig", "dualproj", "equal", "geometric_mean", "gls", "graddrop", "mgda",
             "mgda_ub", "pcgrad", "rgw", "rlw", "static", "upgrad"]


def tasks(num_tasks: int):
    return tuple(regression(f"t{t}") for t in range(num_tasks))


def config(name: str, num_tasks: int, **overrides):
    if name == "static":
        overrides.setdefault("weights", [1.0 + 0.5 * t for t in range(num_tasks)])
    if name == "active_weighting":  # in a job its targets default to the baselines' scores
        overrides.setdefault("targets", [0.5 + 0.25 * t for t in range(num_tasks)])
    return METHODS.get(name).schema(**overrides)


def hparams(cfg) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v) for k, v in dynamic_values(cfg).items()}


@functools.lru_cache(maxsize=None)
def compiled(name: str, num_tasks: int) -> tuple[Method, dict, object]:
    """(method, default hparams, jitted update) for T tasks, shared across tests."""
    cfg = config(name, num_tasks)
    method = METHODS.get(name).build(cfg, tasks(num_tasks))
    return method, hparams(cfg), jax.jit(method.update)


def batch_update(name: str, num_tasks: int, **overrides):
    """jit(vmap) of one update from a fresh state over a batch of (losses, grads, key)."""
    cfg = config(name, num_tasks, **overrides)
    method = METHODS.get(name).build(cfg, tasks(num_tasks))
    hp = hparams(cfg)
    return jax.jit(jax.vmap(lambda losses, grads, key: method.update(losses, grads, method.init(num_tasks, P), key, hp)))


def problem(seed: int, num_tasks: int, num_params: int = P):
    rng = np.random.default_rng(seed)
    grads = jnp.asarray(rng.normal(size=(num_tasks, num_params)), jnp.float32)
    losses = jnp.asarray(rng.uniform(0.2, 3.0, size=num_tasks), jnp.float32)
    return losses, grads


def run_steps(name: str, num_tasks: int, losses, grads, steps: int = 3):
    method, hp, update = compiled(name, num_tasks)
    state = method.init(num_tasks, P)
    given = None if method.needs is Needs.LOSSES else grads
    outs = []
    for i in range(steps):
        out = update(losses * (1.0 - 0.1 * i), given, state, jax.random.key(i), hp)
        state = out.state
        outs.append(out)
    return method, outs


def all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def avals(tree):
    return jax.tree.structure(tree), [jax.typeof(x) for x in jax.tree.leaves(tree)]


# ---------------------------------------------------------------- the whole registry

def test_registry_holds_the_catalogue():
    expected = {"equal", "static", "uncertainty", "dwa", "rlw", "gls", "gradnorm", "validation_weighting",
                "famo", "pcgrad", "mgda", "mgda_ub", "cagrad", "imtl", "nash_mtl", "gradvac", "aligned_mtl",
                "upgrad", "db_mtl", "stch", "dualproj", "con_fig", "graddrop", "fairgrad", "excessmtl", "moco",
                "sdmgrad", "modo", "rgw", "cr_mogm", "geometric_mean", "auto_lambda", "great",
                "active_weighting"}
    assert expected <= set(METHODS.names())


@pytest.mark.parametrize("name", METHODS.names())
def test_yaml_type_checks_against_the_schema(name):
    schema = METHODS.get(name).schema
    raw = OmegaConf.load(CONF / f"{name}.yaml")
    assert list(raw.pop("defaults")) == [f"/schema/method/{name}@_here_", "_self_"]
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw))
    assert cfg.name == name
    assert isinstance(METHODS.get(name).build(cfg, tasks(2)), Method)


@pytest.mark.parametrize("num_tasks", [2, 4])
@pytest.mark.parametrize("name", METHODS.names())
def test_outputs_are_finite_with_the_declared_shapes(name, num_tasks):
    losses, grads = problem(num_tasks, num_tasks)
    method, outs = run_steps(name, num_tasks, losses, grads)
    for out in outs:
        assert out.weights.shape == (num_tasks,)
        if method.needs is Needs.SHARED_GRADS and out.direction is not None:
            assert out.direction.shape == (P,)
        else:
            assert out.direction is None  # only SHARED_GRADS methods may return a direction
        assert all_finite((out.weights, out.direction, out.state, out.diagnostics))
        # the trainer records a diagnostic as '<name>' (scalar) or '<name>.<task>' (one per task)
        assert all(jnp.shape(v) in ((), (num_tasks,)) for v in out.diagnostics.values())
        # lax.scan needs a state of fixed structure, shapes and dtypes
        assert avals(out.state) == avals(method.init(num_tasks, P))
    assert set(method.schedules) <= {"joint", "alternate"} and "joint" in method.schedules


@pytest.mark.parametrize("name, overrides", [(name, {}) for name in STATELESS] + [("imtl", {"mode": "g"})])
def test_methods_without_state_carry_an_empty_tuple(name, overrides):
    method = METHODS.get(name).build(config(name, 2, **overrides), tasks(2))
    assert method.init is no_state and method.init(2, P) == ()


@pytest.mark.parametrize("name", METHODS.names())
def test_a_task_with_zero_gradient_gives_finite_output(name):
    losses, grads = problem(1, 2)
    _, outs = run_steps(name, 2, losses, grads.at[1].set(0.0))
    assert all(all_finite((o.weights, o.direction, o.state)) for o in outs)
    _, outs = run_steps(name, 2, losses, jnp.zeros_like(grads))
    assert all(all_finite((o.weights, o.direction, o.state)) for o in outs)


@pytest.mark.parametrize("name", METHODS.names())
def test_vmap_over_keys_and_hparams_matches_unbatched(name):
    num_tasks, n = 2, 3
    method, hp, update = compiled(name, num_tasks)
    scales = jnp.asarray([1.0, 0.8, 1.2])
    hp_batch = {k: v[None] * scales.reshape((n,) + (1,) * v.ndim) for k, v in hp.items()}
    problems = [problem(10 + i, num_tasks) for i in range(n)]
    losses = jnp.stack([p[0] for p in problems])
    grads = None if method.needs is Needs.LOSSES else jnp.stack([p[1] for p in problems])
    keys = jax.random.split(jax.random.key(3), n)
    state = jax.vmap(lambda _: method.init(num_tasks, P))(jnp.arange(n))
    batched = jax.jit(jax.vmap(method.update))(losses, grads, state, keys, hp_batch)
    for i in range(n):
        single = update(losses[i], None if grads is None else grads[i], method.init(num_tasks, P), keys[i],
                        {k: v[i] for k, v in hp_batch.items()})
        picked = jax.tree.map(lambda x: x[i], batched)
        np.testing.assert_allclose(picked.weights, single.weights, rtol=1e-4, atol=1e-6)
        if single.direction is not None:
            np.testing.assert_allclose(picked.direction, single.direction, rtol=1e-4, atol=1e-5)
        if method.on_eval is not None:
            scores = jnp.asarray([[0.9, 0.5], [0.2, 0.7], [0.4, 0.4]])
            states = jax.jit(jax.vmap(method.on_eval))(batched.state, scores, hp_batch)
            alone = method.on_eval(single.state, scores[i], {k: v[i] for k, v in hp_batch.items()})
            for a, b in zip(jax.tree.leaves(jax.tree.map(lambda x: x[i], states)), jax.tree.leaves(alone)):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", METHODS.names())
def test_jitted_update_does_not_recompile_on_new_values(name):
    num_tasks = 2
    method, hp, _ = compiled(name, num_tasks)
    traces = []

    def counted(*args):
        traces.append(1)
        return method.update(*args)

    update = jax.jit(counted)
    losses, grads = problem(20, num_tasks)
    grads = None if method.needs is Needs.LOSSES else grads
    out = update(losses, grads, method.init(num_tasks, P), jax.random.key(0), hp)
    other = {k: v * 0.9 for k, v in hp.items()}
    out = update(losses * 2.0, None if grads is None else -grads, out.state, jax.random.key(1), other)
    jax.block_until_ready(out.weights)
    assert len(traces) == 1


@pytest.mark.parametrize("name", SYMMETRIC)
def test_permuting_tasks_permutes_weights_and_keeps_direction(name):
    num_tasks = 4
    perm = jnp.asarray([2, 0, 3, 1])
    losses, grads = problem(30, num_tasks)
    _, outs = run_steps(name, num_tasks, losses, grads, steps=2)
    _, permuted = run_steps(name, num_tasks, losses[perm], grads[perm], steps=2)
    for out, p_out in zip(outs, permuted):
        np.testing.assert_allclose(p_out.weights, out.weights[perm], rtol=2e-4, atol=1e-5)
        if out.direction is not None:
            np.testing.assert_allclose(p_out.direction, out.direction, rtol=2e-4, atol=1e-4)


@pytest.mark.parametrize("name, overrides", [
    ("uncertainty", {"lr": 0.0}), ("dwa", {"window": 0}), ("dwa", {"temp": -1.0}),
    ("rlw", {"distribution": "gamma"}), ("gradnorm", {"alpha": -1.0}), ("gradnorm", {"lr": 0.0}),
    ("validation_weighting", {"min_weight": 1.5}), ("validation_weighting", {"max_weight": 0.5}),
    ("validation_weighting", {"compare": "rank"}), ("validation_weighting", {"step": 0.0}),
    ("famo", {"gamma": -0.1}), ("mgda", {"normaliser": "l1"}), ("mgda_ub", {"iters": 0}),
    ("cagrad", {"c": -0.1}), ("cagrad", {"rescale": "c"}), ("imtl", {"mode": "both"}),
    ("nash_mtl", {"iters": 0}), ("gradvac", {"beta": 0.0}), ("upgrad", {"iters": 0}),
    ("db_mtl", {"beta": 1.0}), ("db_mtl", {"beta_sigma": -0.5}), ("stch", {"mu": 0.0}),
    ("stch", {"transform": "exp"}), ("dualproj", {"iters": 0}), ("fairgrad", {"alpha": 0.0}),
    ("fairgrad", {"iters": 0}), ("excessmtl", {"step_size": -0.1}), ("moco", {"beta": 1.5}),
    ("moco", {"gamma": 0.0}), ("moco", {"rho": -1.0}), ("sdmgrad", {"lamda": -0.1}), ("sdmgrad", {"iters": 0}),
    ("sdmgrad", {"inner_lr": 0.0}), ("modo", {"gamma": 0.0}), ("modo", {"rho": -0.1}),
    ("rgw", {"distribution": "gamma"}), ("cr_mogm", {"wrapped": "equal"}), ("cr_mogm", {"wrapped": "cr_mogm"}), ("cr_mogm", {"wrapped": "nope"}),
    ("cr_mogm", {"alpha": 0.0}), ("geometric_mean", {"preferences": [1.0, -1.0]}),
    ("geometric_mean", {"preferences": [1.0]}),
])
def test_bad_config_values_are_one_line_errors(name, overrides):
    with pytest.raises(ConfigError) as err:
        METHODS.get(name).build(config(name, 2, **overrides), tasks(2))
    key = next(iter(overrides))
    assert f"method.{key}=" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- gradient aggregation

def conflicting_problems(num_tasks: int, count: int = 24, num_params: int = 5):
    """Random gradients, each set with at least one conflicting pair."""
    rng = np.random.default_rng(num_tasks)
    out = []
    while len(out) < count:
        g = rng.normal(size=(num_tasks, num_params)) * rng.uniform(0.1, 3.0, size=(num_tasks, 1))
        if (g @ g.T).min() < 0:
            out.append(g)
    return jnp.asarray(np.stack(out), jnp.float32)


@pytest.mark.parametrize("name", ["mgda", "upgrad", "dualproj"])
@pytest.mark.parametrize("num_tasks", [2, 3, 4])
def test_non_conflicting_methods_conflict_with_no_task(name, num_tasks):
    grads = conflicting_problems(num_tasks)
    n = grads.shape[0]
    out = batch_update(name, num_tasks)(jnp.ones((n, num_tasks)), grads, jax.random.split(jax.random.key(0), n))
    products = jnp.einsum("np,ntp->nt", out.direction, grads)
    scale = jnp.mean(jnp.sum(grads**2, axis=2), axis=1, keepdims=True)
    assert float(jnp.min(products / scale)) >= -1e-4


def test_pcgrad_leaves_agreeing_gradients_unchanged():
    grads = jnp.abs(problem(40, 4)[1])  # positive entries: every pair agrees
    np.testing.assert_allclose(aggregate("pcgrad", grads), grads.sum(axis=0), rtol=1e-6)


def test_pcgrad_projects_out_the_conflict():
    g = jnp.asarray([[1.0, 0.0], [-1.0, 1.0]])
    np.testing.assert_allclose(aggregate("pcgrad", g), [0.5, 1.5], rtol=1e-6)


def test_two_task_pcgrad_is_twice_upgrad():
    """With two tasks the projection of g_1 onto the dual cone is PCGrad's g_1'; UPGrad averages
    the projections (equal preferences 1/T) while PCGrad sums them: PCGrad = 2 UPGrad."""
    grads = jnp.concatenate([conflicting_problems(2, 12), jnp.abs(conflicting_problems(2, 4))])
    n = grads.shape[0]
    keys = jax.random.split(jax.random.key(0), n)
    pc = batch_update("pcgrad", 2)(jnp.ones((n, 2)), grads, keys).direction
    up = batch_update("upgrad", 2)(jnp.ones((n, 2)), grads, keys).direction
    np.testing.assert_allclose(pc, 2 * up, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("num_tasks, resolution", [(2, 2000), (3, 300)])
def test_mgda_returns_the_min_norm_point_of_the_convex_hull(num_tasks, resolution):
    grads = conflicting_problems(num_tasks, count=8, num_params=3)
    n = grads.shape[0]
    out = batch_update("mgda", num_tasks)(jnp.ones((n, num_tasks)), grads, jax.random.split(jax.random.key(0), n))
    np.testing.assert_allclose(out.weights.sum(axis=1), 1.0, rtol=1e-5)
    assert float(out.weights.min()) >= 0
    grid = np.asarray([c for c in itertools.product(range(resolution + 1), repeat=num_tasks - 1)
                       if sum(c) <= resolution], float) / resolution
    grid = np.concatenate([grid, 1 - grid.sum(axis=1, keepdims=True)], axis=1)
    for g, d in zip(np.asarray(grads, float), np.asarray(out.direction, float)):
        brute = np.min(np.sum((grid @ g) ** 2, axis=1))
        scale = np.mean(np.sum(g**2, axis=1))
        assert d @ d <= brute + 1e-4 * scale


@pytest.mark.parametrize("num_tasks", [3, 4])
def test_imtl_g_gives_equal_projections_on_every_unit_gradient(num_tasks):
    grads = conflicting_problems(num_tasks, count=8, num_params=6)
    n = grads.shape[0]
    out = batch_update("imtl", num_tasks, mode="g")(jnp.ones((n, num_tasks)), grads,
                                                    jax.random.split(jax.random.key(0), n))
    units = grads / jnp.linalg.norm(grads, axis=2, keepdims=True)
    projections = jnp.einsum("np,ntp->nt", out.direction, units)
    np.testing.assert_allclose(projections, jnp.broadcast_to(projections[:, :1], projections.shape),
                               rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("num_tasks", [2, 4])
def test_nash_mtl_solves_the_bargaining_equation(num_tasks):
    """alpha_t (M alpha)_t = 1 for every task within 1e-3, also with gradient norms spread 30x;
    hence ||d||^2 = sum_t alpha_t (M alpha)_t = T."""
    grads = conflicting_problems(num_tasks, count=16)
    grads = grads * jnp.logspace(-0.75, 0.75, num_tasks)[None, :, None]
    n = grads.shape[0]
    out = batch_update("nash_mtl", num_tasks)(jnp.ones((n, num_tasks)), grads, jax.random.split(jax.random.key(0), n))
    alpha = out.weights
    assert float(alpha.min()) > 0
    balance = alpha * jnp.einsum("ntp,nsp,ns->nt", grads, grads, alpha)
    np.testing.assert_allclose(balance, 1.0, atol=1e-3)
    d = jnp.einsum("nt,ntp->np", alpha, grads)
    np.testing.assert_allclose(jnp.sum(d**2, axis=1), num_tasks, rtol=2e-3)


def test_cagrad_with_c_zero_is_the_mean_gradient():
    grads = problem(50, 3)[1]
    np.testing.assert_allclose(aggregate("cagrad", grads, c=0.0), grads.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_cagrad_maximises_the_worst_improvement_in_its_ball():
    """Before rescaling, d = (1 + c^2) * output maximises min_t g_t . d over ||d - g0|| <= c ||g0||
    (Liu et al. 2021): no point of the ball does better."""
    c = 0.4
    rng = np.random.default_rng(0)
    for seed in range(4):
        grads = conflicting_problems(3, count=4)[seed]
        d = np.asarray(aggregate("cagrad", grads, c=c), float) * (1 + c**2)
        g = np.asarray(grads, float)
        g0 = g.mean(axis=0)
        radius = c * np.linalg.norm(g0)
        assert np.linalg.norm(d - g0) <= radius * (1 + 1e-4)
        u = rng.normal(size=(4000, g.shape[1]))
        points = g0 + radius * u / np.linalg.norm(u, axis=1, keepdims=True) * rng.uniform(0, 1, (4000, 1)) ** 0.2
        best_sampled = np.max(np.min(points @ g.T, axis=1))
        assert np.min(g @ d) >= best_sampled - 1e-3 * np.mean(np.sum(g**2, axis=1))


def test_cagrad_toy_rescale_divides_by_one_plus_c():
    grads = problem(51, 3)[1]
    np.testing.assert_allclose(aggregate("cagrad", grads, rescale="1+c") * 1.4,
                               aggregate("cagrad", grads) * (1 + 0.4**2), rtol=1e-5)


def test_gradvac_from_zero_targets_is_pcgrad_and_then_reaches_its_target():
    """With targets 0 the GradVac correction is the PCGrad projection (Wang et al. 2021);
    with a target phi_hat > cos(g_1, g_2), the corrected g_1' has cosine exactly phi_hat with g_2."""
    grads = conflicting_problems(4, count=1)[0]
    key = jax.random.key(7)
    np.testing.assert_allclose(aggregate("gradvac", grads), aggregate("pcgrad", grads), rtol=1e-5, atol=1e-6)
    pair = conflicting_problems(2, count=1)[0]
    corrected, targets = vaccinate(pair, jnp.full((2, 2), 0.5), jnp.asarray(0.1), key)
    cos = corrected[0] @ pair[1] / (jnp.linalg.norm(corrected[0]) * jnp.linalg.norm(pair[1]))
    np.testing.assert_allclose(cos, 0.5, atol=1e-5)
    assert float(targets[0, 1]) < 0.5  # the target moves towards the observed (conflicting) cosine


def test_gradvac_correction_stays_bounded_when_the_target_rounds_to_one():
    """Targets at 1 (two tasks that always agreed) ask for an infinite multiple of g_j; the cap at
    0.999 keeps the correction within ||g_i'|| / sin(arccos 0.999) ~ 22.4 ||g_i'||."""
    pair = jnp.asarray([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0]])
    corrected, _ = vaccinate(pair, jnp.ones((2, 2)), jnp.asarray(0.5), jax.random.key(0))
    assert bool(jnp.all(jnp.isfinite(corrected)))
    assert float(jnp.max(jnp.linalg.norm(corrected, axis=1))) <= 23.5
    cos = corrected[0] @ pair[1] / (jnp.linalg.norm(corrected[0]) * jnp.linalg.norm(pair[1]))
    np.testing.assert_allclose(cos, 0.999, atol=1e-4)


def test_aligned_mtl_aligns_to_orthogonal_gradients_of_equal_norm():
    """B G has orthogonal rows of norm sigma_min (Senushkin et al. 2023), so with d the sum of those
    rows, G d = sigma_min M^(1/2) 1."""
    grads = conflicting_problems(3, count=1)[0]
    m = np.asarray(gram(grads), float)
    sigma_min = np.sqrt(np.linalg.eigvalsh(m).min())
    expected = sigma_min * np.real(sqrtm(m)) @ np.ones(3)
    np.testing.assert_allclose(np.asarray(grads, float) @ np.asarray(aggregate("aligned_mtl", grads), float),
                               expected, rtol=1e-3)


def db_mtl_steps(losses: jax.Array, grads: jax.Array, **overrides):
    """DB-MTL over a sequence of steps, losses (K, T) and grads (K, T, P); the stacked outputs."""
    cfg = config("db_mtl", losses.shape[1], **overrides)
    method = METHODS.get("db_mtl").build(cfg, tasks(losses.shape[1]))
    keys = jax.random.split(jax.random.key(0), losses.shape[0])
    return scan_updates(method, hparams(cfg), (losses, grads, keys), losses.shape[1])[1]


def drifting_problem(steps: int = 5, num_tasks: int = 3):
    """Losses (K, T) and gradients (K, T, P) that change from step to step."""
    pairs = [problem(60 + k, num_tasks) for k in range(steps)]
    return jnp.stack([p[0] for p in pairs]), jnp.stack([p[1] for p in pairs])


def test_db_mtl_direction_is_invariant_to_rescaling_a_task_loss():
    """Lin et al. 2023: with L_t -> c_t L_t (so g_t -> c_t g_t) the log-loss gradients, their
    averages and hence the direction stay the same; each task's own parameters get grad log L_t
    (weights 1 / L_t), unchanged too."""
    losses, grads = drifting_problem()
    c = jnp.asarray([100.0, 1.0, 0.01])
    plain = db_mtl_steps(losses, grads, beta_sigma=0.5)
    scaled = db_mtl_steps(losses * c, grads * c[None, :, None], beta_sigma=0.5)
    np.testing.assert_allclose(scaled.direction, plain.direction, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scaled.weights * losses * c, 1.0, rtol=1e-5)


def test_db_mtl_gives_every_task_a_contribution_of_the_largest_norm():
    """Gradient-magnitude balancing: d = sum_t s_t u_t with ||s_t u_t|| = max_s ||u_s|| for every t;
    with orthogonal gradients, d therefore has the same projection on every task's unit direction."""
    losses, grads = drifting_problem()
    out = db_mtl_steps(losses, grads * jnp.asarray([10.0, 1.0, 0.1])[None, :, None])
    contributions = out.diagnostics["scales"][..., None] * out.state.average
    norms = jnp.linalg.norm(contributions, axis=2)
    np.testing.assert_allclose(norms, jnp.max(jnp.linalg.norm(out.state.average, axis=2), axis=1,
                                              keepdims=True).repeat(3, axis=1), rtol=1e-5)
    np.testing.assert_allclose(out.direction, contributions.sum(axis=1), rtol=1e-5, atol=1e-6)
    orthogonal = jnp.diag(jnp.asarray([5.0, 0.1, 1.0]))
    d = aggregate("db_mtl", orthogonal, losses=jnp.asarray([0.3, 2.0, 7.0]))
    np.testing.assert_allclose(d, jnp.full(3, d[0]), rtol=1e-5)


def test_db_mtl_average_follows_the_reference_recursion():
    """u_k = h_k + (beta / k^sigma) (u_{k-1} - h_k), u_0 = 0, h_k = g_k / (L_k + 1e-8), as in LibMTL."""
    losses, grads = drifting_problem(steps=4)
    beta, sigma = 0.9, 0.5
    out = db_mtl_steps(losses, grads, beta=beta, beta_sigma=sigma)
    u = np.zeros(grads.shape[1:])
    for k in range(1, 5):
        h = np.asarray(grads[k - 1], float) / (np.asarray(losses[k - 1], float)[:, None] + 1e-8)
        u = h + beta / k**sigma * (u - h)
        np.testing.assert_allclose(out.state.average[k - 1], u, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- loss weighting

def scan_updates(method: Method, hp, step_inputs, num_tasks: int):
    """Run `update` over stacked (losses, grads, key) with lax.scan; returns the stacked outputs."""
    def body(state, inputs):
        out = method.update(*inputs[:2], state, inputs[2], hp)
        return out.state, out

    return jax.jit(lambda xs: jax.lax.scan(body, method.init(num_tasks, P), xs))(step_inputs)


def gradnorm_run(decay_rates: jax.Array, steps: int = 300):
    """GradNorm on a synthetic two-task problem: fixed orthogonal gradients of norms 10 and 1, and
    losses decaying as exp(-rate_t * step) for 150 steps, then flat so that the weights can settle.
    Returns (weights, weighted gradient norms) per step."""
    cfg = config("gradnorm", 2)
    method = METHODS.get("gradnorm").build(cfg, tasks(2))
    hp = hparams(cfg)
    grads = jnp.asarray([[10.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    def body(state, step):
        losses = 2.0 * jnp.exp(-decay_rates * jnp.minimum(step, 150.0))
        out = method.update(losses, grads, state, jax.random.key(0), hp)
        return out.state, (out.weights, out.diagnostics["weighted_grad_norm"])

    return jax.jit(lambda: jax.lax.scan(body, method.init(2, 3), jnp.arange(steps, dtype=jnp.float32))[1])()


def test_gradnorm_weights_sum_to_t_and_balance_the_gradient_norms():
    """Equal training rates: the weighted gradient norms w_t ||g_t|| start 10x apart and end equal."""
    weights, norms = gradnorm_run(jnp.asarray([0.01, 0.01]))
    np.testing.assert_allclose(weights.sum(axis=1), 2.0, rtol=1e-5)
    ratio = norms[:, 0] / norms[:, 1]
    assert float(ratio[0]) == pytest.approx(10.0)
    np.testing.assert_allclose(ratio[-20:], 1.0, atol=0.1)


def test_gradnorm_gives_the_slower_task_the_larger_gradient():
    """Unequal rates: the target norms are Gbar r_t^alpha, r_t = (L_t / L_t(0)) / mean_j (L_j / L_j(0)),
    so the task whose loss falls slowly ends with the larger weighted gradient, by (r_1 / r_0)^alpha."""
    rates = jnp.asarray([0.004, 0.0])
    weights, norms = gradnorm_run(rates)
    loss_ratio = jnp.exp(-rates * 150)
    expected = (loss_ratio[1] / loss_ratio[0]) ** 1.5
    np.testing.assert_allclose(norms[-1, 1] / norms[-1, 0], expected, rtol=0.1)


def test_uncertainty_learns_a_larger_sigma_for_the_noisier_task():
    """Losses of two regression tasks with noise std 0.5 and 2 (L_t = noise_t^2 z^2, z ~ N(0, 1), mean
    noise_t^2): s_t = log sigma_t^2 settles near log noise_t^2, so the noisier task gets the larger
    sigma and the smaller weight."""
    cfg = config("uncertainty", 2, lr=0.05)
    method = METHODS.get("uncertainty").build(cfg, tasks(2))
    noise = jnp.asarray([0.5, 2.0])
    z = jax.random.normal(jax.random.key(0), (600, 2))
    losses = noise**2 * z**2
    keys = jax.random.split(jax.random.key(1), 600)
    _, outs = scan_updates(method, hparams(cfg), (losses, None, keys), 2)
    log_var = outs.diagnostics["log_var"][-100:].mean(axis=0)
    assert float(log_var[1]) > float(log_var[0])
    np.testing.assert_allclose(log_var, jnp.log(noise**2), atol=0.5)
    assert float(outs.weights[-1, 1]) < float(outs.weights[-1, 0])


@pytest.mark.parametrize("distribution", ["normal", "uniform", "dirichlet", "bernoulli"])
def test_rlw_weights_sum_to_t_and_differ_between_keys(distribution):
    update = batch_update("rlw", 3, distribution=distribution)
    out = update(jnp.ones((16, 3)), None, jax.random.split(jax.random.key(0), 16))
    np.testing.assert_allclose(out.weights.sum(axis=1), 3.0, rtol=1e-5)
    assert float(out.weights.min()) >= 0
    assert len({tuple(np.round(np.asarray(w), 5)) for w in out.weights}) > 1


def test_dwa_is_flat_for_two_windows_then_favours_the_slowest_task():
    window = 2
    cfg = config("dwa", 2, window=window)
    method = METHODS.get("dwa").build(cfg, tasks(2))
    steps = 3 * window
    losses = jnp.stack([0.5 ** jnp.arange(steps), jnp.ones(steps)], axis=1)  # task 0 halves each step
    _, outs = scan_updates(method, hparams(cfg), (losses, None, jax.random.split(jax.random.key(0), steps)), 2)
    np.testing.assert_allclose(outs.weights[: 2 * window], 1.0)
    third = outs.weights[2 * window:]
    np.testing.assert_allclose(third.sum(axis=1), 2.0, rtol=1e-6)
    assert bool(jnp.all(third[:, 1] > third[:, 0]))


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_validation_weighting_moves_weight_to_the_lagging_task_within_bounds(num_tasks):
    cfg = config("validation_weighting", num_tasks, step=0.2, min_weight=0.3, max_weight=1.6)
    method = METHODS.get("validation_weighting").build(cfg, tasks(num_tasks))
    hp = hparams(cfg)
    scores = jnp.linspace(0.9, 0.5, num_tasks)  # the last task lags
    state = method.init(num_tasks, P)
    on_eval = jax.jit(method.on_eval)
    history = []
    for _ in range(12):
        state = on_eval(state, scores, hp)
        history.append(method.update(jnp.ones(num_tasks), None, state, jax.random.key(0), hp).weights)
    history = jnp.stack(history)
    assert float(history[0, -1]) > 1.0 > float(history[0, 0])
    np.testing.assert_allclose(history.sum(axis=1), num_tasks, rtol=1e-5)
    assert float(history.min()) >= 0.3 - 1e-5 and float(history.max()) <= 1.6 + 1e-5
    np.testing.assert_allclose(history[-1, -1], 1.6, rtol=1e-5)  # pinned at the upper bound


def test_validation_weighting_gain_compares_improvement_since_the_first_evaluation():
    cfg = config("validation_weighting", 2, compare="gain")
    method = METHODS.get("validation_weighting").build(cfg, tasks(2))
    hp = hparams(cfg)
    state = method.on_eval(method.init(2, 0), jnp.asarray([0.5, -2.0]), hp)  # accuracy, minus mse
    np.testing.assert_allclose(state.weights, 1.0)  # the first evaluation only records s0
    state = method.on_eval(state, jnp.asarray([0.9, -1.8]), hp)  # +80% vs +10%: task 1 lags
    assert float(state.weights[1]) > float(state.weights[0])


def test_gls_weights_give_the_gradient_of_the_geometric_mean():
    centres = jnp.asarray([[1.0, 2.0], [-1.0, 0.5], [0.0, -3.0]])

    def task_losses(theta):
        return jnp.sum((theta[None] - centres) ** 2, axis=1) * jnp.asarray([0.1, 1.0, 10.0]) + 0.05

    theta = jnp.asarray([0.3, -0.2])
    losses, jac = task_losses(theta), jax.jacobian(task_losses)(theta)
    expected = jax.grad(lambda t: jnp.prod(task_losses(t)) ** (1 / 3))(theta)
    weights = compiled("gls", 3)[2](losses, None, (), jax.random.key(0), {}).weights
    np.testing.assert_allclose(weights @ jac, expected, rtol=1e-5)


def test_famo_combines_log_loss_gradients_and_lifts_the_slowest_task():
    """FAMO's update is a z-weighted sum of log-loss gradients (Liu et al. 2023): w_t L_t is
    proportional to z_t, uniform at the start whatever the loss scales; and its logit update gives
    more weight to the task whose log-loss decreases least."""
    method, hp, update = compiled("famo", 3)
    losses = jnp.asarray([0.01, 1.0, 100.0])
    out = update(losses, None, method.init(3, 0), jax.random.key(0), hp)
    np.testing.assert_allclose(out.weights * losses, jnp.full(3, (out.weights * losses).mean()), rtol=1e-5)
    np.testing.assert_allclose(out.weights.sum(), 3.0, rtol=1e-6)
    state = out.state
    for step in range(1, 30):  # task 0 halves every step, task 1 falls slowly, task 2 is stuck
        out = update(losses * jnp.asarray([0.5**step, 0.99**step, 1.0]), None, state, jax.random.key(step), hp)
        state = out.state
    z = out.diagnostics["z"]
    assert float(z[2]) > float(z[1]) > float(z[0])


def test_imtl_l_drives_every_scaled_loss_to_one():
    cfg = config("imtl", 2, mode="l", lr=0.05)
    method = METHODS.get("imtl").build(cfg, tasks(2))
    assert method.needs is Needs.LOSSES and "alternate" in method.schedules
    losses = jnp.tile(jnp.asarray([0.2, 5.0]), (400, 1))
    _, outs = scan_updates(method, hparams(cfg), (losses, None, jax.random.split(jax.random.key(0), 400)), 2)
    np.testing.assert_allclose(outs.weights[-1] * losses[-1], 1.0, atol=0.05)


def test_cagrad_is_finite_for_nearly_opposite_gradients():
    """g0' M g0 rounds below zero for nearly opposite gradients; the norms must stay finite."""
    from harness.methods import aggregate

    d = aggregate("cagrad", jnp.asarray([[-0.2544319, -0.00063893], [0.25442764, 0.00078752]]))
    assert bool(jnp.all(jnp.isfinite(d)))


def test_dualproj_leaves_a_non_conflicting_mean_alone_and_projects_a_conflicting_one():
    """TorchJD's DualProj: the projection of the mean gradient onto the dual cone, so the mean
    itself when it conflicts with no task; otherwise a direction at least as close to the mean
    as the mean's projection onto the half-space of the worst-treated task's gradient allows."""
    agreeing = jnp.abs(problem(70, 3)[1])
    np.testing.assert_allclose(aggregate("dualproj", agreeing), agreeing.mean(axis=0), rtol=1e-5)
    g = jnp.asarray([[1.0, 0.0], [-2.0, 0.5]])  # mean (-0.5, 0.25) conflicts with g_1
    d = np.asarray(aggregate("dualproj", g), float)
    # the nearest point of the cone {d : d_x >= 0, -2 d_x + 0.5 d_y >= 0} to the mean is (0, 0.25)
    np.testing.assert_allclose(d, [0.0, 0.25], atol=1e-6)


def test_con_fig_matches_the_pseudo_inverse_of_the_unit_gradients():
    """Liu et al. 2024 (and TorchJD): x = pinv(U) 1 with U the unit gradients, d = (sum_t g_t . x^) x^;
    every task gets the same projection on its unit gradient."""
    for num_tasks, num_params in [(2, 5), (3, 5), (4, 6), (4, 3)]:
        g = np.asarray(conflicting_problems(num_tasks, count=1, num_params=num_params)[0], float)
        units = g / np.linalg.norm(g, axis=1, keepdims=True)
        x = np.linalg.pinv(units) @ np.ones(num_tasks)
        unit = x / np.linalg.norm(x)
        expected = np.sum(g @ unit) * unit
        np.testing.assert_allclose(aggregate("con_fig", g), expected, rtol=2e-4, atol=1e-5)
        if num_params >= num_tasks:
            projections = units @ expected
            np.testing.assert_allclose(projections, projections[0], rtol=1e-4)


def test_graddrop_keeps_each_sign_with_its_purity():
    """Chen et al. 2020: with purity P = (1 + sum g / sum |g|) / 2 and U ~ U(0, 1) per coordinate,
    keep the positive parts where P > U and the negative parts where P < U."""
    g = np.asarray(problem(71, 3, num_params=64)[1], float)
    g[:, :4] = np.abs(g[:, :4])  # coordinates where every task agrees are kept whole
    u = np.asarray(jax.random.uniform(jax.random.key(0), (64,)), float)
    purity = 0.5 * (1 + g.sum(axis=0) / (np.abs(g).sum(axis=0) + 1e-7))
    keep = ((purity > u) & (g > 0)) | ((purity < u) & (g < 0))
    d = np.asarray(aggregate("graddrop", g), float)
    np.testing.assert_allclose(d, np.sum(np.where(keep, g, 0.0), axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d[:4], g[:, :4].sum(axis=0), rtol=1e-5)
    assert not np.allclose(d, g.sum(axis=0))  # something was dropped


@pytest.mark.parametrize("transform", ["log", "raw"])
def test_stch_weights_are_the_gradient_of_the_smooth_max(transform):
    """w_t = d/dL_t of T mu log sum_t exp(f_t / mu), with f_t = log(L_t / L_t^0) (L^0 the first
    step's losses) or f_t = L_t; small mu puts the weight on the worst objective."""
    mu = 0.3
    first = jnp.asarray([2.0, 0.5, 1.0])
    now = jnp.asarray([1.0, 0.45, 0.2])
    cfg = config("stch", 3, mu=mu, transform=transform)
    method = METHODS.get("stch").build(cfg, tasks(3))
    hp = hparams(cfg)
    state = method.update(first, None, method.init(3, 0), jax.random.key(0), hp).state
    weights = method.update(now, None, state, jax.random.key(1), hp).weights

    def smooth_max(losses):
        f = jnp.log(losses / first) if transform == "log" else losses
        return 3 * mu * jax.scipy.special.logsumexp(f / mu)

    np.testing.assert_allclose(weights, jax.grad(smooth_max)(now), rtol=1e-5)
    sharp = METHODS.get("stch").build(config("stch", 3, mu=0.01, transform=transform), tasks(3))
    w = sharp.update(now, None, state, jax.random.key(1), {"mu": jnp.asarray(0.01)}).weights
    worst = int(jnp.argmax(jnp.log(now / first) if transform == "log" else now))
    assert int(jnp.argmax(w)) == worst and float(w[worst] * now[worst]) > 0.99 * float(jnp.sum(w * now))


@pytest.mark.parametrize("alpha", [0.5, 2.0, 5.0])
def test_fairgrad_matches_the_reference_least_squares_solve(alpha):
    """Ban & Ji 2024: (M w)_t = w_t^(-1/alpha), w > 0, as the reference solves it (scipy's
    least_squares from 1/T with bounds w >= 0), here in float64 to tight tolerances."""
    from scipy.optimize import least_squares

    for num_tasks in [2, 3, 4]:
        grads = np.asarray(conflicting_problems(num_tasks, count=3), float)
        out = batch_update("fairgrad", num_tasks, alpha=alpha)(jnp.ones((3, num_tasks)), jnp.asarray(grads, jnp.float32),
                                                               jax.random.split(jax.random.key(0), 3))
        for g, w in zip(grads, np.asarray(out.weights, float)):
            m = g @ g.T
            ref = least_squares(lambda x: m @ x - (1 / x) ** (1 / alpha), np.full(num_tasks, 1 / num_tasks),
                                bounds=(0, np.inf), xtol=1e-15, ftol=1e-15, gtol=1e-15).x
            np.testing.assert_allclose(w, ref, rtol=1e-4)


def test_fairgrad_with_alpha_one_is_nash_mtl():
    """alpha = 1 is proportional fairness: w_t (M w)_t = 1, the Nash bargaining solution."""
    grads = conflicting_problems(4, count=6)
    keys = jax.random.split(jax.random.key(0), 6)
    fair = batch_update("fairgrad", 4, alpha=1.0)(jnp.ones((6, 4)), grads, keys).weights
    nash = batch_update("nash_mtl", 4)(jnp.ones((6, 4)), grads, keys).weights
    np.testing.assert_allclose(fair, nash, rtol=2e-3)
