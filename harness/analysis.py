"""Pair multi-task runs with their single-task baselines and judge transfer per task.

Input is the runs table of `harness.records.collect` (one row per run); the rules are stated in
`CONVENTIONS`, which every report repeats.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import optimize, stats

LEVEL = 0.95
POWER = 0.80  # of the minimum detectable effect
MIN_SEEDS = 5
TREND_FLAG = 2.0  # % of movement of a baseline's val metric in its last quarter worth a flag

CONVENTIONS = f"""\
- **Relative change** of task t: `r_t = s_t * (M_mtl - M_stl) / |M_stl| * 100`, with `s_t = +1` \
where higher is better and `-1` where lower is better. Positive = multi-task helped.
- **Pairing**: each multi-task seed is paired with the same seed of the task's single-task \
baseline; only pairs where both runs are ok enter. Diverged or failed multi-task seeds are \
counted (`n_mtl_failed`), never averaged in.
- **Intervals**: Student-t {LEVEL:.0%} intervals over the paired seeds, for each side's metric and \
for the per-seed paired r_t.
- **Verdict**: a two-sided one-sample t-test of the paired r_t against 0, Holm-corrected across \
the tasks of one configuration at family level {1 - LEVEL:.2g}: negative transfer when it rejects \
with mean r_t < 0, positive when it rejects with mean r_t > 0, otherwise inconclusive. The shown \
r_t interval is unadjusted, so it can exclude 0 while the Holm-corrected verdict stays \
inconclusive. Identical r_t on every seed (zero variance, two seeds or more) counts as a sure \
sign: p = 0 when nonzero, p = 1 when zero.
- **Minimum detectable effect** (`mde`, in % like r_t): the smallest |mean r_t| that the \
verdict's test would detect with {POWER:.0%} power, given the row's n paired seeds and the \
observed standard deviation of its r_t, at level {1 - LEVEL:.2g}/m (m tested tasks of the \
configuration: Holm's strictest step, so whatever the other tasks do): mde = d* x sd, where d* \
solves the noncentral-t power equation of the two-sided one-sample t-test with n - 1 degrees of \
freedom. An inconclusive row with mde 2 could not have told +1% from 0; one with mde 40 could \
hardly have told anything. The observed sd stands in for the true one, so mde is itself an \
estimate, rough at small n.
- **Underpowered**: fewer than {MIN_SEEDS} paired seeds; with fewer than 2 there is no interval \
and the verdict is inconclusive.
- **Matched baselines**: the baseline of task t has t's own tower, data, seeds, optimiser, \
learning-rate schedule and batches, and gets exactly the updates t gets in the multi-task run: \
every step under `schedule=joint`; under `schedule=alternate`, only the steps at which the \
run's task draw picks t (the same draw, so about steps/T updates), never the full budget. \
Separate towers (`model.shared_depth=0`, equal weights) therefore give r_t = 0 exactly under \
every schedule: any r_t is the effect of sharing, not of the step budget. The exception is \
`schedule.sampling=active`, whose draw depends on every task's scores: its baselines train \
every step (the run's whole budget, and the targets it samples towards), so there r_t also \
counts the steps the draw gave to other tasks.
- **Selection and units**: each run's metric is read at the evaluation chosen by \
`train.select`: `best` (default; per task, the evaluation with the best validation metric), \
`final` (the last evaluation) or `last_k` (the mean of the last `train.last_k` evaluations, \
default 10: the Nash-MTL convention); only validation metrics choose. Regression targets are \
standardised on the train split for the loss (`train.standardize_targets`), and metrics are in \
the targets' own units.
- **Baseline checks**: `ref` is a linear reference fit on the baseline's train rows \
(logistic regression or ridge, its strength chosen on validation); `below ref` marks a \
single-task baseline whose mean metric is worse than it, so any positive r_t there may only \
make up for a weak baseline. `improving` / `worsening` marks a baseline whose validation metric \
still moved by more than {TREND_FLAG:g}% (mean over seeds) in the last quarter of training: \
under- or over-trained for the step budget.
- **Metrics**: each task has a primary metric (the one in the transfer table, its verdict and \
`ref`) and may have secondary ones (classification: macro-F1 over the classes seen as label or \
prediction, and where the dataset declares it the ROC AUC of a two-class task's positive-class \
probability, from 4096-bin score histograms; regression: MAE; segmentation: pixel accuracy; depth: relative error; normals: \
median angle and the share within 11.25, 22.5 and 30 degrees), read at the evaluation that \
selected the primary one. Every metric gets its own r with the sign of its own direction; the \
secondary metrics' table gives their intervals, without a verdict.
- **delta_m** = mean over the configuration's tasks of the mean over each task's metrics of \
the mean over seeds of its paired r (per task first, then over tasks: the multi-metric convention of \
Maninis et al. 2019 and Vandenhende et al. 2021, with positive = better); a task whose records \
hold its primary metric only (or whose baseline's do) contributes its primary r_t, so with one \
metric per task delta_m is the mean over tasks of r_t. `delta_m_primary` (in transfer.parquet) \
averages the primary metrics only. delta_m is missing when any of its metrics has no paired \
seed. Published code disagrees on the sign of delta_m (some use positive = worse) and on its \
averaging (some average all metrics flat, one library compares with the first epoch instead of \
single-task baselines).
"""

TABLE_COLUMNS = (
    "config_hash", "label", "task", "metric", "lower_is_better", "n", "n_mtl_failed",
    "stl_mean", "stl_lo", "stl_hi", "mtl_mean", "mtl_lo", "mtl_hi", "r_mean", "r_lo", "r_hi", "mde",
    "p_value", "p_holm", "verdict", "underpowered", "delta_m",
    "ref_model", "ref_mean", "stl_trend", "baseline_check",
)


TUNED_CONVENTION = """\
- **Tuned comparison** (`protocol=tuned`; Kurin et al. 2022, Xin et al. 2022): each multi-task \
configuration and each single-task baseline got the same search over `protocol.space` on the \
tuning seeds; each baseline was chosen by its mean validation metric, each configuration by its \
validation delta_m against the chosen baselines; no test metric was read before the choice. The \
chosen ones were retrained on fresh seeds (disjoint from the tuning seeds), and only those runs \
are in this table: `chosen` gives the configuration's chosen values and from how many candidates, \
`baseline chosen` the baselines'.
"""


def conventions(table: pd.DataFrame) -> str:
    """The conventions a report states: CONVENTIONS, and the tuned protocol's when its runs are in."""
    return CONVENTIONS + (TUNED_CONVENTION if "chosen" in table and table["chosen"].notna().any() else "")


def relative_change(mtl: ArrayLike, stl: ArrayLike, lower_is_better: bool) -> np.ndarray:
    """r = s * (mtl - stl) / |stl| * 100, s = -1 when lower is better: positive = MTL helped."""
    sign = -1.0 if lower_is_better else 1.0
    mtl, stl = np.asarray(mtl, dtype=float), np.asarray(stl, dtype=float)
    return sign * (mtl - stl) / np.abs(stl) * 100.0


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries (no test) are left out of the family."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted)
    return out


def cfg_columns(frame: pd.DataFrame) -> list[str]:
    """The flattened config columns (`cfg.<dotted.key>`)."""
    return [c for c in frame.columns if c.startswith("cfg.")]


def varying_columns(frame: pd.DataFrame) -> list[str]:
    """Config columns that take more than one value across rows (missing counts as a value)."""
    return [c for c in cfg_columns(frame) if frame[c].astype(str).nunique() > 1]


def _tasks(runs: pd.DataFrame) -> list[str]:
    return [c.removeprefix("baseline.") for c in runs.columns if c.startswith("baseline.")]


def _check_unique(runs: pd.DataFrame) -> None:
    # A duplicated seed would silently count twice in every interval.
    dup = runs.duplicated(["kind", "config_hash", "seed"])
    if dup.any():
        first = runs[dup].iloc[0]
        raise ValueError(
            f"runs table has several rows for kind={first['kind']!r}, "
            f"config_hash={first['config_hash']!r}, seed={first['seed']!r}")


def _pair(runs: pd.DataFrame, task: str, column: str, lower_is_better: bool) -> pd.DataFrame:
    """The ok multi-task runs of `task` joined with their same-seed baseline's on `column`."""
    cfg = cfg_columns(runs)
    ok = runs[runs["status"].eq("ok")]
    mtl, stl = ok[ok["kind"].eq("mtl")], ok[ok["kind"].eq("stl")]
    base = f"baseline.{task}"
    m = mtl.loc[mtl[base].notna(), ["config_hash", "label", "seed", base, column, *cfg]]
    m = m.rename(columns={base: "_baseline", column: "mtl"})
    s = stl[["config_hash", "seed", column]].rename(columns={"config_hash": "_baseline", column: "stl"})
    p = m.merge(s, on=["_baseline", "seed"], how="inner")
    p = p[p["mtl"].notna() & p["stl"].notna() & p["stl"].ne(0)]
    p["r"] = relative_change(p["mtl"], p["stl"], lower_is_better)
    p["task"] = task
    return p.drop(columns="_baseline")


def paired(runs: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """One row per (mtl config, task, seed) where the mtl run and its same-seed baseline are ok,
    on each task's primary metric.

    Columns: config_hash, label, task, seed, mtl, stl, r, then the mtl config's cfg.* columns.
    Pairs whose baseline metric is exactly 0 are dropped: r is undefined there.
    """
    _check_unique(runs)
    parts = [_pair(runs, task, f"{split}.{task}", _lower_is_better(runs, task)) for task in _tasks(runs)]
    columns = ["config_hash", "label", "task", "seed", "mtl", "stl", "r", *cfg_columns(runs)]
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True)[columns]
    return out.sort_values(["config_hash", "task", "seed"], kind="stable", ignore_index=True)


def _lower_is_better(runs: pd.DataFrame, task: str) -> bool:
    return bool(runs[f"lower_is_better.{task}"].dropna().iloc[0])


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and Student-t interval; NaN bounds below 2 values, a point when all are equal."""
    n = len(values)
    if n == 0:
        return np.nan, np.nan, np.nan
    mean = float(np.mean(values))
    if n < 2:
        return mean, np.nan, np.nan
    if np.ptp(values) == 0:
        return mean, mean, mean
    lo, hi = stats.t.interval(level, n - 1, loc=mean, scale=stats.sem(values))
    return mean, float(lo), float(hi)


def _p_value(r: np.ndarray) -> float:
    if len(r) < 2:
        return np.nan
    if np.ptp(r) == 0:
        # scipy returns NaN here; a nonzero constant change on every seed is a sure sign.
        return 0.0 if r[0] != 0 else 1.0
    return float(stats.ttest_1samp(r, 0.0).pvalue)


def family_verdicts(r: Sequence[np.ndarray], level: float = LEVEL) -> list[str]:
    """The verdicts of one configuration's tasks from their paired r_t (one array per task), by
    the rule of `transfer_table`: t-test per task, Holm across the tasks, sign of the mean."""
    p = holm([_p_value(np.asarray(values, float)) for values in r])
    return ["inconclusive" if not p_holm < 1 - level else "positive" if np.mean(values) > 0 else "negative"
            for values, p_holm in zip(r, p)]


def detectable_effect(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """The smallest |mean| that a two-sided one-sample t-test at level `alpha` detects with
    probability `power` from n values of standard deviation `sd`: d* x sd, with d* the effect
    size (mean / sd) whose noncentral-t power is `power`. NaN below 2 values; 0 when sd is 0
    (every nonzero change is then a sure sign, see `_p_value`)."""
    if n < 2 or not np.isfinite(sd):
        return np.nan
    if sd == 0:
        return 0.0
    df, root_n = n - 1, np.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(d: float) -> float:
        nc = d * root_n
        # The lower tail P(T < -crit) as P(T > crit) at -nc: scipy's cdf gives NaN far out.
        return stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc) - power

    high = 1.0
    while shortfall(high) < 0:  # power grows with d: bracket the root
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-10)) * sd


def transfer_table(runs: pd.DataFrame, split: str = "test", level: float = LEVEL) -> pd.DataFrame:
    """One row per (mtl config, task): intervals, Holm-corrected verdict and delta_m.

    Columns: TABLE_COLUMNS with the config's cfg.* columns inserted after `label`. Rows follow
    the varying config values in sorted order, tasks in column order.
    """
    pairs = paired(runs, split)
    cfg = cfg_columns(runs)
    tasks = _tasks(runs)
    rows, sds = [], []
    for config, group in runs[runs["kind"].eq("mtl")].groupby("config_hash", sort=False):
        first = group.iloc[0]
        n_failed = int(group["status"].ne("ok").sum())
        for task in [t for t in tasks if group[f"baseline.{t}"].notna().any()]:
            p = pairs[pairs["config_hash"].eq(config) & pairs["task"].eq(task)]
            row = {"config_hash": config, "label": first["label"], **first[cfg].to_dict(),
                   "task": task, "metric": first[f"metric.{task}"],
                   "lower_is_better": _lower_is_better(runs, task),
                   "n": len(p), "n_mtl_failed": n_failed}
            for side in ("stl", "mtl", "r"):
                row[f"{side}_mean"], row[f"{side}_lo"], row[f"{side}_hi"] = interval(
                    p[side].to_numpy(float), level)
            row["p_value"] = _p_value(p["r"].to_numpy(float))
            sds.append(float(np.std(p["r"].to_numpy(float), ddof=1)) if len(p) > 1 else np.nan)
            row.update(_baseline_checks(runs, group[f"baseline.{task}"].dropna().iloc[0], task,
                                        p["seed"], split, row["stl_mean"], row["lower_is_better"]))
            rows.append(row)
    columns = [*TABLE_COLUMNS[:2], *cfg, *TABLE_COLUMNS[2:]]
    checks = ["ref_model", "ref_mean", "stl_trend", "baseline_check"]
    table = pd.DataFrame(rows, columns=[*columns[:columns.index("p_value") + 1], *checks])
    by_config = table.groupby("config_hash", sort=False)
    table["p_holm"] = by_config["p_value"].transform(holm).astype(float)
    reject = table["p_holm"] < 1 - level
    table["verdict"] = np.select(
        [reject & (table["r_mean"] > 0), reject & (table["r_mean"] < 0)],
        ["positive", "negative"], "inconclusive")
    tested = by_config["p_value"].transform(lambda p: p.notna().sum())
    table["mde"] = [detectable_effect(sd, n, (1 - level) / max(m, 1))
                    for sd, n, m in zip(sds, table["n"], tested)]
    table["underpowered"] = table["n"] < MIN_SEEDS
    table["delta_m_primary"] = by_config["r_mean"].transform(lambda r: r.mean(skipna=False))
    table["delta_m"] = _delta_m(table, metric_table(runs, split, level))
    table = table.astype({"n": int, "n_mtl_failed": int, "lower_is_better": bool})
    table = _selection(table, runs)
    return _sort(table[columns + ["delta_m_primary"] + [c for c in SELECTION_COLUMNS if c in table]],
                 varying_columns(table))


def _delta_m(table: pd.DataFrame, metrics: pd.DataFrame) -> pd.Series:
    """delta_m of each row's configuration: the mean over its tasks of the mean over each task's
    metrics of the mean r (Maninis et al. 2019; Vandenhende et al. 2021). A task with its primary
    metric only contributes its r_mean itself, so single-metric tables keep their delta_m exactly."""
    secondary = metrics[~metrics["primary"]]
    r = table["r_mean"].copy()
    for (config, task), part in secondary.groupby(["config_hash", "task"], sort=False):
        row = table.index[table["config_hash"].eq(config) & table["task"].eq(task)]
        r[row] = pd.concat([table.loc[row, "r_mean"], part["r_mean"]]).mean(skipna=False)
    return r.groupby(table["config_hash"], sort=False).transform(lambda v: v.mean(skipna=False))


METRIC_COLUMNS = ("config_hash", "label", "task", "metric", "primary", "lower_is_better", "n", "n_mtl_failed",
                  "stl_mean", "stl_lo", "stl_hi", "mtl_mean", "mtl_lo", "mtl_hi", "r_mean", "r_lo", "r_hi")


def recorded_secondary(rows: pd.DataFrame, task: str) -> list[str]:
    """The secondary metrics that records of these rows hold for `task` (none for records written
    before secondary metrics existed)."""
    column = f"secondary.{task}"
    values = rows[column].dropna() if column in rows else pd.Series(dtype=object)
    return str(values.iloc[0]).split(",") if len(values) else []


def metric_table(runs: pd.DataFrame, split: str = "test", level: float = LEVEL) -> pd.DataFrame:
    """One row per (mtl config, task, metric), for every metric of the task that both the
    configuration's records and its baseline's hold (the primary one always; `primary` marks
    it): the paired seeds, the Student-t intervals of each side's metric and of r. No verdict:
    the verdict is on the primary metric (`transfer_table`). Columns: METRIC_COLUMNS with the
    config's cfg.* columns inserted after `label`; rows in config, task and metric order."""
    _check_unique(runs)
    cfg = cfg_columns(runs)
    columns = [*METRIC_COLUMNS[:2], *cfg, *METRIC_COLUMNS[2:]]
    rows, pairs = [], {}
    for config, group in runs[runs["kind"].eq("mtl")].groupby("config_hash", sort=False):
        first = group.iloc[0]
        n_failed = int(group["status"].ne("ok").sum())
        for task in [t for t in _tasks(runs) if group[f"baseline.{t}"].notna().any()]:
            baseline = runs[runs["kind"].eq("stl") & runs["config_hash"].eq(group[f"baseline.{task}"].dropna().iloc[0])]
            both = [m for m in recorded_secondary(group, task) if m in recorded_secondary(baseline, task)]
            metrics = [(first[f"metric.{task}"], f"{split}.{task}", _lower_is_better(runs, task), True)]
            metrics += [(m, f"{split}.{task}.{m}", bool(runs[f"lower_is_better.{task}.{m}"].dropna().iloc[0]), False)
                        for m in both]
            for metric, column, lower, primary in metrics:
                if column not in pairs:  # every configuration's pairs at once
                    pairs[column] = _pair(runs, task, column, lower)
                p = pairs[column][pairs[column]["config_hash"].eq(config)]
                row = {"config_hash": config, "label": first["label"], **first[cfg].to_dict(), "task": task,
                       "metric": metric, "primary": primary, "lower_is_better": lower, "n": len(p),
                       "n_mtl_failed": n_failed}
                for side in ("stl", "mtl", "r"):
                    row[f"{side}_mean"], row[f"{side}_lo"], row[f"{side}_hi"] = interval(
                        p[side].to_numpy(float), level)
                rows.append(row)
    table = pd.DataFrame(rows, columns=columns)
    return _sort(table.astype({"n": int, "n_mtl_failed": int, "lower_is_better": bool, "primary": bool}),
                 varying_columns(table))


SELECTION_COLUMNS = ("chosen", "candidates", "baseline_chosen", "baseline_candidates")


def _selection(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """protocol=tuned (harness.run.tuned): what was chosen for each row's configuration and its
    baseline, from the confirmation records; the table unchanged without them."""
    if "chosen" not in runs:
        return table
    mtl = runs[runs["kind"].eq("mtl")].drop_duplicates("config_hash").set_index("config_hash")
    table = table.copy()
    table["chosen"] = table["config_hash"].map(mtl["chosen"])
    table["candidates"] = table["config_hash"].map(mtl["candidates"])
    stl = runs[runs["kind"].eq("stl") & runs["chosen"].notna()].drop_duplicates("config_hash").set_index("config_hash")
    base = [mtl.at[h, f"baseline.{t}"] if f"baseline.{t}" in mtl else None for h, t in zip(table["config_hash"], table["task"])]
    table["baseline_chosen"] = [stl.at[b, "chosen"] if b in stl.index else None for b in base]
    table["baseline_candidates"] = [stl.at[b, "candidates"] if b in stl.index else np.nan for b in base]
    return table


def _baseline_checks(runs: pd.DataFrame, baseline: str, task: str, seeds: pd.Series, split: str,
                     stl_mean: float, lower_is_better: bool) -> dict:
    """The linear reference of a task's baseline, the baseline's late validation trend (mean
    over the paired seeds) and the flags they raise (see CONVENTIONS)."""
    stl = runs[runs["kind"].eq("stl") & runs["config_hash"].eq(baseline)]
    ref_col, model_col, trend_col = f"reference.{split}.{task}", f"reference.model.{task}", f"val_trend.{task}"
    ref = stl[ref_col].dropna() if ref_col in stl else pd.Series(dtype=float)
    model = stl[model_col].dropna() if model_col in stl else pd.Series(dtype=object)
    trend = stl.loc[stl["seed"].isin(seeds), trend_col].dropna() if trend_col in stl else pd.Series(dtype=float)
    out = {"ref_model": model.iloc[0] if len(model) else None,
           "ref_mean": float(ref.iloc[0]) if len(ref) else np.nan,
           "stl_trend": float(trend.mean()) if len(trend) else np.nan}
    flags = []
    if not np.isnan(out["ref_mean"]) and not np.isnan(stl_mean):
        worse = stl_mean > out["ref_mean"] if lower_is_better else stl_mean < out["ref_mean"]
        if worse:
            flags.append("below ref")
    if out["stl_trend"] > TREND_FLAG:
        flags.append("improving")
    elif out["stl_trend"] < -TREND_FLAG:
        flags.append("worsening")
    out["baseline_check"] = ", ".join(flags)
    return out


def natural(text: str) -> str:
    """A sort key that orders the digit runs of `text` by value: "Class2" before "Class10"."""
    return re.sub(r"\d+", lambda m: m.group().zfill(12), text)


def _sort(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    # Numbers sort as numbers (depth 10 after 2), and so do the numbers inside names (Class10
    # after Class2, as a dataset with 14 labels numbers them); anything else by its text.
    def key(s: pd.Series) -> pd.Series:
        return s if pd.api.types.is_numeric_dtype(s) else s.map(lambda v: natural(str(v)))
    if {"config_hash", "task"} <= set(table.columns):
        # Within each configuration (kept where it stands), its tasks in natural order.
        first = {h: i for i, h in enumerate(dict.fromkeys(table["config_hash"]))}
        rank = pd.DataFrame({"config": table["config_hash"].map(first), "task": table["task"]})
        order = rank.sort_values(["config", "task"], key=key, kind="stable").index
        table = table.loc[order].reset_index(drop=True)
    return table.sort_values(by, key=key, kind="stable", ignore_index=True) if by else table


def short_names(columns: list[str]) -> dict[str, str]:
    """Shortest dotted suffix of each cfg column that no other column shares; a group's
    `name` field is shown as the group (`schedule`, not `name`)."""
    parts = {c: c.removeprefix("cfg.").split(".") for c in columns}
    parts = {c: p[:-1] if len(p) > 1 and p[-1] == "name" else p for c, p in parts.items()}
    names = {}
    for c, p in parts.items():
        for k in range(1, len(p) + 1):
            name = ".".join(p[-k:])
            if all(".".join(q[-k:]) != name for d, q in parts.items() if d != c):
                break
        names[c] = name
    return names


def cfg_text(value: object) -> str:
    """A config value as text; whole floats print as integers (a depth column holding NaN for
    baselines is float)."""
    if isinstance(value, float):
        return "–" if np.isnan(value) else f"{value:.0f}" if value.is_integer() else f"{value:g}"
    return str(value)


def fmt_number(x: float) -> str:
    """Three significant digits; missing as an en dash."""
    return "–" if pd.isna(x) else f"{x:.3g}"


def format_transfer(table: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A transfer table as display text: varying config columns (short names), then `columns`.

    `columns` defaults to task, metric, n, stl, ref, mtl, r, mde, p_holm, verdict, delta_m, baseline;
    "metric" names the task's metric and its better direction; "stl",
    "mtl" and "r" show "mean [lo, hi]", "ref" the linear reference, "baseline" the baseline
    checks. Underpowered rows say so in their verdict; "n" adds the multi-task seeds that
    diverged or failed, and a row without any ok pair says "no paired runs".
    """
    columns = columns or ("task", "metric", "n", "stl", "ref", "mtl", "r", "mde", "p_holm", "verdict", "delta_m",
                          "baseline")
    varying = varying_columns(table)
    shown = pd.DataFrame(index=table.index)
    if not varying and table["config_hash"].nunique() > 1:
        label = table["label"].fillna("").astype(str)
        shown["config"] = label.where(label.ne(""), table["config_hash"].str[:8])
    for c, name in short_names(varying).items():
        shown[name] = table[c].map(cfg_text)
    for c in columns:
        if c in ("stl", "mtl", "r"):
            shown[f"{c} [lo, hi]" if c != "r" else "r_t % [lo, hi]"] = [
                f"{fmt_number(m)} [{fmt_number(lo)}, {fmt_number(hi)}]"
                for m, lo, hi in table[[f"{c}_mean", f"{c}_lo", f"{c}_hi"]].to_numpy()]
        elif c == "verdict":
            verdict = table[c].where(~table["underpowered"], table[c] + ", underpowered")
            # No ok pair at all (e.g. every multi-task seed diverged) is no evidence either way.
            shown[c] = verdict.where(table["n"].gt(0), "no paired runs")
        elif c == "n":
            failed = table["n_mtl_failed"]
            shown[c] = table["n"].astype(str).where(failed.eq(0), table["n"].astype(str) + " (+"
                                                    + failed.astype(str) + " not ok)")
        elif c == "metric":  # which units the numbers are in, and which way is better
            shown[c] = table["metric"].astype(str) + table["lower_is_better"].map({True: " (lower better)",
                                                                                  False: " (higher better)"})
        elif c == "ref":
            shown[c] = table["ref_mean"].map(fmt_number)
        elif c == "baseline":
            shown[c] = table["baseline_check"].fillna("").astype(str)
        elif pd.api.types.is_float_dtype(table[c]):
            shown[c] = table[c].map(fmt_number)
        else:
            shown[c] = table[c].astype(str)
    if "chosen" in table and table["chosen"].notna().any():  # protocol=tuned: what was chosen
        def chosen(values: pd.Series, n: pd.Series) -> pd.Series:
            of = n.map(lambda k: "" if pd.isna(k) else f" (of {int(k)})")
            return values.fillna("").astype(str).replace("", "as given") + of

        shown["chosen"] = chosen(table["chosen"], table["candidates"])
        shown["baseline chosen"] = chosen(table["baseline_chosen"], table["baseline_candidates"])
    return shown


def to_markdown(table: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """Markdown of `format_transfer(table, columns)`."""
    return format_transfer(table, columns).to_markdown(index=False, disable_numparse=True)
