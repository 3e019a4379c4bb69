"""The study outputs committed under results/ are what the code produces now."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.analysis import TABLE_COLUMNS, transfer_table

RESULTS = Path(__file__).resolve().parents[1] / "results"
STUDIES = sorted(p.parent.name for p in RESULTS.glob("*/transfer.parquet"))
RUN_COLUMNS = ["kind", "config_hash", "label", "seed", "status", "task", "compile_s", "run_s"]


def test_the_studies_have_committed_outputs():
    assert {"default", "relatedness", "architectures", "weighting", "schedules", "scalarization"} <= set(STUDIES)
    assert (RESULTS / "toy2d" / "endpoints.md").exists()


@pytest.mark.parametrize("study", STUDIES)
def test_committed_table_is_recomputed_from_the_committed_runs(study):
    runs = pd.read_parquet(RESULTS / study / "runs.parquet")
    assert set(RUN_COLUMNS) <= set(runs.columns)
    committed = pd.read_parquet(RESULTS / study / "transfer.parquet")
    assert set(TABLE_COLUMNS) <= set(committed.columns)
    pd.testing.assert_frame_equal(transfer_table(runs).reset_index(drop=True), committed.reset_index(drop=True),
                                  check_dtype=False)
    for name in ("report.md", "report.html", "transfer.md"):
        assert (RESULTS / study / name).stat().st_size > 0
