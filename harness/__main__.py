"""`mtl-harness [overrides]` or `python -m harness [overrides]`: one training job, or a sweep
with -m.

With no arguments it runs the default study (experiment=default). Bad input exits with status 2
and one line: the key, the bad value and what is allowed.
"""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from harness.cli import check_jobs, report_error
from harness.config import register_configs, resolve
from harness.errors import ConfigError, Incompatible
from harness.run.objective import objective

log = logging.getLogger(__name__)

register_configs()


# An absolute path: Hydra would resolve a relative one against the package when the console
# command (a module entry point) starts it, and conf/ lives beside the package, not inside it.
CONF = Path(__file__).resolve().parents[1] / "conf"


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float:
    """One job: train what is missing, write its records; return its objective (what an
    optimising sweeper such as optuna maximises or minimises; harness.run.objective)."""
    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode.name == "MULTIRUN"
    root = Path(hc.sweep.dir if multirun else hc.run.dir)
    try:
        from harness.run.sweep import run_job

        run = resolve(cfg)
        baseline_dir = Path(run.baseline_dir) if run.baseline_dir else root / "baselines"
        label = hc.job.override_dirname or run.study
        run_job(run, job_dir, baseline_dir, label)
    except Incompatible as err:
        if not run.skip_incompatible:
            report_error(err)
        log.warning(f"skipped (incompatible): {label}: {err}")  # listed by the up-front check too
        return math.nan
    except ConfigError as err:
        report_error(err)
    return objective(run, job_dir)


def cli() -> None:
    """`mtl-harness [overrides]` (the console command) and `python -m harness [overrides]`."""
    if len(sys.argv) == 1:
        # The quickstart leaves a clean checkout clean: its outputs go to the untracked
        # outputs/default; `experiment=default` alone rewrites the committed results/default.
        print("no overrides given: running the default study (experiment=default) into outputs/default")
        sys.argv += ["experiment=default", "hydra.sweep.dir=outputs/default"]
    check_jobs(sys.argv[1:], Path(__file__).resolve())
    from harness.run.sweep import FAILED, report_failures

    FAILED.clear()  # this command's failures only, even when called twice in one process
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: every record written so far is whole (atomic writes)
        print("interrupted: the records written so far are kept; run the same command again to "
              "train the rest", file=sys.stderr)
        sys.exit(130)
    sys.exit(report_failures())


if __name__ == "__main__":
    cli()
