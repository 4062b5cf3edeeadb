"""Kernel mode's talk with the servers: register from WireGuard's port, fetch the tables.

One run, per server (doc/x1.md, "Client rules"):

1. register with CLFLG 0 | XA from WireGuard's own port: through a raw socket while the kernel
   holds the port, from the port itself while it is free (as the C client does); over IPv6 too
   when this host has a global address and the server an IPv6 one (always a raw socket);
2. 25 ms later fetch with CLFLG 3 | XA from an ordinary socket: checks that the registration
   arrived (our record carries its label) and learns the server's X1 capabilities;
3. from a server that stores request blocks, fetch again with CLFLG 1 | XA | XR and this host's
   candidates: label-storing, so the server keeps them, and its answer carries the other peers'.

XA is harmless with every server (the C server and wgsig 0.1.0 read CLFLG & 3 only); a block is
sent only to a server that said SV_XR_OK.  ``poll`` repeats step 3 (or a CLFLG 1 | XA fetch).
"""

from __future__ import annotations

import errno
import os
import time

from wgsig import ipaddr, x1
from wgsig.client import GroupCredentials, build_request
from wgsig.endpoint import endpoint_text
from wgsig.host import lightsocket as socket
from wgsig.label import label_from_ns
from wgsig.plainclass import dataclass, field
from wgsig.wire import NO_ENDPOINT_UPDATE, NO_LABEL_UPDATE, Record
from wgsigc.candidates import Announced
from wgsigc.config import InterfaceConfig
from wgsigc.exchange import MIN_REQUEST_GAP, ExchangeError, diagnose, exchange, resolve_all
from wgsigc.plan import InterfaceState
from wgsigc.rawsend import port_is_free, send_from_port, set_mark, udp_socket

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

CLFLG_REGISTER = 0 | x1.XA
CLFLG_CHECK = NO_ENDPOINT_UPDATE | NO_LABEL_UPDATE | x1.XA  # change nothing, just answer
CLFLG_REFRESH = NO_ENDPOINT_UPDATE | x1.XA  # label-storing: the server keeps our block, sends its blocks
_NO_ROUTE = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL)


@dataclass
class ServerOutcome:
    """One server in one run: where it is, what it answered, what it saw of us."""

    name: str
    address: tuple[str, int] | None = None  # IPv4
    address6: tuple[str, int] | None = None
    records: list[Record] | None = None
    registered: tuple[str, int] | None = None  # our endpoint as this server recorded it in this run
    error: str | None = None
    svext: int = 0  # X1 capabilities it announced
    items: dict[bytes, list[x1.Item]] = field(default_factory=dict)  # X1 items per peer ID
    registered6: bool = False  # an IPv6 registration was sent

    @property
    def reachable(self) -> tuple[str, int] | None:
        """The address to fetch from: IPv4 if the name has one, else IPv6."""
        return self.address or self.address6

    def as_json(self) -> dict[str, Any]:
        return {
            "server": self.name,
            "address": endpoint_text(self.address),
            "address6": endpoint_text(self.address6),
            "answered": self.records is not None,
            "registered_as": endpoint_text(self.registered),
            "registered_ipv6": self.registered6,
            "x1": bool(self.svext),
            "error": self.error,
        }


def resolve_servers(config: InterfaceConfig) -> list[ServerOutcome]:
    """Names are resolved at every run: a server that moved is followed."""
    outcomes = []
    for server in config.servers:
        outcome = ServerOutcome(str(server))
        try:
            outcome.address, outcome.address6 = resolve_all(server.host, server.port, exchange_seconds(config))
        except ExchangeError as error:
            outcome.error = str(error)
        outcomes.append(outcome)
    return outcomes


RETRY_BACKOFF = 2.0  # attempts wait timeout, 2 x timeout, 4 x timeout ...: 7 s in all by default


def exchange_seconds(config: InterfaceConfig) -> float:
    """The longest one exchange waits for answers (at most the 60 s wgsigc.service gives a run);
    resolving a name gets no longer."""
    return min(60.0, sum(config.timeout * RETRY_BACKOFF**i for i in range(config.attempts)))


def fetch(outcome: ServerOutcome, state: InterfaceState, credentials: GroupCredentials, config: InterfaceConfig,
          clflg: int = CLFLG_CHECK, items: Sequence[x1.Item] | None = None,
          sock: socket.socket | None = None, relay_to: Sequence[bytes] = ()) -> None:
    """One exchange; records and X1 items into ``outcome`` (kept from before if this one fails)."""
    address = outcome.reachable
    assert address is not None
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    own = sock if sock is not None else udp_socket(state.fwmark, family)
    # Relay requests ride in the request block, only to a server that relays (SV_RELAY).
    relay = tuple(relay_to) if items is not None and outcome.svext & x1.SV_RELAY else ()
    try:
        result = exchange(
            own, address, credentials, state.public_key, clflg,
            attempts=config.attempts, attempt_timeout=config.timeout, backoff=RETRY_BACKOFF,
            items=list(items) if items is not None and (items or relay) else None,
            relay_to=relay,
        )
    except ExchangeError as error:
        outcome.error = str(error)
        return
    finally:
        if sock is None:
            own.close()
    if result.records is None:
        outcome.error = diagnose(result, address)
        return
    outcome.error = None
    outcome.records = result.records
    outcome.svext = result.svext
    outcome.items = result.items


def fetch_all(servers: Sequence[ServerOutcome], state: InterfaceState, credentials: GroupCredentials,
              config: InterfaceConfig, items: Sequence[x1.Item], relay_to: Sequence[bytes] = ()) -> None:
    """Fetch from every server: with our candidates where the server stores them (step 3), and
    relay requests for ``relay_to`` where it relays."""
    for outcome in servers:
        if outcome.reachable is None:
            continue
        if outcome.svext & x1.SV_XR_OK:
            fetch(outcome, state, credentials, config, CLFLG_REFRESH, items, relay_to=relay_to)
        elif outcome.records is None:
            fetch(outcome, state, credentials, config, CLFLG_CHECK)
        else:
            fetch(outcome, state, credentials, config, CLFLG_REFRESH)


def _own(records: list[Record] | None, own_id: bytes) -> Record | None:
    return next((r for r in records or () if r.peer_id == own_id), None)


def register_and_fetch(servers: Sequence[ServerOutcome], state: InterfaceState, credentials: GroupCredentials,
                       config: InterfaceConfig, items: Sequence[x1.Item], ipv6: bool,
                       relay_to: Sequence[bytes] = ()) -> None:
    """Steps 1-3 for every server.  ``ipv6``: this host may register over IPv6."""
    targets = [s for s in servers if s.reachable is not None]
    bound = port_is_free(state.listen_port) if targets and any(s.address for s in targets) else None
    if bound is not None:
        # WireGuard is down and the port is free: register from it directly, as the C client does.
        with bound:
            set_mark(bound, state.fwmark)
            for outcome in targets:
                if outcome.address is None:
                    continue
                fetch(outcome, state, credentials, config, CLFLG_REGISTER, sock=bound)
                own = _own(outcome.records, state.public_key)
                if own is not None:
                    outcome.registered = (own.ip, own.port)
        pending = [s for s in targets if s.address is None]
        _register_raw(pending, state, credentials, config, ipv6)
    else:
        _register_raw(targets, state, credentials, config, ipv6)
    for outcome in targets:
        if outcome.records is not None and outcome.svext & x1.SV_XR_OK:
            fetch(outcome, state, credentials, config, CLFLG_REFRESH, items, relay_to=relay_to)


def _register_raw(targets: Sequence[ServerOutcome], state: InterfaceState, credentials: GroupCredentials,
                  config: InterfaceConfig, ipv6: bool) -> None:
    """The kernel holds the port: register through raw sockets, fetch from an ordinary one."""
    pending = list(targets)
    for _attempt in range(config.attempts):
        labels = {}
        for outcome in pending:
            sent = []
            destinations = [outcome.address] if outcome.address is not None else []
            if ipv6 and outcome.address6 is not None:
                destinations.append(outcome.address6)
            for destination in destinations:
                label = label_from_ns(time.time_ns())
                request = build_request(credentials, state.public_key, label, CLFLG_REGISTER, os.urandom)
                try:
                    send_from_port(state.listen_port, destination, request, state.fwmark)
                except OSError as error:
                    if destination is outcome.address and outcome.address6 is not None and error.errno in _NO_ROUTE:
                        outcome.address = None  # an IPv6-only host: fetch over IPv6
                    else:
                        outcome.error = f"cannot send to {outcome.name} ({destination[0]}): {error.strerror}"
                    continue
                sent.append(label)
                if destination is not outcome.address:
                    outcome.registered6 = True
                if len(destinations) > 1:
                    # Two registrations of one peer: strictly increasing labels, 16.8 ms apart for C.
                    time.sleep(MIN_REQUEST_GAP)
            if sent:
                labels[outcome.name] = sent[0]
        # The C server compares labels at 16.8 ms granularity: the fetch's label must come later.
        time.sleep(MIN_REQUEST_GAP)
        retry = []
        for outcome in pending:
            if outcome.name not in labels:
                continue
            outcome.error = None
            fetch(outcome, state, credentials, config, CLFLG_CHECK)
            own = _own(outcome.records, state.public_key)
            if own is not None and own.label >= labels[outcome.name]:
                outcome.registered = (own.ip, own.port) if own.port else None
            elif outcome.records is not None:
                retry.append(outcome)  # the registration was lost: send it again
        pending = retry
        if not pending:
            break
    for outcome in pending:
        outcome.error = f"{outcome.name} answered, but did not record this host's registration"


# --- X1 items <-> what the decisions work with ---------------------------------


def own_items(addresses: Sequence[str], listen_port: int, advertise: Sequence[tuple[str, int]]) -> list[x1.Item]:
    """This host's request block: its LAN addresses with WireGuard's port, then what it advertises
    (port forwards), within the block's size limit (in this order of priority)."""
    items: list[x1.Item] = []
    for address in addresses:
        items.append(x1.Item(x1.ItemType.HOST6 if ":" in address else x1.ItemType.HOST4, address, listen_port))
    for host, port in advertise:
        items.append(x1.Item(x1.ItemType.MAPPED6 if ":" in host else x1.ItemType.MAPPED4, host, port))
    kept: list[x1.Item] = []
    size = 0
    for item in items:
        size += 2 + (18 if ":" in item.host else 6)
        if size > x1.MAX_REQUEST_BODY:
            break
        kept.append(item)
    return kept


def merged_items(servers: Sequence[ServerOutcome]) -> dict[bytes, list[x1.Item]]:
    """Per peer, the X1 items of every server that answered, first server first, without repeats."""
    merged: dict[bytes, list[x1.Item]] = {}
    for outcome in servers:
        if outcome.records is None:
            continue
        for peer_id, items in outcome.items.items():
            known = merged.setdefault(peer_id, [])
            known.extend(i for i in items if i not in known)
    return merged


def announced_from(items: dict[bytes, list[x1.Item]]) -> dict[bytes, Announced]:
    """What the servers said of each peer beyond its record, as the candidate choice takes it."""
    result = {}
    for peer_id, peer_items in items.items():
        obs6 = next(((i.host, i.port) for i in peer_items if i.type == x1.ItemType.OBS6), None)
        host = tuple((i.host, i.port) for i in peer_items if i.type in (x1.ItemType.HOST4, x1.ItemType.HOST6))
        mapped = tuple((i.host, i.port) for i in peer_items if i.type in (x1.ItemType.MAPPED4, x1.ItemType.MAPPED6))
        # Several servers may each relay: both peers must pick the same one, so not by the order of
        # their own servers list but by the relay's address (every peer sees the same addresses).
        relays = sorted(((ipaddr.parse(i.host), i.port) for i in peer_items if i.type == x1.ItemType.RELAY),
                        key=lambda r: r[0])  # IPv4 first
        relay = (ipaddr.to_text(relays[0][0]), relays[0][1]) if relays else None
        result[peer_id] = Announced(obs6, host, mapped, relay)
    return result
