"""Endpoints, an IP address and a UDP port, and their text: the one home of their format.

An ``Endpoint`` is ``(host, port)`` as the socket module gives it: the server's datagram sources,
the kernel's peer endpoints, the candidates the client tries.  As text, an IPv4 endpoint is
``a.b.c.d:port`` and an IPv6 one ``[v6]:port`` (logs, the run record, status, the plan's
reasons).  A dual-stack socket shows IPv4 sources as ``::ffff:a.b.c.d``; ``unmapped`` gives the
plain IPv4 address back.  Pure: no name resolution, no sockets.
"""

from __future__ import annotations

from wgsig import ipaddr

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if not TYPE_CHECKING:  # (in this order, linters see typing's overload)
    from wgsig.plainclass import overload
else:
    from typing import Any, overload

Endpoint = tuple[str, int]

IPV4_MAPPED = "::ffff:"  # prefix of an IPv4 address on a dual-stack (AF_INET6) socket


def unmapped(host: str) -> str:
    """``host`` without the dual-stack prefix: "::ffff:192.0.2.1" -> "192.0.2.1"."""
    return host.removeprefix(IPV4_MAPPED)


@overload
def endpoint_text(endpoint: Endpoint) -> str:
    pass


@overload
def endpoint_text(endpoint: None) -> None:
    pass


@overload
def endpoint_text(endpoint: Endpoint | None) -> str | None:
    pass


def endpoint_text(endpoint: Endpoint | None) -> str | None:
    """"a.b.c.d:port" or "[v6]:port" (None for None)."""
    if endpoint is None:
        return None
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_endpoint(text: Any) -> Endpoint | None:
    """"a.b.c.d:port" or "[v6]:port", as ``endpoint_text`` writes them; None for anything else."""
    if not isinstance(text, str) or ":" not in text:
        return None
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
        ipaddr.parse(host)
    except ValueError:
        return None
    return (host, number) if 0 <= number < 65536 else None


NO_IPV4_ENDPOINT = ("0.0.0.0", 0)  # an X1 server's record of a peer seen only over IPv6: not an endpoint, not damage
_THIS_NETWORK = (4, 0, 8)  # 0.0.0.0/8
_BROADCAST = (4, 0xFFFFFFFF)


def unusable_reason(endpoint: Endpoint) -> str | None:
    """Why no peer can be reached at ``endpoint`` (port 0, an unspecified, broadcast, multicast,
    reserved or scope-less link-local address), or None when it is a plausible peer endpoint."""
    host, port = endpoint
    try:
        address = ipaddr.parse(host)
    except ValueError:
        return f"{host!r} is not an IP address"
    if not 0 < port < 65536:
        return f"port {port}"
    if ipaddr.is_unspecified(address):
        return "an unspecified address"
    if ipaddr.is_multicast(address):
        return "a multicast address"
    if address == _BROADCAST:
        return "the broadcast address"
    if ipaddr.is_link_local(address):
        return "a link-local address (no scope)"
    if address[0] == 4:
        if ipaddr.within(address, _THIS_NETWORK):
            return "an address of 0.0.0.0/8 (this network)"
        if ipaddr.is_reserved(address):
            return "a reserved address (240.0.0.0/4)"
    return None


def parse_port(text: str, name: str = "port") -> int:
    """A UDP port from its text; ValueError naming it as ``name`` otherwise."""
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    return check_port(port, name)


def check_port(port: int, name: str = "port") -> int:
    """``port`` if it is a UDP port one can send to (1-65535); ValueError naming it otherwise."""
    if not 1 <= port <= 65535:
        raise ValueError(f"{name} {port} is out of range 1-65535")
    return port


def split_host_port(text: str, default_port: int | None) -> tuple[str, str]:
    """"host:port", "[v6]:port", "host" (default port); the port as text, checked by the caller.

    ("", "") for a bracket that is not closed or not followed by ":port".
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return "", ""
        port_text = rest[1:] if rest else ""
    elif text.count(":") > 1:
        host, port_text = text, ""  # a bare IPv6 address
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not port_text and default_port is not None:
        port_text = str(default_port)
    return host, port_text
