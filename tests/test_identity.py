"""The trainer and planner were rebuilt without changing what a run computes: four jobs (the
default study's first job, an alternate job, a task tree with a gradient method and probes, a
distilled job, each with its baselines) give the same records as the code before the rebuild,
whose outputs tests/fixtures/identity.json holds (written by running these jobs on that code).
The first two jobs spell out the settings of the default study as it was then (it has since
been redesigned). The tree job uses PCGrad: MGDA, which it used first, was given a better solver
afterwards on purpose (tests/test_methods_degenerate.py checks that one against exact solutions); its PCGrad
records were written by the code before the rebuild too.

The jobs run in a subprocess at XLA's default optimisation level, as `python -m harness` runs
them (the test session compiles at level 0 for speed, tests/conftest.py). Bit for bit where jax
and the CPU are the ones that wrote the fixture; elsewhere, where XLA may compile other kernels
and a training run amplifies their last-bit differences, metrics to 1%."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import jax
import jaxlib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "identity.json").read_text())


def cpu() -> str:
    """The CPU model and a digest of its feature flags: XLA compiles for the host's features,
    so another CPU may round differently."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = fields.get("flags\t\t", fields.get("flags", "")).split()
    model = next((v.strip() for k, v in fields.items() if k.strip() == "model name"), platform.processor())
    return f"{model}|{hashlib.sha1(' '.join(sorted(flags)).encode()).hexdigest()[:8]}"


SAME_PLATFORM = FIXTURE["versions"] == {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                                        "machine": platform.machine(), "processor": platform.processor(),
                                        "xla_flags": "", "cpu": cpu()}
KEPT = ("val", "test", "val_loss", "train_loss", "weights", "grad_cos", "grad_norm")


def records_of(overrides: list[str], out_dir: Path) -> list[dict]:
    """Run one job through the planner and the writer; its records, as the fixture keeps them."""
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs, resolve
    from harness.run.sweep import run_job

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        run = resolve(compose("config", overrides=overrides + ["compile_cache=null"]))
    run_job(run, out_dir / "job", out_dir / "baselines", "identity")
    out = []
    for path in sorted(out_dir.rglob("seed_*.json")):
        rec = json.loads(path.read_text())
        out.append({**{k: rec[k] for k in ("kind", "task", "seed", "config_hash", "metrics")},
                    "curves": {k: v for k, v in rec["curves"].items() if k in KEPT}})
    return out


@pytest.mark.parametrize("name", list(FIXTURE["jobs"]))
def test_runs_compute_what_they_computed_before_the_rebuild(name, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    subprocess.run([sys.executable, __file__, name, str(tmp_path)], env=env, cwd=ROOT, check=True, timeout=900)
    now = json.loads((tmp_path / "records.json").read_text())
    before = FIXTURE["jobs"][name]["records"]
    assert [(r["kind"], r["task"], r["seed"], r["config_hash"]) for r in now] == \
           [(r["kind"], r["task"], r["seed"], r["config_hash"]) for r in before]
    if SAME_PLATFORM:
        assert now == before
        return
    for a, b in zip(now, before):
        for split in ("val", "test"):
            np.testing.assert_allclose([a["metrics"][split][t] for t in sorted(a["metrics"][split])],
                                       [b["metrics"][split][t] for t in sorted(b["metrics"][split])], rtol=1e-2)


if __name__ == "__main__":
    name, out_dir = sys.argv[1], Path(sys.argv[2])
    records = records_of(FIXTURE["jobs"][name]["overrides"], out_dir)
    (out_dir / "records.json").write_text(json.dumps(records))
