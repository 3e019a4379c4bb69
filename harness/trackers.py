"""Experiment trackers as Hydra callbacks: each run record becomes one tracked run.

Switched on per command line, each needing its extra (`pip install -e ".[trackers]"`):

    python -m harness ... +hydra/callbacks=mlflow        # MLflow, local SQLite: sqlite:///mlruns.db
    python -m harness ... +hydra/callbacks=tensorboard   # TensorBoard event files: tensorboard/
    python -m harness ... +hydra/callbacks=wandb         # W&B, offline: wandb_runs/wandb/

When a job ends, every record it wrote, and the baselines it is compared with, are sent to the
tracker: the run's config (flattened, `data.correlation`, ...) as parameters, its learning curves
per task at their training steps (`val.<task>`, `test.<task>`, `train_loss.<task>`,
`weights.<task>`, ...), and its final metrics (`final.val.<task>`, `final.test.<task>`). The
records stay the source of truth: a tracker holds a copy, made after they are on disk, and a
record already tracked (same kind, config hash and seed) is not sent twice, so re-running a
sweep does not duplicate runs. Nothing is sent anywhere: every tracker writes local files (W&B
only with `mode: online`, the user's choice).
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path
from typing import Any, Iterator

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.records import Record, RecordError, find_records, load_record

log = logging.getLogger(__name__)


def record_key(rec: Record) -> str:
    return f"{rec.kind}:{rec.config_hash}:{rec.seed}"


def params(rec: Record) -> dict[str, str]:
    """The run's config as flat `group.field` parameters, plus who it is."""
    flat: dict[str, str] = {"kind": rec.kind, "label": rec.label, "seed": str(rec.seed),
                            "status": rec.status, "config_hash": rec.config_hash}
    if rec.task:
        flat["task"] = rec.task

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = str(value)

    walk("", rec.config)
    return flat


def metric_name(name: str) -> str:
    """Task pairs ("a|b", "a>b") in names every tracker accepts (letters, digits, _ - . / space)."""
    return re.sub(r"[^\w\-. /]", "_", name.replace("|", "-vs-").replace(">", "-to-"))


def series(rec: Record) -> Iterator[tuple[str, int, float]]:
    """(name, step, value) of every per-task learning curve and the final metrics (step = the
    last evaluation); non-finite values are left out (a diverged run's tail)."""
    steps = rec.curves.get("steps", [])
    for name, by_key in rec.curves.items():
        if name == "steps" or not isinstance(by_key, dict):
            continue
        for key, values in by_key.items():
            if isinstance(values, list):
                for step, value in zip(steps, values):
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        yield metric_name(f"{name}.{key}"), int(step), float(value)
    last = int(steps[-1]) if steps else 0
    for split, by_task in rec.metrics.items():
        for task, value in by_task.items():
            if value is not None and math.isfinite(value):
                yield f"final.{split}.{task}", last, float(value)


def job_records(job_dir: Path) -> list[Record]:
    """The records of a finished job (its runs and the baselines they refer to); unreadable
    files are left to collect, which lists them."""
    out = []
    for path in find_records(job_dir):
        try:
            out.append(load_record(path))
        except RecordError:
            continue
    return out


class Tracker(Callback):
    """Sends each finished job's records to a tracker (subclasses say how)."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        job_dir = Path(str(config.hydra.runtime.output_dir))
        study = str(config.get("study", "adhoc"))
        try:
            sent = sum(self.track(study, rec) for rec in job_records(job_dir))
        except Exception as err:  # a tracker's failure never costs the sweep its results
            log.warning(f"{type(self).__name__}: tracking {job_dir} failed: {type(err).__name__}: {err}")
            return
        if sent:
            log.info(f"{type(self).__name__}: {sent} run(s) tracked from {job_dir}")

    def track(self, study: str, rec: Record) -> bool:
        """Send one record unless it is tracked already; True when sent."""
        raise NotImplementedError


class MLflow(Tracker):
    """One MLflow run per record, in the experiment named after the study."""

    def __init__(self, tracking_uri: str = "sqlite:///mlruns.db") -> None:
        self.tracking_uri = tracking_uri

    def track(self, study: str, rec: Record) -> bool:
        try:
            from mlflow.entities import Metric, Param, RunTag
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ImportError('the MLflow tracker needs mlflow: pip install -e ".[trackers]"') from None
        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(study)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(study)
        key = record_key(rec)
        if client.search_runs([experiment_id], filter_string=f"tags.record = '{key}'", max_results=1):
            return False
        run = client.create_run(experiment_id, run_name=f"{rec.label} seed {rec.seed}", tags={"record": key})
        metrics = [Metric(name, value, 0, step) for name, step, value in series(rec)]
        items = list(params(rec).items())
        # MLflow takes at most 100 parameters and 1000 metrics per call.
        for i in range(0, len(items), 100):
            client.log_batch(run.info.run_id, params=[Param(k, v[:6000]) for k, v in items[i:i + 100]])
        for i in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[i:i + 1000])
        client.log_batch(run.info.run_id, tags=[RunTag("status", rec.status)])
        client.set_terminated(run.info.run_id, "FINISHED" if rec.status == "ok" else "FAILED")
        return True


class TensorBoard(Tracker):
    """One event-file directory per record: `<log_dir>/<study>/<kind>-<config hash>-seed<seed>`."""

    def __init__(self, log_dir: str = "tensorboard") -> None:
        self.log_dir = Path(log_dir)

    def track(self, study: str, rec: Record) -> bool:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError('the TensorBoard tracker needs tensorboardX: pip install -e ".[trackers]"') from None
        run_dir = self.log_dir / study / f"{rec.kind}-{rec.config_hash[:12]}-seed{rec.seed}"
        if run_dir.exists():
            return False
        writer = SummaryWriter(str(run_dir))
        try:
            writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in params(rec).items()), 0)
            for name, step, value in series(rec):
                writer.add_scalar(name, value, step)
        finally:
            writer.close()
        return True


class WandB(Tracker):
    """One W&B run per record, offline by default: written under `<dir>/wandb/` for a later
    `wandb sync`, nothing sent. The run id is derived from the record, so a record already in
    `dir` is not written again."""

    def __init__(self, dir: str = "wandb_runs", project: str | None = None, mode: str = "offline") -> None:
        self.dir, self.project, self.mode = Path(dir), project, mode

    def track(self, study: str, rec: Record) -> bool:
        try:
            import wandb
        except ImportError:
            raise ImportError('the W&B tracker needs wandb: pip install -e ".[trackers]"') from None
        run_id = hashlib.sha1(record_key(rec).encode()).hexdigest()[:16]
        if list((self.dir / "wandb").glob(f"*-{run_id}")):
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=self.project or study, name=f"{rec.label} seed {rec.seed}", id=run_id,
                         config=params(rec), dir=str(self.dir), mode=self.mode, reinit="create_new",
                         settings=wandb.Settings(silent=True))
        try:
            by_step: dict[int, dict[str, float]] = {}
            for name, step, value in series(rec):
                if name.startswith("final."):
                    run.summary[name] = value
                else:
                    by_step.setdefault(step, {})[name] = value
            for step in sorted(by_step):  # W&B wants steps in increasing order
                run.log(by_step[step], step=step)
        finally:
            run.finish(exit_code=0 if rec.status == "ok" else 1)
        return True
