"""Checkpointed long runs: an interrupted run resumes and ends exactly as an uninterrupted one."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.run.execute import execute_units
from harness.run.plan import Unit
from helpers import plan_of, small_data, small_run


class Interrupted(Exception):
    pass


def test_interrupted_run_resumes_from_its_checkpoint_with_the_same_final_metrics(tmp_path):
    run = small_run(train=dataclasses.replace(small_run().train, steps=40, eval_every=10, checkpoint_every=10))
    source, data = small_data(run)
    unit = Unit("mtl", plan_of(run), data, [0, 1], tmp_path, {})
    whole, _, _ = execute_units([unit])  # no checkpoint directory: one uninterrupted program

    seen = []

    def stop_after_two(line):
        seen.append(line)
        if len(seen) == 2:
            raise Interrupted(line)

    with pytest.raises(Interrupted):
        execute_units([unit], tmp_path / "ckpt", stop_after_two)
    assert seen == ["step 10/40", "step 20/40"] and (tmp_path / "ckpt").exists()

    resumed = []
    (out,), _, _ = execute_units([unit], tmp_path / "ckpt", resumed.append)
    assert resumed == ["step 30/40", "step 40/40"]  # it went on from the saved step 20
    for key in ("val", "test", "train_loss"):
        np.testing.assert_allclose(out[key], whole[0][key], rtol=1e-6)
    np.testing.assert_array_equal(out["diverged_at"], whole[0]["diverged_at"])
    # Kept until the caller has written the records: a run killed in between is not trained
    # again, its last save already holds the end.
    again = []
    (out,), _, _ = execute_units([unit], tmp_path / "ckpt", again.append)
    assert again == []
    np.testing.assert_allclose(out["test"], whole[0]["test"], rtol=1e-6)


def test_a_second_process_on_the_same_runs_gets_its_own_checkpoint_directory(tmp_path):
    """Two identical checkpointed runs into one directory: the first claims it, the other trains
    in a private one (flock locks are per open file, so two claims in one process conflict as
    two processes' would); each private directory is gone on the way out, and the shared lock
    once its directory is."""
    from harness.run.checkpoint import claimed

    shared = tmp_path / ".checkpoint-abc"
    with claimed(shared) as first:
        with claimed(shared) as second:
            assert first == shared and second != shared and second.parent == shared.parent
            second.mkdir()
        assert not second.exists()
        first.mkdir()
    assert (tmp_path / ".checkpoint-abc.lock").exists()  # left to resume from after a kill
    with claimed(shared) as again:
        assert again == shared
        again.rmdir()  # the records are on disk
    assert not list(tmp_path.iterdir())


def test_two_identical_checkpointed_commands_at_once_both_finish(tmp_path):
    import json
    import subprocess
    import sys

    args = [sys.executable, "-m", "harness", "seeds=2", "train.steps=40", "train.eval_every=10",
            "train.checkpoint_every=10", "data.n_train=64", "data.n_val=32", "data.n_test=32",
            "compile_cache=null", f"hydra.run.dir={tmp_path}/run", "baseline_dir=" + str(tmp_path / "baselines")]
    procs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    runs = sorted((tmp_path / "run" / "runs").glob("seed_*.json"))
    assert [p.name for p in runs] == ["seed_0.json", "seed_1.json"]
    assert all(json.loads(p.read_text())["status"] == "ok" for p in runs)
    assert not list(tmp_path.rglob(".checkpoint-*"))
