"""Run records: the `Record` type (the schema, written once and versioned), atomic JSON IO, and
their collection into pandas.

Layout of a sweep directory:
    <sweep>/<job>/runs/seed_<s>.json          multi-task runs of one job (one file per seed)
    <baselines>/<stl config hash>/seed_<s>.json   matched single-task runs, shared across jobs
A record is complete or absent: it is written to a temporary file and renamed into place.

Schema versions: 1 is every record written before `schema_version` existed (no such key; optional
fields may be missing); 2 has the same shape and writes every field, also on failed and diverged
runs. A reader skips a record whose version it does not know (`UnknownVersion`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA_VERSION = 2
KNOWN_VERSIONS = (1, 2)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; give it the mode any other new file gets (0666 less the
        # umask), so colleagues on a shared machine can read the results.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# JSON has no NaN or infinity (Python writes `NaN` tokens other parsers refuse): a non-finite
# number is written as {"$float": "nan" | "inf" | "-inf"} and read back as that float.
NON_FINITE = "$float"


def strict(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by its explicit encoding (arrays as lists)."""
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        obj = obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return {NON_FINITE: repr(obj)}
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def _decode(obj: dict) -> Any:
    if len(obj) == 1 and NON_FINITE in obj:
        return float(obj[NON_FINITE])
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Strict JSON (non-finite numbers encoded, see NON_FINITE), written atomically."""
    atomic_write_text(path, json.dumps(strict(obj), indent=1, sort_keys=True, allow_nan=False))


def read_json(text: str) -> Any:
    """The inverse of write_json's encoding (plain JSON, and `NaN` tokens of older files, too)."""
    return json.loads(text, object_hook=_decode)


def _jsonable(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def config_hash(config: dict) -> str:
    """Identity of a configuration (without seeds): a short hash of its canonical JSON."""
    text = json.dumps(config, sort_keys=True, default=_jsonable)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def record_path(run_dir: Path, seed: int) -> Path:
    return Path(run_dir) / f"seed_{seed}.json"


def read_record(path: Path) -> dict | None:
    """A record file's raw JSON, or None when it is missing or not valid JSON."""
    try:
        return read_json(Path(path).read_text())
    except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
        return None


class RecordError(ValueError):
    """A file that is valid JSON but not a run record (wrong shape, missing required fields)."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(f"{path}: {message}" if path is not None else message)
        self.path = path


class UnknownVersion(RecordError):
    """A record of a schema version this harness does not read (written by a newer one)."""

    def __init__(self, version: Any, path: Path | None = None):
        known = ", ".join(map(str, KNOWN_VERSIONS))
        super().__init__(f"schema_version {version!r} is unknown (this harness reads {known})",
                         path)
        self.version = version


@dataclass
class Record:
    """One run's record: a multi-task run of one seed, or one seed of a single-task baseline.

    kind: "mtl" (multi-task run) or "stl" (single-task baseline).
    config: the resolved config (dataclasses.asdict of the RunConfig); config_hash: its identity
        (harness.records.config_hash, seeds left out); label: the job's name in the sweep
        ("stl:<task>" for a baseline).
    task: the task of a baseline, None for a multi-task run; tasks: the tasks trained, in order;
        task_specs: task -> dataclasses.asdict(TaskSpec) (metric, lower_is_better, kind, ...).
    seed: the run's seed. status: "ok", "diverged" (a non-finite loss at diverged_step) or
        "failed" (the job raised; `error` says what).
    metrics: split ("val", "test") -> task -> the metric at the selected evaluation; None unless
        the run is ok. selected_step: task -> step of that evaluation.
    secondary: split -> task -> metric -> value: the tasks' secondary metrics (task_specs'
        "secondary") read at the same evaluation as `metrics` (for last_k, the same window); None
        unless the run is ok. Empty in records written before tasks had secondary metrics, and for
        tasks without them: such a task has its primary metric only.
    val_trend: task -> the relative change (%) of the validation metric over the last quarter of
        training, signed so that positive is improving; None when it cannot be computed.
    curves: "steps" (the evaluation steps) and per series a dict of per-evaluation lists: by task
        ("val", "test", "val_loss", "train_loss", "weights", "grad_norm"), by unordered pair "a|b"
        ("grad_cos", "conflict"), by ordered pair "a>b" ("affinity"), by "<task>.<metric>" the
        tasks' secondary metrics ("val_secondary", "test_secondary"), and "diagnostics": a
        method's own values by "<name>.<task>" or "<name>" (each the mean over its evaluation
        window). Empty for a failed run.
    timing: compile_s, run_s and how the run was batched (batch, group_units, ...).
    param_count: total, shared, per-task and the width built (after model.target_params).
    baselines: (mtl) task -> config hash of its matched baseline; baseline_dir: (mtl) where those
        live, relative to the record's folder. reference: (stl) the linear reference floor of the
        baseline's task ({model, val, test, ...}).
    warnings: notes on the run (e.g. task losses on very different scales).
    selection: under protocol=tuned (harness.run.tuned), which phase the run belongs to and what
        was chosen: {"phase": "tune", "values": {key: value}} for a candidate on a tuning seed;
        {"phase": "confirm", "values": ..., "candidates": n, "score": ...} for the chosen
        configuration retrained on a fresh seed. Empty under protocol=fixed.
    versions, git_commit, device: the environment that ran it; data_info: the dataset's own
        description (e.g. realised label correlation).
    schema_version: the record's schema version (see KNOWN_VERSIONS).
    """
    kind: str
    config: dict
    config_hash: str
    label: str
    task: str | None
    tasks: list[str]
    task_specs: dict
    seed: int
    status: str
    metrics: dict
    diverged_step: int | None = None
    error: str | None = None
    selected_step: dict = field(default_factory=dict)
    secondary: dict = field(default_factory=dict)
    val_trend: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    param_count: dict = field(default_factory=dict)
    baselines: dict = field(default_factory=dict)
    baseline_dir: str | None = None
    reference: dict | None = None
    warnings: list[str] = field(default_factory=list)
    selection: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    git_commit: str | None = None
    device: str | None = None
    data_info: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able data (the same keys whatever the status)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        """Read a record of a known version; keys this version does not define are ignored.

        Raises UnknownVersion for any other version and RecordError when a required field is
        missing. Version 1 records may lack label, task and tasks, which default to "", None and
        the tasks of task_specs; a null optional field takes its default.
        """
        if not isinstance(d, dict):
            raise RecordError(f"a record is a JSON object, not {type(d).__name__}")
        version = d.get("schema_version", 1)
        if isinstance(version, bool) or version not in KNOWN_VERSIONS:
            raise UnknownVersion(version)
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise RecordError(f"not a run record: missing {', '.join(missing)}")
        metrics, specs = d["metrics"], d["task_specs"]
        if not (isinstance(metrics, dict) and all(isinstance(metrics.get(s), dict) for s in ("val", "test"))
                and isinstance(specs, dict) and all(isinstance(v, dict) for v in specs.values())):
            raise RecordError("not a run record: metrics needs val and test tables, task_specs one spec per task")
        values = {}
        for f in dataclasses.fields(cls):
            value = d.get(f.name)
            if value is None and f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            values[f.name] = value
        values["schema_version"] = version
        if values["label"] is None:
            values["label"] = ""
        if values["tasks"] is None:
            values["tasks"] = list(d["task_specs"])
        return cls(**values)


# Fields without which no reader can place a run; the other fields take defaults.
_REQUIRED = ("kind", "config", "config_hash", "task_specs", "seed", "status", "metrics")


def write_record(path: Path, rec: Record) -> None:
    """Write a record atomically (see atomic_write_bytes)."""
    write_json(path, rec.to_dict())


def load_record(path: Path) -> Record | None:
    """The record at `path`; None when the file is missing.

    Raises UnknownVersion (a record of a version this harness does not read) or RecordError
    (an empty, truncated or non-UTF-8 file, or JSON that is not a record), each naming the path.
    """
    try:
        raw = read_json(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = "empty" if isinstance(err, json.JSONDecodeError) and not err.doc.strip() else "not valid JSON"
        raise RecordError(f"{reason} (a truncated or foreign file)", Path(path)) from None
    try:
        return Record.from_dict(raw)
    except UnknownVersion as err:
        raise UnknownVersion(err.version, Path(path)) from None
    except RecordError as err:
        raise RecordError(str(err), Path(path)) from None


def environment() -> dict[str, Any]:
    """Versions, git commit and device, for every record."""
    import flax
    import jax
    import optax

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    dev = jax.devices()[0]
    return {
        "versions": {"python": sys.version.split()[0], "jax": jax.__version__, "flax": flax.__version__,
                     "optax": optax.__version__, "platform": platform.platform()},
        "git_commit": commit,
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
    }


def _flatten(prefix: str, obj: Any, out: dict, depth: int = 0) -> None:
    """cfg.<group>.<field> columns; a field holding a dict or list (task sizes, a task tree)
    is one JSON cell, so parquet columns keep one type and an empty dict still has a column."""
    if isinstance(obj, dict) and depth < 2:
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}", v, out, depth + 1)
    elif isinstance(obj, (dict, list, tuple)):
        out[prefix] = json.dumps(obj, sort_keys=True)
    else:
        out[prefix] = obj


def record_row(rec: Record) -> dict[str, Any]:
    """One runs-table row from a record (see harness.analysis for the column contract)."""
    row: dict[str, Any] = {
        "kind": rec.kind, "config_hash": rec.config_hash, "label": rec.label,
        "seed": rec.seed, "status": rec.status,
        "diverged_step": rec.diverged_step if rec.diverged_step is not None else math.nan,
        "task": rec.task, "compile_s": rec.timing.get("compile_s", math.nan),
        "run_s": rec.timing.get("run_s", math.nan), "batch": rec.timing.get("batch", math.nan),
    }
    if "program_bytes" in rec.timing:  # XLA's figure for the program the run was part of
        row["program_bytes"] = rec.timing["program_bytes"]
        row["program_runs"] = rec.timing["program_runs"]
    for split in ("val", "test"):
        for name, value in rec.metrics[split].items():
            row[f"{split}.{name}"] = math.nan if value is None else value
    for name, spec in rec.task_specs.items():
        row[f"metric.{name}"] = spec["metric"]
        row[f"lower_is_better.{name}"] = spec["lower_is_better"]
        # Secondary metrics: which a task has ("a,b"; the column is absent for records without
        # any, read as primary only), their directions and their values per split.
        recorded = {m: low for m, low in spec.get("secondary", {}).items()
                    if all(m in rec.secondary.get(split, {}).get(name, {}) for split in ("val", "test"))}
        if recorded:
            row[f"secondary.{name}"] = ",".join(recorded)
        for m, low in recorded.items():
            row[f"lower_is_better.{name}.{m}"] = low
            for split in ("val", "test"):
                value = rec.secondary[split][name][m]
                row[f"{split}.{name}.{m}"] = math.nan if value is None else value
    for name, trend in rec.val_trend.items():
        row[f"val_trend.{name}"] = math.nan if trend is None else trend
    floor = rec.reference
    if floor and rec.task:  # a baseline's linear reference (harness.reference)
        row[f"reference.model.{rec.task}"] = floor["model"]
        for split in ("val", "test"):
            row[f"reference.{split}.{rec.task}"] = math.nan if floor[split] is None else floor[split]
    for key in ("total", "shared", "width"):  # the width built, after model.target_params
        row[f"params.{key}"] = rec.param_count.get(key, math.nan)
    for name, h in rec.baselines.items():
        row[f"baseline.{name}"] = h
    if rec.selection:  # protocol=tuned (harness.run.tuned)
        row["phase"] = rec.selection.get("phase")
    if rec.selection.get("phase") == "confirm":
        row["chosen"] = ", ".join(f"{k}={v}" for k, v in rec.selection.get("values", {}).items())
        row["candidates"] = rec.selection.get("candidates", math.nan)
        row["front"] = bool(rec.selection.get("front", False))
    _flatten("cfg", rec.config, row)
    for key, value in rec.data_info.items():
        if not isinstance(value, (list, dict)):
            row[f"data_info.{key}"] = value
    return row


def find_records(sweep_dir: Path) -> list[Path]:
    """Every record file under a sweep directory, plus the baselines its runs refer to.

    A record of an unknown version is listed, but its baselines are not followed.
    """
    sweep_dir = Path(sweep_dir)
    paths = set(sweep_dir.rglob("seed_*.json"))
    extra_dirs = set()
    for p in list(paths):
        try:
            rec = load_record(p)
        except RecordError:
            continue
        if rec and rec.baseline_dir:
            base = Path(rec.baseline_dir)
            base = base if base.is_absolute() else (p.parent / base)
            for h in rec.baselines.values():
                extra_dirs.add((base / h).resolve())
    for d in extra_dirs:
        paths.update(d.glob("seed_*.json"))
    return sorted({p.resolve() for p in paths})


def load_records(sweep_dir: Path, skipped: list[RecordError] | None = None, tuning: bool = False) -> list[Record]:
    """Every complete record of a sweep, with the baselines its runs refer to; without the
    tuning runs of protocol=tuned (phase "tune") unless `tuning`.

    Files that are not readable records (unknown schema version, empty, truncated, foreign) are
    left out; each one's RecordError (UnknownVersion for a version; .path names the file) is
    appended to `skipped` when given.
    """
    records = []
    for path in find_records(sweep_dir):
        try:
            rec = load_record(path)
        except RecordError as err:
            if skipped is not None:
                skipped.append(err)
            continue
        if rec is not None and (tuning or rec.selection.get("phase") != "tune"):
            records.append(rec)
    return records


def skipped_summary(skipped: Sequence[RecordError]) -> str:
    """The closing line of a collection that skipped files: how many, and why."""
    n = len(skipped)
    versions = sum(isinstance(err, UnknownVersion) for err in skipped)
    known = ", ".join(map(str, KNOWN_VERSIONS))
    parts = ([f"{versions} of an unknown schema version (this harness reads {known})"] if versions else [])
    if n - versions:
        parts.append(f"{n - versions} unreadable (empty, truncated or not a record)")
    return f"skipped {n} record file{'' if n == 1 else 's'}: {'; '.join(parts)}"


def collect(sweep_dir: Path, skipped: list[RecordError] | None = None, tuning: bool = False) -> pd.DataFrame:
    """All runs of a sweep (also one that died midway) as a DataFrame, one row per run.

    Files that are not readable records are left out and appended to `skipped` (see
    load_records). The tuning runs of protocol=tuned (phase "tune") are left out unless
    `tuning`: only the confirmation runs enter a table.
    """
    rows = [record_row(rec) for rec in load_records(sweep_dir, skipped, tuning)]
    if not rows:
        return pd.DataFrame(columns=["kind", "config_hash", "label", "seed", "status", "task"])
    frame = pd.DataFrame(rows).drop_duplicates(subset=["kind", "config_hash", "seed"])
    return frame.sort_values(["kind", "label", "config_hash", "seed"], ignore_index=True)


def existing_seeds(run_dir: Path, config_hash_: str, seeds: Iterable[int]) -> list[int]:
    """Seeds whose record already exists for this exact configuration (of any version: a run
    is not repeated over a record a newer harness wrote). A failed record does not count: its
    run is retried (a diverged one is a result and is kept)."""
    done = []
    for s in seeds:
        rec = read_record(record_path(run_dir, s))
        if isinstance(rec, dict) and rec.get("config_hash") == config_hash_ and rec.get("status") != "failed":
            done.append(s)
    return done
