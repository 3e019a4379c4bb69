"""Trackers: each record of a finished job becomes one tracked run, readable with the tracker's
own reader, offline, and never twice."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from harness.trackers import MLflow, TensorBoard, metric_name
from test_report import STEPS, make_sweep


def finished_job(tmp_path):
    """A sweep on disk (depth x method, 2 seeds, baselines) and one of its jobs' Hydra config."""
    root = make_sweep(tmp_path / "sweep", seeds=2, diagnostics=True, depths=(1,), methods=("equal",))
    job_dir = root / "model.shared_depth=1,method=equal"
    config = OmegaConf.create({"study": "trial", "hydra": {"runtime": {"output_dir": str(job_dir)}}})
    records = [json.loads(p.read_text()) for p in (job_dir / "runs").glob("seed_*.json")]
    return config, records


def test_mlflow_keeps_one_run_per_record_in_a_real_sqlite_database(tmp_path):
    import mlflow  # the [test] extra installs every tracker
    config, records = finished_job(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = MLflow(uri)
    tracker.on_job_end(config, None)
    tracker.on_job_end(config, None)  # the job again (a re-run): nothing is tracked twice
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("trial").experiment_id])
    assert len(runs) == 2 + 2 * 2  # 2 multi-task seeds, 2 baselines x 2 seeds
    mtl = {r.data.params["seed"]: r for r in runs if r.data.params["kind"] == "mtl"}
    rec = next(r for r in records if r["seed"] == 1)
    run = mtl["1"]
    assert run.data.params["model.shared_depth"] == "1" and run.data.params["method.name"] == "equal"
    history = client.get_metric_history(run.info.run_id, "val.acc")
    assert [m.step for m in history] == STEPS
    assert [m.value for m in history] == pytest.approx(rec["curves"]["val"]["acc"])
    assert run.data.metrics["final.test.err"] == pytest.approx(rec["metrics"]["test"]["err"])
    assert run.data.metrics[metric_name("grad_cos.acc|err")] == pytest.approx(rec["curves"]["grad_cos"]["acc|err"][-1])


def test_tensorboard_event_files_read_back_with_tensorboards_reader(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator as accumulator
    config, records = finished_job(tmp_path)
    tracker = TensorBoard(str(tmp_path / "tb"))
    tracker.on_job_end(config, None)
    tracker.on_job_end(config, None)
    dirs = sorted((tmp_path / "tb" / "trial").iterdir())
    assert len(dirs) == 6 and sum(d.name.startswith("mtl-") for d in dirs) == 2
    assert all(len(list(d.glob("events.out.tfevents.*"))) == 1 for d in dirs)  # not written twice
    rec = next(r for r in records if r["seed"] == 0)
    run_dir = next(d for d in dirs if d.name == f"mtl-{rec['config_hash'][:12]}-seed0")
    events = accumulator.EventAccumulator(str(run_dir))
    events.Reload()
    scalars = events.Scalars("val.acc")
    assert [s.step for s in scalars] == STEPS
    assert [s.value for s in scalars] == pytest.approx(rec["curves"]["val"]["acc"], rel=1e-6)


def test_a_broken_tracker_never_costs_the_job(tmp_path, caplog):
    config, _ = finished_job(tmp_path)
    tracker = MLflow("notascheme://nowhere")
    tracker.on_job_end(config, None)  # logs one warning, raises nothing
    assert any("MLflow: tracking" in r.message for r in caplog.records)


def read_wandb(path):
    """The records of a W&B run file, read with W&B's own protobuf schema: a 7-byte header, then
    LevelDB-log records (7-byte header: crc32, length, type) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, out, pos, pending = path.read_bytes(), [], 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:  # a block's tail too short for a header is padding
            pos += room
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending += chunk
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def unwrap(value):
    """A config value as W&B keeps it: bare, or as {"value": ...} (its config-file form)."""
    return value["value"] if isinstance(value, dict) and set(value) <= {"value", "desc"} and "value" in value else value


def test_wandb_offline_runs_hold_the_config_curves_and_final_metrics(tmp_path):
    from harness.trackers import WandB

    config, records = finished_job(tmp_path)
    tracker = WandB(str(tmp_path / "wb"))
    tracker.on_job_end(config, None)
    tracker.on_job_end(config, None)
    run_dirs = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 6
    rec = next(r for r in records if r["seed"] == 1)
    history, config_items, summary = {}, {}, {}
    for run_dir in run_dirs:
        parsed = read_wandb(next(run_dir.glob("run-*.wandb")))
        # The config travels in the run record or in later config records, depending on timing.
        updates = [i for r in parsed if r.HasField("run") for i in r.run.config.update]
        updates += [i for r in parsed if r.HasField("config") for i in r.config.update]
        names = {i.key: unwrap(json.loads(i.value_json)) for i in updates}
        if names.get("kind") == "mtl" and names["seed"] == "1":
            config_items = names
            for r in parsed:
                if r.HasField("history"):
                    items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                    history[items["_step"]] = items
                if r.HasField("summary"):
                    summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
    assert config_items["method.name"] == "equal" and config_items["model.shared_depth"] == "1"
    assert sorted(history) == STEPS
    assert [history[s]["val.acc"] for s in STEPS] == pytest.approx(rec["curves"]["val"]["acc"])
    assert summary["final.test.err"] == pytest.approx(rec["metrics"]["test"]["err"])
