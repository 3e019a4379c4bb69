"""The benchmark's smoke run: `python -m harness.bench --quick` writes every section with finite,
positive numbers (no timing thresholds here: test machines are shared and noisy)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

from harness.bench import DEFAULT_SECTIONS as SECTIONS


def test_quick_benchmark_writes_every_section(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness.bench", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads((tmp_path / "bench.json").read_text())
    assert set(SECTIONS) <= set(res) and res["machine"]["cores"] >= 1 and res["machine"]["cpu"]
    for name in SECTIONS:
        assert res[name], name
        for row in res[name]:
            numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            assert numbers and all(math.isfinite(v) and v > 0 for v in numbers.values()), (name, row)
            if "ratio" in row:
                assert isinstance(row["met"], bool) and row["target"] > 0
    assert {r["method"] for r in res["methods"]} == {"equal", "pcgrad"}
    assert next(r for r in res["methods"] if r["method"] == "equal")["ratio"] == 1.0
    text = (tmp_path / "bench.md").read_text()
    assert text in done.stdout and "## e) Compile vs run" in text
