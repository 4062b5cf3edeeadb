"""Sending a UDP datagram from a port another socket owns (WireGuard's), and fwmarked sockets.

When the interface is up, the kernel's WireGuard socket holds the listen port,
so an ordinary socket cannot bind it.  A raw IPPROTO_UDP socket can still send
a datagram with that source port: the NAT maps it exactly as it maps
WireGuard's own traffic, which is the mapping the server must record.  The
server's answer goes to WireGuard, which drops it; the table is fetched
separately.  Needs CAP_NET_RAW.
"""

from __future__ import annotations

import errno
import struct

from wgsig.host import lightsocket as socket
from wgsigc.exitcodes import CapabilityMissing

SO_MARK = getattr(socket, "SO_MARK", 36)
IPV6_CHECKSUM = getattr(socket, "IPV6_CHECKSUM", 7)


def udp_header(source: tuple[str, int], destination: tuple[str, int], payload: bytes) -> bytes:
    """The 8-byte UDP header with its checksum over the IPv4 pseudo-header (RFC 768)."""
    length = 8 + len(payload)
    pseudo = socket.inet_aton(source[0]) + socket.inet_aton(destination[0]) + struct.pack(">BBH", 0, 17, length)
    header = struct.pack(">HHHH", source[1], destination[1], length, 0)
    checksum = _checksum(pseudo + header + payload)
    return struct.pack(">HHHH", source[1], destination[1], length, checksum or 0xFFFF)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def set_mark(sock: socket.socket, fwmark: int) -> None:
    """Mark a signalling socket as WireGuard marks its own traffic, so policy routing of a
    full tunnel does not send signalling into the tunnel.  Needs CAP_NET_ADMIN."""
    if not fwmark:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, fwmark)
    except PermissionError:
        raise CapabilityMissing(f"cannot set fwmark {fwmark:#x} on a socket: wgsigc needs CAP_NET_ADMIN") from None


def udp_socket(fwmark: int, family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        set_mark(sock, fwmark)
    except BaseException:
        sock.close()
        raise
    return sock


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def source_address(destination: tuple[str, int], fwmark: int) -> str:
    """The local address the kernel would send from (routing honours the mark)."""
    with udp_socket(fwmark, _family(destination[0])) as probe:
        probe.connect(destination)
        return str(probe.getsockname()[0])


def send_from_port(source_port: int, destination: tuple[str, int], payload: bytes, fwmark: int) -> None:
    """One UDP datagram from ``source_port`` to ``destination`` (IPv4 or IPv6) through a raw socket."""
    local = source_address(destination, fwmark)
    family = _family(destination[0])
    try:
        raw = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_UDP)
    except PermissionError:
        raise CapabilityMissing(
            f"cannot open a raw socket to register from WireGuard's port {source_port}: wgsigc needs CAP_NET_RAW"
        ) from None
    with raw:
        # Only sending: keep the receive queue from collecting every UDP datagram of the host.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        set_mark(raw, fwmark)
        target: tuple[str | int, ...]
        if family == socket.AF_INET6:
            # The kernel fills the UDP checksum over the IPv6 pseudo-header (offset 6 of the header).
            raw.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 6)
            header = struct.pack(">HHHH", source_port, destination[1], 8 + len(payload), 0)
            datagram, target = header + payload, (destination[0], 0, 0, 0)
        else:
            datagram = udp_header((local, source_port), destination, payload) + payload
            target = (destination[0], 0)
        try:
            raw.sendto(datagram, target)
        except OSError as error:
            if error.errno == errno.EPERM:
                raise CapabilityMissing(f"sending from port {source_port} was refused (a firewall?)") from None
            raise


def port_is_free(port: int) -> socket.socket | None:
    """A UDP socket bound to ``port`` if nobody holds it (WireGuard is down), else None."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("0.0.0.0", port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            return None
        raise
    return sock
