"""A unit's outputs as run records (harness.records.Record), one per seed, written atomically:
the selected evaluation per task, the learning curves, and the checks that travel with a run
(its validation trend; a baseline's linear reference floor; a warning when task losses are on
very different scales). A failed unit gets records of the same shape, status "failed"."""
from __future__ import annotations

import logging
from pathlib import Path

import jax
import numpy as np

from harness.records import Record, record_path, write_record
from harness.reference import reference_floor
from harness.run import teachers
from harness.run.plan import Unit

log = logging.getLogger(__name__)

TREND_WINDOW = 0.25  # the last quarter of training
LOSS_RATIO_WARN = 100.0


def val_trend(curve: np.ndarray, lower_is_better: bool) -> float | None:
    """How much the validation metric still moved over the last quarter of training, in % of
    where it stood then, oriented so positive = still improving and negative = getting worse
    (overfitting). None with fewer than two evaluations."""
    n = len(curve)
    if n < 2:
        return None
    back = max(1, round(n * TREND_WINDOW))
    then, last = float(curve[n - 1 - back]), float(curve[n - 1])
    if then == 0 or not np.isfinite([then, last]).all():
        return None
    return (-1.0 if lower_is_better else 1.0) * (last - then) / abs(then) * 100.0


def loss_scale_warning(names: list[str], first_losses: np.ndarray) -> str | None:
    """One line when the tasks' training losses in the first evaluation window differ by more
    than LOSS_RATIO_WARN times: the largest then dominates every shared update."""
    losses = np.asarray(first_losses, dtype=float)
    finite = np.isfinite(losses) & (losses > 0)
    if finite.sum() < 2:
        return None
    lo, hi = losses[finite].min(), losses[finite].max()
    if hi / lo <= LOSS_RATIO_WARN:
        return None
    shown = ", ".join(f"{n} {v:.3g}" for n, v in zip(names, losses))
    return (f"task losses differ {hi / lo:.3g}x at the first evaluation ({shown}): the largest "
            "dominates the shared layers; keep train.standardize_targets=true for regression "
            "targets or weight the tasks (method=static method.weights=...)")


def select_evaluation(val: np.ndarray, test: np.ndarray, lower_is_better: list[bool], select: str,
                      last_k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The metrics a run reports, per task, from its (E, T) validation and test curves: `best`
    reads the evaluation with the best validation metric, `final` the last one, `last_k` the mean
    of the last `last_k` (the Nash-MTL convention). Returns val[T], test[T] and the index of the
    evaluation each task was read at (for last_k the last of its window). Only the validation
    curve ever chooses."""
    E, T = val.shape
    if select == "last_k":
        window = slice(max(0, E - last_k), E)
        return val[window].mean(axis=0), test[window].mean(axis=0), np.full(T, E - 1)
    orient = np.array([-1.0 if low else 1.0 for low in lower_is_better])
    pick = np.argmax(val * orient, axis=0) if select == "best" else np.full(T, E - 1)
    return val[pick, np.arange(T)], test[pick, np.arange(T)], pick


def select_secondary(out: dict, i: int, tasks, pick: np.ndarray, select: str, last_k: int,
                     ok: bool) -> dict:
    """Seed i's secondary metrics, split -> task -> metric -> value, read where its primary
    metric was (`pick` from select_evaluation: the same evaluation, or for last_k the mean over
    the same window); None when the run is not ok. Empty for tasks without secondary metrics."""
    result = {}
    for split, values in out.get("secondary", {}).items():
        result[split] = {}
        for j, t in enumerate(tasks):
            if not t.secondary:
                continue
            chosen = {}
            for m in t.secondary:
                curve = np.asarray(values[f"{t.name}.{m}"][i], dtype=float)
                value = curve[max(0, len(curve) - last_k):].mean() if select == "last_k" else curve[int(pick[j])]
                chosen[m] = float(value) if ok else None
            result[split][t.name] = chosen
    return result


def curves(out: dict, i: int, names: list[str], steps: list[int]) -> dict:
    """Seed i's learning curves: per task, per task pair, and the method's diagnostics."""
    result: dict = {"steps": steps}
    for key in ("val", "test", "val_loss", "train_loss", "weights", "grad_norm"):
        if key in out:
            result[key] = {n: out[key][i][:, j].tolist() for j, n in enumerate(names)}
    for key in ("grad_cos", "conflict"):  # symmetric: one entry per unordered pair
        if key in out:
            result[key] = {f"{a}|{b}": out[key][i][:, ia, ib].tolist()
                           for ia, a in enumerate(names) for ib, b in enumerate(names) if ia < ib}
    if "affinity" in out:  # Z[a -> b]: a step on a, effect on b
        result["affinity"] = {f"{a}>{b}": out["affinity"][i][:, ia, ib].tolist()
                              for ia, a in enumerate(names) for ib, b in enumerate(names) if ia != ib}
    for split, values in out.get("secondary", {}).items():  # the tasks' secondary metrics
        result[f"{split}_secondary"] = {name: np.asarray(v[i]).tolist() for name, v in values.items()}
    if out.get("diagnostics"):  # a method's own values: (E,) or (E, T) per name
        result["diagnostics"] = {}
        for name, value in out["diagnostics"].items():
            value = np.asarray(value[i])
            if value.ndim == 1:
                result["diagnostics"][name] = value.tolist()
            else:
                result["diagnostics"].update({f"{name}.{n}": value[:, j].tolist() for j, n in enumerate(names)})
    return result


def records(run, tasks, out: dict, seeds: list[int], timing: dict, common: dict) -> list[Record]:
    """One record per seed from the batched outputs (leading axis: seeds); `common` holds the
    fields its seeds share (kind, config, config_hash, label, task, tasks, task_specs, ...)."""
    K, E = run.train.eval_every, out["val"].shape[1]
    steps = [(e + 1) * K for e in range(E)]
    names = [t.name for t in tasks]
    lower = [t.lower_is_better for t in tasks]
    recs = []
    for i, seed in enumerate(seeds):
        diverged = int(out["diverged_at"][i])
        ok = diverged < 0
        val, test = np.asarray(out["val"][i]), np.asarray(out["test"][i])
        chosen_val, chosen_test, pick = select_evaluation(val, test, lower, run.train.select, run.train.last_k)
        metrics = {split: {t.name: (float(arr[j]) if ok else None) for j, t in enumerate(tasks)}
                   for split, arr in (("val", chosen_val), ("test", chosen_test))}
        recs.append(Record(
            **common, seed=seed, status="ok" if ok else "diverged",
            diverged_step=None if ok else diverged, metrics=metrics,
            secondary=select_secondary(out, i, tasks, pick, run.train.select, run.train.last_k, ok),
            selected_step={t.name: steps[int(pick[j])] for j, t in enumerate(tasks)},
            val_trend={t.name: (val_trend(val[:, j], t.lower_is_better) if ok else None)
                       for j, t in enumerate(tasks)},
            curves=curves(out, i, names, steps), timing={**timing, **out.get("memory", {})}))
    return recs


def failed(unit: Unit, timing: dict, error: str) -> list[Record]:
    return [Record(**unit.common, seed=s, status="failed", error=error,
                   metrics={split: {t.name: None for t in unit.tasks} for split in ("val", "test")},
                   timing=timing) for s in unit.seeds]


# Reference floors already fitted in this process, by (data config, task, rows): the floor
# depends on the data alone, and the tuned protocol writes many baselines of one task (one per
# candidate learning rate), each of which would otherwise fit the same linear models again.
_FLOORS: dict[tuple, dict] = {}


def _floor(unit: Unit, task, rows: int | None) -> dict:
    key = (repr(unit.run.data), task.name, rows)
    if key not in _FLOORS:
        _FLOORS[key] = reference_floor(task, unit.data, rows)
    return dict(_FLOORS[key])


def write_unit(unit: Unit, out: dict | None, timing: dict, error: str | None = None) -> list[Path]:
    """Write one record per seed of a unit: from its outputs, or as failed with the error."""
    recs = (failed(unit, timing, error) if out is None
            else records(unit.run, unit.tasks, out, unit.seeds, timing, unit.common))
    if out is not None and unit.kind == "stl":  # kept first: a record promises its teacher
        for i, seed in enumerate(unit.seeds):
            teachers.save(unit.out_dir, seed, jax.tree.map(lambda a: a[i], out["params"]))
        (task,) = unit.tasks
        rows = (getattr(unit.run.data, "train_rows", None) or {}).get(task.name)
        # A linear model per pixel of a dense task's images is no meaningful floor.
        floor = None if task.dense else _floor(unit, task, rows)
        for rec in recs:
            rec.reference = floor
    if out is not None and unit.kind == "mtl":
        warning = loss_scale_warning([t.name for t in unit.tasks], np.nanmean(out["train_loss"][:, 0], axis=0))
        if warning:
            log.warning(f"{unit.common['label']}: {warning}")
            for rec in recs:
                rec.warnings = [warning]
    paths = []
    for rec in recs:
        path = record_path(unit.out_dir, rec.seed)
        write_record(path, rec)
        paths.append(path)
    return paths
