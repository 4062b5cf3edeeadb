"""WireGuard's generic netlink, the read half: the family lookup and the device dump.

Pure codec (no sockets).  Every kernel-mode run reads its interface twice; loading pyroute2
for that cost most of an idle run (its ``pyroute2.config`` alone runs ``uname -p`` and
``file`` as subprocesses when imported).  Writes still go through pyroute2 (``wgsigc.netlink``),
so only a run that changes a peer loads it.  Layouts from ``linux/genetlink.h`` and
``linux/wireguard.h``; integers in the host's byte order except the endpoint's port (a
``sockaddr``), attributes padded to 4 bytes as in ``wgsig.rtnetlink``.

``device`` decodes one message of the dump into the plain form that
``wgsigc.netlink.merge_device`` joins (keys as their 32 raw bytes): the kernel splits a device
with many peers over several messages, and even one peer's allowed IPs.
"""

from __future__ import annotations

import struct
import sys

from wgsig.host import lightsocket as socket
from wgsig.rtnetlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSGHDR, RTATTR, RtnetlinkError, attributes

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from typing import Any

NETLINK_GENERIC = 16  # linux/netlink.h (the socket module names only NETLINK_ROUTE)
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
WG_GENL_NAME = "wireguard"
WG_GENL_VERSION = 1
WG_CMD_GET_DEVICE = 0

WGDEVICE_A_IFNAME = 2
WGDEVICE_A_PUBLIC_KEY = 4
WGDEVICE_A_LISTEN_PORT = 6
WGDEVICE_A_FWMARK = 7
WGDEVICE_A_PEERS = 8
WGPEER_A_PUBLIC_KEY = 1
WGPEER_A_ENDPOINT = 4
WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL = 5
WGPEER_A_LAST_HANDSHAKE_TIME = 6
WGPEER_A_ALLOWEDIPS = 9
WGALLOWEDIP_A_FAMILY = 1
WGALLOWEDIP_A_IPADDR = 2
WGALLOWEDIP_A_CIDR_MASK = 3
_NESTED = 0x8000  # NLA_F_NESTED

_ORDER = "<" if sys.byteorder == "little" else ">"

GENLMSGHDR = struct.Struct(_ORDER + "BBxx")  # command, version, reserved
_U16 = struct.Struct(_ORDER + "H")
_U32 = struct.Struct(_ORDER + "I")
_TIMESPEC = struct.Struct(_ORDER + "qq")  # __kernel_timespec: seconds, nanoseconds
_SOCKADDR = struct.Struct(_ORDER + "H")  # sa_family; then the port in network order
_PORT = struct.Struct(">H")
_KEY_SIZE = 32


def _attribute(kind: int, value: bytes) -> bytes:
    length = RTATTR.size + len(value)
    return RTATTR.pack(length, kind) + value + bytes(-length % 4)


def _request(family: int, flags: int, sequence: int, command: int, version: int, attrs: bytes) -> bytes:
    body = GENLMSGHDR.pack(command, version) + attrs
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), family, NLM_F_REQUEST | flags, sequence, 0) + body


def family_request(sequence: int, name: str = WG_GENL_NAME) -> bytes:
    """CTRL_CMD_GETFAMILY for ``name``: the kernel answers with its family ID, or ENOENT when no
    module has registered it (``wireguard`` not loaded)."""
    return _request(GENL_ID_CTRL, 0, sequence, CTRL_CMD_GETFAMILY, 1,
                    _attribute(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"))


def family_id(body: bytes) -> int:
    """The family ID in the controller's answer (a message body: genlmsghdr and attributes)."""
    raw = attributes(_sized(body, GENLMSGHDR.size), GENLMSGHDR.size).get(CTRL_ATTR_FAMILY_ID)
    if raw is None or len(raw) != _U16.size:
        raise RtnetlinkError("the generic netlink controller's answer has no family ID")
    return int(_U16.unpack(raw)[0])


def device_request(family: int, sequence: int, ifname: str) -> bytes:
    """WG_CMD_GET_DEVICE for one interface (a dump: the answer may take several messages).
    The kernel refuses it with ENODEV for a missing interface, EOPNOTSUPP for one that is not
    WireGuard and EPERM without CAP_NET_ADMIN."""
    return _request(family, NLM_F_DUMP, sequence, WG_CMD_GET_DEVICE, WG_GENL_VERSION,
                    _attribute(WGDEVICE_A_IFNAME, ifname.encode() + b"\0"))


def attribute_list(data: bytes, offset: int = 0) -> list[tuple[int, bytes]]:
    """Every attribute from ``offset`` on, in order (a nested list repeats its entries' type)."""
    found = []
    while offset + RTATTR.size <= len(data):
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > len(data):
            raise RtnetlinkError(f"truncated attribute ({length} bytes at {offset} of {len(data)})")
        found.append((kind & ~_NESTED, data[offset + RTATTR.size:offset + length]))
        offset += (length + 3) & ~3
    return found


def device(body: bytes) -> dict[str, Any]:
    """One message of the device dump: ``public_key`` (32 bytes), ``listen_port``, ``fwmark``
    (absent from the messages that continue the peer list) and ``peers``."""
    attrs = attributes(_sized(body, GENLMSGHDR.size), GENLMSGHDR.size)
    found: dict[str, Any] = {"peers": [_peer(raw) for _, raw in attribute_list(attrs.get(WGDEVICE_A_PEERS, b""))]}
    key = attrs.get(WGDEVICE_A_PUBLIC_KEY)
    if key is not None and len(key) == _KEY_SIZE and any(key):  # zeros: the kernel's "no private key"
        found["public_key"] = key
    for name, kind, layout in (("listen_port", WGDEVICE_A_LISTEN_PORT, _U16), ("fwmark", WGDEVICE_A_FWMARK, _U32)):
        raw = attrs.get(kind)
        if raw is not None and len(raw) == layout.size:
            found[name] = layout.unpack(raw)[0]
    return found


def _peer(data: bytes) -> dict[str, Any]:
    attrs = attributes(data, 0)
    key = attrs.get(WGPEER_A_PUBLIC_KEY, b"")
    if len(key) != _KEY_SIZE:
        raise RtnetlinkError(f"a WireGuard peer without a {_KEY_SIZE}-byte public key ({len(key)} bytes)")
    allowed = attribute_list(attrs.get(WGPEER_A_ALLOWEDIPS, b""))
    peer: dict[str, Any] = {"public_key": key, "allowed_ips": [_allowed_ip(raw) for _, raw in allowed]}
    endpoint = _endpoint(attrs.get(WGPEER_A_ENDPOINT))
    if endpoint is not None:
        peer["endpoint"] = endpoint
    keepalive = attrs.get(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL)
    if keepalive is not None and len(keepalive) == _U16.size:
        peer["keepalive"] = _U16.unpack(keepalive)[0]
    handshake = attrs.get(WGPEER_A_LAST_HANDSHAKE_TIME)
    if handshake is not None and len(handshake) == _TIMESPEC.size:
        seconds, nanoseconds = _TIMESPEC.unpack(handshake)
        peer["latest_handshake"] = {"tv_sec": seconds, "tv_nsec": nanoseconds}
    return peer


def _endpoint(raw: bytes | None) -> dict[str, Any] | None:
    """A ``sockaddr_in`` or ``sockaddr_in6`` (the scope ID left out, as pyroute2 shows it)."""
    if raw is None or len(raw) < _SOCKADDR.size + _PORT.size:
        return None
    family = _SOCKADDR.unpack_from(raw)[0]
    port = _PORT.unpack_from(raw, 2)[0]
    if family == socket.AF_INET and len(raw) >= 8:
        return {"addr": socket.inet_ntop(socket.AF_INET, raw[4:8]), "port": port}
    if family == socket.AF_INET6 and len(raw) >= 24:
        return {"addr": socket.inet_ntop(socket.AF_INET6, raw[8:24]), "port": port}
    return None


def _allowed_ip(data: bytes) -> str:
    attrs = attributes(data, 0)
    family, raw, mask = (attrs.get(k) for k in (WGALLOWEDIP_A_FAMILY, WGALLOWEDIP_A_IPADDR, WGALLOWEDIP_A_CIDR_MASK))
    if family is None or raw is None or mask is None or len(family) != 2 or len(mask) != 1:
        raise RtnetlinkError("an allowed IP without its family, address or prefix length")
    number = _U16.unpack(family)[0]
    if (number, len(raw)) not in ((socket.AF_INET, 4), (socket.AF_INET6, 16)):
        raise RtnetlinkError(f"an allowed IP of family {number} in {len(raw)} bytes")
    return f"{socket.inet_ntop(number, raw)}/{mask[0]}"


def _sized(body: bytes, size: int) -> bytes:
    if len(body) < size:
        raise RtnetlinkError(f"generic netlink message of {len(body)} bytes, shorter than its {size}-byte header")
    return body
