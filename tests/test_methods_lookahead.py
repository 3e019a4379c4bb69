"""Methods with a `prepare` hook (harness.methods.base.Lookahead): Auto-Lambda's exact
hypergradient against float64 finite differences and its weights on a constructed case; GREAT's
classifier and its adversarial penalty on tiny models."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.errors import ConfigError
from harness.methods import build_method
from harness.methods.adapter import task_aggregator
from harness.methods.auto_lambda import hypergradient
from harness.methods.base import Lookahead
from harness.methods.great import adversary_loss

RNG = np.random.default_rng(0)


def linear_problem(num_tasks: int, dim: int = 4, rows: int = 16, val_target=None):
    """Per task (X_train, y_train, X_val, y_val) of least squares on one shared vector."""
    out = []
    for t in range(num_tasks):
        truth = RNG.normal(size=dim)
        xt, xv = RNG.normal(size=(rows, dim)), RNG.normal(size=(rows, dim))
        target = truth if val_target is None else val_target
        out.append((xt, xt @ truth, xv, xv @ target))
    return out


def losses_fn(problem, val: bool):
    def losses(p):
        return jnp.stack([jnp.mean(((xv if val else xt) @ p - (yv if val else yt)) ** 2)
                          for xt, yt, xv, yv in problem])
    return losses


def numpy_meta_loss(problem, w, p, alpha):
    """sum_t L_t^val(p - alpha grad sum_t w_t L_t^train(p)) in float64."""
    grad = sum(wt * 2 * xt.T @ (xt @ p - yt) / len(yt) for wt, (xt, yt, _, _) in zip(w, problem))
    ahead = p - alpha * grad
    return sum(np.mean((xv @ ahead - yv) ** 2) for _, _, xv, yv in problem)


def test_auto_lambda_hypergradient_equals_float64_finite_differences():
    problem = linear_problem(3)
    p, w, alpha = RNG.normal(size=4), np.asarray([1.0, 0.5, 2.0]), 0.05
    exact, loss = hypergradient(jnp.asarray(w, jnp.float32), jnp.asarray(p, jnp.float32),
                                losses_fn(problem, False), losses_fn(problem, True), jnp.float32(alpha))
    eps = 1e-5
    numeric = [(numpy_meta_loss(problem, w + eps * e, p, alpha) - numpy_meta_loss(problem, w - eps * e, p, alpha))
               / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(loss, numpy_meta_loss(problem, w, p, alpha), rtol=1e-5)
    np.testing.assert_allclose(exact, numeric, rtol=1e-4, atol=1e-4)
    assert np.all(np.abs(numeric) > 1e-2)  # a case where the weights matter


def test_auto_lambda_raises_the_weight_of_the_task_whose_training_helps_validation():
    # both tasks are judged on validation rows labelled by `truth`: task 0 trains toward it,
    # task 1 away from it (its training labels come from -truth)
    truth = RNG.normal(size=4)
    problem = linear_problem(2, val_target=truth)
    for t, sign in enumerate((1.0, -1.0)):
        xt, _, xv, yv = problem[t]
        problem[t] = (xt, xt @ (sign * truth), xv, yv)
    method, hp = build_method("auto_lambda", 2, meta_lr=0.01)
    state, p = method.init(2, 0), jnp.zeros(4)
    prepare = jax.jit(lambda st, s: method.prepare(
        st, Lookahead(p, losses_fn(problem, False), None, losses_fn(problem, True), jnp.float32(0.05), s),
        jax.random.key(0), hp))
    for s in range(30):
        state, extra, _ = prepare(state, s)
    weights = method.update(jnp.ones(2), None, state, jax.random.key(0), hp).weights
    assert extra is None
    assert weights[0] > 1.2 and weights[1] < 0.8, weights


def test_auto_lambda_update_every_skips_steps():
    problem = linear_problem(2)
    method, hp = build_method("auto_lambda", 2, update_every=3)
    ahead = lambda s: Lookahead(jnp.ones(4), losses_fn(problem, False), None, losses_fn(problem, True),  # noqa: E731
                                jnp.float32(0.05), jnp.int32(s))
    state = method.init(2, 0)
    moved, _, _ = method.prepare(state, ahead(3), jax.random.key(0), hp)
    kept, _, _ = method.prepare(state, ahead(4), jax.random.key(0), hp)
    assert not np.allclose(moved.offset, 0.0) and np.array_equal(kept.offset, state.offset)


def tiny_model(heads: np.ndarray, rows: int = 64, seed: int = 1):
    """A trunk z = tanh(x W) shared by T regression heads z h_t; params {"shared", "tasks"}; the
    repr_grads and train_losses of a Lookahead on one fixed batch."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(rows, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(rows, heads.shape[0])), jnp.float32)
    params = {"shared": jnp.asarray(rng.normal(size=(3, heads.shape[1])), jnp.float32),
              "tasks": jnp.asarray(heads, jnp.float32)}

    def losses_of(tasks, z):
        return jnp.mean((z @ tasks.T - y) ** 2, axis=0)

    def train_losses(p):
        return losses_of(p["tasks"], jnp.tanh(x @ p["shared"]))

    def repr_grads(p):
        z = jnp.tanh(x @ p["shared"])
        return jax.jacrev(lambda zz: losses_of(p["tasks"], zz))(z)

    return params, train_losses, repr_grads


def run_great(params, train_losses, repr_grads, steps: int, lam: float, train: bool, lr_params: float = 0.05):
    """`steps` GREAT steps from `params`; with `train`, the params descend the sum of the task
    losses plus GREAT's reversed adversarial gradient. (params, state, (adversary loss,
    accuracy) per step)."""
    method, hp = build_method("great", 2, lam=lam, lr=0.01)

    @jax.jit
    def step(state, params, s):
        ahead = Lookahead(params, train_losses, repr_grads, None, jnp.float32(0.0), s)
        state, extra, diag = method.prepare(state, ahead, jax.random.key(7), hp)
        if train:
            g = jax.grad(lambda p: jnp.sum(train_losses(p)))(params)
            params = jax.tree.map(lambda p, a, b: p - lr_params * (a + b), params, g, extra)
        return state, params, (diag["adversary_loss"], diag["adversary_accuracy"])

    state, trace = method.init(2, params["shared"].shape[1]), []
    for s in range(steps):
        state, params, out = step(state, params, jnp.int32(s))
        trace.append([float(v) for v in out])
    return params, state, np.asarray(trace)


def distinguishability(repr_grads, params) -> float:
    """The cross-entropy of a fresh classifier trained for 400 steps on the tasks'
    representation gradients at fixed params: lower is more distinguishable."""
    _, _, trace = run_great(params, None, repr_grads, 400, lam=0.0, train=False)
    return float(trace[-20:, 0].mean())


HEADS = np.asarray([[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, -0.5]])


def test_great_classifier_learns_to_tell_differing_gradients_apart():
    params, train_losses, repr_grads = tiny_model(HEADS)
    _, _, trace = run_great(params, train_losses, repr_grads, 300, lam=0.0, train=False)
    assert trace[:5, 1].mean() < 0.75 and trace[-20:, 1].mean() > 0.9
    # the control: identical gradients for both tasks, nothing to tell apart
    same_grads = lambda p: repr_grads(p)[:1].repeat(2, axis=0)  # noqa: E731
    _, _, trace = run_great(params, None, same_grads, 300, lam=0.0, train=False)
    assert trace[-20:, 1].mean() <= 0.55


def test_great_reversed_gradient_is_the_exact_gradient_through_the_task_gradients():
    params, train_losses, repr_grads = tiny_model(HEADS)
    _, state, _ = run_great(params, train_losses, repr_grads, 10, lam=0.0, train=False)
    method, hp = build_method("great", 2, lam=0.5)
    ahead = Lookahead(params, train_losses, repr_grads, None, jnp.float32(0.0), jnp.int32(1))
    _, extra, _ = method.prepare(state, ahead, jax.random.key(0), hp)
    v = jax.tree.map(lambda a: RNG.normal(size=a.shape), params)
    along = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(extra), jax.tree.leaves(v)))
    with jax.enable_x64(True):  # the finite difference in float64, through the same model
        wide = lambda tree: jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), tree)  # noqa: E731
        _, _, repr64 = tiny_model(HEADS)
        clf, p64, v64, eps = wide(state.classifier), wide(params), wide(v), 1e-5
        def ce(sign):
            return adversary_loss(clf, repr64(jax.tree.map(lambda a, b: a + sign * eps * b, p64, v64)))[0]
        numeric = float((ce(1) - ce(-1)) / (2 * eps))
    np.testing.assert_allclose(along, -0.5 * numeric, rtol=2e-3)
    # it moves the task parameters as well as the shared ones (both shape the gradients)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(extra))


def test_great_penalty_makes_the_task_gradients_less_distinguishable():
    params, train_losses, repr_grads = tiny_model(HEADS)
    plain, _, _ = run_great(params, train_losses, repr_grads, 300, lam=0.0, train=True)
    great, _, _ = run_great(params, train_losses, repr_grads, 300, lam=0.3, train=True)
    assert distinguishability(repr_grads, great) > 1.5 * distinguishability(repr_grads, plain)
    np.testing.assert_allclose(jnp.sum(train_losses(great)), jnp.sum(train_losses(plain)), rtol=0.05)


def test_great_adversary_loss_is_chance_level_for_a_uniform_classifier():
    grads = jnp.asarray(RNG.normal(size=(3, 5, 4)), jnp.float32)
    clf = {"w1": jnp.zeros((4, 0)), "b1": jnp.zeros((0,)), "w2": jnp.zeros((4, 3)), "b2": jnp.zeros((3,))}
    ce, _ = adversary_loss(clf, grads)
    np.testing.assert_allclose(ce, np.log(3), rtol=1e-6)


def test_trainer_gives_prepare_the_step_as_a_lookahead_and_adds_its_gradient():
    """make_gradients hands a `prepare` hook the batch's losses and per-example representation
    gradients as functions of the params, validation losses on the rows given, and adds the
    hook's extra gradient to the weighted one."""
    from harness.data.base import regression
    from harness.methods.base import Method, MethodOutput, Needs
    from harness.models.base import MODELS
    from harness.models.hard import HardConfig
    from harness.train.gradients import make_gradients, method_grad_dim
    from harness.train.losses import task_losses

    tasks = (regression("a"), regression("b"))
    model = MODELS.get("hard").build(HardConfig(depth=2, width=6, shared_depth=1), tasks, 3)
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(3)
    x, vx = (jnp.asarray(rng.normal(size=(8, 3)), jnp.float32) for _ in range(2))
    y, vy = ({t.name: jnp.asarray(rng.normal(size=(8, 1)), jnp.float32) for t in tasks} for _ in range(2))
    extra = jax.tree.map(lambda a: jnp.full_like(a, 0.25), params)

    def prepare(state, ahead, key, hp):
        return (ahead.train_losses(ahead.params), ahead.repr_grads(ahead.params),
                ahead.val_losses(ahead.params)), extra, {}

    def update(losses, grads, state, key, hp):
        return MethodOutput(jnp.ones_like(losses), None, state, {})

    probe = Method(Needs.LOSSES, lambda T, P: (jnp.zeros(2), jnp.zeros((2, 8, 6)), jnp.zeros(2)), update,
                   schedules=("joint",), prepare=prepare)
    assert method_grad_dim(model, probe, params["shared"], 3, 8) == 6  # the width of a representation row
    plain = Method(Needs.LOSSES, lambda T, P: (), update)
    args = (x, y, None, jax.random.key(1), {}, {}, jnp.ones(2), jnp.float32(0.1))
    losses, grads, out, _ = make_gradients(model, probe, tasks, 1)(params, *args[:2], probe.init(2, 6), *args[3:],
                                                                    val=(vx, vy), step=jnp.int32(0))
    _, base, _, _ = make_gradients(model, plain, tasks, 1)(params, *args)
    heads = task_losses(model.heads, tasks)
    train, gz, val = out.state
    np.testing.assert_allclose(train, losses, rtol=1e-6)
    z = model.trunk(params, x)
    np.testing.assert_allclose(gz, jax.jacrev(lambda zz: heads(params["tasks"], zz, y))(z), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(val, heads(params["tasks"], model.trunk(params, vx), vy), rtol=1e-6)
    for g, b in zip(jax.tree.leaves(grads), jax.tree.leaves(base)):
        np.testing.assert_allclose(g, b + 0.25, rtol=1e-6, atol=1e-7)


def test_the_optax_adapter_refuses_methods_that_look_ahead():
    for name in ("auto_lambda", "great"):
        with pytest.raises(ConfigError, match=f"^method='{name}': looks ahead through the model"):
            task_aggregator(name, 2)
