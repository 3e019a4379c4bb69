"""`python -m harness.collect <sweep_dir> [--latex]`: tabulate any sweep directory, also one that
died midway; with --latex also write transfer.tex, a booktabs table for a paper.

Files that are not readable run records (an unknown schema version, empty, truncated, foreign)
are skipped with one line each. A path that is not a directory, or a directory without a single
record, is one error line and exit status 2, as with `python -m harness.report`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness.callbacks import finish
from harness.cli import report_error
from harness.errors import bad
from harness.records import RecordError, find_records


USAGE = "usage: python -m harness.collect <sweep_dir> [--latex]"


def main(argv: list[str]) -> None:
    latex = "--latex" in argv
    argv = [a for a in argv if a != "--latex"]
    if len(argv) != 1 or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    sweep_dir = Path(argv[0])
    if not sweep_dir.is_dir():
        report_error(bad("sweep_dir", str(sweep_dir), "an existing directory of run records"))
    if not find_records(sweep_dir):
        report_error(bad("sweep_dir", str(sweep_dir), "a directory holding run records (seed_*.json); it has none"))
    try:
        finish(sweep_dir, title=f"Sweep: {sweep_dir.name}")
    except RecordError as err:
        report_error(err)
    if latex:
        write_latex(sweep_dir)


def write_latex(sweep_dir: Path) -> None:
    """transfer.tex beside transfer.md: the table for a paper (harness.report.latex)."""
    import pandas as pd

    from harness.records import atomic_write_text
    from harness.report.latex import to_latex

    table_path = sweep_dir / "transfer.parquet"
    if not table_path.exists():  # no multi-task runs: finish() said so
        return
    path = sweep_dir / "transfer.tex"
    atomic_write_text(path, to_latex(pd.read_parquet(table_path)))
    print(f"latex:  {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
