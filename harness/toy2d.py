"""The two-objective toy problem of CAGrad (Liu et al. 2021) and Nash-MTL (Navon et al. 2022).

x in R^2 is the whole model, shared by both tasks. With u = tanh(-x2), l(v) = log(max(|v|, 5e-6)) + 6,
c+ = max(tanh(x2 / 2), 0), c- = max(tanh(-x2 / 2), 0):
  f1 = s * [c+ l(0.5 (-x1 - 7) - u) + c- (((x1 - 7)^2 + 0.1 (x2 + 8)^2) / 10 - 20)]
  f2 =      c+ l(0.5 (-x1 + 3) + u + 2) + c- (((x1 + 7)^2 + 0.1 (x2 + 8)^2) / 10 - 20)
Source: `Toy` in toy.py of github.com/Cranial-XIX/CAGrad (s = 1; starts (-8.5, 7.5), (-8.5, -5),
(9, 9); 100k Adam steps, lr 1e-3) and experiments/toy/problem.py + trainer.py of
github.com/AvivNavon/nash-mtl (s = 0.1, to test invariance to the scale of a loss; starts
(-8.5, 7.5), (0, 0), (9, 9), (-7.5, -0.5), (9, -1); 35k Adam steps, lr 1e-3). The valley x2 > 0
has conflicting, badly scaled gradients; the Pareto set lies near x2 = -8.36, x1 in [-7, 7].

Every method of the registry runs on it through its own `update`, with the (2, 2) Jacobian as the
per-task gradients of the shared parameters x; loss-weighting methods move x along weights @ J.
The methods see the losses f_t + 21 s_t, positive since f_t >= -20 s_t, as in FAMO's toy code
(Liu et al. 2023, github.com/Cranial-XIX/FAMO, experiments/toy/trainer.py: minimum losses
-21 s_t), so that log-loss methods (famo, db_mtl, gls) are defined. CAGrad uses its toy code's
c = 0.5 and 1 / (1 + c) rescaling; every other method its config defaults.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from harness.data.base import regression
from harness.methods import METHODS
from harness.methods.base import Needs
from harness.schema import dynamic_values

LOWER = 5e-6
SHIFT = 21.0  # the methods see f_t + SHIFT * s_t > 0
REACHED = 0.05  # distance to the Pareto set below which a run counts as having reached it
TASKS = (regression("f1"), regression("f2"))
OVERRIDES = {"cagrad": {"c": 0.5, "rescale": "1+c"}}


class Setting(NamedTuple):
    """One published configuration of the toy: the scale s of f1, the starts, the step count."""

    scale: float
    starts: tuple[tuple[float, float], ...]
    steps: int
    source: str


SETTINGS = {
    "cagrad": Setting(1.0, ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0)), 100_000, "Liu et al. 2021 (CAGrad), s = 1"),
    "nash_mtl": Setting(0.1, ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0)), 35_000,
                        "Navon et al. 2022 (Nash-MTL), s = 0.1"),
}


def objectives(x: jax.Array, scale: float | jax.Array = 1.0) -> jax.Array:
    """(f1, f2) at x (2,)."""
    x1, x2 = x[0], x[1]
    u = jnp.tanh(-x2)
    upper = jnp.maximum(jnp.tanh(x2 / 2), 0.0)
    lower = jnp.maximum(jnp.tanh(-x2 / 2), 0.0)
    log1 = jnp.log(jnp.maximum(jnp.abs(0.5 * (-x1 - 7) - u), LOWER)) + 6
    log2 = jnp.log(jnp.maximum(jnp.abs(0.5 * (-x1 + 3) + u + 2), LOWER)) + 6
    sq1 = ((x1 - 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
    sq2 = ((x1 + 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
    return jnp.stack([scale * (upper * log1 + lower * sq1), upper * log2 + lower * sq2])


def pareto_set(num: int = 2001) -> np.ndarray:
    """(num, 2) points of the Pareto set (the same for every s).

    Below x2 = 0 both objectives are c-(x2) (A_t(x1) + 0.01 (x2 + 8)^2) with A_t quadratic, so the
    minimiser of lam f1 + (1 - lam) f2 has x1 = 14 lam - 7, and x2 minimises
    c-(x2) (19.6 lam (1 - lam) - 20 + 0.01 (x2 + 8)^2): found by bisection on its derivative,
    which changes sign once in [-9.5, -8].
    """
    lam = jnp.linspace(0.0, 1.0, num)
    level = 19.6 * lam * (1 - lam) - 20

    def slope(x2, a):
        return jax.grad(lambda z: jnp.tanh(-z / 2) * (a + 0.01 * (z + 8) ** 2))(x2)

    def bisect(a):
        def body(_, bounds):
            lo, hi = bounds
            mid = (lo + hi) / 2
            return jnp.where(slope(mid, a) < 0, jnp.stack([mid, hi]), jnp.stack([lo, mid]))

        lo, hi = jax.lax.fori_loop(0, 60, body, jnp.asarray([-9.5, -8.0]))
        return (lo + hi) / 2

    x2 = jax.jit(jax.vmap(bisect))(level)
    return np.asarray(jnp.stack([14 * lam - 7, x2], axis=1), np.float64)


def distance_to(points: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point (N, 2) to the nearest point of the curve (M, 2)."""
    return np.min(np.linalg.norm(points[:, None, :] - curve[None, :, :], axis=2), axis=1)


def skip_reason(name: str) -> str | None:
    """Why a registered method does not run on the toy, or None when it does."""
    if name == "static":
        return "its weights are the user's choice; with weights 1 it is equal"
    entry = METHODS.get(name)
    method = entry.build(entry.schema(**OVERRIDES.get(name, {})), TASKS)
    if method.needs is Needs.REPR_GRADS:
        return "needs gradients of a shared representation; here x itself is the model"
    if method.on_eval is not None:
        return "moves its weights after validation evaluations; the toy has no validation data"
    if method.prepare is not None:
        return "looks ahead through a model and its data (validation rows, representation gradients)"
    return None


def descend(name: str, starts: jax.Array, steps: int, scale: float, lr: float = 1e-3) -> np.ndarray:
    """Adam on x along method `name`'s direction from every start: trajectories (S, steps + 1, 2),
    all starts in one jit(vmap(lax.scan))."""
    entry = METHODS.get(name)
    cfg = entry.schema(**OVERRIDES.get(name, {}))
    method = entry.build(cfg, TASKS)
    hp = {k: jnp.asarray(v) for k, v in dynamic_values(cfg).items()}
    uses_grads = method.needs is not Needs.LOSSES
    shift = SHIFT * jnp.asarray([scale, 1.0])
    tx = optax.adam(lr)
    key = jax.random.key(0)

    def from_start(x0):
        def step(carry, k):
            x, opt, mstate = carry
            f, jac = objectives(x, scale), jax.jacrev(objectives)(x, scale)
            out = method.update(f + shift, jac if uses_grads else None, mstate, jax.random.fold_in(key, k), hp)
            direction = out.weights @ jac if out.direction is None else out.direction
            update, opt = tx.update(direction, opt)
            return (x + update, opt, out.state), x

        carry = (x0, tx.init(x0), method.init(2, 2 if uses_grads else 0))
        (x, _, _), path = jax.lax.scan(step, carry, jnp.arange(steps))
        return jnp.concatenate([path, x[None]])

    return np.asarray(jax.jit(jax.vmap(from_start))(jnp.asarray(starts, jnp.float32)))


def plot(paths: dict[str, np.ndarray], setting: Setting, curve: np.ndarray, path: Path) -> None:
    """One panel per method: trajectories over the contours of f1 + f2, the Pareto set in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-11, 11, 241)
    xx, yy = np.meshgrid(grid, grid)
    points = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], axis=1), jnp.float32)
    total = np.asarray(jax.vmap(lambda p: objectives(p, setting.scale).sum())(points)).reshape(xx.shape)
    cols = 5
    rows = -(-len(paths) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    colors = plt.cm.tab10(np.arange(len(setting.starts)))
    for ax, (name, traj) in zip(axes.ravel(), paths.items()):
        ax.contour(xx, yy, total, levels=20, cmap="viridis", linewidths=0.6)
        ax.plot(curve[:, 0], curve[:, 1], color="0.5", linewidth=4, zorder=1)
        for run, color in zip(traj, colors):
            stride = max(1, len(run) // 2000)
            ax.plot(run[::stride, 0], run[::stride, 1], color=color, linewidth=1.2, zorder=3)
            ax.plot(*run[0], "ko", markersize=5, zorder=4)
            ax.plot(*run[-1], "x", color=color, markersize=7, mew=2, zorder=5)
        ax.set_title(name)
        ax.set_xlim(-11, 11)
        ax.set_ylim(-11, 11)
        ax.set_aspect("equal")
    for ax in axes.ravel()[len(paths):]:
        ax.axis("off")
    fig.suptitle(f"{setting.source}, {len(next(iter(paths.values()))[0]) - 1} Adam steps: "
                 "trajectories over contours of f1 + f2; Pareto set in grey")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def endpoint_rows(paths: dict[str, np.ndarray], setting: Setting, curve: np.ndarray) -> list[dict]:
    """One row per (method, start): final x, f1, f2 and distance to the Pareto set."""
    rows = []
    for name, traj in paths.items():
        ends = traj[:, -1]
        f = np.asarray(jax.vmap(lambda p: objectives(p, setting.scale))(jnp.asarray(ends)))
        for start, end, fs, dist in zip(setting.starts, ends, f, distance_to(ends, curve)):
            rows.append({"method": name, "start": start, "x": end.tolist(), "f1": float(fs[0]),
                         "f2": float(fs[1]), "distance": float(dist)})
    return rows


def markdown(results: dict[str, list[dict]], steps: dict[str, int], skipped: dict[str, str]) -> str:
    """The endpoints report: a summary per method, then every run."""
    lines = ["# Two-objective toy: where each method ends (Adam, lr 1e-3)", "",
             f"Reached: final distance to the Pareto set below {REACHED}. Non-finite: the run produced NaN "
             "or inf. f1 includes its scale s. Not run: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "."]
    for key, rows in results.items():
        lines += ["", f"## {SETTINGS[key].source}, {steps[key]} steps", "",
                  "| method | reached | non-finite | max finite distance |", "|---|--:|--:|--:|"]
        for name in dict.fromkeys(r["method"] for r in rows):
            d = np.asarray([r["distance"] for r in rows if r["method"] == name])
            finite = d[np.isfinite(d)]
            worst = f"{finite.max():.3g}" if finite.size else "-"
            lines.append(f"| {name} | {int(np.sum(d < REACHED))}/{d.size} | {d.size - finite.size} | {worst} |")
        lines += ["", "| method | start | final x | f1 | f2 | distance |", "|---|---|---|--:|--:|--:|"]
        for r in rows:
            lines.append(f"| {r['method']} | ({r['start'][0]:g}, {r['start'][1]:g}) | "
                         f"({r['x'][0]:.3f}, {r['x'][1]:.3f}) | {r['f1']:.3f} | {r['f2']:.3f} | {r['distance']:.3g} |")
    return "\n".join(lines) + "\n"


def run_study(out_dir: Path, steps: int | None = None, settings: tuple[str, ...] = tuple(SETTINGS),
              methods: tuple[str, ...] | None = None) -> dict[str, list[dict]]:
    """Run the applicable methods (all, or those named) in each setting, for `steps` Adam steps
    (default: the setting's paper's count); write one PNG per setting and endpoints.md.
    Returns the endpoint rows per setting."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = METHODS.names() if methods is None else list(methods)  # unknown names fail in skip_reason
    skipped = {n: r for n in chosen if (r := skip_reason(n)) is not None}
    names = [n for n in chosen if n not in skipped]
    curve = pareto_set()
    results, counts = {}, {}
    for key in settings:
        setting = SETTINGS[key]
        counts[key] = setting.steps if steps is None else steps
        paths = {n: descend(n, jnp.asarray(setting.starts), counts[key], setting.scale) for n in names}
        plot(paths, setting, curve, out_dir / f"trajectories_{key}.png")
        results[key] = endpoint_rows(paths, setting, curve)
    (out_dir / "endpoints.md").write_text(markdown(results, counts, skipped))
    return results
