"""The transfer table as a LaTeX booktabs table for a paper (`python -m harness.collect DIR --latex`).

Written by hand rather than with `DataFrame.to_latex`, which needs Jinja2: the table is plain
text cells (the same as transfer.md's) with LaTeX's special characters escaped, verdicts marked
(positive in bold, negative in italics, with arrows), and the conventions the numbers follow as
the caption. It needs the `booktabs` package.
"""
from __future__ import annotations

import re

import pandas as pd

from harness.analysis import LEVEL, MIN_SEEDS, format_transfer

SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
           "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
NUMBERS = ("n", "stl [lo, hi]", "mtl [lo, hi]", "r_t % [lo, hi]", "p_holm", "delta_m")
VERDICT = {"positive": r"\textbf{positive $\uparrow$}", "negative": r"\textit{negative $\downarrow$}"}
CAPTION = (
    "Transfer per configuration and task. $r_t = s_t (M_\\mathrm{mtl} - M_\\mathrm{stl}) / "
    "|M_\\mathrm{stl}| \\times 100$, with $s_t = +1$ where higher is better and $-1$ where lower "
    "is better: positive means multi-task training helped. Each multi-task seed is paired with the "
    "same seed of the task's single-task baseline (same data, steps, optimiser and tower); "
    f"$n$ paired seeds. Brackets: Student-$t$ {LEVEL * 100:.0f}\\% intervals. Verdict: two-sided one-sample "
    "$t$-test of the paired $r_t$ against 0, Holm-corrected across the tasks of a configuration "
    f"at family level {1 - LEVEL:.2g}; fewer than {MIN_SEEDS} paired seeds is underpowered. "
    "$\\Delta_m$: the mean of $r_t$ over the tasks."
)


def escape(text: str) -> str:
    return re.sub(r"[\\&%$#_{}~^]", lambda m: SPECIAL[m.group()], str(text))


def verdict_cell(text: str) -> str:
    """A verdict marked by its direction (the text may end in ', underpowered')."""
    head, _, rest = text.partition(",")
    marked = VERDICT.get(head, escape(head))
    return marked + (escape("," + rest) if rest else "")


def to_latex(table: pd.DataFrame, label: str = "tab:transfer") -> str:
    """A booktabs table* of `format_transfer(table)` with the conventions as its caption."""
    shown = format_transfer(table, ("task", "n", "stl", "mtl", "r", "p_holm", "verdict", "delta_m"))
    # Which metric each task's numbers are in, and which way is better.
    arrows = table["lower_is_better"].map({True: r" $\downarrow$", False: r" $\uparrow$"})
    shown.insert(list(shown.columns).index("n"), "metric", table["metric"].map(escape) + arrows)
    header = [escape(c).replace("r\\_t \\%", "$r_t$ (\\%)").replace("delta\\_m", "$\\Delta_m$")
              for c in shown.columns]
    rows = []
    for _, row in shown.iterrows():
        cells = [verdict_cell(v) if c == "verdict" else v if c == "metric" else escape(v) for c, v in row.items()]
        rows.append(" & ".join(cells) + r" \\")
    # Text columns (configuration, task, verdict) left, numbers right.
    spec = "".join("r" if c in NUMBERS else "l" for c in shown.columns)
    return "\n".join([
        r"\begin{table*}[t]", r"\centering", r"\small",
        rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule",
        *rows, r"\bottomrule", r"\end{tabular}",
        rf"\caption{{{CAPTION}}}", rf"\label{{{label}}}", r"\end{table*}", ""])
