"""What every dataset returns: task specs plus train/val/test arrays.

A dataset builder takes its config (a dataclass from its own module) and returns a `DataSource`.
`DataSource.generate(key, hparams)` is a pure JAX function: it is called once per job, outside
the training program, and its result is passed into the compiled run as an argument (never
closed over, so large arrays are not baked into the program). Numbers that change the data but
not its shapes (e.g. the task correlation) arrive in `hparams`, so a batched sweep can vary them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Literal, NamedTuple

import jax

from harness.errors import bad

Kind = Literal["classification", "regression", "segmentation", "depth", "normal"]
DENSE = ("segmentation", "depth", "normal")  # kinds with one target per pixel

# Every metric a kind's evaluation computes (harness.train.losses, harness.train.dense), with
# whether lower is better; the first is the kind's primary metric. A TaskSpec lists the others
# it reports in `secondary`. OPT_IN are evaluated only where a dataset asks for them (adding one
# to every task of a kind would move the delta_m of records already written).
METRICS: dict[str, dict[str, bool]] = {
    "classification": {"accuracy": False, "macro_f1": False, "auc": False},
    "regression": {"mse": True, "mae": True},
    "segmentation": {"miou": False, "pixel_acc": False},
    "depth": {"abs_err": True, "rel_err": True},
    "normal": {"mean_angle": True, "median_angle": True, "within_11.25": False, "within_22.5": False,
               "within_30": False},
}
OPT_IN = {"classification": ("auc",)}


@dataclass(frozen=True)
class TaskSpec:
    """One task: its loss and metric follow from `kind`.

    classification: labels int32 of shape (N,), output_size = number of classes,
        loss softmax cross-entropy, metric "accuracy" (higher is better).
    regression: targets float32 of shape (N, output_size), loss mean squared error,
        metric "mse" (lower is better).
    missing_labels: some rows lack the label (class -1, or a NaN target; harness.data.labels).
        Loss, metric and target scale then average over the labelled entries only. A static
        choice: fully labelled tasks compile the plain means, exactly as before.

    Dense kinds (one target per pixel of an image; `shape` = (H, W), the image's size):
    segmentation: labels int32 (N, H, W), -1 = ignored pixel, output_size = number of classes;
        loss per-pixel cross-entropy, metric "miou" over the whole split (higher is better).
    depth: targets float32 (N, H, W, 1), 0 = invalid pixel; loss L1 on valid pixels, metric
        "abs_err" (lower is better).
    normal: targets float32 (N, H, W, 3) unit vectors, all zero = invalid pixel; loss
        1 - cosine on valid pixels, metric "mean_angle" in degrees (lower is better).

    secondary: the task's other metrics (names from METRICS[kind], each with its own direction),
        evaluated beside the primary one (`metric`) and recorded with it; the verdict reads the
        primary one, delta_m all of them (harness.analysis). The builders below list every
        metric of the kind but the opt-in ones (OPT_IN: "auc", the ROC AUC of a two-class
        task's positive-class probability, harness.train.auc); a spec built directly lists none
        unless told.
    """

    name: str
    kind: Kind
    output_size: int
    metric: str
    lower_is_better: bool
    missing_labels: bool = False
    shape: tuple[int, ...] = ()  # dense kinds: (H, W); () for one target per input
    secondary: tuple[str, ...] = ()

    def __post_init__(self):
        known = METRICS.get(self.kind, {})
        for name in self.secondary:
            if name not in known or name == self.metric:
                raise bad(f"task {self.name} secondary metric", name,
                          f"one of {', '.join(m for m in known if m != self.metric)}")
        if "auc" in self.secondary and self.output_size != 2:
            raise bad(f"task {self.name} secondary metric", "auc",
                      f"a metric of a two-class task; {self.name} has {self.output_size} classes")

    @property
    def dense(self) -> bool:
        return self.kind in DENSE

    @property
    def metrics(self) -> dict[str, bool]:
        """Metric name -> lower is better: the primary metric first, then the secondary ones."""
        return {self.metric: self.lower_is_better, **{m: METRICS[self.kind][m] for m in self.secondary}}


def record_spec(spec: TaskSpec) -> dict:
    """The spec as a run record keeps it: `shape` only for dense tasks, `secondary` (name ->
    lower is better, so a record reads without this module) only where the task has them;
    without either, as records were before both existed."""
    d = dataclasses.asdict(spec)
    if not spec.shape:
        d.pop("shape")
    else:
        d["shape"] = list(spec.shape)
    d.pop("secondary")
    if spec.secondary:
        d["secondary"] = {m: METRICS[spec.kind][m] for m in spec.secondary}
    return d


def _others(kind: str) -> tuple[str, ...]:
    return tuple(m for m in tuple(METRICS[kind])[1:] if m not in OPT_IN.get(kind, ()))


def segmentation(name: str, num_classes: int, shape: tuple[int, int]) -> TaskSpec:
    return TaskSpec(name, "segmentation", num_classes, "miou", False, shape=tuple(shape),
                    secondary=_others("segmentation"))


def depth(name: str, shape: tuple[int, int]) -> TaskSpec:
    return TaskSpec(name, "depth", 1, "abs_err", True, shape=tuple(shape), secondary=_others("depth"))


def normal(name: str, shape: tuple[int, int]) -> TaskSpec:
    return TaskSpec(name, "normal", 3, "mean_angle", True, shape=tuple(shape), secondary=_others("normal"))


def classification(name: str, num_classes: int, missing_labels: bool = False, auc: bool = False) -> TaskSpec:
    """With `auc` (two classes only), the ROC AUC too."""
    return TaskSpec(name, "classification", num_classes, "accuracy", False, missing_labels,
                    secondary=_others("classification") + (("auc",) if auc else ()))


def regression(name: str, output_size: int = 1, missing_labels: bool = False) -> TaskSpec:
    return TaskSpec(name, "regression", output_size, "mse", True, missing_labels, secondary=_others("regression"))


class Split(NamedTuple):
    """Inputs and one target array per task. A row may lack a task's label: class label -1 or a
    NaN target (harness.data.labels).

    x is either one (N, D) array whose rows every task reads, or, for a dataset whose tasks have
    their own inputs (LibMTL's "multi-input" setting: Office-31's domains), task name -> that
    task's (N_t, D) inputs, with y[t] of N_t rows. Each task then trains and is evaluated on its
    own rows only; the lengths may differ, so nothing is padded."""

    x: jax.Array | dict[str, jax.Array]  # (N, D) float32, or task name -> (N_t, D)
    y: dict[str, jax.Array]  # task name -> (N,) int32 or (N, k) float32


def own_inputs(split: Split) -> bool:
    """Whether each task of the split has its own inputs (x is task -> array)."""
    return isinstance(split.x, dict)


def task_inputs(split: Split, task: str) -> jax.Array:
    """The rows task `task` reads: its own inputs, or the ones every task shares."""
    return split.x[task] if own_inputs(split) else split.x


def task_sizes(split: Split) -> dict[str, int]:
    """Task name -> the number of rows it has in the split (its own or the shared ones)."""
    return {n: task_inputs(split, n).shape[0] for n in split.y}


def keep_tasks(split: Split, names) -> Split:
    """The split with the named tasks only (and only their inputs, where each has its own)."""
    x = {n: split.x[n] for n in names} if own_inputs(split) else split.x
    return Split(x, {n: split.y[n] for n in names})


class Dataset(NamedTuple):
    train: Split
    val: Split
    test: Split


@dataclass(frozen=True)
class DataSource:
    """A built dataset.

    tasks:     task specs in a fixed order (the order of every (T,) array in the harness).
    input_dim: D, the width of x (of every task's x, where each task has its own).
    generate:  pure JAX `(key, hparams) -> Dataset`; `hparams` holds the `dynamic` values.
    dynamic:   name -> default value of the numbers that enter `generate` as arrays.
    describe:  host-side summary of a generated Dataset for the run record
               (e.g. the realised label correlation); returns plain floats.
    """

    tasks: tuple[TaskSpec, ...]
    input_dim: int
    generate: Callable[[jax.Array, dict[str, jax.Array]], Dataset]
    dynamic: dict[str, float]
    describe: Callable[[Dataset], dict[str, Any]]

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)


def select_tasks(source: DataSource, names: list[str] | None, key: str = "data.tasks") -> DataSource:
    """Keep only the named tasks (in the given order); an unknown name is a ConfigError."""
    if names is None:
        return source
    available = source.task_names
    for name in names:
        if name not in available:
            raise bad(key, name, f"this dataset's tasks are {', '.join(available)}")
    if len(set(names)) != len(names) or not names:
        raise bad(key, list(names), "a non-empty list of distinct task names")
    keep = tuple(t for n in names for t in source.tasks if t.name == n)

    def generate(k, hp):
        return Dataset(*(keep_tasks(s, names) for s in source.generate(k, hp)))

    return DataSource(keep, source.input_dim, generate, source.dynamic, source.describe)


# name -> Entry(config dataclass, build(cfg) -> DataSource); filled by the dataset modules.
from harness.registry import Registry  # noqa: E402

DATASETS = Registry("data")
