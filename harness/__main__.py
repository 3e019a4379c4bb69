"""`python -m harness [overrides]`: one training job, or a sweep with -m.

With no arguments it runs the default study (experiment=default). Bad input exits with status 2
and one line: the key, the bad value and what is allowed.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from harness.cli import check_jobs, report_error
from harness.config import register_configs, resolve
from harness.errors import ConfigError

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
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
    except ConfigError as err:
        report_error(err)


if __name__ == "__main__":
    if len(sys.argv) == 1:
        print("no overrides given: running the default study (experiment=default)")
        sys.argv.append("experiment=default")
    check_jobs(sys.argv[1:], Path(__file__).resolve())
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: every record written so far is whole (atomic writes)
        print("interrupted: the records written so far are kept; run the same command again to "
              "train the rest", file=sys.stderr)
        sys.exit(130)
    from harness.run.sweep import report_failures

    sys.exit(report_failures())
