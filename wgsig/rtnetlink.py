"""The few rtnetlink messages wgsigc reads: dump requests and the link, address and route records.

Pure codec (no sockets).  wgsigc reads this host's links, addresses and default routes once per
run to choose its LAN candidates; pyroute2's ``IPRoute`` does the same but costs most of a run's
start on a small board (0.9 s of a 3 s run in the emulated VM), for three dumps of which a few
attributes are used.  Layouts from ``linux/netlink.h``, ``linux/rtnetlink.h``, ``linux/if_link.h``
and ``linux/if_addr.h``; every integer in the host's byte order (netlink is not a wire protocol:
it never leaves the host), attributes padded to 4 bytes.
"""

from __future__ import annotations

import struct
import sys

from wgsig.host import lightsocket as socket
from wgsig.plainclass import dataclass

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Iterator

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
NLM_F_REQUEST = 0x001
NLM_F_MULTI = 0x002
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH

IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

_ORDER = "<" if sys.byteorder == "little" else ">"
NLMSGHDR = struct.Struct(_ORDER + "IHHII")  # length, type, flags, sequence, port id
IFINFOMSG = struct.Struct(_ORDER + "BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct(_ORDER + "BBBBI")  # family, prefix length, flags (8 bits), scope, index
RTMSG = struct.Struct(_ORDER + "BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTATTR = struct.Struct(_ORDER + "HH")  # length, type
_ERRNO = struct.Struct(_ORDER + "i")

_BODY = {RTM_GETLINK: IFINFOMSG, RTM_GETADDR: IFADDRMSG, RTM_GETROUTE: RTMSG}


class RtnetlinkError(Exception):
    """A reply that is not what a dump returns: truncated, or the kernel's error (``errno``)."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


@dataclass(frozen=True)
class LinkRecord:
    index: int
    name: str
    flags: int  # IFF_*
    kind: str | None  # IFLA_INFO_KIND ("wireguard", "bridge", ...), None for a plain device


@dataclass(frozen=True)
class AddressRecord:
    index: int
    family: int
    address: str  # IFA_LOCAL if present (point-to-point peers put the far end in IFA_ADDRESS), else IFA_ADDRESS
    prefixlen: int
    scope: int
    flags: int  # IFA_FLAGS (32 bits) when present, else the header's 8 bits


@dataclass(frozen=True)
class RouteRecord:
    family: int
    dst_len: int
    table: int
    type: int


def dump_request(kind: int, sequence: int, family: int = socket.AF_UNSPEC) -> bytes:
    """A dump request for ``RTM_GETLINK``, ``RTM_GETADDR`` or ``RTM_GETROUTE``."""
    layout = _BODY[kind]
    fields = (family,) + (0,) * (len(layout.unpack(bytes(layout.size))) - 1)
    body = layout.pack(*fields)
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0) + body


def messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """``(type, sequence, body)`` of each message in one received buffer; NLMSG_ERROR raises."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _flags, sequence, _port = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            raise RtnetlinkError(f"truncated netlink message ({length} bytes at {offset} of {len(data)})")
        body = data[offset + NLMSGHDR.size:offset + length]
        if kind == NLMSG_ERROR:
            errno = -_ERRNO.unpack_from(body)[0] if len(body) >= _ERRNO.size else 0
            if errno:
                raise RtnetlinkError(f"the kernel refused the dump: errno {errno}", errno)
        else:
            yield kind, sequence, body
        offset += (length + 3) & ~3
    if offset < len(data):
        raise RtnetlinkError(f"{len(data) - offset} trailing bytes after the last netlink message")


def done_errno(body: bytes) -> int:
    """The error an NLMSG_DONE carries (a dump the kernel stopped after its first part), 0 if none."""
    return -_ERRNO.unpack_from(body)[0] if len(body) >= _ERRNO.size else 0


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """The attributes from ``offset`` on, by type (the first of each type)."""
    found: dict[int, bytes] = {}
    while offset + RTATTR.size <= len(data):
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > len(data):
            raise RtnetlinkError(f"truncated attribute ({length} bytes at {offset} of {len(data)})")
        found.setdefault(kind & _NLA_TYPE_MASK, data[offset + RTATTR.size:offset + length])
        offset += (length + 3) & ~3
    return found


def _text(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


def link(body: bytes) -> LinkRecord:
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(_sized(body, IFINFOMSG))
    attrs = attributes(body, IFINFOMSG.size)
    kind = None
    if IFLA_LINKINFO in attrs:
        info = attributes(attrs[IFLA_LINKINFO], 0)
        kind = _text(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else None
    return LinkRecord(index, _text(attrs.get(IFLA_IFNAME, b"")), flags, kind)


def address(body: bytes) -> AddressRecord | None:
    """An IPv4 or IPv6 address record; None for other families or one without an address."""
    family, prefixlen, flags8, scope, index = IFADDRMSG.unpack_from(_sized(body, IFADDRMSG))
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = attributes(body, IFADDRMSG.size)
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if raw is None or len(raw) != (4 if family == socket.AF_INET else 16):
        return None
    flags32 = attrs.get(IFA_FLAGS)
    flags = struct.unpack(_ORDER + "I", flags32)[0] if flags32 is not None and len(flags32) == 4 else flags8
    return AddressRecord(index, family, socket.inet_ntop(family, raw), prefixlen, scope, flags)


def route(body: bytes) -> RouteRecord:
    family, dst_len, _src, _tos, table8, _proto, _scope, kind, _flags = RTMSG.unpack_from(_sized(body, RTMSG))
    table32 = attributes(body, RTMSG.size).get(RTA_TABLE)
    table = struct.unpack(_ORDER + "I", table32)[0] if table32 is not None and len(table32) == 4 else table8
    return RouteRecord(family, dst_len, table, kind)


def is_default_route(record: RouteRecord) -> bool:
    """A unicast default route of the main table (what ``ip route show default`` lists)."""
    return record.dst_len == 0 and record.table == RT_TABLE_MAIN and record.type == RTN_UNICAST


def _sized(body: bytes, layout: struct.Struct) -> bytes:
    if len(body) < layout.size:
        raise RtnetlinkError(f"netlink record of {len(body)} bytes, shorter than its {layout.size}-byte header")
    return body
