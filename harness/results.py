"""Run records (one JSON file per run, written atomically) and their collection into pandas.

Layout of a sweep directory:
    <sweep>/<job>/runs/seed_<s>.json          multi-task runs of one job (one file per seed)
    <baselines>/<stl config hash>/seed_<s>.json   matched single-task runs, shared across jobs
A record is complete or absent: it is written to a temporary file and renamed into place.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pandas as pd


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_jsonable))


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
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


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


def record_row(rec: dict) -> dict[str, Any]:
    """One runs-table row from a record (see harness.analysis for the column contract)."""
    row: dict[str, Any] = {
        "kind": rec["kind"], "config_hash": rec["config_hash"], "label": rec.get("label", ""),
        "seed": rec["seed"], "status": rec["status"],
        "diverged_step": rec["diverged_step"] if rec.get("diverged_step") is not None else math.nan,
        "task": rec.get("task"), "compile_s": rec["timing"]["compile_s"], "run_s": rec["timing"]["run_s"],
    }
    for split in ("val", "test"):
        for name, value in rec["metrics"][split].items():
            row[f"{split}.{name}"] = math.nan if value is None else value
    for name, spec in rec["task_specs"].items():
        row[f"metric.{name}"] = spec["metric"]
        row[f"lower_is_better.{name}"] = spec["lower_is_better"]
    for name, trend in (rec.get("val_trend") or {}).items():
        row[f"val_trend.{name}"] = math.nan if trend is None else trend
    floor = rec.get("reference")
    if floor and rec.get("task"):  # a baseline's linear reference (harness.reference)
        row[f"reference.model.{rec['task']}"] = floor["model"]
        for split in ("val", "test"):
            row[f"reference.{split}.{rec['task']}"] = math.nan if floor[split] is None else floor[split]
    counts = rec.get("param_count") or {}
    for key in ("total", "shared", "width"):  # the width built, after model.target_params
        row[f"params.{key}"] = counts.get(key, math.nan)
    for name, h in (rec.get("baselines") or {}).items():
        row[f"baseline.{name}"] = h
    _flatten("cfg", rec["config"], row)
    for key, value in (rec.get("data_info") or {}).items():
        if not isinstance(value, (list, dict)):
            row[f"data_info.{key}"] = value
    return row


def find_records(sweep_dir: Path) -> list[Path]:
    """Every complete record under a sweep directory, plus the baselines its runs refer to."""
    sweep_dir = Path(sweep_dir)
    paths = set(sweep_dir.rglob("seed_*.json"))
    extra_dirs = set()
    for p in list(paths):
        rec = read_record(p)
        if rec and rec.get("baseline_dir"):
            base = Path(rec["baseline_dir"])
            base = base if base.is_absolute() else (p.parent / base)
            for h in (rec.get("baselines") or {}).values():
                extra_dirs.add((base / h).resolve())
    for d in extra_dirs:
        paths.update(d.glob("seed_*.json"))
    return sorted({p.resolve() for p in paths})


def collect(sweep_dir: Path) -> pd.DataFrame:
    """All runs of a sweep (also one that died midway) as a DataFrame, one row per run."""
    rows = [record_row(rec) for rec in (read_record(p) for p in find_records(sweep_dir)) if rec]
    if not rows:
        return pd.DataFrame(columns=["kind", "config_hash", "label", "seed", "status", "task"])
    frame = pd.DataFrame(rows).drop_duplicates(subset=["kind", "config_hash", "seed"])
    return frame.sort_values(["kind", "label", "config_hash", "seed"], ignore_index=True)


def existing_seeds(run_dir: Path, config_hash_: str, seeds: Iterable[int]) -> list[int]:
    """Seeds whose record already exists for this exact configuration."""
    done = []
    for s in seeds:
        rec = read_record(record_path(run_dir, s))
        if rec is not None and rec.get("config_hash") == config_hash_:
            done.append(s)
    return done
