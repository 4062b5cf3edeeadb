"""What wgsigc changes in a WireGuard interface: a pure decision, no I/O.

Given the interface as the kernel reports it, the merged records of the
servers, the configuration, the previous run's memory and the time, ``plan``
says per peer what to do and why.  The netlink shell only carries it out.

Rules: never change keys or allowed IPs, never remove a peer; leave a peer
whose latest handshake is recent alone (WireGuard follows roaming peers by
itself); unknown peers are added only when the configuration gives their
allowed IPs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from wgsig.keys import key_text
from wgsig.label import label_seconds
from wgsig.wire import Record

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class PeerState:
    """One peer as the kernel reports it."""

    public_key: bytes
    endpoint: Endpoint | None = None
    allowed_ips: tuple[str, ...] = ()
    keepalive: int = 0
    latest_handshake: int = 0  # UNIX seconds, 0 = never


@dataclass(frozen=True)
class InterfaceState:
    name: str
    public_key: bytes
    listen_port: int
    fwmark: int = 0
    up: bool = True
    peers: Mapping[bytes, PeerState] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    keepalive: int = 25
    handshake_threshold: float = 180
    handshake_timeout: float = 15
    max_age: float | None = 600
    extra_peers: Mapping[bytes, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Pending:
    """Remembered between runs: since when a peer has been pointed at an endpoint without a handshake."""

    endpoint: Endpoint
    since: float


class Action(enum.Enum):
    SET_ENDPOINT = "set endpoint"
    ADD_PEER = "add peer"
    HANDSHAKE = "start handshake"
    HEALTHY = "healthy, left alone"
    NO_RECORD = "no record on the servers"
    OLD_RECORD = "record too old"
    NOT_CONFIGURED = "not configured on the interface, ignored"


@dataclass(frozen=True)
class PeerWrite:
    """One netlink change: set the endpoint (and keepalive), optionally make WireGuard handshake now.

    ``allowed_ips`` are the peer's current ones (or the configured ones for a new peer): old
    pyroute2 versions replace allowed IPs on every write, so they must be passed back unchanged.
    ``old_keepalive`` is what the kernel has now (0 for a new peer).
    """

    public_key: bytes
    endpoint: Endpoint
    keepalive: int
    allowed_ips: tuple[str, ...]
    new_peer: bool = False
    old_keepalive: int = 0


@dataclass(frozen=True)
class PeerDecision:
    public_key: bytes
    action: Action
    detail: str
    server_endpoint: Endpoint | None = None
    kernel_endpoint: Endpoint | None = None
    record_time: int | None = None  # UNIX seconds of the record's label
    latest_handshake: int = 0
    write: PeerWrite | None = None
    pending: Pending | None = None  # to remember for the next run
    problem: str | None = None  # one line for the operator; makes the run fail

    @property
    def changes(self) -> bool:
        return self.write is not None


@dataclass(frozen=True)
class Plan:
    interface: str
    own_endpoint: Endpoint | None
    decisions: tuple[PeerDecision, ...]

    @property
    def writes(self) -> list[PeerWrite]:
        return [d.write for d in self.decisions if d.write is not None]

    @property
    def problems(self) -> list[str]:
        return [d.problem for d in self.decisions if d.problem is not None]


def _ep(endpoint: Endpoint | None) -> str:
    return "(none)" if endpoint is None else f"{endpoint[0]}:{endpoint[1]}"


def plan(
    state: InterfaceState,
    records: Mapping[bytes, Record],
    settings: Settings,
    now: float,
    pending: Mapping[bytes, Pending] | None = None,
) -> Plan:
    """Decide, per peer of the interface and per record, what to do."""
    pending = pending or {}
    own = records.get(state.public_key)
    own_endpoint = (own.ip, own.port) if own is not None else None
    decisions: list[PeerDecision] = []
    oldest = None if settings.max_age is None else now - settings.max_age
    for key, record in records.items():
        if key == state.public_key:
            continue
        peer = state.peers.get(key)
        record_time = label_seconds(record.label)
        server_endpoint = (record.ip, record.port)
        if oldest is not None and record_time < oldest:
            if peer is not None:
                decisions.append(
                    PeerDecision(
                        key, Action.OLD_RECORD,
                        f"record is {int(now - record_time)} s old (max_age {settings.max_age:g} s), left alone",
                        server_endpoint, peer.endpoint, record_time, peer.latest_handshake,
                    )
                )
            continue
        if peer is None:
            decisions.append(_unknown_peer(key, server_endpoint, record_time, settings, now))
        else:
            decisions.append(_known_peer(peer, server_endpoint, record_time, own_endpoint, settings, now, pending))
    for key, peer in state.peers.items():
        if key not in records:
            decisions.append(
                PeerDecision(
                    key, Action.NO_RECORD, "no server knows this peer: is wgsigc running there?",
                    None, peer.endpoint, None, peer.latest_handshake,
                )
            )
    return Plan(state.name, own_endpoint, tuple(decisions))


def _unknown_peer(key: bytes, endpoint: Endpoint, record_time: int, settings: Settings, now: float) -> PeerDecision:
    allowed = settings.extra_peers.get(key)
    if allowed is None:
        return PeerDecision(key, Action.NOT_CONFIGURED, "not a peer of this interface", endpoint, None, record_time)
    write = PeerWrite(key, endpoint, settings.keepalive, allowed, new_peer=True)
    return PeerDecision(
        key, Action.ADD_PEER, f"added with endpoint {_ep(endpoint)}, allowed IPs {', '.join(allowed) or '(none)'}",
        endpoint, None, record_time, 0, write, Pending(endpoint, now),
    )


def _known_peer(
    peer: PeerState,
    endpoint: Endpoint,
    record_time: int,
    own_endpoint: Endpoint | None,
    settings: Settings,
    now: float,
    pending: Mapping[bytes, Pending],
) -> PeerDecision:
    key = peer.public_key
    handshake = peer.latest_handshake
    base = {
        "server_endpoint": endpoint, "kernel_endpoint": peer.endpoint, "record_time": record_time,
        "latest_handshake": handshake,
    }
    if handshake and now - handshake < settings.handshake_threshold:
        return PeerDecision(key, Action.HEALTHY, f"handshake {int(now - handshake)} s ago", **base)  # type: ignore[arg-type]
    write = PeerWrite(
        key, endpoint, peer.keepalive or settings.keepalive, peer.allowed_ips, old_keepalive=peer.keepalive
    )
    # Since when has the peer been pointed at this endpoint without a handshake?
    before = pending.get(key)
    # Handshake times are whole seconds: one in the same second as "since" counts as after it.
    kept = before is not None and before.endpoint == endpoint and handshake < int(before.since)
    since = before.since if before is not None and kept else now
    problem = None
    if own_endpoint is not None and own_endpoint[0] == endpoint[0]:
        problem = (
            f"peer {key_text(key)} is behind the same public IP {endpoint[0]} as this host: reaching it through"
            f" {_ep(endpoint)} needs a NAT that supports hairpinning (NAT loopback); else give it a LAN endpoint"
            " by hand"
        )
    elif now - since >= settings.handshake_timeout:
        problem = (
            f"peer {key_text(key)}: no handshake since its endpoint was set to {_ep(endpoint)} {int(now - since)} s"
            " ago; likely causes: a NAT on either side maps each destination to a new port (symmetric NAT,"
            " e.g. 'masquerade fully-random'), a firewall drops UDP, or wgsigc is not running on that peer"
        )
    if peer.endpoint == endpoint:
        action, detail = Action.HANDSHAKE, f"endpoint {_ep(endpoint)} already set, no recent handshake"
    else:
        action, detail = Action.SET_ENDPOINT, f"endpoint {_ep(peer.endpoint)} -> {_ep(endpoint)}"
    if handshake:
        detail += f" (last handshake {int(now - handshake)} s ago)"
    else:
        detail += " (no handshake yet)"
    return PeerDecision(key, action, detail, write=write, pending=Pending(endpoint, since), problem=problem, **base)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Registration:
    """Our own record as one server saw it in this run."""

    server: str
    endpoint: Endpoint


def nat_diagnosis(registrations: Iterable[Registration], listen_port: int) -> str | None:
    """A NAT that gives each server a different public port defeats hole punching: say so."""
    seen = {r.endpoint for r in registrations}
    if len(seen) < 2:
        return None
    where = ", ".join(f"{r.server} saw {_ep(r.endpoint)}" for r in registrations)
    return (
        f"this host's NAT maps WireGuard's port {listen_port} to a different public endpoint per destination"
        f" ({where}): a symmetric NAT (e.g. 'masquerade fully-random'); hole punching cannot work through it,"
        " forward a UDP port to WireGuard or use a host with a stable mapping"
    )
