"""Reading a TOML configuration file, with one clear line per failure.

The one home of what both programs' configuration files share: reading the file
(``read_toml``: UTF-8 TOML), what a valid value of each TOML type is (``is_kind``, ``is_number``,
``in_range``, ``is_strings``, ``unknown_key``), where state is kept (``state_directory_setting``,
and systemd's ``systemd_state_directory``), and where metrics files go (``metrics_directory``).  Each program
phrases its own messages around these checks (``wgsigd/config.py``, ``wgsigc/config.py``): their
wording is part of each program's interface.
"""

from __future__ import annotations

import math
import os

from wgsig.plainclass import dataclass

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if not TYPE_CHECKING:  # (in this order, linters see typing's overload)
    from wgsig.plainclass import overload
else:
    from collections.abc import Collection, Mapping
    from typing import Any, TypeGuard, TypeVar, overload

    _T = TypeVar("_T")


# Debian's prometheus-node-exporter reads *.prom files here (its textfile collector).
DEFAULT_METRICS_DIRECTORY = "/var/lib/prometheus/node-exporter"


class ConfigError(Exception):
    """A configuration that cannot be used; the message says where and why."""


# Byte order marks of the encodings an editor on another system may have saved the file in.
_BOMS = {b"\xff\xfe": "UTF-16 little-endian", b"\xfe\xff": "UTF-16 big-endian"}


def read_toml(path: str, cache: str | None = None) -> dict[str, Any]:
    """The TOML file ``path`` as tomllib reads it; ConfigError says why not.

    ``cache``: a file that keeps tomllib's result for the file's exact bytes (``cached_toml``), so
    that a run reading an unchanged file loads no tomllib (issue 16).
    """
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"configuration file {path} is not readable by uid {os.geteuid()}") from None
    except IsADirectoryError:
        raise ConfigError(f"configuration file {path} is a directory, expected a TOML file") from None
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {path}: {error.strerror}") from None
    if cache is not None:
        found = cached_toml(cache, data)
        if found is not None:
            return found
    parsed = parse_toml(path, data)
    if cache is not None:
        store_toml(cache, data, parsed)
    return parsed


def parse_toml(path: str, data: bytes) -> dict[str, Any]:
    """``data`` (the bytes of the file ``path``) as tomllib reads it; ConfigError says why not."""
    import tomllib  # with re, datetime and typing: 0.09 s of a run in the VM, not loaded on a cache hit

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        # TOML is UTF-8; tomllib would raise UnicodeDecodeError, which is no TOMLDecodeError.
        found = next((name for bom, name in _BOMS.items() if data.startswith(bom)), None)
        what = f"its byte order mark says {found}" if found else f"byte {error.start + 1} is 0x{data[error.start]:02x}"
        raise ConfigError(f"{path}: not UTF-8 text ({what}): TOML files are UTF-8, save it as UTF-8") from None
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))  # a UTF-8 byte order mark (Notepad's) is harmless
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


# The parse cache (read_toml's ``cache``): one JSON object holding the configuration's bytes (as
# text) and what tomllib made of them. It is used only for exactly those bytes, read by this same
# interpreter (its version string: a new tomllib may read a file differently), so an edited file
# is parsed again whatever its size and times; a cache that is missing, unreadable, damaged or of
# another format is passed over, and one that cannot be written (no such directory, read-only,
# full) is silently not written: the file is parsed as without a cache. A configuration holding
# TOML dates or times (which JSON lacks, and no setting takes) is not cached.
_CACHE_FORMAT = 1


def cached_toml(cache: str, data: bytes) -> dict[str, Any] | None:
    """What the cache file ``cache`` holds for a file of exactly ``data``, else None."""
    import sys

    from wgsig.host import lightjson

    try:
        with open(cache, "rb") as file:
            entry = lightjson.loads(file.read().decode())
        if (isinstance(entry, dict) and entry.get("format") == _CACHE_FORMAT and entry.get("python") == sys.version
                and entry.get("config") == data.decode("utf-8") and isinstance(entry.get("toml"), dict)):
            toml: dict[str, Any] = entry["toml"]
            return toml
    except (OSError, ValueError):  # ValueError: JSONDecodeError and UnicodeDecodeError
        pass
    return None


def store_toml(cache: str, data: bytes, parsed: dict[str, Any]) -> None:
    """Keep ``parsed`` (tomllib's reading of ``data``) in the cache file ``cache``, mode 0600."""
    import sys

    from wgsig.host import lightjson
    from wgsig.host.atomicfile import replace_file

    if not _json_plain(parsed):
        return
    entry = {"format": _CACHE_FORMAT, "python": sys.version, "config": data.decode("utf-8"), "toml": parsed}
    try:
        replace_file(cache, lightjson.dumps(entry).encode(), mode=0o600)
    except OSError:  # no such directory, read-only, full: the next run parses the file again
        return


def _json_plain(value: Any) -> bool:
    """Whether JSON gives ``value`` back as it is (tomllib's dates and times it does not)."""
    if isinstance(value, dict):
        return all(isinstance(key, str) and _json_plain(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_json_plain(item) for item in value)
    return isinstance(value, str | int | float | bool)


def is_kind(value: Any, kind: type[_T]) -> TypeGuard[_T]:
    """``value`` is of ``kind``; a boolean is not an integer (Python counts True as 1)."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def is_number(value: Any, integer: bool = False) -> TypeGuard[float]:
    """An integer, or unless ``integer`` a float too; never a boolean."""
    return is_kind(value, int) or (not integer and is_kind(value, float))


def in_range(value: float, low: float, high: float | None = None) -> bool:
    """``low <= value <= high`` (no upper bound for None), and finite: TOML has nan and inf."""
    return math.isfinite(value) and value >= low and (high is None or value <= high)


def is_strings(value: Any) -> TypeGuard[list[str]]:
    """A TOML array of strings."""
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def unknown_key(table: Mapping[str, Any], known: Collection[str]) -> str | None:
    """The first key of ``table`` (in sorted order) that is not ``known``, if any."""
    unknown = sorted(set(table) - set(known))
    return unknown[0] if unknown else None


@overload
def systemd_state_directory(default: str) -> str:
    pass


@overload
def systemd_state_directory(default: None) -> str | None:
    pass


def systemd_state_directory(default: str | None) -> str | None:
    """systemd's StateDirectory= (the first entry of ``$STATE_DIRECTORY``), else ``default``.

    Paths are strings here and below (``state_directory_setting``, ``MetricsDirectory``): wgsigc's
    runs load no pathlib (issue 16); wgsigd makes Paths of them."""
    value = os.environ.get("STATE_DIRECTORY")
    if value:
        return value.split(":")[0]
    return default


def state_directory_setting(table: Mapping[str, Any], key: str = "state_directory") -> str | None:
    """The ``state_directory`` setting: None when absent (each program has its default), else an
    absolute path ("" would be whatever directory the program was started in).  ValueError says
    what is expected."""
    if key not in table:
        return None
    value = table[key]
    if not is_kind(value, str) or not value.startswith("/"):
        raise ValueError(f"must be an absolute directory path, not {value!r}")
    return value


@dataclass(frozen=True)
class MetricsDirectory:
    """Where a program writes its Prometheus text file.

    ``configured``: named in the configuration, so written to (and failures reported) whether or
    not it exists; else it is node-exporter's default directory, used only while it exists and
    this process may write to it (Debian's is root's, mode 0755: a service running as a dynamic
    user, or outside ReadWritePaths=, quietly writes none there).  ``path`` is kept as a string
    (a Path given is turned into one): wgsigc's runs load no pathlib (issue 16).
    """

    path: str
    configured: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", os.fspath(self.path))

    def in_use(self) -> bool:
        """Whether to write now (the default directory appears when node-exporter is installed)."""
        return self.configured or (os.path.isdir(self.path) and os.access(self.path, os.W_OK | os.X_OK))


def metrics_directory(table: Mapping[str, Any], key: str = "metrics_directory") -> MetricsDirectory | None:
    """The ``metrics_directory`` setting: absent is node-exporter's directory if it exists, "" is
    none (no metrics), else an absolute path.  ValueError says what is expected."""
    if key not in table:
        return MetricsDirectory(DEFAULT_METRICS_DIRECTORY)
    value = table[key]
    if not is_kind(value, str) or (value and not value.startswith("/")):
        raise ValueError(f'must be an absolute directory path, or "" for no metrics, not {value!r}')
    return MetricsDirectory(value, configured=True) if value else None
