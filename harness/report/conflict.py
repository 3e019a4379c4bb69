"""Gradient-conflict diagnostics: cosine between tasks' shared-parameter gradients, the fraction
of steps where it is negative, and the ratio of gradient norms, per configuration and task pair.

Records carry them when training ran with `train.diagnostics=true`: curves["grad_cos"] and
curves["conflict"] keyed "a|b" (per evaluation, averaged over the steps since the previous one)
and curves["grad_norm"] keyed by task.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter

from harness.analysis import fmt_number, interval
from harness.report.common import (band, capped, config_frame, config_names, draw_band,
                                   new_figure, wrap_label)
from harness.report.curves import configs_with, select
from harness.report.document import Block, Gallery, Plot, Table, skipped

MAX_PAIRS = 10  # task pairs per configuration in the table and figures
# Log-axis ticks as plain numbers (0.8, 1, 2), not 8e-01.
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")
EXPLAIN = ("Per configuration and task pair a|b, over training: the cosine between the two "
           "tasks' gradients on the shared parameters (negative = conflicting), the fraction "
           "of steps where it was negative, and the norm ratio |g_a| / |g_b| (far from 1: one "
           "task dominates the shared update). The table averages over evaluations per seed, "
           "then over seeds (cosine with a 95% t-interval over seeds).")


def norm_ratio(curves: pd.DataFrame, config: str, pair: str) -> pd.DataFrame:
    """Per seed and evaluation, |g_a| / |g_b| for pair "a|b" (columns seed, step, value)."""
    a, b = pair.split("|")
    norms = select(curves, config, "grad_norm").pivot_table(
        index=["seed", "step"], columns="key", values="value", dropna=False)
    if a not in norms or b not in norms:
        return pd.DataFrame(columns=["seed", "step", "value"])
    return (norms[a] / norms[b]).rename("value").reset_index()


def _per_seed_mean(values: pd.DataFrame) -> np.ndarray:
    return values.groupby("seed")["value"].mean().dropna().to_numpy(float)


def shown_pairs(curves: pd.DataFrame, config: str) -> list[str]:
    """The task pairs to list and draw: all up to MAX_PAIRS; beyond (T = 14 has 91 pairs), the
    MAX_PAIRS/2 most conflicting and MAX_PAIRS/2 most aligned by mean cosine."""
    cos = select(curves, config, "grad_cos")
    pairs = sorted(cos["key"].unique())
    if len(pairs) <= MAX_PAIRS:
        return pairs
    ranked = cos.groupby("key")["value"].mean().dropna().sort_values(kind="stable")
    half = MAX_PAIRS // 2
    keep = {*ranked.index[:half], *ranked.index[max(half, len(ranked) - half):]}
    return [p for p in pairs if p in keep]


def conflict_summary(table: pd.DataFrame, curves: pd.DataFrame, configs: list[str]
                     ) -> pd.DataFrame:
    """One row per configuration and pair: seeds, mean cosine [interval], conflict fraction,
    norm ratio; as display text, led by the config columns."""
    leading = config_frame(table)
    rows = []
    for config in configs:
        cos = select(curves, config, "grad_cos")
        for pair in shown_pairs(curves, config):
            seed_cos = _per_seed_mean(cos[cos["key"].eq(pair)])
            mean, lo, hi = interval(seed_cos)
            conflict = _per_seed_mean(select(curves, config, "conflict", pair))
            ratio = norm_ratio(curves, config, pair)
            rows.append({
                **leading.loc[config].to_dict(), "pair": pair, "seeds": str(len(seed_cos)),
                "cosine [lo, hi]": f"{fmt_number(mean)} [{fmt_number(lo)}, {fmt_number(hi)}]",
                "conflicting": fmt_number(conflict.mean() if conflict.size else np.nan),
                "norm ratio a/b": fmt_number(np.mean(_per_seed_mean(ratio))
                                             if not ratio.empty else np.nan)})
    return pd.DataFrame(rows)


def _plot_config(curves: pd.DataFrame, config: str, name: str) -> Plot:
    fig = new_figure(9.0, 2.7)
    cos_ax, conflict_ax, ratio_ax = fig.subplots(1, 3)
    cos = select(curves, config, "grad_cos")
    for k, pair in enumerate(shown_pairs(curves, config)):
        color = f"C{k % 10}"
        draw_band(cos_ax, band(cos[cos["key"].eq(pair)]), pair, color)
        conflict = select(curves, config, "conflict", pair)
        if not conflict.empty:
            draw_band(conflict_ax, band(conflict), pair, color)
        ratio = norm_ratio(curves, config, pair)
        if not ratio.empty:
            draw_band(ratio_ax, band(ratio), pair, color)
            # Ratios are multiplicative: 2 and 1/2 are the same imbalance.
            ratio_ax.set_yscale("log")
    cos_ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    ratio_ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    if ratio_ax.get_yscale() == "log":
        low, high = ratio_ax.get_ylim()
        ratio_ax.yaxis.set_major_formatter(PLAIN)
        # Within a decade only minor ticks carry labels; across decades they would crowd.
        ratio_ax.yaxis.set_minor_formatter(PLAIN if high / low < 10 else NullFormatter())
    for ax, label in ((cos_ax, "gradient cosine"), (conflict_ax, "fraction of steps cos < 0"),
                      (ratio_ax, "norm ratio |g_a| / |g_b|")):
        ax.set_xlabel("step")
        ax.set_ylabel(label, fontsize="small")
    cos_ax.legend(fontsize="x-small", title="a|b", title_fontsize="x-small")
    fig.suptitle(wrap_label(name, width=70, max_lines=3), fontsize="medium")
    caption = (f"{name}: gradient cosine, conflict fraction and norm ratio per task pair over "
               "training; mean and min-max band over seeds")
    return Plot(f"conflict_{config}", fig, caption)


def conflict_blocks(table: pd.DataFrame, curves: pd.DataFrame) -> list[Block]:
    """Summary table and per-configuration figures, or a note when no record has them."""
    having = configs_with(curves, "grad_cos")
    configs = [c for c in dict.fromkeys(table["config_hash"]) if c in having]
    if not configs:
        return [skipped("no multi-task record of this report has gradient diagnostics "
                        "(training with `train.diagnostics=true` records them).")]
    shown, notes = capped(configs, "configurations")
    most = max(len(select(curves, c, "grad_cos")["key"].unique()) for c in configs)
    if most > MAX_PAIRS:
        notes.append(f"With up to {most} task pairs per configuration, the table and figures show the "
                     f"{MAX_PAIRS // 2} most conflicting and the {MAX_PAIRS // 2} most aligned pairs "
                     "(lowest and highest mean cosine) of each.")
    names = config_names(table)
    plots = [_plot_config(curves, c, names[c]) for c in shown]
    return [EXPLAIN, Table(conflict_summary(table, curves, configs)), *notes, Gallery(plots)]
