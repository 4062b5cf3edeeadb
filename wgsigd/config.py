"""wgsigd's configuration: the C-compatible command line or a TOML file.

Every mistake in a configuration file is reported with the file, the key and
what is expected, as one line.  What a valid value is, and systemd's state
directory, are decided in ``wgsig/host/configfile.py``; the messages' wording
is wgsigd's own, here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wgsig import relayalloc, relayforward
from wgsig.host import configfile
from wgsig.host.configfile import ConfigError as ConfigError  # re-exported: callers catch it from here
from wgsig.host.configfile import MetricsDirectory
from wgsig.host.secretfile import SecretFileError, load_secret, resolve_secret_path
from wgsig.keys import PublicKey
from wgsig.ratelimit import (
    DEFAULT_ANSWER_BYTES_BURST,
    DEFAULT_ANSWER_BYTES_RATE,
    DEFAULT_MAX_ANSWER_BYTES,
    DEFAULT_REPLAY_BYTES_BURST,
    DEFAULT_REPLAY_BYTES_RATE,
    LEGACY_ANSWER_BYTES,
    MIN_ANSWER_BYTES,
    AnswerLimiter,
    Limits,
    ReplayCache,
)
from wgsig.server import DEFAULT_MAX_RECORDS, DEFAULT_WINDOW, GroupConfig

DEFAULT_PORT = 1223
DEFAULT_STATE_DIRECTORY = "/var/lib/wgsigd"
DEFAULT_METRICS_INTERVAL = 15.0


@dataclass(frozen=True)
class GroupSource:
    """A group as configured: secrets are read from files at (re)load time."""

    name: str
    group_id: int
    secret_files: tuple[str, ...]
    encrypt: bool = False
    allowed_keys: frozenset[PublicKey] | None = None
    max_records: int = DEFAULT_MAX_RECORDS
    max_age: int | None = None


@dataclass(frozen=True)
class RelayConfig:
    """The [relay] section: off unless present (README, "Relay")."""

    address: str  # what the peers send to: this host's public address
    ports: tuple[int, int]  # the range the allocations take their two ports from
    listen: str = "0.0.0.0"  # where the relay process binds them
    lifetime: float = relayalloc.DEFAULT_LIFETIME
    idle: float = relayforward.DEFAULT_IDLE
    max_per_peer: int = relayalloc.DEFAULT_MAX_PER_PEER
    max_per_group: int = relayalloc.DEFAULT_MAX_PER_GROUP
    rate: float = relayforward.DEFAULT_RATE
    burst: int = relayforward.DEFAULT_BURST
    global_rate: float = relayforward.DEFAULT_GLOBAL_RATE
    global_burst: int = relayforward.DEFAULT_GLOBAL_BURST


@dataclass(frozen=True)
class DaemonConfig:
    listen: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    state_directory: Path | None = None
    window: int = DEFAULT_WINDOW
    save_interval: float = 1.0
    idle_exit: float | None = None  # seconds without datagrams before exiting
    groups: tuple[GroupSource, ...] = field(default=())
    source: str = "command line"
    # Answer bytes per source IP: fresh requests, and replays or untied label-less requests; 0 = unlimited.
    answer_bytes_rate: float = DEFAULT_ANSWER_BYTES_RATE
    answer_bytes_burst: int = DEFAULT_ANSWER_BYTES_BURST
    replay_bytes_rate: float = DEFAULT_REPLAY_BYTES_RATE
    replay_bytes_burst: int = DEFAULT_REPLAY_BYTES_BURST
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES  # per answer to a replay or an untied label-less request
    metrics_directory: MetricsDirectory | None = None  # None: no metrics (the command-line form)
    metrics_interval: float = DEFAULT_METRICS_INTERVAL  # seconds between two writes of wgsigd.prom
    relay: RelayConfig | None = None  # the [relay] section; None: no relay (the default)

    def warnings(self) -> list[str]:
        """Settings that are valid but unsafe, one line each (--check, start and reload say them)."""
        found = []
        if not self.replay_bytes_rate:  # replay_bytes_rate = 0, or the deprecated answer_rate = 0
            found.append(
                f"{self.source}: replays are not limited (replay_bytes_rate = 0 or answer_rate = 0): unlimited"
                f" amplification budget, any address can be sent answers of up to max_answer_bytes ="
                f" {self.max_answer_bytes} bytes to each replayed request without limit; set replay_bytes_rate"
                f" (default {DEFAULT_REPLAY_BYTES_RATE:g}) and leave answer_rate out"
            )
        return found

    def answer_limiter(self) -> AnswerLimiter | None:
        return AnswerLimiter(self.answer_bytes_rate, self.answer_bytes_burst) if self.answer_bytes_rate else None

    def replay_limiter(self) -> AnswerLimiter | None:
        return AnswerLimiter(self.replay_bytes_rate, self.replay_bytes_burst) if self.replay_bytes_rate else None

    def limits(self, replay_cache: ReplayCache) -> Limits:
        """The server's anti-amplification limits as configured (``replay_cache``: kept across reloads)."""
        return Limits(self.answer_limiter(), self.max_answer_bytes, replay_cache, self.replay_limiter())

    def load_groups(self) -> list[GroupConfig]:
        """Read the secrets and build the groups (at start and on reload)."""
        groups = []
        for g in self.groups:
            try:
                secrets = tuple(load_secret(resolve_secret_path(path)) for path in g.secret_files)
            except SecretFileError as error:
                raise ConfigError(f"group {g.name!r}: {error}") from None
            # The server tests each request's raw peer ID against the set: raw bytes there too (wgsig/keys.py).
            allowed = None if g.allowed_keys is None else frozenset(bytes(key) for key in g.allowed_keys)
            groups.append(GroupConfig(
                group_id=g.group_id, secrets=secrets, encrypt=g.encrypt, allowed_keys=allowed,
                max_records=g.max_records, max_age=g.max_age,
            ))
        return groups


def default_state_directory() -> Path:
    return Path(configfile.systemd_state_directory(DEFAULT_STATE_DIRECTORY))


def from_command_line(secret_file: str, port: int, encrypt: bool, state_directory: str | None) -> DaemonConfig:
    """The C server's form: one group 0, ``0.0.0.0:PORT``."""
    state = state_directory or configfile.systemd_state_directory(None)
    group = GroupSource(name="0", group_id=0, secret_files=(secret_file,), encrypt=encrypt)
    return DaemonConfig(port=port, state_directory=Path(state) if state else None, groups=(group,))


_TOP_KEYS = {
    "listen", "port", "state_directory", "window", "save_interval", "idle_exit", "group",
    "answer_rate", "answer_burst", "max_answer_bytes", "metrics_directory", "metrics_interval",
    "answer_bytes_rate", "answer_bytes_burst", "replay_bytes_rate", "replay_bytes_burst", "relay",
}
_RELAY_KEYS = {
    "address", "ports", "listen", "lifetime", "idle_timeout", "max_per_peer", "max_per_group", "rate", "burst",
    "global_rate", "global_burst",
}
_GROUP_KEYS = {"id", "secret_file", "previous_secret_files", "encrypt", "allowed_keys", "max_records", "max_age"}


def load_config(path: str) -> DaemonConfig:
    return parse_config(configfile.read_toml(path), path)


def parse_config(data: dict[str, Any], where: str) -> DaemonConfig:
    _no_unknown(data, _TOP_KEYS, where)
    tables = data.get("group")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{where}: no [group.NAME] table: configure at least one group")
    groups = tuple(_parse_group(name, table, f"{where}: [group.{name}]") for name, table in tables.items())
    ids = [g.group_id for g in groups]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: two groups have the same id")
    try:
        state = configfile.state_directory_setting(data)
    except ValueError as error:
        raise ConfigError(f"{where}: 'state_directory' {error}") from None
    idle = _number(data, "idle_exit", where, 0, None, 0)
    try:
        metrics = configfile.metrics_directory(data)
    except ValueError as error:
        raise ConfigError(f"{where}: 'metrics_directory' {error}") from None
    return DaemonConfig(
        listen=_string(data, "listen", where, "0.0.0.0"),
        port=int(_number(data, "port", where, 1, 65535, DEFAULT_PORT, integer=True)),
        state_directory=Path(state) if state else default_state_directory(),
        window=int(_number(data, "window", where, 1, 86400, DEFAULT_WINDOW, integer=True)),
        save_interval=_number(data, "save_interval", where, 0.01, 3600, 1.0),
        idle_exit=idle or None,
        groups=groups,
        source=where,
        **_budgets(data, where),
        max_answer_bytes=int(
            _number(data, "max_answer_bytes", where, MIN_ANSWER_BYTES, 1 << 30, DEFAULT_MAX_ANSWER_BYTES, integer=True)
        ),
        metrics_directory=metrics,
        metrics_interval=_number(data, "metrics_interval", where, 1, 3600, DEFAULT_METRICS_INTERVAL),
        relay=_parse_relay(data["relay"], f"{where}: [relay]") if "relay" in data else None,
    )


def _parse_relay(table: Any, where: str) -> RelayConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    _no_unknown(table, _RELAY_KEYS, where)
    if "address" not in table:
        raise ConfigError(f"{where}: missing 'address' (this host's public IP address, which the peers send to)")
    address = _ip(table, "address", where, None)
    if address in ("0.0.0.0", "::"):
        raise ConfigError(f"{where}: 'address' must be the address the peers send to, not {address}")
    ports = table.get("ports", "40000-40999")
    low, _, high = ports.partition("-") if isinstance(ports, str) else ("", "", "")
    if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
        raise ConfigError(f"{where}: 'ports' must be a range \"LOW-HIGH\" within 1024-65535, LOW < HIGH,"
                          f" got {ports!r}")
    return RelayConfig(
        address=address,
        ports=(int(low), int(high)),
        listen=_ip(table, "listen", where, "0.0.0.0"),
        lifetime=_number(table, "lifetime", where, 1, 86400, relayalloc.DEFAULT_LIFETIME),
        idle=_number(table, "idle_timeout", where, 1, 86400, relayforward.DEFAULT_IDLE),
        max_per_peer=int(_number(table, "max_per_peer", where, 1, 1000, relayalloc.DEFAULT_MAX_PER_PEER,
                                 integer=True)),
        max_per_group=int(_number(table, "max_per_group", where, 1, 100000, relayalloc.DEFAULT_MAX_PER_GROUP,
                                  integer=True)),
        rate=_number(table, "rate", where, 1000, 1e11, relayforward.DEFAULT_RATE),
        burst=int(_number(table, "burst", where, 1500, 1e11, relayforward.DEFAULT_BURST, integer=True)),
        global_rate=_number(table, "global_rate", where, 1000, 1e12, relayforward.DEFAULT_GLOBAL_RATE),
        global_burst=int(_number(table, "global_burst", where, 1500, 1e12, relayforward.DEFAULT_GLOBAL_BURST,
                                 integer=True)),
    )


def _ip(table: dict[str, Any], key: str, where: str, default: str | None) -> str:
    value = table.get(key, default)
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError(f"{where}: {key!r} must be an IP address, got {value!r}") from None


def _budgets(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The answer byte budgets; the old per-answer keys (answer_rate, answer_burst) count one
    datagram per answer, and answer_rate = 0 still turns every budget off."""
    rate = _number(data, "answer_bytes_rate", where, 0, 1e12, DEFAULT_ANSWER_BYTES_RATE)
    burst = _number(data, "answer_bytes_burst", where, 1, 1e12, DEFAULT_ANSWER_BYTES_BURST, integer=True)
    replay_rate = _number(data, "replay_bytes_rate", where, 0, 1e12, DEFAULT_REPLAY_BYTES_RATE)
    replay_burst = _number(data, "replay_bytes_burst", where, 1, 1e12, DEFAULT_REPLAY_BYTES_BURST, integer=True)
    if "answer_rate" in data:
        answers = _number(data, "answer_rate", where, 0, 1e6, 0)
        if not answers:
            rate = replay_rate = 0
        elif "answer_bytes_rate" not in data:
            rate = answers * LEGACY_ANSWER_BYTES
    if "answer_burst" in data and "answer_bytes_burst" not in data:
        burst = _number(data, "answer_burst", where, 1, 1e6, 0, integer=True) * LEGACY_ANSWER_BYTES
    return {
        "answer_bytes_rate": rate, "answer_bytes_burst": int(burst),
        "replay_bytes_rate": replay_rate, "replay_bytes_burst": int(replay_burst),
    }


def _parse_group(name: str, table: Any, where: str) -> GroupSource:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    _no_unknown(table, _GROUP_KEYS, where)
    if "id" not in table:
        raise ConfigError(f"{where}: missing 'id' (the 32-bit group ID; 0 for C clients)")
    if "secret_file" not in table:
        raise ConfigError(f"{where}: missing 'secret_file' (path of the 32-byte group secret)")
    previous = table.get("previous_secret_files", [])
    if not configfile.is_strings(previous):
        raise ConfigError(f"{where}: 'previous_secret_files' must be a list of paths")
    encrypt = table.get("encrypt", False)
    if not configfile.is_kind(encrypt, bool):
        raise ConfigError(f"{where}: 'encrypt' must be true or false")
    max_age = _number(table, "max_age", where, 0, None, 0, integer=True)
    return GroupSource(
        name=name,
        group_id=int(_number(table, "id", where, 0, 2**32 - 1, 0, integer=True)),
        secret_files=(_string(table, "secret_file", where, ""), *previous),
        encrypt=encrypt,
        allowed_keys=_allowed_keys(table.get("allowed_keys"), where),
        max_records=int(_number(table, "max_records", where, 1, 1_000_000, DEFAULT_MAX_RECORDS, integer=True)),
        max_age=int(max_age) or None,
    )


def _allowed_keys(value: Any, where: str) -> frozenset[PublicKey] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ConfigError(f"{where}: 'allowed_keys' must be a list of base64 WireGuard public keys")
    keys = set()
    for item in value:
        key = PublicKey.parse(item)
        if key is None:
            raise ConfigError(f"{where}: 'allowed_keys' entry {item!r} is not a base64 WireGuard public key")
        keys.add(key)
    return frozenset(keys)


def _no_unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    unknown = configfile.unknown_key(table, known)
    if unknown is not None:
        raise ConfigError(f"{where}: unknown key {unknown!r} (known: {', '.join(sorted(known))})")


def _string(table: dict[str, Any], key: str, where: str, default: str) -> str:
    value = table.get(key, default)
    if not configfile.is_kind(value, str) or not value:
        raise ConfigError(f"{where}: {key!r} must be a non-empty string")
    return value


def _number(
    table: dict[str, Any],
    key: str,
    where: str,
    low: float,
    high: float | None,
    default: float,
    integer: bool = False,
) -> float:
    value = table.get(key, default)
    kind = "an integer" if integer else "a number"
    if not configfile.is_number(value, integer):
        raise ConfigError(f"{where}: {key!r} must be {kind}, got {value!r}")
    if not configfile.in_range(value, low, high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{where}: {key!r} = {value} is out of range: must be {bound}")
    return float(value)
