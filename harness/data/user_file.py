"""What the loaders of a user's own file (data=files, data=table) share: the split checks that
need no file, and errors that name the file."""
from __future__ import annotations

from typing import Any, Callable

from harness.data.base import DataSource
from harness.errors import ConfigError, bad


def check_split(cfg: Any, targets: str) -> None:
    """val/test fractions, the shuffle seed, and a non-empty target map (`targets` says what its
    keys are); raises ConfigError."""
    check_fractions(cfg)
    if not cfg.targets:
        raise bad("data.targets", dict(cfg.targets), f"a non-empty map of {targets} -> classification | regression")


def check_fractions(cfg: Any) -> None:
    """`data.val_fraction` and `data.test_fraction` each in (0, 1) and summing below 1, and a
    shuffle seed >= 0; raises ConfigError."""
    for key in ("val_fraction", "test_fraction"):
        if not 0 < getattr(cfg, key) < 1:
            raise bad(f"data.{key}", getattr(cfg, key), "a number in (0, 1)")
    if cfg.val_fraction + cfg.test_fraction >= 1:
        raise bad("data.test_fraction", cfg.test_fraction,
                  f"val_fraction + test_fraction < 1 (val_fraction is {cfg.val_fraction})")
    if cfg.seed < 0:
        raise bad("data.seed", cfg.seed, "an integer >= 0")


def naming_the_file(read: Callable[[Any], DataSource], cfg: Any) -> DataSource:
    """`read(cfg)`, its one-line errors ending with the file they are about (in a data.path
    sweep, which file is bad)."""
    try:
        return read(cfg)
    except ConfigError as err:
        if f"data.path={cfg.path!r}" in str(err):
            raise
        raise ConfigError(f"{err} (in data.path={cfg.path!r})") from None
