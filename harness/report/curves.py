"""The records' learning curves and training diagnostics as one long table.

A record's `curves` hold `steps` (the evaluation steps) and, per series, a dict of per-evaluation
lists: keyed by task ("val", "test", "val_loss", "train_loss", "weights", "grad_norm"), by
unordered pair "a|b" ("grad_cos", "conflict") or by ordered pair "a>b" ("affinity").
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import pandas as pd

from harness.results import find_records, read_record

COLUMNS = ["kind", "config_hash", "seed", "series", "key", "step", "value"]


def load_records(sweep_dir: str | os.PathLike) -> list[dict]:
    """Every complete record of a sweep, with the baselines its runs refer to."""
    return [rec for rec in map(read_record, find_records(sweep_dir)) if rec]


def curve_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per (ok record, series, key, evaluation); columns COLUMNS.

    Diverged and failed runs are left out, as in the transfer table. Missing values (null in
    JSON) become NaN.
    """
    parts = []
    for rec in records:
        curves = rec.get("curves") or {}
        if rec.get("status") != "ok" or not curves.get("steps"):
            continue
        steps = np.asarray(curves["steps"])
        for series, per_key in curves.items():
            if not isinstance(per_key, dict):
                continue
            for key, values in per_key.items():
                values = np.array([np.nan if v is None else v for v in values], dtype=float)
                n = min(len(steps), len(values))
                parts.append(pd.DataFrame({
                    "kind": rec["kind"], "config_hash": rec["config_hash"], "seed": rec["seed"],
                    "series": series, "key": key, "step": steps[:n], "value": values[:n]}))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("step", "value") else object)
                             for c in COLUMNS})
    return pd.concat(parts, ignore_index=True)


def select(curves: pd.DataFrame, config_hash: str, series: str, key: str | None = None
           ) -> pd.DataFrame:
    """Rows of one configuration's series (and key), columns seed, key, step, value."""
    mask = curves["config_hash"].eq(config_hash) & curves["series"].eq(series)
    if key is not None:
        mask &= curves["key"].eq(key)
    return curves.loc[mask, ["seed", "key", "step", "value"]]


def configs_with(curves: pd.DataFrame, series: str) -> set[str]:
    """Config hashes with at least one finite value of `series`."""
    rows = curves[curves["series"].eq(series) & np.isfinite(curves["value"])]
    return set(rows["config_hash"])
