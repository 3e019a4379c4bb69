"""The records' learning curves and training diagnostics as one long table.

A record's `curves` (see harness.records.Record) hold `steps` (the evaluation steps) and, per
series, a dict of per-evaluation lists: keyed by task ("val", "test", "val_loss", "train_loss",
"weights", "grad_norm"), by unordered pair "a|b" ("grad_cos", "conflict"), by ordered pair "a>b"
("affinity"), or by a method's diagnostic "<name>.<task>" / "<name>" ("diagnostics").
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from harness.records import Record

COLUMNS = ["kind", "config_hash", "seed", "series", "key", "step", "value"]


def curve_frame(records: Iterable[Record | dict]) -> pd.DataFrame:
    """One row per (ok record, series, key, evaluation); columns COLUMNS.

    Records given as dicts are read through Record.from_dict. Diverged and failed runs are left
    out, as in the transfer table. Missing values (null in JSON) become NaN.
    """
    parts = []
    for rec in records:
        rec = rec if isinstance(rec, Record) else Record.from_dict(rec)
        curves = rec.curves
        if rec.status != "ok" or not curves.get("steps"):
            continue
        steps = np.asarray(curves["steps"])
        for series, per_key in curves.items():
            if not isinstance(per_key, dict):
                continue
            for key, values in per_key.items():
                values = np.array([np.nan if v is None else v for v in values], dtype=float)
                n = min(len(steps), len(values))
                parts.append(pd.DataFrame({
                    "kind": rec.kind, "config_hash": rec.config_hash, "seed": rec.seed,
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
