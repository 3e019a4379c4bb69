"""Command-line checks that Hydra would report over many lines: one line each, exit status 2."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import NoReturn

GROUPS = ("data", "model", "method", "schedule", "optim", "experiment")


def report_error(err: Exception) -> NoReturn:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


def options(conf_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def check_overrides(args: list[str], conf_dir: Path) -> None:
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
        valid = options(conf_dir, key)
        for choice in value.split(","):
            if choice not in valid:
                from harness.errors import bad

                report_error(bad(key, choice, f"one of {', '.join(valid)}"))


def check_jobs(args: list[str], conf_dir: Path) -> None:
    """Compose every job the command line describes (each point of a sweep, including sweeps an
    experiment declares in `hydra.sweeper.params`), check it against the schema, and plan it
    (harness.run.plan: every part built and every static check run; no data is generated). The
    plans are kept for the jobs' task functions, so each job's parts are built once.

    An unknown key or a value of the wrong type, which Hydra reports over several lines, and an
    invalid value in any job of a sweep, become one line and exit status 2 before any job runs:
    with Hydra's basic launcher a later bad job would otherwise fail after the earlier ones had
    written their records. `-cn/--config-name` picks another primary config of conf/; command
    lines with other flags (--cfg, --help, -cd ...) are left to Hydra.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, OverrideParseException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    from harness.config import resolve
    from harness.run.plan import PLANNED, plan
    from harness.errors import ConfigError

    name, rest = config_name(args)
    if name is None:
        return
    overrides = [a for a in rest if not a.startswith("-")]
    parser = OverridesParser.create()
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
        try:
            parsed = parser.parse_overrides(overrides)
            fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
            base = compose(name, overrides=fixed, return_hydra_config=True)
            points = [overrides]
            if "-m" in args or "--multirun" in args or base.hydra.mode == RunMode.MULTIRUN:
                declared = [f"{k}={v}" for k, v in (base.hydra.sweeper.params or {}).items()]
                points = BasicSweeper.split_arguments(parser.parse_overrides(declared + overrides), None)[0]
            sources: dict = {}
            for point in points:
                run = resolve(compose(name, overrides=point))
                PLANNED.setdefault(repr(run), plan(run, sources))
        except (ConfigCompositionException, OverrideParseException) as err:
            report_error(composition_error(err, overrides))
        except OmegaConfBaseException as err:  # e.g. a mandatory value left unset
            report_error(composition_error(err, overrides, cause=err))
        except ConfigError as err:
            report_error(err)


def config_name(args: list[str]) -> tuple[str | None, list[str]]:
    """(primary config name, the other arguments) of a command line; None when it holds a flag
    the up-front check leaves to Hydra (anything but -m/--multirun and -cn/--config-name)."""
    name, rest, it = "config", [], iter(args)
    for a in it:
        if a in ("-cn", "--config-name"):
            name = next(it, None)
        elif a.startswith("--config-name="):
            name = a.split("=", 1)[1]
        elif a.startswith("-") and a not in ("-m", "--multirun"):
            return None, args
        else:
            rest.append(a)
    return name, rest


def composition_error(err: Exception, overrides: list[str], cause: Exception | None = None) -> str:
    """Hydra's composition error (or OmegaConf's `cause`) as `key=value: what is wrong`, one line."""
    cause = cause or err.__cause__
    key = getattr(cause, "full_key", None)
    if not key:
        return " ".join(str(err).split())
    value = next((o.split("=", 1)[1] for o in overrides
                  if "=" in o and o.split("=", 1)[0].lstrip("+~") == key), None)
    schema = getattr(cause, "object_type", None)
    if type(cause).__name__ in ("ConfigAttributeError", "ConfigKeyError") and dataclasses.is_dataclass(schema):
        fields = ", ".join(f.name for f in dataclasses.fields(schema))
        return f"{key}={value}: not a key of {schema.__name__} (its keys: {fields})"
    return f"{key}={value}: {str(cause).splitlines()[0]}"
