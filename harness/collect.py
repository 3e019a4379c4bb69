"""`python -m harness.collect <sweep_dir>`: tabulate any sweep directory, also one that died midway.

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


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        print("usage: python -m harness.collect <sweep_dir>", file=sys.stderr)
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


if __name__ == "__main__":
    main(sys.argv[1:])
