"""The one error type users see for bad input."""


class ConfigError(ValueError):
    """Bad config, file or value. The message is one line: key, bad value, what is allowed."""


def bad(key: str, value, allowed: str) -> ConfigError:
    """Build the canonical one-line message `key=value: allowed`."""
    return ConfigError(f"{key}={value!r}: {allowed}")


class Incompatible(ConfigError):
    """Parts of one configuration that refuse each other (e.g. a method and a schedule). With
    `skip_incompatible=true` a sweep skips such a job instead of refusing the sweep."""
