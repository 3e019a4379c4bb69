"""Typed config schemas, registered in Hydra's ConfigStore, and validation with one-line errors.

Group options (data, model, method) have their schema next to their code and are found through
the registries; this module stores every schema under `schema/<group>/<name>` so each YAML in
conf/<group>/ extends its schema (`- /schema/<group>/<name>@_here_`) and is type-checked by it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

import harness.data  # noqa: F401  (fills DATASETS)
import harness.methods  # noqa: F401  (fills METHODS)
import harness.models  # noqa: F401  (fills MODELS)
from harness.data.base import DATASETS
from harness.errors import ConfigError, bad
from harness.methods.base import METHODS
from harness.methods.equal import EqualConfig
from harness.models.base import MODELS
from harness.schema import added, dynamic, unset_additions

SCHEDULES = ("joint", "alternate")
SAMPLINGS = ("uniform", "round_robin", "proportional", "active")
OPTIMIZER_STATES = ("per_task", "shared")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "warmup_cosine")
SELECTIONS = ("best", "final", "last_k")
PROTOCOLS = ("fixed", "tuned")
SEARCHES = ("grid", "random")
# Config groups whose fields protocol.space may tune (a key is `<group>.<field>`).
TUNABLE_GROUPS = ("optim", "method", "model", "distill", "train")


@dataclass
class ScheduleConfig:
    """joint: every step uses every task. alternate: each step trains one task (Godwin 2016)."""

    name: str = "joint"
    # alternate only: uniform | round_robin | proportional | active (Sharma et al. 2017: tasks
    # further below their single-task target are drawn more often; harness.methods.active_weighting)
    sampling: str = "uniform"
    optimizer_state: str = "per_task"  # alternate only: per_task (own Adam moments) | shared
    # alternate only: the tasks the per-step draw picks from (null: the run's own tasks). The
    # single-task baseline of an alternate run draws from that run's tasks and trains its task
    # only at the steps the draw picks it, so both sides get the same updates (`single_task`).
    draw_from: Optional[list[str]] = added(None)
    # sampling=active only: the softmax temperature tau of the target gaps, and the targets, one
    # per task in task order in the metrics' own units (null: the matched single-task
    # baselines' final validation scores, same seed). Relative gaps mostly lie within [0, 1],
    # where tau = 1 leaves the draw near uniform (0.48-0.52 on digits); 0.1 turns a gap
    # difference of 0.1 into a factor e.
    temperature: float = added(0.1, metadata={"dynamic": True})
    targets: Optional[list[float]] = added(None, metadata={"dynamic": True})


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | sgd
    lr: float = dynamic(1e-3)
    weight_decay: float = dynamic(0.0)  # adamw only
    momentum: float = 0.9  # sgd only
    lr_schedule: str = "constant"  # constant | cosine | warmup_cosine
    warmup_steps: int = 0
    clip_norm: Optional[float] = None  # global-norm clipping; couples tasks through the norm


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 128
    eval_every: int = 100
    # best: per task, the evaluation with the best validation metric (so an overfitting run is
    # judged before it overfits); final: the last evaluation; last_k: the mean of the last
    # `last_k` evaluations (the Nash-MTL convention, Navon et al. 2022: the last 10 epochs).
    select: str = "best"
    last_k: int = added(10)
    # Regression targets standardised with their train-split mean and std for the loss; metrics
    # stay in the targets' own units. Without it a task in large units dominates every shared layer.
    standardize_targets: bool = True
    # Per step: cosine between task gradients on the shared parameters, conflicts, norms
    # (costs one backward pass per task when the method does not need them anyway).
    diagnostics: bool = False
    # Per step: TAG inter-task affinity from a lookahead step per task (Fifty et al. 2021).
    affinity: bool = False
    # Save the training state with orbax every this many steps (a multiple of eval_every that
    # divides steps); an interrupted run re-run resumes from the latest save. null = off.
    checkpoint_every: Optional[int] = None


@dataclass
class DistillConfig:
    """Knowledge distillation from the single-task baselines (Hinton et al. 2015; Crawshaw 2020
    survey, section 2.6): task t's training loss becomes (1 - weight) L_t + weight KD_t, with KD_t
    the distance from the same-seed single-task baseline of t, computed on each batch inside the
    compiled run (harness.train.losses.distillation). Off by default; weight 0 is plain training."""

    enabled: bool = False
    weight: float = dynamic(0.5)  # in [0, 1]
    temperature: float = dynamic(2.0)  # softening of classification logits (> 0)


@dataclass
class ProtocolConfig:
    """How a configuration is compared with its baselines (harness.run.tuned).

    fixed: the configuration as given, its baselines with the same learning rate and step
    budget, on `seeds` seeds. tuned: the comparison of the evaluation papers (Kurin et al. 2022;
    Xin et al. 2022; Gama & Grassi 2025): the configuration and every single-task baseline each
    get the same search over `space` on `tune_seeds` seeds, each is chosen on the validation
    split only, and the chosen ones are retrained on `confirm_seeds` fresh seeds (the seeds after
    the tuning ones), which alone enter the transfer table."""

    name: str = "fixed"  # fixed | tuned
    # <group> -> <field> -> the values to search, e.g. {optim: {lr: [3e-4, 1e-3, 3e-3]}}; on the
    # command line protocol.space.optim.lr=[1e-3,1e-2], ~protocol.space.optim.weight_decay. A key
    # a configuration does not have (method.c under method=equal; any method key for a baseline,
    # which trains with equal weights) is not searched for it.
    space: Dict[str, Dict[str, List[Any]]] = field(default_factory=dict)
    search: str = "grid"  # grid: every point of the space | random: `budget` points drawn from it
    budget: int = 8  # random search: points per configuration and per baseline
    search_seed: int = 0  # random search: which points are drawn
    tune_seeds: int = 3
    confirm_seeds: Optional[int] = None  # null: `seeds`
    # The scalarization front (Xin et al. 2022) beside every configuration: method=static over
    # the weight vectors a / front * T (positive integers a summing to `front`; 2-3 tasks) or
    # `front` Dirichlet draws (more tasks), each tuned and confirmed like any configuration.
    # 0: no front.
    front: int = 0


@dataclass
class Config:
    data: Any = MISSING
    model: Any = MISSING
    method: Any = MISSING
    schedule: ScheduleConfig = MISSING
    optim: OptimConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    seeds: int = 5  # number of seeds, run as one vmap-ed program
    seed: int = 0  # first seed; runs use seed, seed+1, ..., seed+seeds-1
    baselines: bool = True  # train (or reuse) the matched single-task runs
    baseline_dir: Optional[str] = None  # default: <sweep dir>/baselines
    study: str = "adhoc"
    # JAX's persistent compilation cache: re-running a study does not recompile. null = off.
    compile_cache: Optional[str] = ".cache/jax"
    # In a sweep, skip the jobs whose parts refuse each other (a method that does not work with
    # the schedule), one line each, and run the rest; false refuses the whole sweep up front.
    skip_incompatible: bool = False
    # What the task function returns, for sweepers that optimise (hydra/sweeper=optuna):
    # "delta_m" (mean r_t over tasks against the baselines, on the validation split) or
    # "val.<task>" (that task's validation metric, mean over seeds). Never a test metric.
    objective: str = "delta_m"


def job_dirname(override_dirname: str, limit: int = 120) -> str:
    """A sweep job's directory name from its overrides: one path component (a `/` in a value,
    e.g. data.path=data/x.npz, would nest directories), and long names shortened to `limit`
    characters with a hash of the whole so that they stay distinct."""
    name = override_dirname.replace("/", "%2F").replace("\\", "%5C") or "job"
    if name in (".", ".."):
        name = name.replace(".", "%2E")
    if len(name) > limit:
        digest = hashlib.sha1(override_dirname.encode()).hexdigest()[:10]
        name = f"{name[:limit - 11]}-{digest}"
    return name


# hydra.sweep.subdir of conf/config.yaml goes through this (Hydra resolves it per job, in any
# process that imports the harness).
OmegaConf.register_new_resolver("job_dirname", job_dirname, replace=True)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="schema/schedule", name="schedule", node=ScheduleConfig)
    cs.store(group="schema/optim", name="optim", node=OptimConfig)
    cs.store(group="schema/protocol", name="protocol", node=ProtocolConfig)
    for group, registry in (("data", DATASETS), ("model", MODELS), ("method", METHODS)):
        for name in registry.names():
            cs.store(group=f"schema/{group}", name=name, node=registry.get(name).schema)


@dataclass(frozen=True)
class RunConfig:
    """The validated config of one job, as plain dataclass objects."""

    data: Any
    model: Any
    method: Any
    schedule: ScheduleConfig
    optim: OptimConfig
    train: TrainConfig
    seeds: int
    seed: int
    baselines: bool
    baseline_dir: Optional[str]
    study: str
    compile_cache: Optional[str]
    distill: DistillConfig = field(default_factory=DistillConfig)
    skip_incompatible: bool = False
    objective: str = "delta_m"
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)


# Fields that say where or how many, not what: excluded from a configuration's identity. The last
# three say how a sweep treats its jobs and are not kept in records either (harness.run.plan).
NOT_IDENTITY = ("seeds", "seed", "baseline_dir", "study", "baselines", "compile_cache",
                "skip_incompatible", "objective", "protocol")
SWEEP_ONLY = ("skip_incompatible", "objective", "protocol")


def identity(run: RunConfig) -> dict[str, Any]:
    """What a configuration is, without its seeds and locations (hashed into config_hash).
    Fields marked `added` (harness.schema) count only once set away from their default."""
    d = {k: v for k, v in dataclasses.asdict(run).items() if k not in NOT_IDENTITY}
    if not run.distill.enabled:  # runs without distillation are identified as before it existed
        d.pop("distill")
    for group, value in d.items():
        if isinstance(value, dict):
            for name in unset_additions(getattr(run, group)):
                value.pop(name)
    return d


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise bad(key, value, f"one of {', '.join(allowed)}")


def _positive(key: str, value) -> None:
    if value is None or not value > 0:
        raise bad(key, value, "a number > 0")


def _finite(key: str, value) -> None:
    """Every number of a config is finite: no field means anything by NaN or inf (a NaN lr or an
    inf weight would only produce a run that diverges at its first step)."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _finite(f"{key}.{f.name}" if key else f.name, getattr(value, f.name))
    elif isinstance(value, dict):
        for name, item in value.items():
            _finite(f"{key}.{name}", item)
    elif isinstance(value, (list, tuple)):
        if any(isinstance(v, float) and not math.isfinite(v) for v in value):
            raise bad(key, list(value), "finite numbers")
        for item in value:
            if dataclasses.is_dataclass(item) or isinstance(item, dict):
                _finite(key, item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise bad(key, value, "a finite number")


def validate(run: RunConfig) -> None:
    """Check everything that does not need the data; raises ConfigError (one line)."""
    _finite("", run)
    if run.objective != "delta_m" and not run.objective.startswith("val."):
        raise bad("objective", run.objective, "delta_m or val.<task> (a validation metric: selecting "
                  "on the test split would report a biased test result)")
    for key, value in (("seeds", run.seeds), ("train.steps", run.train.steps),
                       ("train.batch_size", run.train.batch_size),
                       ("train.eval_every", run.train.eval_every), ("optim.lr", run.optim.lr)):
        _positive(key, value)
    if run.train.eval_every > run.train.steps or run.train.steps % run.train.eval_every:
        raise bad("train.eval_every", run.train.eval_every, f"a divisor of train.steps ({run.train.steps})")
    every = run.train.checkpoint_every
    if every is not None and (every <= 0 or every % run.train.eval_every or run.train.steps % every):
        raise bad("train.checkpoint_every", every,
                  f"a multiple of train.eval_every ({run.train.eval_every}) dividing train.steps ({run.train.steps})")
    if run.seed < 0:
        raise bad("seed", run.seed, "an integer >= 0")
    _choice("train.select", run.train.select, SELECTIONS)
    evaluations = run.train.steps // run.train.eval_every
    if run.train.select == "last_k" and not 1 <= run.train.last_k <= evaluations:
        raise bad("train.last_k", run.train.last_k,
                  f"an integer in [1, {evaluations}] (the run's evaluations: train.steps / train.eval_every)")
    _choice("schedule.name", run.schedule.name, SCHEDULES)
    _choice("schedule.sampling", run.schedule.sampling, SAMPLINGS)
    _choice("schedule.optimizer_state", run.schedule.optimizer_state, OPTIMIZER_STATES)
    _choice("optim.name", run.optim.name, OPTIMIZERS)
    _choice("optim.lr_schedule", run.optim.lr_schedule, LR_SCHEDULES)
    if not 0.0 <= run.optim.momentum < 1.0:
        raise bad("optim.momentum", run.optim.momentum, "a number in [0, 1)")
    if run.optim.weight_decay < 0:
        raise bad("optim.weight_decay", run.optim.weight_decay, "a number >= 0")
    if run.optim.warmup_steps < 0 or run.optim.warmup_steps >= run.train.steps:
        raise bad("optim.warmup_steps", run.optim.warmup_steps, f"0 <= warmup_steps < train.steps ({run.train.steps})")
    if run.optim.clip_norm is not None:
        _positive("optim.clip_norm", run.optim.clip_norm)
    if run.schedule.draw_from is not None and run.schedule.name != "alternate":
        raise bad("schedule.draw_from", run.schedule.draw_from, "null unless schedule=alternate")
    validate_active(run)
    validate_protocol(run)
    if run.distill.enabled:
        if not 0.0 <= run.distill.weight <= 1.0:
            raise bad("distill.weight", run.distill.weight, "a number in [0, 1]")
        _positive("distill.temperature", run.distill.temperature)
        if not run.baselines:
            raise bad("baselines", run.baselines, "true with distill.enabled (the teachers are the baselines)")


def validate_active(run: RunConfig) -> None:
    """Active sampling's keys (the targets' count is checked against the tasks by the planner)."""
    sch = run.schedule
    active = sch.name == "alternate" and sch.sampling == "active"
    _positive("schedule.temperature", sch.temperature)
    if sch.targets is not None and not active:
        raise bad("schedule.targets", list(sch.targets), "null unless schedule=alternate with schedule.sampling=active")
    if active and sch.draw_from is not None:
        raise bad("schedule.draw_from", list(sch.draw_from), "null with schedule.sampling=active (its "
                  "baselines train every step, harness.config.single_task)")
    for group in target_groups(run):
        if not run.baselines:
            raise bad(f"{group}.targets", None, "one target per task with baselines=false (by default "
                      "the targets are the single-task baselines' final validation scores)")
        if run.protocol.name == "tuned":
            raise bad(f"{group}.targets", None, "one target per task under protocol=tuned (the baselines "
                      "are only chosen after tuning)")


def target_groups(run: RunConfig) -> tuple[str, ...]:
    """The config groups whose per-task `targets` are left to the matched single-task baselines
    (their final validation scores, filled in at run time by harness.run.execute): the schedule
    under active sampling, and a method with a `targets` field, each while its targets are null."""
    sch = run.schedule
    groups = []
    if sch.name == "alternate" and sch.sampling == "active" and sch.targets is None:
        groups.append("schedule")
    if hasattr(run.method, "targets") and run.method.targets is None:
        groups.append("method")
    return tuple(groups)


def validate_protocol(run: RunConfig) -> None:
    p = run.protocol
    _choice("protocol.name", p.name, PROTOCOLS)
    _choice("protocol.search", p.search, SEARCHES)
    _positive("protocol.budget", p.budget)
    _positive("protocol.tune_seeds", p.tune_seeds)
    if p.front < 0 or p.front == 1:
        raise bad("protocol.front", p.front, "0 (no front) or an integer >= 2")
    if p.confirm_seeds is not None:
        _positive("protocol.confirm_seeds", p.confirm_seeds)
    for group, fields in p.space.items():
        if group not in TUNABLE_GROUPS:
            raise bad(f"protocol.space.{group}", fields, f"a config group among {', '.join(TUNABLE_GROUPS)}")
        for name, values in fields.items():
            key = f"protocol.space.{group}.{name}"
            if not _tunable(group, name):
                raise bad(key, values, f"a field of the {group} config ({group}.{name} is not one)")
            if not isinstance(values, (list, tuple)) or not values:
                raise bad(key, values, "a non-empty list of values, e.g. [0.001,0.01]")


def _tunable(group: str, name: str) -> bool:
    """Whether `<group>.<name>` is a field of the group's schema (of any of its options)."""
    fixed = {"optim": OptimConfig, "train": TrainConfig, "distill": DistillConfig}
    if group in fixed:
        return name in {f.name for f in dataclasses.fields(fixed[group])}
    registry = {"method": METHODS, "model": MODELS}[group]
    return any(name in {f.name for f in dataclasses.fields(registry.get(n).schema)} for n in registry.names())


def single_task(run: RunConfig, task: str, tasks: list[str] | None = None) -> RunConfig:
    """The matched single-task configuration of `task`: the same data (generated with every task,
    then only `task` kept), seeds, steps and optimiser, the model's own tower
    (`model.single_task()`), equal weights, no distillation, and the same updates as the task
    gets in the multi-task run: every step under joint; under alternate, exactly the steps at
    which the run's draw over `tasks` (its task list, required then) picks `task`, with the
    same batches and learning rates. Without this a baseline would get T times the updates of
    its task in an alternate run, and the schedule's step budget would pass for transfer.

    Under active sampling the draw depends on every task's validation scores, which a baseline
    alone cannot reproduce; its baseline keeps the run's total step budget and trains its task
    every step (as under joint). That is also what its target means: the score the task reaches
    given the whole budget alone (Sharma et al. 2017 take single-task results as targets)."""
    schedule = ScheduleConfig(name="joint")
    if run.schedule.name == "alternate" and run.schedule.sampling != "active":
        draw = list(run.schedule.draw_from or tasks or [])
        if task not in draw:
            raise ValueError(f"single_task({task!r}) of an alternate run needs the run's task list")
        # A single tower has no shared layers, so the optimiser-state choice does not apply.
        schedule = ScheduleConfig(name="alternate", sampling=run.schedule.sampling, draw_from=draw)
    return dataclasses.replace(
        run, data=dataclasses.replace(run.data, tasks=[task]), model=run.model.single_task(),
        method=EqualConfig(), schedule=schedule, distill=DistillConfig())


def _unknown_keys(node: DictConfig, prefix: str = "") -> None:
    """Every key of a schema-typed node is a field of its schema. Hydra adds `+optim.lrr=0.1`
    to the composed config and the conversion to dataclasses drops it without a word, so a typo
    would run the default configuration under a name that says otherwise."""
    schema = OmegaConf.get_type(node)
    fields = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    for key in node.keys():
        path = f"{prefix}{key}"
        if fields is not None and key not in fields:
            raise ConfigError(f"{path}={node[key]}: not a key of {schema.__name__} "
                              f"(its keys: {', '.join(sorted(fields))})")
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            _unknown_keys(child, f"{path}.")


def resolve(cfg: DictConfig) -> RunConfig:
    """DictConfig from Hydra -> validated RunConfig of dataclass objects."""
    _unknown_keys(cfg)
    obj = OmegaConf.to_object(cfg)
    run = RunConfig(
        data=obj.data, model=obj.model, method=obj.method, schedule=obj.schedule, optim=obj.optim,
        train=obj.train, seeds=obj.seeds, seed=obj.seed, baselines=obj.baselines,
        baseline_dir=obj.baseline_dir, study=obj.study, compile_cache=obj.compile_cache,
        distill=obj.distill, skip_incompatible=obj.skip_incompatible, objective=obj.objective,
        protocol=obj.protocol,
    )
    validate(run)
    return run
