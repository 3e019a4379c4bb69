"""The batched launcher: grouping, failure isolation, and the command line end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from harness.run import sweep as launch
from harness.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["seeds=2", "train.steps=20", "train.eval_every=10", "data.n_train=64", "data.n_val=32",
         "data.n_test=32", "compile_cache=null"]
register_configs()


def sweep_configs(tmp_path: Path, points: list[list[str]]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        configs = []
        for point in points:
            cfg = compose("config", overrides=SMALL + point + [f"hydra.sweep.dir={tmp_path}"],
                          return_hydra_config=True)
            from omegaconf import open_dict
            with open_dict(cfg):
                cfg.hydra.job.override_dirname = ",".join(point)
            configs.append(cfg)
        return configs


def test_groups_follow_the_program_and_the_size_cap(tmp_path):
    points = [[f"optim.lr={lr}", f"model.shared_depth={k}"] for lr in (0.001, 0.01, 0.1) for k in (1, 2)]
    jobs = launch.prepare(sweep_configs(tmp_path, points))
    groups = launch.groups(jobs, max_batch=4)
    mtl = [g for g in groups if g[0].kind == "mtl"]
    # two programs (depth 1, depth 2), three jobs of 2 seeds each, at most 4 runs per group
    assert sorted(len(g) for g in mtl) == [1, 1, 2, 2]
    assert all(sum(len(u.seeds) for u in g) <= 4 for g in groups)
    stl = [u for g in groups if g[0].kind == "stl" for u in g]
    assert len(stl) == 3 * 2  # one baseline per (lr, task), shared by both depths
    assert groups.index(mtl[0]) > max(groups.index(g) for g in groups if g[0].kind == "stl")


def test_a_failing_group_is_recorded_and_the_others_finish(tmp_path, monkeypatch, capsys):
    points = [["model.shared_depth=1"], ["model.shared_depth=2"]]
    jobs = launch.prepare(sweep_configs(tmp_path, points))
    real = launch.execute_units

    def flaky(units, *args):
        if units[0].kind == "mtl" and units[0].run.model.shared_depth == 2:
            raise RuntimeError("device lost")
        return real(units, *args)

    monkeypatch.setattr(launch, "execute_units", flaky)
    launch.execute(jobs, max_batch=64)
    for job in jobs:
        job.write(None)
    recs = [json.loads(p.read_text()) for p in tmp_path.rglob("runs/seed_*.json")]
    status = {(r["config"]["model"]["shared_depth"], r["seed"]): r["status"] for r in recs}
    assert status == {(1, 0): "ok", (1, 1): "ok", (2, 0): "failed", (2, 1): "failed"}
    failed = [r for r in recs if r["status"] == "failed"]
    assert all("device lost" in r["error"] for r in failed)
    # the command lists the failed unit and exits 1 (its records are retried on a re-run)
    assert len(launch.FAILED) == 1 and "model.shared_depth=2" in launch.FAILED[0]
    assert launch.report_failures() == 1
    assert "device lost" in capsys.readouterr().err


def test_a_sweep_killed_after_a_group_keeps_its_records_and_trains_only_the_rest(tmp_path, monkeypatch):
    """Records are written as each group finishes: a kill during the second multi-task group
    leaves the first group's records whole, and the re-run trains only what is missing."""
    points = [["model.shared_depth=1"], ["model.shared_depth=2"]]
    real, trained = launch.execute_units, []

    def killed_at_depth_2(units, *args):
        if units[0].kind == "mtl" and units[0].run.model.shared_depth == 2:
            raise KeyboardInterrupt  # as a kill: nothing after this point runs
        trained.append((units[0].kind, units[0].run.model.shared_depth))
        return real(units, *args)

    monkeypatch.setattr(launch, "execute_units", killed_at_depth_2)
    with pytest.raises(KeyboardInterrupt):
        launch.execute(launch.prepare(sweep_configs(tmp_path, points)), max_batch=64)
    kept = {p.relative_to(tmp_path) for p in tmp_path.rglob("runs/seed_*.json")}
    assert len(kept) == 2 and all("model.shared_depth=1" in str(p) for p in kept)

    def counted(units, *args):
        trained.append((units[0].kind, units[0].run.model.shared_depth))
        return real(units, *args)

    monkeypatch.setattr(launch, "execute_units", counted)
    trained.clear()
    launch.execute(launch.prepare(sweep_configs(tmp_path, points)), max_batch=64)
    assert trained == [("mtl", 2)]  # baselines and depth 1 are not trained again
    recs = [json.loads(p.read_text()) for p in tmp_path.rglob("runs/seed_*.json")]
    keys = [(r["config_hash"], r["seed"]) for r in recs]
    assert len(keys) == len(set(keys)) == 4 and all(r["status"] == "ok" for r in recs)


def test_batched_launcher_end_to_end(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=batched", "optim.lr=0.001,0.01", "data.correlation=0,1", *SMALL,
            f"hydra.sweep.dir={sweep}"]
    res = subprocess.run([sys.executable, "-m", "harness", *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    jobs = [p for p in sweep.iterdir() if (p / "runs").is_dir()]
    assert len(jobs) == 4 and all((j / ".hydra" / "config.yaml").exists() for j in jobs)
    recs = [json.loads(p.read_text()) for j in jobs for p in (j / "runs").glob("seed_*.json")]
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs)
    assert {r["timing"]["batch"] for r in recs} == {8}  # 4 jobs x 2 seeds: one program
    # not a terminal: progress goes to the log, one line per group with elapsed time and ETA
    progress = [line for line in (res.stdout + res.stderr).splitlines() if "runs) done; elapsed" in line]
    assert len(progress) == 3 and "group 3/3 (8 runs)" in progress[-1] and "ETA 0 s" in progress[-1]
    table = pd.read_parquet(sweep / "transfer.parquet")
    assert len(table) == 4 * 2

    # the same job through the basic launcher gives the same metrics
    one = subprocess.run([sys.executable, "-m", "harness", "optim.lr=0.01", "data.correlation=1", *SMALL,
                          f"hydra.run.dir={tmp_path / 'single'}"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    single = {json.loads(p.read_text())["seed"]: json.loads(p.read_text())["metrics"]["test"]
              for p in (tmp_path / "single" / "runs").glob("seed_*.json")}
    batched = {r["seed"]: r["metrics"]["test"] for r in recs
               if r["config"]["optim"]["lr"] == 0.01 and r["config"]["data"]["correlation"] == 1}
    for seed, metrics in single.items():
        for task, value in metrics.items():
            assert batched[seed][task] == pytest.approx(value, rel=1e-5)


def run_cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=400)


@pytest.mark.parametrize("distill", [[], ["distill.enabled=true"]], ids=["plain", "distilled"])
def test_batched_launcher_hands_each_group_to_submitit(tmp_path, distill):
    """Distilled runs need their teachers' parameters: their group is submitted once the
    baselines' groups have finished, and finds them."""
    sweep = tmp_path / "sweep"
    res = run_cli(["-m", "hydra/launcher=batched", "hydra.launcher.executor=submitit_local",
                   "optim.lr=0.001,0.01", *distill, *SMALL, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert res.returncode == 0, res.stderr
    submitted = [p for p in (sweep / ".submitit").iterdir() if p.is_dir() and p.name != "%j"]
    assert len(submitted) == 3  # one job per program: the multi-task runs and one per task's baselines
    recs = [json.loads(p.read_text()) for p in sweep.rglob("runs/seed_*.json")]
    assert len(recs) == 4 and all(r["status"] == "ok" and r["timing"]["batch"] == 4 for r in recs)
    assert all(r["config"]["distill"]["enabled"] == bool(distill) for r in recs)


def test_submitit_local_launcher_runs_the_usual_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli(["-m", "hydra/launcher=submitit_local", "model.shared_depth=0,1", *SMALL,
                   f"hydra.sweep.dir={sweep}"], tmp_path)
    assert res.returncode == 0, res.stderr
    recs = [json.loads(p.read_text()) for p in sweep.rglob("runs/seed_*.json")]
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    assert (sweep / "transfer.parquet").exists()


@pytest.mark.parametrize("launcher", ["joblib", "submitit_slurm", "slurm_example", "batched_slurm_example"])
def test_launcher_configs_compose(launcher):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.")


def test_incompatible_jobs_are_skipped_when_asked_and_the_rest_run(tmp_path, monkeypatch):
    """skip_incompatible=true: a job whose method refuses its schedule is listed and skipped
    (batched: no units; basic launcher: one log line, no records), the others run."""
    from harness.run.sweep import prepare

    configs = sweep_configs(tmp_path, [["method=equal", "schedule=alternate", "skip_incompatible=true"],
                                       ["method=pcgrad", "schedule=alternate", "skip_incompatible=true"]])
    jobs = prepare(configs)
    assert [bool(j.units) for j in jobs] == [True, False]

    res = run_cli(["-m", "method=equal,pcgrad", "schedule=alternate", "skip_incompatible=true", *SMALL,
                   f"hydra.sweep.dir={tmp_path / 'basic'}"], tmp_path)
    assert res.returncode == 0, res.stderr
    listed = [line for line in res.stderr.splitlines() if line.startswith("skipped (incompatible)")]
    assert len(listed) == 1 and "method=pcgrad" in listed[0]
    recs = [json.loads(p.read_text()) for p in (tmp_path / "basic").rglob("runs/seed_*.json")]
    assert {r["config"]["method"]["name"] for r in recs} == {"equal"} and len(recs) == 2


def test_batched_groups_run_as_ray_tasks_give_the_inline_results(tmp_path):
    """hydra.launcher.executor=ray: each group is a task on a local Ray cluster (started here);
    the records are those of the inline run."""
    import ray

    from harness.run.ray_executor import RayExecutor

    points = [["optim.lr=0.01"], ["optim.lr=0.02"]]
    results = {}
    for where, executor in (("inline", None), ("ray", "ray")):
        jobs = launch.prepare(sweep_configs(tmp_path / where, points))
        try:
            launch.execute(jobs, 64, executor=RayExecutor({"num_cpus": 1}) if executor else None)
        finally:
            if executor:
                ray.shutdown()
        results[where] = {(r["config"]["optim"]["lr"], r["seed"]): r["metrics"]["test"]
                          for r in (json.loads(p.read_text()) for p in (tmp_path / where).rglob("runs/seed_*.json"))}
    assert len(results["ray"]) == 4 and results["ray"].keys() == results["inline"].keys()
    for key, metrics in results["inline"].items():
        assert results["ray"][key] == pytest.approx(metrics, rel=1e-6)


def test_the_terminal_progress_bar_redraws_one_line_and_ends_it(capsys):
    launch.progress_bar("group 1/4 (8 runs) done; elapsed 3 s, ETA 9 s", width=8)
    launch.progress_bar("group 4/4 (8 runs) done; elapsed 12 s, ETA 0 s", width=8)
    err = capsys.readouterr().err
    assert err.startswith("\r[##......] group 1/4") and "\r[########] group 4/4" in err
    assert err.endswith("\n") and err.count("\n") == 1
