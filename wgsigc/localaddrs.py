"""This host's addresses: which to announce as LAN candidates, and what the candidate choice needs.

``select`` is pure (address and link records in, a ``LocalAddresses`` out); ``read_local``
reads the records from the kernel over rtnetlink with the standard library's netlink socket and
the core's codec (``wgsig.rtnetlink``): importing pyroute2's ``IPRoute`` for three dumps cost
most of a run's start on a small board.

Announced: IPv4 addresses of universe scope and IPv6 global or unique-local addresses on up
interfaces that are not the WireGuard interface itself, nor another tunnel, bridge or container
interface (netbird's list of names, and by kind); never loopback, link-local, or IPv6 privacy
(temporary), deprecated, tentative or DAD-failed addresses (they rotate or do not work); at most
two per IPv6 /64 (tailscale's rule), at most ``limit`` in all, IPv4 first (the same-NAT case
is the common one), minus the configured ``exclude_candidates``.
"""

from __future__ import annotations

from wgsig import ipaddr, rtnetlink
from wgsig.host import lightsocket as socket
from wgsig.plainclass import dataclass

IFA_F_TEMPORARY = 0x01
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
_UNUSABLE = IFA_F_TEMPORARY | IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE
IFF_UP = 0x1
RT_SCOPE_UNIVERSE = 0
DEFAULT_LIMIT = 4
_DUMP_TIMEOUT = 2.0  # the kernel answers a dump at once; a bound in case it never does
_DUMP_BUFFER = 65536  # one recv holds a whole part of a multi-part dump
_SKIP_PREFIXES = ("lo", "wg", "wt", "ts", "tailscale", "zt", "docker", "veth", "br-", "virbr", "tun", "tap",
                  "cni", "flannel", "cali", "vxlan", "lxc", "lxd")
# Tunnels by kind. Not veth or bridge: a container's own eth0 is a veth and a hypervisor's LAN
# address often sits on a bridge; the host sides of containers go by name (veth*, docker*, br-*).
_SKIP_KINDS = frozenset({"wireguard", "tun", "vxlan", "geneve", "gre", "gretap", "ipip", "sit", "ip6tnl", "ip6gre"})

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from wgsig.ipaddr import Prefix as Network

_ULA = ipaddr.parse_prefix("fc00::/7")


class LocalAddressError(Exception):
    """The kernel's addresses could not be read (one line)."""


@dataclass(frozen=True)
class Address:
    """One address of this host, as rtnetlink reports it."""

    ifname: str
    address: str
    prefixlen: int
    scope: int = RT_SCOPE_UNIVERSE
    flags: int = 0  # IFA_FLAGS (32 bits) when present, else the header's 8 bits


@dataclass(frozen=True)
class Link:
    ifname: str
    kind: str | None = None  # IFLA_INFO_KIND: "wireguard", "bridge", ... (None for plain devices)
    up: bool = True


@dataclass(frozen=True)
class LocalAddresses:
    announce: tuple[str, ...]  # candidate addresses to announce, in order
    onlink: tuple[Network, ...]  # the prefixes of every usable address (same-LAN test)
    global_ipv6: bool  # a global IPv6 address and an IPv6 default route


def _skipped(link: Link | None, wireguard: str) -> bool:
    if link is None or not link.up or link.ifname == wireguard:
        return True
    return link.kind in _SKIP_KINDS or link.ifname.startswith(_SKIP_PREFIXES)


def select(addresses: Iterable[Address], links: Sequence[Link], wireguard: str, exclude: Sequence[Network] = (),
           ipv6_default_route: bool = False, limit: int = DEFAULT_LIMIT) -> LocalAddresses:
    """Choose what to announce (pure)."""
    by_name = {link.ifname: link for link in links}
    v4: list[str] = []
    v6: list[str] = []
    onlink: list[Network] = []
    per64: dict[Network, int] = {}
    global_v6 = False
    for entry in addresses:
        if _skipped(by_name.get(entry.ifname), wireguard):
            continue
        ip = ipaddr.parse(entry.address.split("%")[0])
        if ipaddr.is_loopback(ip) or ipaddr.is_link_local(ip) or ipaddr.is_multicast(ip) or ipaddr.is_unspecified(ip):
            continue
        if ip[0] == 4 and entry.scope != RT_SCOPE_UNIVERSE:
            continue
        if ip[0] == 6 and entry.flags & _UNUSABLE:
            continue
        onlink.append(ipaddr.prefix_of(ip, entry.prefixlen))
        if ip[0] == 6 and not ipaddr.within(ip, _ULA):
            global_v6 = True  # (documentation prefixes count: test labs use them)
        if ipaddr.within_any(ip, exclude):
            continue
        if ip[0] == 4:
            v4.append(ipaddr.to_text(ip))
            continue
        slash64 = ipaddr.prefix_of(ip, 64)
        if per64.get(slash64, 0) >= 2:
            continue
        per64[slash64] = per64.get(slash64, 0) + 1
        v6.append(ipaddr.to_text(ip))
    return LocalAddresses(tuple((v4 + v6)[:limit]), tuple(onlink), global_v6 and ipv6_default_route)


def read_local(wireguard: str, exclude: Sequence[Network] = (), limit: int = DEFAULT_LIMIT) -> LocalAddresses:
    """Read this network namespace's links, addresses and IPv6 default routes over rtnetlink, and select."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.settimeout(_DUMP_TIMEOUT)
            links = [rtnetlink.link(body) for body in _dump(sock, rtnetlink.RTM_GETLINK, 1)]
            addresses = [record for body in _dump(sock, rtnetlink.RTM_GETADDR, 2)
                         if (record := rtnetlink.address(body)) is not None]
            routes = [rtnetlink.route(body) for body in _dump(sock, rtnetlink.RTM_GETROUTE, 3, socket.AF_INET6)]
    except (OSError, rtnetlink.RtnetlinkError) as error:
        raise LocalAddressError(f"cannot read this host's addresses over netlink: {error}") from None
    names = {record.index: record.name for record in links}
    return select(
        [Address(names.get(a.index, ""), a.address, a.prefixlen, a.scope, a.flags) for a in addresses],
        [Link(record.name, record.kind, bool(record.flags & IFF_UP)) for record in links],
        wireguard, exclude, any(rtnetlink.is_default_route(r) for r in routes), limit,
    )


def _dump(sock: socket.socket, kind: int, sequence: int, family: int = socket.AF_UNSPEC) -> list[bytes]:
    """The bodies of one dump's records, until its NLMSG_DONE."""
    sock.send(rtnetlink.dump_request(kind, sequence, family))
    bodies: list[bytes] = []
    while True:
        for message, seq, body in rtnetlink.messages(sock.recv(_DUMP_BUFFER)):
            if seq != sequence:
                continue  # a late part of an earlier dump
            if message == rtnetlink.NLMSG_DONE:
                return bodies
            bodies.append(body)
