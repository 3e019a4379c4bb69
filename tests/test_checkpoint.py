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
