"""`hydra/launcher=batched`: jobs that share a compiled program run as one vmap-ed program.
(No `from __future__ import annotations` here: Hydra executes plugin modules outside
sys.modules, where string annotations break dataclasses.)

The work lives in harness.launch; this class adapts it to Hydra's Launcher interface: every job
still gets its directory, `.hydra/` files, callbacks and records through Hydra's run_job.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.harness_launcher.batched_launcher.BatchedLauncher"
    max_batch: int = 4096  # most runs (jobs x seeds) in one compiled program


ConfigStore.instance().store(group="hydra/launcher", name="batched", node=BatchedLauncherConf,
                             provider="mtl-harness")


class BatchedLauncher(Launcher):
    def __init__(self, max_batch: int = 4096) -> None:
        super().__init__()
        self.max_batch = max_batch
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from harness.cli import report_error
        from harness.errors import ConfigError
        from harness.launch import execute, prepare, tty_progress

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = []
        for i, overrides in enumerate(job_overrides):
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id = cfg.hydra.job.num = initial_job_idx + i
            configs.append(cfg)
        try:
            jobs = prepare(configs)
        except ConfigError as err:
            report_error(err)
        log.info(f"Launching {len(jobs)} jobs, batched by compiled program")
        execute(jobs, self.max_batch, tty_progress())
        returns = []
        for job, overrides in zip(jobs, job_overrides):
            log.info(f"\t#{job.config.hydra.job.num} : {' '.join(filter_overrides(overrides))}")
            returns.append(run_job(hydra_context=self.hydra_context, task_function=job.write,
                                   config=job.config, job_dir_key="hydra.sweep.dir",
                                   job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns
