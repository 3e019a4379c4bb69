"""GREAT, gradient adversarial training for multi-task learning (Sinha, Chen, Badrinarayanan &
Rabinovich 2018, "Gradient Adversarial Training of Neural Networks", section on multi-task
learning).

An auxiliary classifier reads the gradient of each task's loss with respect to the shared
representation, one example (one row of the representation) at a time, and is trained to say
which task it came from (softmax cross-entropy C). The network descends sum_t L_t and, through a
gradient reversal layer, *ascends* C with factor `lam`: the adversarial gradient is
-lam * dC/dtheta, differentiated through the gradient tensors themselves (double backprop: the
representation gradients are functions of the shared and the task parameters), which pushes the
tasks' gradients toward being indistinguishable. This is the paper's construction; the harness
computes it exactly with JAX (the gradient of a function that calls jax.vjp).

Details the paper leaves open, chosen here: the classifier is an MLP with one ReLU hidden layer
of `hidden` units (a linear softmax classifier when hidden = 0) on the per-example gradient (the
row of the mean loss's gradient times the number of rows, so its scale does not depend on the
batch size); it is trained by its own Adam (`lr`) inside the method state, one step per training
step, on the same batch; it is initialised from the run's method key at step 0. The task losses
keep equal weights (the paper combines GREAT with its own normalisation, GREATer; not here). No
public reference implementation exists to compare with. Schedules: joint only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from harness.data.base import TaskSpec
from harness.errors import bad
from harness.methods.base import METHODS, Lookahead, Method, MethodOutput, Needs, dynamic
from harness.schema import Entry


@dataclass
class GreatConfig:
    name: str = "great"
    lam: float = dynamic(0.1)  # factor of the reversed adversarial gradient
    lr: float = dynamic(1e-3)  # Adam learning rate of the auxiliary classifier
    hidden: int = 32  # hidden ReLU units of the classifier (0: linear)


class GreatState(NamedTuple):
    classifier: dict  # {"w1", "b1", "w2", "b2"} (w1, b1 unused when hidden = 0)
    opt_state: optax.OptState


def init_classifier(key: jax.Array, width: int, hidden: int, num_tasks: int) -> dict:
    """LeCun-normal weights, zero biases."""
    k1, k2 = jax.random.split(key)
    first = hidden if hidden > 0 else width
    return {"w1": jax.random.normal(k1, (width, hidden)) / jnp.sqrt(max(width, 1)),
            "b1": jnp.zeros((hidden,)),
            "w2": jax.random.normal(k2, (first, num_tasks)) / jnp.sqrt(max(first, 1)),
            "b2": jnp.zeros((num_tasks,))}


def classify(classifier: dict, features: jax.Array) -> jax.Array:
    """Logits (N, T) of rows of features (N, Z)."""
    h = features
    if classifier["w1"].shape[1] > 0:
        h = jax.nn.relu(h @ classifier["w1"] + classifier["b1"])
    return h @ classifier["w2"] + classifier["b2"]


def adversary_loss(classifier: dict, repr_grads: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(cross-entropy, accuracy) of the classifier telling the tasks apart from their
    per-example representation gradients repr_grads (T, N, Z)."""
    num_tasks, rows = repr_grads.shape[:2]
    features = (repr_grads * rows).reshape(num_tasks * rows, -1)
    labels = jnp.repeat(jnp.arange(num_tasks), rows)
    logits = classify(classifier, features)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return ce, jnp.mean(jnp.argmax(logits, -1) == labels)


def build(cfg: GreatConfig, tasks: tuple[TaskSpec, ...]) -> Method:
    if not cfg.lam >= 0:
        raise bad("method.lam", cfg.lam, "a number >= 0 (0: the classifier only watches)")
    if not cfg.lr > 0:
        raise bad("method.lr", cfg.lr, "a number > 0")
    if not (isinstance(cfg.hidden, int) and cfg.hidden >= 0):
        raise bad("method.hidden", cfg.hidden, "an integer >= 0 (0: a linear classifier)")

    def init(num_tasks: int, grad_dim: int) -> GreatState:
        # grad_dim: the width of one representation row (harness.methods.base.Method.prepare)
        classifier = init_classifier(jax.random.key(0), grad_dim, cfg.hidden, num_tasks)
        return GreatState(classifier, optax.adam(1.0).init(classifier))

    def update(losses, grads, state, key, hparams):
        return MethodOutput(jnp.ones_like(losses), None, state, {})

    def prepare(state: GreatState, ahead: Lookahead, key, hparams):
        num_tasks = state.classifier["b2"].shape[0]
        fresh = init_classifier(key, state.classifier["w1"].shape[0], cfg.hidden, num_tasks)
        classifier = jax.tree.map(lambda f, c: jnp.where(ahead.step == 0, f, c), fresh, state.classifier)

        def loss(params, clf):
            return adversary_loss(clf, ahead.repr_grads(params))

        (ce, accuracy), (g_params, g_clf) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
            ahead.params, classifier)
        step, opt_state = optax.adam(hparams["lr"]).update(g_clf, state.opt_state)
        reversed_grads = jax.tree.map(lambda g: -hparams["lam"] * g, g_params)
        new = GreatState(jax.tree.map(jnp.add, classifier, step), opt_state)
        return new, reversed_grads, {"adversary_loss": ce, "adversary_accuracy": accuracy}

    return Method(Needs.LOSSES, init, update, schedules=("joint",), prepare=prepare)


METHODS.register("great", Entry(GreatConfig, build))
