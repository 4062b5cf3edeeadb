"""Which endpoints to try for a peer, in which order: a pure function beside the plan.

A peer can be reachable at several endpoints: the public one the servers saw (its record), its
LAN addresses and advertised port forwards (X1 announcements), the IPv6 source a server saw
(OBS6). ``candidate_order`` ranks them for this host (innernet's and tailscale's rules):

- a peer behind the same public IPv4 as this host: its LAN address in one of this host's on-link
  subnets, its IPv6 in this host's on-link prefixes, its OBS6 (with IPv6 here), its other LAN
  addresses (a routed LAN), and last its public endpoint (works only through a NAT that
  hairpins);
- any other peer: its IPv6 (OBS6, then global HOST6) when this host has IPv6, its advertised
  forwards, its public endpoint, and its public IP with its WireGuard port when that differs
  from the port the servers saw (a NAT that keeps ports for some destinations only, or a forward
  set up without ``advertise``).

Last comes the relay port the servers allocated, if any ("relay"). The endpoint that last worked
for the peer goes first (the relay excepted: it stays last, the direct paths are tried first).
Each candidate gets a step time: how long to wait for a handshake before the next one (2 s on a
LAN, WireGuard's REKEY_TIMEOUT of 5 s else).
"""

from __future__ import annotations

from wgsig import ipaddr
from wgsig.endpoint import Endpoint, unusable_reason
from wgsig.plainclass import dataclass

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Sequence

    from wgsig.ipaddr import Prefix as Network

LAN_STEP = 2.0
WAN_STEP = 5.0  # REKEY_TIMEOUT: WireGuard retries a handshake after 5 s


@dataclass(frozen=True)
class Announced:
    """What the servers said of a peer beyond its record (X1)."""

    obs6: Endpoint | None = None  # the IPv6 source a server saw from its WireGuard port
    host: tuple[Endpoint, ...] = ()  # its LAN addresses with its WireGuard port, in its order
    mapped: tuple[Endpoint, ...] = ()  # port forwards it advertises
    relay: Endpoint | None = None  # the server's relay port for this host and that peer (RELAY)

    def endpoints(self) -> tuple[Endpoint, ...]:
        return ((self.obs6,) if self.obs6 else ()) + self.host + self.mapped + ((self.relay,) if self.relay else ())


@dataclass(frozen=True)
class LocalView:
    """This host, as the choice needs it."""

    public_ipv4: str | None = None  # our own record's IPv4, as the servers saw it
    onlink: tuple[Network, ...] = ()
    global_ipv6: bool = False  # a global IPv6 address and an IPv6 default route


@dataclass(frozen=True)
class Candidate:
    endpoint: Endpoint
    # "lan", "lan-ipv6", "ipv6", "mapped", "routed-lan", "public", "public-ip+port", "hairpin",
    # "worked" (an endpoint that had a handshake and that no announcement names, e.g. set by hand)
    kind: str
    step: float  # seconds to wait for a handshake before the next candidate

    @property
    def step_seconds(self) -> float:
        return self.step


_NOT_REACHABLE6 = tuple(
    ipaddr.parse_prefix(n) for n in ("fe80::/10", "fc00::/7", "ff00::/8", "::/128", "::1/128", "::ffff:0:0/96")
)


def usable(endpoint: Endpoint | None) -> bool:
    """Not the "no IPv4 endpoint" of a peer seen only over IPv6, nor port 0, nor an address no
    peer can send to (``wgsig.endpoint.unusable_reason``: unspecified, broadcast, multicast,
    reserved, link-local without a scope)."""
    return endpoint is not None and unusable_reason(endpoint) is None


_LAN_NETS = tuple(ipaddr.parse_prefix(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


def lan_address(endpoint: Endpoint) -> bool:
    """A LAN address (RFC 1918, IPv6 unique-local). Not Python's is_private, which counts the
    documentation ranges too (the lab's "public" addresses)."""
    try:
        address = ipaddr.parse(endpoint[0])
    except ValueError:
        return False
    return ipaddr.within_any(address, _LAN_NETS)


def _global6(host: str) -> bool:
    """An IPv6 address routed beyond its site: not link-local, unique-local, multicast, mapped.
    (Documentation prefixes count: the lab uses 2001:db8::/32.)"""
    try:
        address = ipaddr.parse(host)
    except ValueError:
        return False
    return address[0] == 6 and not ipaddr.within_any(address, _NOT_REACHABLE6)


def canonical(endpoint: Endpoint) -> Endpoint:
    """The address as the kernel reports it ("2001:db8::2", not "2001:DB8:0::2"): the plan
    compares what it wrote with what the kernel says."""
    try:
        return ipaddr.canonical(endpoint[0]), endpoint[1]
    except ValueError:
        return endpoint


def canonical_announced(announced: Announced) -> Announced:
    return Announced(
        canonical(announced.obs6) if announced.obs6 is not None else None,
        tuple(canonical(e) for e in announced.host), tuple(canonical(e) for e in announced.mapped),
        canonical(announced.relay) if announced.relay is not None else None,
    )


def _onlink(host: str, local: LocalView) -> bool:
    try:
        address = ipaddr.parse(host)
    except ValueError:
        return False
    return ipaddr.within_any(address, local.onlink)


def _v6(host: str) -> bool:
    return ":" in host


def candidate_order(
    record_endpoint: Endpoint | None,
    announced: Announced | None,
    local: LocalView,
    worked: Sequence[Endpoint] = (),
) -> list[Candidate]:
    """The endpoints to try for one peer, best first, without repeats (pure)."""
    announced = canonical_announced(announced or Announced())
    record_endpoint = canonical(record_endpoint) if record_endpoint is not None else None
    worked = [canonical(e) for e in worked]
    same_nat = (
        usable(record_endpoint) and local.public_ipv4 is not None and record_endpoint is not None
        and record_endpoint[0] == local.public_ipv4
    )
    ranked: list[Candidate] = []
    hosts4 = [e for e in announced.host if not _v6(e[0])]
    hosts6 = [e for e in announced.host if _v6(e[0])]
    v6_here = local.global_ipv6
    if same_nat:
        ranked += [Candidate(e, "lan", LAN_STEP) for e in hosts4 if _onlink(e[0], local)]
        ranked += [Candidate(e, "lan-ipv6", LAN_STEP) for e in hosts6 if _onlink(e[0], local)]
        if v6_here and announced.obs6:
            ranked.append(Candidate(announced.obs6, "ipv6", WAN_STEP))
        ranked += [Candidate(e, "routed-lan", WAN_STEP) for e in hosts4 if not _onlink(e[0], local)]
        ranked += [Candidate(e, "mapped", WAN_STEP) for e in announced.mapped]
        if record_endpoint is not None:
            ranked.append(Candidate(record_endpoint, "hairpin", WAN_STEP))
    else:
        # An on-link LAN address first even without the same public IP: peers of one LAN that
        # reach the servers through different uplinks.
        ranked += [Candidate(e, "lan", LAN_STEP) for e in announced.host if _onlink(e[0], local)]
        if v6_here:
            if announced.obs6:
                ranked.append(Candidate(announced.obs6, "ipv6", WAN_STEP))
            ranked += [Candidate(e, "ipv6", WAN_STEP) for e in hosts6 if _global6(e[0])]
        ranked += [Candidate(e, "mapped", WAN_STEP) for e in announced.mapped if v6_here or not _v6(e[0])]
        if record_endpoint is not None:
            ranked.append(Candidate(record_endpoint, "public", WAN_STEP))
            # Its LAN announcements carry its WireGuard port: a NAT that keeps the port for
            # other destinations (or an unadvertised forward) answers there.
            ports = {e[1] for e in announced.host}
            if len(ports) == 1 and record_endpoint[1] not in ports and not _v6(record_endpoint[0]):
                ranked.append(Candidate((record_endpoint[0], ports.pop()), "public-ip+port", WAN_STEP))
    # Last, whoever the peer is: the relay the servers allocated (only after the direct candidates
    # failed: wgsigc asks for one then, wgsigc/relayplan.py).
    if announced.relay is not None and (v6_here or not _v6(announced.relay[0])):
        ranked.append(Candidate(announced.relay, "relay", WAN_STEP))
    result: list[Candidate] = []
    seen: set[Endpoint] = set()
    for endpoint in worked[:1]:
        # Still plausible: a LAN address that worked is worth a try only on that LAN (on-link, the
        # same NAT, or still announced); a laptop elsewhere might reach a stranger at it.
        on_that_lan = _onlink(endpoint[0], local) or same_nat or endpoint in announced.endpoints()
        relay = endpoint == announced.relay
        if usable(endpoint) and (v6_here or not _v6(endpoint[0])) and (on_that_lan or not lan_address(endpoint)) \
                and not relay:
            known = next((c for c in ranked if c.endpoint == endpoint), None)
            step = known.step if known is not None else (LAN_STEP if _onlink(endpoint[0], local) else WAN_STEP)
            result.append(Candidate(endpoint, known.kind if known is not None else "worked", step))
            seen.add(endpoint)
    for candidate in ranked:
        if usable(candidate.endpoint) and candidate.endpoint not in seen:
            result.append(candidate)
            seen.add(candidate.endpoint)
    return result
