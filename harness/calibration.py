"""How often the verdicts are right, measured on designs whose truth is known
(experiments/calibration.yaml).

Each design runs many seeds once (one batched program per static configuration). Disjoint
groups of n seeds then stand for independent n-seed studies ("replications"), each judged
exactly as the transfer table judges a configuration: per task the paired r_t over the group's
seeds, a two-sided one-sample t-test, Holm across the configuration's tasks at family level
1 - LEVEL (harness.analysis). Counting verdicts over replications gives rates, each with its
Clopper-Pearson 95% interval:

- a *null* design (no effect by construction): the rate of replications in which any task of
  the family gets a positive or negative verdict, to set against the nominal 1 - LEVEL;
- a design with a known *positive* or *negative* effect on a task: the rate of replications
  that give that task the right verdict (the power at n seeds), and the rate that give it the
  opposite one.

Pure functions over the paired table of `harness.analysis.paired`; `CalibrationTable` is the
Hydra callback that writes calibration.md and calibration.parquet beside a sweep's report.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from scipy import stats

from harness.analysis import LEVEL, family_verdicts, paired

SEED_COUNTS = (3, 5, 10, 20)
TRUTHS = ("none", "positive", "negative")


def seed_groups(seeds: Sequence[int], n: int) -> list[list[int]]:
    """The sorted distinct seeds cut into consecutive disjoint groups of n (a short rest dropped)."""
    ordered = sorted(set(int(s) for s in seeds))
    return [ordered[i:i + n] for i in range(0, len(ordered) - n + 1, n)]


def replicate(pairs: pd.DataFrame, n: int, level: float = LEVEL) -> pd.DataFrame:
    """Verdicts of every n-seed replication: one row per (config_hash, replication, task) with
    columns config_hash, replication, task, n, r_mean, verdict. A replication holds the seeds
    of one group for which every task of the configuration has a pair."""
    rows = []
    for config, group in pairs.groupby("config_hash", sort=False):
        wide = group.pivot_table(index="seed", columns="task", values="r", aggfunc="first").dropna()
        for i, seeds in enumerate(seed_groups(wide.index, n)):
            sample = wide.loc[seeds]
            verdicts = family_verdicts([sample[t].to_numpy(float) for t in wide.columns], level)
            rows += [{"config_hash": config, "replication": i, "task": t, "n": n,
                      "r_mean": float(sample[t].mean()), "verdict": v}
                     for t, v in zip(wide.columns, verdicts)]
    return pd.DataFrame(rows, columns=["config_hash", "replication", "task", "n", "r_mean", "verdict"])


def rate_interval(k: int, m: int, level: float = 0.95) -> tuple[float, float, float]:
    """k of m as a rate with its Clopper-Pearson (exact binomial) interval; NaN when m is 0."""
    if m == 0:
        return np.nan, np.nan, np.nan
    ci = stats.binomtest(k, m).proportion_ci(level, method="exact")
    return k / m, float(ci.low), float(ci.high)


def _matches(frame: pd.DataFrame, match: Mapping[str, Any]) -> pd.Series:
    hit = pd.Series(True, index=frame.index)
    for key, want in match.items():
        column = frame[f"cfg.{key}"]
        try:
            hit &= np.isclose(column.astype(float), float(want))
        except (TypeError, ValueError):  # lists are stored as their text, "[0.02, 1.0]"
            hit &= column.astype(str).str.replace(" ", "") == str(list(want) if isinstance(want, (list, tuple))
                                                                    else want).replace(" ", "")
    return hit


def calibration_table(pairs: pd.DataFrame, designs: Sequence[Mapping[str, Any]],
                      counts: Sequence[int] = SEED_COUNTS, level: float = LEVEL) -> pd.DataFrame:
    """Rates of the verdicts per design and seed count.

    `designs`: each {name, truth, match}; `match` maps config keys (`data.correlation`) to the
    values that pick the design's configurations out of `pairs`; `truth` is "none",
    "positive" or "negative" for every task, or a task -> truth mapping. Rows: design, truth,
    task ("any" for the family-wise rate of a null design), n (seeds per replication),
    replications, the rate of the right verdict (for a null: of a wrong one, i.e. any positive
    or negative verdict) with its interval, and the rate of the opposite verdict for a known
    effect.
    """
    rows = []
    for design in designs:
        chosen = pairs[_matches(pairs, design["match"])]
        truth = design["truth"]
        for n in counts:
            reps = replicate(chosen, n, level)
            if isinstance(truth, str) and truth == "none":
                family = reps.groupby(["config_hash", "replication"])["verdict"].apply(
                    lambda v: bool(v.ne("inconclusive").any()))
                rows.append(_row(design["name"], "none", "any", n, int(family.sum()), len(family), None))
                continue
            for task, want in ((truth if isinstance(truth, Mapping) else
                                {t: truth for t in sorted(chosen["task"].unique())}).items()):
                verdicts = reps.loc[reps["task"].eq(task), "verdict"]
                if want == "none":
                    rows.append(_row(design["name"], want, task, n, int(verdicts.ne("inconclusive").sum()),
                                     len(verdicts), None))
                    continue
                opposite = "negative" if want == "positive" else "positive"
                rows.append(_row(design["name"], want, task, n, int(verdicts.eq(want).sum()), len(verdicts),
                                 int(verdicts.eq(opposite).sum())))
    return pd.DataFrame(rows)


def _row(name: str, truth: str, task: str, n: int, k: int, m: int, wrong: int | None) -> dict:
    rate, lo, hi = rate_interval(k, m)
    return {"design": name, "truth": truth, "task": task, "n": n, "replications": m,
            "measures": "wrong verdict" if truth == "none" else f"{truth} verdict",
            "rate": rate, "rate_lo": lo, "rate_hi": hi,
            "opposite": np.nan if wrong is None else wrong / m if m else np.nan}


def to_markdown(table: pd.DataFrame, level: float = LEVEL) -> str:
    """The calibration table as markdown, rates in %."""
    def pct(x: float) -> str:
        return "–" if pd.isna(x) else f"{100 * x:.0f}"

    shown = pd.DataFrame({
        "design": table["design"], "truth": table["truth"], "task": table["task"],
        "seeds": table["n"].astype(str), "replications": table["replications"].astype(str),
        "rate of": table["measures"],
        "rate % [95% CI]": [f"{pct(r)} [{pct(lo)}, {pct(hi)}]"
                            for r, lo, hi in table[["rate", "rate_lo", "rate_hi"]].to_numpy()],
        "opposite verdict %": table["opposite"].map(pct),
    })
    note = (f"Rates over disjoint groups of seeds, each judged as the transfer table judges a "
            f"configuration (paired r_t, t-test, Holm over its tasks at family level {1 - level:.2g}); "
            "intervals are Clopper-Pearson 95%. For a design without effect (truth none) the rate "
            "is of replications with any positive or negative verdict on the row's task ('any': on "
            f"any task of the configuration), to set against the nominal {1 - level:.0%}; for a known "
            "effect it is the power: the rate of the right verdict.")
    return f"{note}\n\n{shown.to_markdown(index=False, disable_numparse=True)}\n"


def write(out_dir: Path, designs: Sequence[Mapping[str, Any]], counts: Sequence[int] = SEED_COUNTS) -> Path:
    """calibration.md and calibration.parquet from the records under out_dir."""
    from harness.records import atomic_write_bytes, atomic_write_text, collect

    runs = collect(out_dir)
    table = calibration_table(paired(runs, "test"), designs, counts)
    path = out_dir / "calibration.md"
    atomic_write_text(path, f"# Calibration of the verdicts\n\n{to_markdown(table)}")
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    atomic_write_bytes(out_dir / "calibration.parquet", buffer.getvalue())
    return path


class CalibrationTable(Callback):
    """Hydra callback: the calibration table of a sweep's designs (Hydra calls end callbacks in
    reverse order, so this one may run before CollectTable: it collects the records itself)."""

    def __init__(self, designs: Any, counts: Any = SEED_COUNTS):
        self.designs = OmegaConf.to_container(designs) if isinstance(designs, DictConfig) or \
            OmegaConf.is_config(designs) else list(designs)
        self.counts = tuple(counts)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write(Path(config.hydra.sweep.dir), self.designs, self.counts)
        print(f"calibration: {path}")
