"""Reading a TOML configuration file, with one clear line per failure."""

from __future__ import annotations

import os
import tomllib
from typing import Any


class ConfigError(Exception):
    """A configuration that cannot be used; the message says where and why."""


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"configuration file {path} is not readable by uid {os.geteuid()}") from None
    except IsADirectoryError:
        raise ConfigError(f"configuration file {path} is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
