"""wgsigc's kernel-mode configuration: ``/etc/wgsig/wgsigc.toml``.

One ``[interface.NAME]`` table per WireGuard interface.  Every mistake is
reported as one line naming the file, the key and what is expected.  Secrets
are read when an interface is handled, not here, so a bad secret file spoils
only its own interface.  What a valid value is, and systemd's state directory,
are decided in ``wgsig/host/configfile.py``; the messages' wording is wgsigc's
own, here.
"""

from __future__ import annotations

import os

from wgsig import ipaddr
from wgsig.endpoint import check_port, parse_port, split_host_port
from wgsig.host import configfile
from wgsig.host.configfile import ConfigError as ConfigError  # re-exported: callers catch it from here
from wgsig.host.configfile import MetricsDirectory
from wgsig.keys import PublicKey
from wgsig.plainclass import dataclass, field

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from wgsig.ipaddr import Prefix

    _T = TypeVar("_T")

DEFAULT_SERVER_PORT = 1223
DEFAULT_STATE_DIRECTORY = "/var/lib/wgsig"
DEFAULT_KEEPALIVE = 25
# After 180 s (REJECT_AFTER_TIME) without a handshake WireGuard has no valid session left:
# a handshake younger than this means the peer may still be talking to us.
DEFAULT_HANDSHAKE_THRESHOLD = 180
# A handshake takes well under a second; after this long with an endpoint set and no
# handshake, something on the path (usually a NAT) is in the way.
DEFAULT_HANDSHAKE_TIMEOUT = 15
DEFAULT_MAX_AGE = 600
# The timer starts a run every 30 s; a run that converges for 25 s leaves it room, within
# wgsigc.service's TimeoutStartSec=60s.
DEFAULT_CONVERGE = 25

_IFNAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.=+-")


@dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class InterfaceConfig:
    name: str
    servers: tuple[ServerAddress, ...]
    secret_file: str
    group: int = 0
    encrypt: bool = False
    max_age: float | None = DEFAULT_MAX_AGE
    keepalive: int = DEFAULT_KEEPALIVE
    handshake_threshold: float = DEFAULT_HANDSHAKE_THRESHOLD
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    attempts: int = 3
    timeout: float = 1.0
    # Peers to add when the interface lacks them: public key -> allowed IPs.
    extra_peers: dict[PublicKey, tuple[str, ...]] = field(default_factory=dict)
    state_file: str | None = None  # a path (strings here: a run loads no pathlib)
    # X1 (doc/x1.md): announce this host's LAN addresses and use the peers' (on by default).
    candidates: bool = True
    exclude_candidates: tuple[Prefix, ...] = ()
    advertise: tuple[tuple[str, int], ...] = ()  # port forwards to announce, e.g. ("198.51.100.7", 51820)
    ipv6: bool = True  # register over IPv6 too, when this host has a global address
    # While a peer waits for a handshake, a run keeps fetching and judging for this long (seconds):
    # a peer that just came online is reached within seconds, not at the next timer run.
    converge_seconds: float = DEFAULT_CONVERGE
    # Ask the router to map WireGuard's port and announce the mapping (wgsigc.portmapping).
    port_mapping: str = "off"


@dataclass(frozen=True)
class ClientConfig:
    interfaces: tuple[InterfaceConfig, ...]
    source: str
    metrics_directory: MetricsDirectory | None = None  # None: no metrics files


def default_state_directory() -> str:
    """systemd's StateDirectory= (``$STATE_DIRECTORY``), else /var/lib/wgsig."""
    return configfile.systemd_state_directory(DEFAULT_STATE_DIRECTORY)


def state_file_for(interface: InterfaceConfig, directory: str | None = None) -> str:
    if interface.state_file is not None:
        return interface.state_file
    return os.path.join(directory or default_state_directory(), f"wgsigc-{interface.name}.json")


def parse_server(text: str) -> ServerAddress:
    """``host:port``, ``[IPv6]:port`` or ``host`` (port 1223)."""
    host, port_text = split_host_port(text.strip(), DEFAULT_SERVER_PORT)
    if not host or " " in host or (":" in host and not _is_ipv6(host)):
        raise ValueError(f"{text!r} is not host:port (IPv4 address, [IPv6 address] or DNS name)")
    try:
        port = parse_port(port_text)
    except ValueError as error:
        raise ValueError(f"{text!r}: {error}") from None
    return ServerAddress(host, port)


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddr.version(host) == 6
    except ValueError:
        return False


def parse_endpoint_text(text: str) -> tuple[str, int]:
    """An advertised endpoint: "a.b.c.d:port" or "[v6]:port", the port required."""
    host, port_text = split_host_port(text.strip(), None)
    try:
        address = ipaddr.canonical(host)
        port = int(port_text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IP address and port (\"198.51.100.7:51820\", \"[2001:db8::7]:51820\")"
        ) from None
    try:
        check_port(port)
    except ValueError as error:
        raise ValueError(f"{text!r}: {error}") from None
    return address, port


def load_config(path: str, cache: str | None = None) -> ClientConfig:
    """The configuration file ``path``; ``cache``: a file keeping tomllib's reading of it
    (``config_cache_file``), so that a run finding the file unchanged loads no tomllib."""
    return parse_config(configfile.read_toml(path, cache), path)


CONFIG_CACHE_NAME = "wgsigc.config-cache.json"  # not wgsigc-NAME.json: never an interface's run record


def config_cache_file() -> str:
    """Where a kernel-mode run keeps its parsed configuration: in the default state directory
    (systemd's StateDirectory=, mode 0700, else /var/lib/wgsig) whatever ``state_directory`` says,
    as it is read before the configuration is. It holds no secret (the configuration names secret
    files, never their bytes) and is written 0600; a directory that does not exist is not created:
    the run then parses the file each time, as without a cache."""
    return os.path.join(default_state_directory(), CONFIG_CACHE_NAME)


def parse_config(data: dict[str, Any], source: str) -> ClientConfig:
    unknown = configfile.unknown_key(data, {"interface", "state_directory", "metrics_directory"})
    if unknown is not None:
        raise ConfigError(f"{source}: unknown key {unknown!r} (expected [interface.NAME] tables)")
    try:
        metrics = configfile.metrics_directory(data)
    except ValueError as error:
        raise ConfigError(f"{source}: metrics_directory {error}") from None
    try:
        state_directory = configfile.state_directory_setting(data)
    except ValueError as error:
        raise ConfigError(f"{source}: state_directory {error}") from None
    tables = data.get("interface")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{source}: no [interface.NAME] table: configure at least one WireGuard interface")
    interfaces = []
    for name, table in tables.items():
        where = f"{source}: [interface.{name}]"
        if not 1 <= len(name) <= 15 or not _IFNAME_CHARACTERS.issuperset(name):  # no re: an idle run loads none
            raise ConfigError(f"{where}: {name!r} is not an interface name (1-15 characters)")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table")
        interfaces.append(_interface(name, table, where, state_directory))
    return ClientConfig(interfaces=tuple(interfaces), source=source, metrics_directory=metrics)


_INTERFACE_KEYS = {
    "servers", "group", "secret_file", "encrypt", "max_age", "keepalive", "handshake_threshold",
    "handshake_timeout", "attempts", "timeout", "peer", "state_file", "candidates", "exclude_candidates",
    "advertise", "ipv6", "converge_seconds", "port_mapping",
}
PORT_MAPPING_MODES = ("off", "auto", "pcp", "natpmp", "upnp")  # wgsigc.portmapplan.MODES


def _interface(name: str, table: dict[str, Any], where: str, state_directory: str | None) -> InterfaceConfig:
    unknown = configfile.unknown_key(table, _INTERFACE_KEYS)
    if unknown is not None:
        raise ConfigError(f"{where}: unknown key {unknown!r}")
    raw_servers = table.get("servers")
    if isinstance(raw_servers, str):
        raw_servers = [raw_servers]
    if not configfile.is_strings(raw_servers) or not raw_servers:
        raise ConfigError(f'{where}: servers must be a list of "host:port" strings, at least one')
    try:
        servers = tuple(parse_server(s) for s in raw_servers)
    except ValueError as error:
        raise ConfigError(f"{where}: servers: {error}") from None
    if "secret_file" not in table:
        raise ConfigError(f"{where}: secret_file is missing (the group's 32-byte secret, 'wgsigd genkey FILE')")
    secret_file = _typed(table, "secret_file", where, str)
    group = _integer(table, "group", where, 0, (1 << 32) - 1, 0)
    encrypt = _typed(table, "encrypt", where, bool) if "encrypt" in table else False
    max_age: float | None = DEFAULT_MAX_AGE
    if "max_age" in table:
        max_age = _number(table, "max_age", where, 1)
    keepalive = _integer(table, "keepalive", where, 1, 65535, DEFAULT_KEEPALIVE)
    threshold = _number(table, "handshake_threshold", where, 0, DEFAULT_HANDSHAKE_THRESHOLD)
    handshake_timeout = _number(table, "handshake_timeout", where, 1, DEFAULT_HANDSHAKE_TIMEOUT)
    attempts = _integer(table, "attempts", where, 1, 100, 3)
    timeout = _number(table, "timeout", where, 0.01, 1.0)
    extra = _extra_peers(table.get("peer", []), where)
    state_file = None
    if "state_file" in table:
        state_file = _typed(table, "state_file", where, str)
    elif state_directory is not None:
        state_file = os.path.join(state_directory, f"wgsigc-{name}.json")
    candidates = _typed(table, "candidates", where, bool) if "candidates" in table else True
    ipv6 = _typed(table, "ipv6", where, bool) if "ipv6" in table else True
    exclude = tuple(_strings(table, "exclude_candidates", where, _network, '["172.16.0.0/12"]'))
    advertise = tuple(_strings(table, "advertise", where, parse_endpoint_text, '["198.51.100.7:51820"]'))
    converge = _number(table, "converge_seconds", where, 0, DEFAULT_CONVERGE)
    port_mapping = _typed(table, "port_mapping", where, str) if "port_mapping" in table else "off"
    if port_mapping not in PORT_MAPPING_MODES:
        raise ConfigError(f"{where}: port_mapping must be one of {', '.join(map(repr, PORT_MAPPING_MODES))},"
                          f" not {port_mapping!r}")
    if converge > 50:
        raise ConfigError(f"{where}: converge_seconds must be at most 50 (wgsigc.service stops a run after 60 s)")
    return InterfaceConfig(
        name=name, servers=servers, secret_file=secret_file, group=group, encrypt=encrypt, max_age=max_age,
        keepalive=keepalive, handshake_threshold=threshold, handshake_timeout=handshake_timeout,
        attempts=attempts, timeout=timeout, extra_peers=extra, state_file=state_file, candidates=candidates,
        exclude_candidates=exclude, advertise=advertise, ipv6=ipv6, converge_seconds=converge,
        port_mapping=port_mapping,
    )


def _network(text: str) -> Prefix:
    return ipaddr.parse_prefix(text, strict=False)


def _strings(table: dict[str, Any], key: str, where: str, parse: Callable[[str], _T], example: str) -> list[_T]:
    raw = table.get(key, [])
    if not configfile.is_strings(raw):
        raise ConfigError(f"{where}: {key} must be a list of strings, e.g. {example}")
    try:
        return [parse(i) for i in raw]
    except ValueError as error:
        raise ConfigError(f"{where}: {key}: {error}") from None


def _extra_peers(raw: Any, where: str) -> dict[PublicKey, tuple[str, ...]]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: peer must be [[interface.NAME.peer]] tables with public_key and allowed_ips")
    peers: dict[PublicKey, tuple[str, ...]] = {}
    for index, entry in enumerate(raw):
        here = f"{where} peer #{index + 1}"
        if not isinstance(entry, dict) or set(entry) != {"public_key", "allowed_ips"}:
            raise ConfigError(f"{here}: needs exactly public_key and allowed_ips")
        key = PublicKey.parse(entry["public_key"])
        if key is None:
            raise ConfigError(f"{here}: public_key is not a base64 WireGuard public key (44 characters)")
        ips = entry["allowed_ips"]
        if not configfile.is_strings(ips):
            raise ConfigError(f'{here}: allowed_ips must be a list of CIDR strings, e.g. ["10.0.0.2/32"]')
        try:
            peers[key] = tuple(ipaddr.prefix_to_text(ipaddr.parse_prefix(i, strict=True)) for i in ips)
        except ValueError as error:
            raise ConfigError(f"{here}: allowed_ips: {error}") from None
    return peers


def _typed(table: dict[str, Any], key: str, where: str, kind: type) -> Any:
    value = table[key]
    if not configfile.is_kind(value, kind):
        raise ConfigError(f"{where}: {key} must be a {kind.__name__}, not {value!r}")
    return value


def _integer(table: dict[str, Any], key: str, where: str, low: int, high: int, default: int) -> int:
    if key not in table:
        return default
    value = table[key]
    if not configfile.is_kind(value, int) or not configfile.in_range(value, low, high):
        raise ConfigError(f"{where}: {key} must be an integer from {low} to {high}, not {value!r}")
    return value


def _number(table: dict[str, Any], key: str, where: str, low: float, default: float | None = None) -> float:
    if key not in table:
        if default is None:
            raise ConfigError(f"{where}: {key} is missing")
        return default
    value = table[key]
    if not configfile.is_number(value) or not configfile.in_range(value, low):
        raise ConfigError(f"{where}: {key} must be a number of seconds, at least {low}, not {value!r}")
    return float(value)
