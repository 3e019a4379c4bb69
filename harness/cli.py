"""Command-line checks that Hydra would report over many lines: one line each, exit status 2,
nothing written."""
from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

GROUPS = ("data", "model", "method", "schedule", "optim", "experiment")


def report_error(err: Exception | str) -> NoReturn:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


def options(conf_dirs: list[Path], group: str) -> list[str]:
    return sorted({p.stem for d in conf_dirs for p in (d / group).glob("*.yaml")})


def check_overrides(args: list[str], conf_dirs: list[Path]) -> None:
    """Reject `group=option` overrides naming an option that does not exist (sweeps included)."""
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if key.startswith("override "):
            key = key[len("override "):]
        if key not in GROUPS or "(" in value or value in ("null", ""):
            continue
        valid = options(conf_dirs, key)
        for choice in value.split(","):
            if choice not in valid:
                from harness.errors import bad

                report_error(bad(key, choice, f"one of {', '.join(valid)}"))


def command_line(argv: list[str]):
    """The command line as Hydra's own argument parser reads it (flags, overrides)."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_args(argv)


def make_hydra(args, main_file: Path):
    """A Hydra that composes configs as `python -m harness` with these flags will: the primary
    config dir (`-cp/--config-path`, relative to the harness package as @hydra.main's is) and
    an extra config dir in front of it (`-cd/--config-dir`)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.config_search_path import SearchPathQuery

    primary = args.config_path or str(main_file.parents[1] / "conf")
    search_path = create_automatic_config_search_path(str(main_file), None, primary)
    if args.config_dir is not None:
        search_path.prepend(provider="command-line", path=f"file://{os.path.abspath(args.config_dir)}",
                            anchor=SearchPathQuery(provider="schema"))
    return Hydra(task_name="__main__", config_loader=ConfigLoaderImpl(config_search_path=search_path))


def config_dirs(args, main_file: Path) -> list[Path]:
    """The directories whose groups the command line may name (-cd's, then the primary)."""
    from harness.errors import bad

    primary = Path(args.config_path or "../conf")
    primary = primary if primary.is_absolute() else (main_file.parent / primary).resolve()
    if not primary.is_dir():
        report_error(bad("--config-path", args.config_path, f"a directory of configs ({primary} is not one)"))
    if args.config_dir is None:
        return [primary]
    if not os.path.isdir(args.config_dir):
        report_error(bad("--config-dir", args.config_dir, "an existing directory of configs"))
    return [Path(args.config_dir).resolve(), primary]


def check_jobs(argv: list[str], main_file: Path) -> None:
    """Compose every job the command line describes (each point of a sweep, including sweeps an
    experiment declares in `hydra.sweeper.params`), check it against the schema, and plan it
    (harness.run.plan: every part built, every static check run, the memory estimated; no data
    is generated); check that the output directory can be written. The plans are kept for the
    jobs' task functions, so each job's parts are built once.

    An unknown key or a value of the wrong type, which Hydra reports over several lines, and an
    invalid value in any job of a sweep, become one line and exit status 2 before anything runs
    or is written: with Hydra's basic launcher a later bad job would otherwise fail after the
    earlier ones had written their records. Flags are read by Hydra's own parser: -cn, -cp and
    -cd choose the configs; with --cfg the jobs are only composed; --help, --info and shell
    completion are left to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    from harness.config import resolve
    from harness.errors import ConfigError
    from harness.run.sweep import task_config

    args = command_line(argv)
    if args.help or args.hydra_help or args.info is not None or args.shell_completion:
        return
    overrides = args.overrides
    hydra, name, parser = make_hydra(args, main_file), args.config_name or "config", OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
        check_overrides(overrides, config_dirs(args, main_file) + searchpath_dirs(parsed))
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        base = hydra.compose_config(name, fixed, RunMode.MULTIRUN, validate_sweep_overrides=False)
        multirun = args.multirun or base.hydra.mode == RunMode.MULTIRUN
        points = sweep_points(base, parser, overrides, fixed) if multirun else [overrides]
        runs = [resolve(task_config(hydra.compose_config(name, point, RunMode.RUN))) for point in points]
        if not args.cfg:  # --cfg only prints: composing is the whole check
            plan_all(runs, points)
            key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
            check_writable(str(base.hydra.sweep.dir if multirun else base.hydra.run.dir), key)
    except OmegaConfBaseException as err:  # e.g. a mandatory value left unset
        report_error(composition_error(err, overrides, cause=err))
    except HydraException as err:  # composition, override syntax, a missing config
        report_error(composition_error(err, overrides))
    except ConfigError as err:
        report_error(err)


def sweep_points(base, parser, overrides: list[str], fixed: list[str]) -> list[list[str]]:
    """The override lists of a sweep's jobs (the experiment's `hydra.sweeper.params` first).
    A sampling sweeper (optuna, ...) picks its points as it goes: only the fixed part is
    checked here, and each trial's job when it is planned."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    if base.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return [fixed]
    declared = [f"{k}={v}" for k, v in (base.hydra.sweeper.params or {}).items()]
    sweeps = parser.parse_overrides(declared + overrides)
    check_basic_sweeps(sweeps)
    return BasicSweeper.split_arguments(sweeps, None)[0]


def plan_all(runs: list, points: list[list[str]]) -> None:
    """Plan every job into PLANNED (for its task function); with skip_incompatible=true, list
    the jobs whose parts refuse each other instead of failing. Raises ConfigError."""
    from harness.errors import ConfigError, Incompatible
    from harness.run.plan import PLANNED, plan

    sources: dict = {}
    skipped = []
    for run, point in zip(runs, points):
        try:
            job = PLANNED.setdefault(repr(run), plan(run, sources))
            if run.protocol.name == "tuned":  # every candidate of its search plans too
                from harness.run.tuned import check

                check(job)
        except Incompatible as err:
            if not run.skip_incompatible:
                raise
            skipped.append(f"skipped (incompatible): {','.join(point)}: {err}")
    if skipped and len(skipped) == len(points):
        raise ConfigError(f"skip_incompatible=true: every job is incompatible ({skipped[0]})")
    for line in skipped:
        print(line, file=sys.stderr)

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def check_basic_sweeps(overrides) -> None:
    """Hydra's basic sweeper takes lists, range() and choice() (tagged or not); interval() needs
    a sampling sweeper. Raises ConfigError."""
    from hydra.core.override_parser.types import IntervalSweep
    from harness.errors import bad

    for o in overrides:
        if o.is_sweep_override() and isinstance(o.value(), IntervalSweep):
            raise bad(o.get_key_element(), o.input_line.split("=", 1)[1],
                      "a list, range() or choice() under the basic sweeper; interval() needs a "
                      "sampling sweeper such as hydra/sweeper=optuna")


def searchpath_dirs(overrides) -> list[Path]:
    """The config directories a `hydra.searchpath=[...]` override adds (file:// or plain paths)."""
    dirs = []
    for o in overrides:
        if o.get_key_element() == "hydra.searchpath" and isinstance(o.value(), list):
            dirs += [Path(str(v).removeprefix("file://")) for v in o.value() if "://" not in str(v).replace("file://", "")]
    return dirs


def check_writable(directory: str, key: str) -> None:
    """The output directory can be created and written: its nearest existing ancestor is a
    directory this user may write. Raises ConfigError."""
    from harness.errors import bad

    path = Path(directory).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise bad(key, directory, f"a directory; {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise bad(key, directory, f"a directory this user can write; {existing} is not writable")


def composition_error(err: Exception, overrides: list[str], cause: Exception | None = None) -> str:
    """Hydra's composition error (or OmegaConf's `cause`) as `key=value: what is wrong`, one line."""
    cause = cause or err.__cause__
    key = getattr(cause, "full_key", None)
    if not key:
        return " ".join(str(err).split())
    if "not in struct" in str(cause):
        # A map that starts empty (data.targets) takes new entries only with Hydra's `+`.
        given = [(n, v) for n, _, v in (o.partition("=") for o in overrides) if not n.startswith(("+", "~"))]
        # The new key itself (protocol.space.method.c=[..]), or a map given with a new entry.
        new = [(n, v) for n, v in given if n == key or n.startswith(key + ".")]
        if new:
            name, value = new[0]
            return f"{name}={value}: {key} is a new entry, which needs a + in front: +{name}={value}"
        maps = [(n, v) for n, v in given if key.startswith(n + ".")]
        if maps:
            name, value = max(maps, key=lambda m: len(m[0]))  # the innermost key given
            return f"{name}={value}: new entries of {name} need a + in front: +{name}={value}"
    # An element of a list (method.weights[0]) is reported with the list the user gave.
    given = re.sub(r"(\[\d+\])+$", "", key)
    value = next((o.split("=", 1)[1] for o in overrides
                  if "=" in o and o.split("=", 1)[0].lstrip("+~") == given), None)
    if given != key:
        return f"{given}={value}: element {key[len(given):]}: {str(cause).splitlines()[0]}"
    schema = getattr(cause, "object_type", None)
    if type(cause).__name__ in ("ConfigAttributeError", "ConfigKeyError") and dataclasses.is_dataclass(schema):
        fields = ", ".join(f.name for f in dataclasses.fields(schema))
        return f"{key}={value}: not a key of {schema.__name__} (its keys: {fields})"
    return f"{key}={value}: {str(cause).splitlines()[0]}"
