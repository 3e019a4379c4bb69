"""`hydra/launcher=batched`: jobs that share a compiled program run as one vmap-ed program.
(No `from __future__ import annotations` here: Hydra executes plugin modules outside
sys.modules, where string annotations break dataclasses.)

The work lives in harness.run.sweep; this class adapts it to Hydra's Launcher interface: every job
still gets its directory, `.hydra/` files, callbacks and records through Hydra's run_job.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

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
    # Where each group runs: inline (this process) | submitit_local | submitit_slurm (one
    # cluster job per group; needs the [slurm] extra). `submitit` holds the executor's
    # parameters, e.g. {timeout_min: 60, slurm_partition: gpu, gpus_per_node: 1}.
    executor: str = "inline"
    submitit: Dict[str, Any] = field(default_factory=dict)
    # executor=ray: `ray.init` arguments, e.g. {address: auto} to join a running cluster, or
    # {num_cpus: 4} for a local one (the default starts a local cluster); `ray_remote`: each
    # group's resources, e.g. {num_gpus: 1} (needs the [ray] extra).
    ray: Dict[str, Any] = field(default_factory=dict)
    ray_remote: Dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/launcher", name="batched", node=BatchedLauncherConf,
                             provider="mtl-harness")


class BatchedLauncher(Launcher):
    def __init__(self, max_batch: int = 4096, executor: str = "inline",
                 submitit: Optional[Dict[str, Any]] = None, ray: Optional[Dict[str, Any]] = None,
                 ray_remote: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self.max_batch, self.executor_name, self.submitit = max_batch, executor, dict(submitit or {})
        self.ray, self.ray_remote = dict(ray or {}), dict(ray_remote or {})
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from harness.cli import report_error
        from harness.errors import ConfigError
        from harness.run.sweep import execute, prepare, step_progress

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
        execute(jobs, self.max_batch, step_progress(), self.make_executor())
        returns = []
        for job, overrides in zip(jobs, job_overrides):
            log.info(f"\t#{job.config.hydra.job.num} : {' '.join(filter_overrides(overrides))}")
            returns.append(run_job(hydra_context=self.hydra_context, task_function=job.write,
                                   config=job.config, job_dir_key="hydra.sweep.dir",
                                   job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns

    def make_executor(self):
        """None (inline), or an executor that takes one group per job: submitit (local or SLURM)
        or Ray (harness.run.ray_executor)."""
        from harness.cli import report_error
        from harness.errors import bad

        kinds = {"inline": None, "submitit_local": "local", "submitit_slurm": "slurm", "ray": "ray"}
        if self.executor_name not in kinds:
            report_error(bad("hydra.launcher.executor", self.executor_name, f"one of {', '.join(kinds)}"))
        if kinds[self.executor_name] is None:
            return None
        if self.executor_name == "ray":
            from harness.run.ray_executor import RayExecutor

            try:
                return RayExecutor(self.ray, self.ray_remote)
            except ImportError:
                report_error(bad("hydra.launcher.executor", "ray", "needs ray: pip install -e '.[ray]'"))
        try:
            import submitit
        except ImportError:
            report_error(bad("hydra.launcher.executor", self.executor_name,
                             "needs submitit: pip install -e '.[slurm]'"))
        folder = Path(str(self.config.hydra.sweep.dir)) / ".submitit" / "%j"
        executor = submitit.AutoExecutor(folder=folder, cluster=kinds[self.executor_name])
        executor.update_parameters(**self.submitit)
        return executor
