"""The project's errors that every layer raises: a leaf module, so that the registries and the config
schema below them can raise them without importing what validates."""

from __future__ import annotations

from typing import Any

# the exit status of a run's fresh process (bench/runner.py) that met a ConfigError, which it tells its launcher
CONFIG_ERROR = 3


class ConfigError(ValueError):
    """A config value that cannot run; raised before anything expensive starts."""

    def __init__(self, key: str, value: Any, accepted: str):
        super().__init__(f"{key}={value!r} is not valid: expected {accepted}")
        self.key, self.value, self.accepted = key, value, accepted
