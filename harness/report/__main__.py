"""`python -m harness.report <sweep_dir>`: (re)write the report of a sweep directory in place."""
from __future__ import annotations

import sys
from pathlib import Path

from harness.cli import report_error
from harness.errors import bad

USAGE = "usage: python -m harness.report <sweep_dir>"


def main(argv: list[str]) -> int:
    """Collect the sweep's records, write its report next to them, print where it went.
    Files that are not readable records are skipped, one line each and their count."""
    from harness.records import collect, skipped_summary
    from harness.report.write import write_report

    if len(argv) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    sweep_dir = Path(argv[0])
    skipped = []
    runs = collect(sweep_dir, skipped) if sweep_dir.is_dir() else None
    for err in skipped:
        print(f"skipped {err}")
    if runs is None:
        report_error(bad("sweep_dir", str(sweep_dir), "an existing directory of run records"))
    if runs.empty:
        report_error(bad("sweep_dir", str(sweep_dir), "a directory holding run records (seed_*.json); it has none"))
    paths = write_report(runs, sweep_dir, title=f"Sweep: {sweep_dir.resolve().name}", skipped=len(skipped))
    for name in ("transfer.md", "report.md", "report.html"):
        print(f"{name}: {paths[name]}")
    if skipped:
        print(skipped_summary(skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
