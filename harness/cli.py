"""Command-line checks that Hydra would report over many lines: one line each, exit status 2."""
from __future__ import annotations

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
