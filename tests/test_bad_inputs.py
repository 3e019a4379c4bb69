"""Bad input, as a user types it: every case ends with exit status 2, one line that names the
key and the bad value, and nothing written (no records, no `.hydra/`, no log, no
multirun.yaml), whatever the flags and the launcher.

The command line runs in this process (`python -m harness` through runpy), which is what a
subprocess would run minus the interpreter start; tests/test_cli.py runs a few cases as real
subprocesses."""
from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

SMALL = ["seeds=2", "train.steps=20", "train.eval_every=10", "data.n_train=64", "data.n_val=32",
         "data.n_test=32", "compile_cache=null"]
ROWS = 40
FILES = ["data=files", "data.path={inputs}/data.npz", "+data.targets={cls: classification, reg: regression}"]

CASES = [  # (arguments, what the one line must contain); {inputs}: the test's input files
    # groups and options that do not exist
    (["method=nope"], "method='nope'"),
    (["-m", "schedule=joint,nope"], "schedule='nope'"),
    (["-cn", "nope"], "Cannot find primary config 'nope'"),
    (["-cd", "{inputs}/no_such_dir"], "--config-dir="),
    (["-cp", "/no/such/conf"], "--config-path='/no/such/conf'"),
    # unknown keys, with or without `+` (a typo is never hashed into a new config)
    (["model.foo=1"], "model.foo=1: not a key of HardConfig"),
    (["+optim.lrr=0.1"], "optim.lrr=0.1: not a key of OptimConfig"),
    (["+train.stepz=10"], "train.stepz=10: not a key of TrainConfig"),
    (["+model.foo=1"], "model.foo=1: not a key of HardConfig"),
    (["+foo=1"], "foo=1: not a key of Config"),
    (["--cfg", "job", "model.foo=1"], "model.foo=1: not a key of HardConfig"),
    # wrong types, one element of a list included
    (["train.steps=abc"], "train.steps=abc"),
    (["train.batch_size=1e8"], "train.batch_size=1e8"),
    (["method=static", "method.weights=[a,b]"], "method.weights=[a,b]: element [0]"),
    (["data=files"], "data.path=None: Structured config of type `FilesConfig` has missing mandatory value"),
    # ranges
    (["model.shared_depth=-1"], "model.shared_depth=-1"),
    (["model.shared_depth=9"], "model.shared_depth=9"),
    (["optim.lr=0"], "optim.lr=0"),
    (["optim.lr=-0.1"], "optim.lr=-0.1"),
    (["train.steps=0"], "train.steps=0"),
    (["train.batch_size=0"], "train.batch_size=0"),
    (["seeds=0"], "seeds=0"),
    (["train.eval_every=7"], "train.eval_every=7"),
    (["train.select=middle"], "train.select='middle'"),
    (["train.select=last_k", "train.last_k=0"], "train.last_k=0"),
    (["train.select=last_k", "train.last_k=3"], "train.last_k=3"),
    (["method=static", "method.weights=[1.0]"], "method.weights"),
    (["method=static", "method.weights=[1.0,-1.0]"], "method.weights"),
    (["data.tasks=[t1,zz]"], "data.tasks"),
    (["data.num_tasks=1"], "data.num_tasks=1"),
    (["schedule=alternate", "schedule.sampling=sometimes"], "schedule.sampling='sometimes'"),
    (["+data.train_rows={zz: 5}"], "data.train_rows="),
    (["+data.train_rows.t1=0"], "data.train_rows.t1=0"),
    (["distill.enabled=true", "distill.weight=1.5"], "distill.weight=1.5"),
    (["distill.enabled=true", "distill.temperature=0"], "distill.temperature=0"),
    (["distill.enabled=true", "baselines=false"], "baselines=False"),
    (["schedule.draw_from=[t1,t2]"], "schedule.draw_from"),
    (["schedule=alternate", "schedule.draw_from=[t1]"], "schedule.draw_from"),
    (["optim=sgd", "optim.momentum=-5"], "optim.momentum=-5"),
    (["optim=sgd", "optim.momentum=1.5"], "optim.momentum=1.5"),
    (["optim=sgd", "optim.momentum=1"], "optim.momentum=1"),
    # NaN and inf wherever a finite number is meant (each would only diverge)
    (["optim.lr=nan"], "optim.lr=nan"),
    (["optim.lr=inf"], "optim.lr=inf"),
    (["optim=adamw", "optim.weight_decay=nan"], "optim.weight_decay=nan"),
    (["optim=adamw", "optim.weight_decay=inf"], "optim.weight_decay=inf"),
    (["method=static", "method.weights=[inf,1.0]"], "method.weights"),
    (["data.noise=inf"], "data.noise=inf"),
    (["optim=sgd", "optim.momentum=nan"], "optim.momentum=nan"),
    # a bad job anywhere in a sweep, before job 0 trains, under either launcher
    (["-m", "optim.lr=0.01,-1"], "optim.lr=-1.0"),
    (["-m", "model.shared_depth=1,9"], "model.shared_depth=9"),
    (["-m", "train.eval_every=10,7"], "train.eval_every=7"),
    (["-m", "hydra/launcher=batched", "train.eval_every=10,7"], "train.eval_every=7"),
    (["-cn", "config", "-m", "train.eval_every=10,7"], "train.eval_every=7"),
    (["experiment=default", "distill.enabled=true", "distill.weight=2"], "distill.weight=2.0"),
    # parts that refuse each other, in a sweep without skip_incompatible=true
    (["-m", "method=equal,pcgrad", "schedule=alternate"], "method='pcgrad': works with schedule joint"),
    (["-m", "method=pcgrad", "schedule=alternate", "skip_incompatible=true"], "every job is incompatible"),
    # sizes that cannot fit the device: refused before compiling, naming the keys behind them
    (["model.width=100000000"], "model.width=100000000"),
    (["-m", "model.width=32,100000000"], "model.width=100000000"),
    (["data.n_train=100000000"], "data.n_train=100000000"),
    (["model.target_params=1000000000000"], "model.target_params=1000000000000"),
    (["train.batch_size=100000000"], "train.batch_size=100000000"),
    (["seeds=1000000"], "seeds=1000000"),
    (["-m", "hydra/launcher=batched", "model.width=100000000"], "model.width=100000000"),
    # files: each message names the file
    (FILES[:2] + ["+data.targets={cls: ranking}"], "data.targets.cls='ranking'"),
    (["data=files", "data.path={inputs}/missing.npz", "+data.targets={y: regression}"], "no such file"),
    (["data=files", "data.path={inputs}/text.npz", "+data.targets={y: regression}"], "not a readable .npz"),
    (FILES[:2] + ["data.targets={cls: classification}"], "data.targets={cls: classification}: new entries of data.targets need a + in front"),
    (FILES + ["data.x_key=features"], "data.x_key='features': a key of the file; it has X, cls, reg (in data.path="),
    (["data=files", "data.path={inputs}/huge_labels.npz", "+data.targets={cls: classification}"],
     "memory: "),
    # sweep syntax the basic sweeper cannot run
    (["-m", "optim.lr=interval(1e-4,1e-2)"], "optim.lr='interval(1e-4,1e-2)': a list, range() or choice()"),
    # a user's config dir, given by -cd or hydra.searchpath: its options count, others do not
    (["-cd", "{inputs}/conf", "experiment=nope"], "experiment='nope': one of architectures"),
    (["hydra.searchpath=[file://{inputs}/conf]", "experiment=mine", "optim.lr=-1"], "optim.lr=-1"),
    # where the results would go
    (["hydra.run.dir={inputs}/a_file/run"], "hydra.run.dir="),
    (["-m", "hydra.sweep.dir={inputs}/a_file/sweep"], "hydra.sweep.dir="),
]


# A user's own experiment, kept outside the package's conf/.
MINE = "# @package _global_\nstudy: mine\nseeds: 1\ntrain:\n  steps: 20\n  eval_every: 10\n"


def write_inputs(inputs: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 3)).astype(np.float32)
    np.savez(inputs / "data.npz", X=x, cls=np.arange(ROWS) % 3, reg=x[:, 0])
    # class labels up to 1e9: a head of a billion outputs
    np.savez(inputs / "huge_labels.npz", X=x, cls=np.r_[np.zeros(ROWS - 1, int), 10**9])
    (inputs / "text.npz").write_text("not an archive")
    (inputs / "a_file").write_text("a file where a directory would have to be")
    (inputs / "conf" / "experiment").mkdir(parents=True)
    (inputs / "conf" / "experiment" / "mine.yaml").write_text(MINE)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def cli(args: list[str], monkeypatch, capsys) -> tuple[int, list[str]]:
    """`python -m harness args`, in this process: (exit status, non-empty lines of stderr)."""
    monkeypatch.setattr(sys, "argv", ["harness", *args])
    with pytest.raises(SystemExit) as ended:
        runpy.run_module("harness.__main__", run_name="__main__", alter_sys=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return ended.value.code, lines


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, args, message):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_inputs(inputs)
    monkeypatch.chdir(tmp_path)  # a relative path anywhere would land here
    before = files_under(tmp_path)
    args = [a.replace("{inputs}", str(inputs)) for a in args]
    overridden = {a.split("=", 1)[0].lstrip("+") for a in args}
    small = [a for a in SMALL if a.split("=", 1)[0] not in overridden]
    if any(a.startswith("data=") for a in args):
        small = [a for a in small if not a.startswith("data.")]
    outputs = [f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"]
    outputs = [o for o in outputs if o.split("=")[0] not in overridden]
    code, lines = cli(args + small + outputs, monkeypatch, capsys)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0], lines[0]
    assert files_under(tmp_path) == before  # no records, .hydra/, logs or multirun.yaml


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_a_read_only_output_directory_is_one_line(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, lines = cli(SMALL + [f"hydra.run.dir={locked}/run"], monkeypatch, capsys)
    assert code == 2 and len(lines) == 1 and "is not writable" in lines[0]
    assert not list(locked.iterdir())


@pytest.mark.parametrize("where", ["-cd", "hydra.searchpath"])
def test_an_experiment_in_the_users_own_config_dir_is_checked_and_composed(tmp_path, monkeypatch, capsys, where):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_inputs(inputs)
    monkeypatch.chdir(tmp_path)
    search = ["-cd", str(inputs / "conf")] if where == "-cd" else [f"hydra.searchpath=[file://{inputs}/conf]"]
    monkeypatch.setattr(sys, "argv", ["harness", *search, "experiment=mine", "--cfg", "job"])
    with pytest.raises(SystemExit) as ended:
        runpy.run_module("harness.__main__", run_name="__main__", alter_sys=False)
    assert ended.value.code in (0, None)
    assert "study: mine" in capsys.readouterr().out


def test_a_valid_command_line_gets_past_the_check(tmp_path, monkeypatch, capsys):
    """The table above fails for its own reasons: the same command lines without the bad part
    get through the check (here: --cfg, which composes and prints)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["harness", "--cfg", "job", "optim=sgd", "optim.momentum=0.5"])
    with pytest.raises(SystemExit) as ended:
        runpy.run_module("harness.__main__", run_name="__main__", alter_sys=False)
    assert ended.value.code in (0, None)
    assert "momentum: 0.5" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())
