"""Every method of the catalogue inside the compiled training run: it trains, and schedules it
cannot serve are refused with a one-line error."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.config import ScheduleConfig
from harness.errors import ConfigError
from harness.methods.base import METHODS
from helpers import execute, small_data, small_run

RUN = small_run(train=dataclasses.replace(small_run().train, steps=8, eval_every=4))
SOURCE, DATA = small_data(RUN)


def schema(name: str):
    """A method's default config; declared targets where it takes targets (in a job they
    default to the baselines' final validation scores, which these runs have not got)."""
    schema = METHODS.get(name).schema
    fields = {f.name for f in dataclasses.fields(schema)}
    return schema(targets=[1.0] * len(SOURCE.tasks)) if "targets" in fields else schema()


@pytest.mark.parametrize("name", METHODS.names())
def test_method_trains_inside_the_compiled_run(name):
    run = dataclasses.replace(RUN, method=schema(name))
    out, _, _ = execute(run, SOURCE.tasks, DATA, [0, 1])
    assert np.all(out["diverged_at"] == -1)
    assert np.all(np.isfinite(out["test"])) and np.all(np.isfinite(out["weights"]))
    assert not np.array_equal(out["val_loss"][:, 0], out["val_loss"][:, 1])  # it kept training


@pytest.mark.parametrize("name", METHODS.names())
def test_alternate_schedule_is_served_or_refused(name):
    method = METHODS.get(name).build(schema(name), SOURCE.tasks)
    run = dataclasses.replace(RUN, method=schema(name), schedule=ScheduleConfig(name="alternate"))
    if "alternate" in method.schedules:
        out, _, _ = execute(run, SOURCE.tasks, DATA, [0])
        assert np.all(np.isfinite(out["test"]))
    else:
        with pytest.raises(ConfigError, match=f"^method='{name}': works with schedule joint"):
            execute(run, SOURCE.tasks, DATA, [0])
