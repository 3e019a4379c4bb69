"""Ray as the batched launcher's executor (`hydra.launcher.executor=ray`): each compiled program
(a group of batched jobs) is one Ray task, on a local cluster or one already running.

It has the shape of a submitit executor (`submit(fn, *args)` returns a future whose `result()`
waits for the value), so harness.run.sweep.execute treats both alike: every group is submitted
at once, distilled groups once the baselines are done, and records are written in this process
as each group's result arrives. Hydra's own hydra-ray-launcher is not used: its latest release
(1.2.2) pins cloudpickle<3, which the joblib that scikit-learn needs (>= 1.6) refuses.
"""
from __future__ import annotations

from typing import Any, Callable


class RayFuture:
    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def result(self) -> Any:
        import ray

        return ray.get(self.ref)


class RayExecutor:
    """init: `ray.init` arguments (none: start a local cluster; {"address": "auto"}: join one).
    remote: each task's resources (`ray.remote` options, e.g. {"num_gpus": 1})."""

    def __init__(self, init: dict | None = None, remote: dict | None = None) -> None:
        import os

        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
        if not ray.is_initialized():
            # No dashboard is served.
            ray.init(**{"include_dashboard": False, "log_to_driver": False, **(init or {})})
        self.remote = dict(remote or {})

    def submit(self, fn: Callable, *args: Any) -> RayFuture:
        import ray

        task = ray.remote(fn)
        return RayFuture((task.options(**self.remote) if self.remote else task).remote(*args))
