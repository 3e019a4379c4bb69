"""Name -> builder tables. An unknown name raises a ConfigError listing the valid names."""
from __future__ import annotations

from typing import Any, Iterator

from harness.errors import bad


class Registry:
    """A plain dict of named entries, with a helpful error for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, entry: Any) -> Any:
        """Register `entry` under `name` and return it."""
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise bad(f"{self.kind}", name, f"valid names are {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)
