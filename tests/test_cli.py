"""The command line end to end, as a user runs it (subprocesses)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SMALL = ["seeds=2", "train.steps=20", "train.eval_every=10", "data.n_train=64", "data.n_val=32",
         "data.n_test=32", "compile_cache=null"]


def harness(args: list[str], cwd: Path, module: str = "harness") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def records(root: Path) -> dict[str, dict]:
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in root.rglob("seed_*.json")}


# The full table runs in-process in tests/test_bad_inputs.py; these go through a real subprocess.
@pytest.mark.parametrize("args,key", [
    (["model.foo=1"], "model.foo=1: not a key of HardConfig"),  # Hydra's message has 6 lines
    (["-m", "optim.lr=0.01,-1"], "optim.lr=-1.0"),
    (["-m", "hydra/launcher=batched", "train.eval_every=10,7"], "train.eval_every=7"),
])
def test_bad_input_exits_2_with_one_line_and_no_results(tmp_path, args, key):
    overridden = {a.split("=", 1)[0] for a in args}
    small = [a for a in SMALL if a.split("=", 1)[0] not in overridden]
    res = harness(args + small + [f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0]
    assert not list(tmp_path.iterdir())  # not even .hydra/, a log or multirun.yaml


def test_sweep_writes_table_resumes_without_duplicates_and_collects(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "model.shared_depth=0,1", "schedule=joint,alternate", *SMALL, f"hydra.sweep.dir={sweep}"]
    first = harness(args, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "table:" in first.stdout and (sweep / "transfer.md").exists()
    jobs = [p.name for p in sweep.iterdir() if (p / "runs").is_dir()]
    assert len(jobs) == 4  # one directory per job, named by its overrides
    for depth in (0, 1):
        for schedule in ("joint", "alternate"):
            assert sum(f"model.shared_depth={depth}," in j and f"schedule={schedule}," in j for j in jobs) == 1
    table = pd.read_parquet(sweep / "transfer.parquet")
    assert len(table) == 4 * 2 and set(table["n"]) == {2}
    runs = pd.read_parquet(sweep / "runs.parquet")
    # mtl runs + per schedule one baseline per task and seed, shared by both depths
    assert len(runs) == 4 * 2 + 2 * 2 * 2
    control = table[table["cfg.model.shared_depth"].eq(0)]  # separate towers, either schedule
    assert len(control) == 2 * 2 and control["r_mean"].eq(0).all()

    before = records(sweep)
    job = next(j for j in jobs if "model.shared_depth=1," in j and "schedule=joint," in j)
    (sweep / job / "runs" / "seed_1.json").unlink()  # a lost run
    second = harness(args, tmp_path)
    assert second.returncode == 0, second.stderr
    after = records(sweep)
    assert after.keys() == before.keys()  # the lost run is back, nothing duplicated
    redone = f"{job}/runs/seed_1.json"
    # Redone alone, the seed is a batch of 1 instead of 2: XLA may order float sums differently.
    for split in ("val", "test"):
        np.testing.assert_allclose(list(after[redone]["metrics"][split].values()),
                                   list(before[redone]["metrics"][split].values()), rtol=1e-5)
    kept = [k for k in before if k != redone]
    assert all(after[k]["timing"] == before[k]["timing"] for k in kept)  # not retrained

    table = pd.read_parquet(sweep / "transfer.parquet")  # the re-run's table
    (sweep / "transfer.md").unlink()
    collected = harness([str(sweep)], tmp_path, module="harness.collect")
    assert collected.returncode == 0, collected.stderr
    assert (sweep / "transfer.md").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(sweep / "transfer.parquet"), table)


def test_same_command_twice_gives_identical_metrics(tmp_path):
    outs = []
    for name in ("a", "b"):
        res = harness(["schedule=alternate", *SMALL, f"hydra.run.dir={tmp_path}/{name}"], tmp_path)
        assert res.returncode == 0, res.stderr
        outs.append({k: v["metrics"] for k, v in records(tmp_path / name).items()})
    assert outs[0] == outs[1] and len(outs[0]) == 2 + 4


def test_sweep_killed_midway_resumes_without_duplicates_or_half_written_records(tmp_path):
    import os
    import signal
    import time

    sweep = tmp_path / "sweep"
    args = ["-m", "model.shared_depth=0,1,2", "schedule=joint,alternate", *SMALL, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(sweep.rglob("runs/seed_*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = list(sweep.rglob("runs/seed_*.json"))
    assert 2 <= len(partial) < 12, "the kill should land partway through the sweep"

    again = harness(args, tmp_path)
    assert again.returncode == 0, again.stderr
    runs = pd.read_parquet(sweep / "runs.parquet")
    mtl = runs[runs["kind"] == "mtl"]
    assert len(mtl) == 6 * 2 and not mtl.duplicated(["config_hash", "seed"]).any()
    assert (runs["status"] == "ok").all()
    for p in sweep.rglob("seed_*.json"):
        json.loads(p.read_text())  # every record is whole


def test_ctrl_c_ends_with_one_line_and_exit_130_and_a_rerun_finishes(tmp_path):
    """SIGINT once the first record is on disk: one line saying what was kept, exit 130, no
    traceback; the same command again finishes the sweep."""
    import signal
    import time

    sweep = tmp_path / "sweep"
    args = [sys.executable, "-m", "harness", "-m", "model.shared_depth=0,1,2,3", "seeds=1", "train.steps=400",
            "train.eval_every=100", "data.n_train=64", "compile_cache=null", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list(sweep.rglob("seed_*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the sweep finished before the interrupt arrived")
    assert proc.returncode == 130 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()][-1].startswith("interrupted: the records written")
    rerun = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(sweep.rglob("runs/seed_*.json"))) == 4


def test_the_console_command_runs_with_its_help_and_shell_completion(tmp_path):
    """`mtl-harness` (installed by the README's pip install) finds the configs from any
    directory, explains itself in --help, and completes groups and options in bash."""
    import os

    command = Path(sys.executable).parent / "mtl-harness"
    assert command.exists(), "pip install -e . installs the console command"
    shown = subprocess.run([str(command), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "no arguments: the default study" in shown.stdout
    listed = next(line for line in shown.stdout.splitlines() if line.startswith("method: "))
    assert {"aligned_mtl", "cagrad", "pcgrad"} <= set(listed[len("method: "):].split(", "))
    env = {**os.environ, "COMP_LINE": "mtl-harness method=pc"}
    completed = subprocess.run([str(command), "-sc", "query=bash"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120)
    assert completed.stdout.split() == ["method=pcgrad"]
    info = subprocess.run([str(command), "--info"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = (info.stdout + info.stderr).splitlines()
    assert info.returncode == 0 and lines.count("Installed Hydra Plugins") == 1  # each line once
    assert not list(tmp_path.iterdir())


def test_no_arguments_runs_the_default_study_outside_the_committed_results(monkeypatch, tmp_path):
    """The quickstart (`python -m harness`) writes under the untracked outputs/default; the
    committed results/default is rewritten only by `experiment=default` itself."""
    import harness.__main__ as entry

    seen = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["harness"])
    monkeypatch.setattr(entry, "main", lambda: seen.append(list(sys.argv[1:])))
    with pytest.raises(SystemExit) as ended:
        entry.cli()  # the up-front check composes and plans the study's 24 jobs, then main runs
    assert ended.value.code == 0
    assert seen == [["experiment=default", "hydra.sweep.dir=outputs/default"]]
    assert not list(tmp_path.iterdir())
