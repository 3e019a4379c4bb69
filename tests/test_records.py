"""harness.records: the Record schema round-trips, every status has the same keys, version-1
records still load, and a record of an unknown version is skipped with a line, never a traceback."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from harness.records import (KNOWN_VERSIONS, SCHEMA_VERSION, Record, RecordError,
                             UnknownVersion, collect, load_record, load_records, read_record,
                             record_row, write_json, write_record)

SPEC = {"kind": "regression", "lower_is_better": True, "metric": "mse", "output_size": 1}


def make(kind="mtl", status="ok", seed=0, **changes) -> Record:
    """A record shaped like results/default's: two tasks t1, t2, or a baseline of t1."""
    tasks = ["t1", "t2"] if kind == "mtl" else ["t1"]
    ok = status == "ok"
    rec = Record(
        kind=kind, config={"data": {"name": "toy"}, "model": {"shared_depth": int(kind == "mtl")}},
        config_hash=f"{kind}hash", label="joint" if kind == "mtl" else "stl:t1",
        task=None if kind == "mtl" else "t1", tasks=tasks,
        task_specs={t: {**SPEC, "name": t} for t in tasks}, seed=seed, status=status,
        metrics={s: {t: (1.0 + seed if ok else None) for t in tasks} for s in ("val", "test")},
        diverged_step=40 if status == "diverged" else None,
        error="RuntimeError: boom" if status == "failed" else None,
        timing={"compile_s": 1.0, "run_s": 2.0, "batch": 1, "group_units": 1},
        param_count={"total": 100, "shared": 10 * (kind == "mtl"), "width": 8},
        device="cpu:cpu")
    if kind == "mtl":
        rec.baselines, rec.baseline_dir = {t: "stlhash" for t in tasks}, "../../baselines"
    elif ok:
        rec.reference = {"model": "ridge", "val": 1.5, "test": 1.5}
    if ok:
        rec.selected_step = {t: 10 for t in tasks}
        rec.val_trend = {t: 0.1 for t in tasks}
        rec.curves = {"steps": [10, 20], "val": {t: [1.0, 1.0] for t in tasks},
                      "diagnostics": {"z.t1": [0.5, 0.6], "residual": [0.0, 0.1]}}
    return dataclasses.replace(rec, **changes)


def test_round_trip_through_dict_and_file(tmp_path):
    rec = make()
    assert Record.from_dict(rec.to_dict()) == rec
    assert Record.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec
    write_record(tmp_path / "seed_0.json", rec)
    assert load_record(tmp_path / "seed_0.json") == rec
    assert read_record(tmp_path / "seed_0.json")["schema_version"] == SCHEMA_VERSION == 2


@pytest.mark.parametrize("status", ["diverged", "failed"])
def test_every_status_writes_the_same_keys(status):
    ok, other = make().to_dict(), make(status=status).to_dict()
    assert set(ok) == set(other) == {f.name for f in dataclasses.fields(Record)}
    assert make("stl").to_dict().keys() == ok.keys()


def test_a_version_1_record_loads_as_version_1(tmp_path):
    # As records were written before the version field: no schema_version, optional fields absent or null.
    old = {k: v for k, v in make("stl").to_dict().items()
           if k not in ("schema_version", "error", "warnings", "baselines", "baseline_dir",
                        "label")}
    old.update(val_trend=None, unknown_extra="ignored")
    write_json(tmp_path / "seed_0.json", old)
    rec = load_record(tmp_path / "seed_0.json")
    assert rec.schema_version == 1 and 1 in KNOWN_VERSIONS
    assert (rec.label, rec.error, rec.warnings, rec.baselines, rec.val_trend) == ("", None, [], {}, {})
    assert rec.reference == old["reference"] and rec.curves == old["curves"]


def test_secondary_metrics_become_columns_and_a_record_without_them_has_its_primary_only(tmp_path):
    old = {k: v for k, v in make().to_dict().items() if k != "secondary"}  # written before they existed
    write_json(tmp_path / "seed_0.json", old)
    rec = load_record(tmp_path / "seed_0.json")
    assert rec.secondary == {}
    row = record_row(rec)
    assert not [c for c in row if c.startswith(("secondary.", "val.t1.", "test.t1.", "lower_is_better.t1."))]
    specs = {"t1": {**SPEC, "name": "t1", "secondary": {"mae": True}}, "t2": {**SPEC, "name": "t2"}}
    new = make(task_specs=specs, secondary={"val": {"t1": {"mae": 0.5}}, "test": {"t1": {"mae": None}}})
    row = record_row(Record.from_dict(json.loads(json.dumps(new.to_dict()))))
    assert (row["secondary.t1"], row["lower_is_better.t1.mae"], row["val.t1.mae"]) == ("mae", True, 0.5)
    assert row["test.t1.mae"] != row["test.t1.mae"]  # None (not ok) reads as NaN
    assert "secondary.t2" not in row and row["val.t1"] == 1.0


def test_an_unknown_version_is_flagged_and_skipped(tmp_path):
    path = tmp_path / "runs" / "seed_0.json"
    write_json(path, {**make().to_dict(), "schema_version": 99})
    with pytest.raises(UnknownVersion) as err:
        load_record(path)
    assert err.value.version == 99 and err.value.path == path
    assert str(err.value) == f"{path}: schema_version 99 is unknown (this harness reads 1, 2)"
    skipped = []
    assert load_records(tmp_path, skipped) == [] and collect(tmp_path).empty
    assert [(s.path, s.version) for s in skipped] == [(path, 99)]


def test_missing_and_malformed_files(tmp_path):
    assert load_record(tmp_path / "seed_0.json") is None
    (tmp_path / "seed_1.json").write_text("{half")
    with pytest.raises(RecordError, match="seed_1.json: not valid JSON"):
        load_record(tmp_path / "seed_1.json")
    write_json(tmp_path / "seed_2.json", {"kind": "mtl"})
    with pytest.raises(RecordError, match="seed_2.json: not a run record: missing config, "):
        load_record(tmp_path / "seed_2.json")


def test_collect_skips_unknown_versions_and_unreadable_files_with_one_line_each_and_a_count(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in range(2):
        write_record(sweep / "joint" / "runs" / f"seed_{seed}.json", make(seed=seed))
        write_record(sweep / "baselines" / "stlhash" / f"seed_{seed}.json", make("stl", seed=seed))
    future = sweep / "other" / "runs" / "seed_0.json"
    write_json(future, {**make().to_dict(), "schema_version": 99, "new_field": 1})
    foreign = sweep / "foreign" / "runs"
    foreign.mkdir(parents=True)
    (foreign / "seed_0.json").write_text(json.dumps(make().to_dict())[:200])  # truncated
    (foreign / "seed_1.json").write_text("")  # empty
    (foreign / "seed_2.json").write_text("[1, 2]")  # JSON, not a record
    (foreign / "seed_3.json").write_bytes(b"\xff\xfe\x00")  # not UTF-8
    (foreign / "seed_4.json").write_text(json.dumps({**make().to_dict(), "metrics": {}}))  # no tables
    res = subprocess.run([sys.executable, "-m", "harness.collect", str(sweep)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert f"skipped {future.resolve()}: schema_version 99 is unknown (this harness reads 1, 2)" in lines
    assert sum(line.startswith(f"skipped {foreign.resolve()}") for line in lines) == 5
    assert lines[-1] == ("skipped 6 record files: 1 of an unknown schema version (this harness reads 1, 2); "
                         "5 unreadable (empty, truncated or not a record)")
    assert any(line.startswith("table:") for line in lines) and (sweep / "transfer.md").exists()
    assert "6 record files were skipped" in (sweep / "report.md").read_text()
    runs = collect(sweep)
    assert sorted(zip(runs["kind"], runs["seed"])) == [("mtl", 0), ("mtl", 1), ("stl", 0), ("stl", 1)]


def test_records_are_strict_json_and_non_finite_numbers_read_back_exactly(tmp_path):
    """A diverged run's curves hold NaN and inf: the file is JSON any parser reads (no NaN
    tokens), and loading gives the same floats back."""
    import math

    rec = make(status="diverged", curves={"steps": [10, 20], "train_loss": {"t1": [0.5, float("nan")],
                                                                            "t2": [float("inf"), -float("inf")]}})
    path = tmp_path / "seed_0.json"
    write_record(path, rec)

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    json.loads(path.read_text(), parse_constant=refuse)  # strict JSON
    back = load_record(path).curves["train_loss"]
    assert back["t1"][0] == 0.5 and math.isnan(back["t1"][1])
    assert back["t2"] == [float("inf"), -float("inf")]


@pytest.mark.parametrize("module", ["harness.collect", "harness.report"])
def test_collect_and_report_agree_on_a_directory_without_records(tmp_path, capsys, module):
    import importlib

    (tmp_path / "notes.txt").write_text("no records here")
    main = importlib.import_module(f"{module}.__main__" if module == "harness.report" else module).main
    with pytest.raises(SystemExit) as ended:
        main([str(tmp_path)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert ended.value.code == 2 and len(lines) == 1 and "it has none" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_files_are_written_with_the_users_umask(tmp_path):
    from harness.records import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "shared.md", "x")
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.md", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.md").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.md").stat().st_mode & 0o777 == 0o600
