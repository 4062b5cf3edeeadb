"""Extension X1: negotiated, authenticated blocks after the unchanged base datagrams.

The layout and its reasons are in ``doc/x1.md``; in short:

- A request may carry a *request block* after its 82 bytes (CLFLG bit XR); an
  answer datagram may carry an *answer block* after its 540 bytes (SVEXT bit XB).
  The base bytes are never changed, so a C program (or wgsig 0.1.0) that reads
  only them sees a valid datagram; blocks go only to a side that asked for them.
- A block is ``XTYPE (1) XVER (1) XLEN (2) BODY (XLEN) XMAC (32)``, XMAC being
  HMAC-SHA256 under the *extension key* of everything before it, base datagram
  included.  The extension key is derived from the group secret, so an extended
  datagram is never a valid base datagram of another kind (an 82 + 458 byte
  request would otherwise pass a C client's answer check).
- Bodies are lists of address items, ``TYPE (1) LEN (1) VALUE (LEN)``; answer
  bodies prefix each with the record slot it belongs to.  Unknown types are
  skipped (later versions may add some); known types with a wrong length make
  the whole block invalid.

Everything here is pure: bytes in, bytes or values out.
"""

from __future__ import annotations

import struct

from wgsig import hmac256, ipaddr
from wgsig.wire import (
    MAC_SIZE,
    RECORDS_PER_DATAGRAM,
    REQUEST_CLFLG,
    REQUEST_SIZE,
    RESPONSE_SIZE,
    RESPONSE_SVEXT,
    DecodeError,
)

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import NamedTuple, TypeVar

    _T = TypeVar("_T")

# --- negotiation bits ----------------------------------------------------------

# CLFLG, high byte (the C programs and wgsig 0.1.0 read only the base bits, wire.CLFLG_BASE).
XA = 0x0100  # "I read X1 answers": the server may set SVEXT and add answer blocks
XR = 0x0200  # "a request block follows byte 82"
# The same bits within that byte (wire.CLFLG_HIGH), for the server, which reads one byte.
XA_BYTE = XA >> 8
XR_BYTE = XR >> 8

# SVEXT: zero in every answer to a request without XA (so C clients see today's bytes).
SV_XB = 0x0001  # this datagram carries an answer block
SV_XR_OK = 0x0002  # the server stores request blocks: send them
SV_V6 = 0x0004  # the server records IPv6 sources: register over IPv6 too
SV_RELAY = 0x0008  # the server allocates relays: RELAY_REQ items are honoured (doc/x1.md, "Relays")

# --- block framing -------------------------------------------------------------

REQUEST_BLOCK = 0x51  # "Q"
ANSWER_BLOCK = 0x41  # "A"
VERSION = 1
# Block header, at the block's start: XTYPE (1) XVER (1) XLEN (2).
XTYPE_AT = 0
XVER_AT = 1
XLEN_AT = 2
BLOCK_HEADER_SIZE = 4
BLOCK_OVERHEAD = BLOCK_HEADER_SIZE + MAC_SIZE
MAX_REQUEST_BODY = 240
# 576 + 640 = 1,216 bytes of clear answer; with the 16-byte envelope header every datagram
# stays within 1,232 bytes (the IPv6 minimum MTU of 1,280 minus IPv6 and UDP headers).
MAX_ANSWER_BODY = 640
REQUESTER_SLOT = 0xFF  # an answer entry about the requester itself (datagram 0 only)

_XLEN = struct.Struct(">H")
_KEY_LABEL = b"wgsig extension v1"


# Item: TYPE (1) LEN (1) VALUE (LEN); VALUE is PORT (2) then the masked address.
ITEM_HEADER_SIZE = 2
VALUE_PORT = slice(0, 2)
VALUE_ADDRESS = slice(2, None)
ITEM_ADDRESS = slice(ITEM_HEADER_SIZE + 2, None)  # VALUE_ADDRESS within the whole item


class ItemType:
    """Address items.  Each VALUE is PORT (2) then the address XORed with the record mask.

    Plain integers (an IntEnum's values, without the enum module: about 6 % of an idle wgsigc run)."""

    HOST4 = 0x01  # a LAN address of the peer, with WireGuard's port (request and answer)
    HOST6 = 0x02
    MAPPED4 = 0x03  # a port forward or mapping the peer advertises (request and answer)
    MAPPED6 = 0x04
    OBS6 = 0x05  # answer only: the IPv6 source the server saw from that peer's WireGuard port
    OBS = 0x06  # answer only, requester slot: this request's source as the server saw it (v4 or v6)
    RELAY = 0x08  # answer only: the relay endpoint (v4 or v6) the requester uses for that slot's peer
    RELAY_REQ = 0x10  # request only: "relay me to this peer", VALUE the peer's 32-byte ID (not masked)


# Types a client may announce; the server ignores others in a request (it alone observes).
ANNOUNCED_TYPES = frozenset({ItemType.HOST4, ItemType.HOST6, ItemType.MAPPED4, ItemType.MAPPED6})
_V4_TYPES = frozenset({ItemType.HOST4, ItemType.MAPPED4})
_V6_TYPES = frozenset({ItemType.HOST6, ItemType.MAPPED6, ItemType.OBS6})
_EITHER_TYPES = frozenset({ItemType.OBS, ItemType.RELAY})  # 6 or 18 value bytes: IPv4 or IPv6
_V4_LEN, _V6_LEN = 6, 18
RELAY_REQ_LEN = 32  # a peer ID
MAX_RELAY_REQUESTS = 4  # RELAY_REQ items a server reads from one request block
_MASK4 = bytes.fromhex("322dccac")
_MASK6 = _MASK4 * 4


if TYPE_CHECKING:  # the types; at run time the same tuples written out (typing is not loaded)
    class Item(NamedTuple):
        type: int
        host: str
        port: int

    class Entry(NamedTuple):
        slot: int
        item: Item
else:  # what collections.namedtuple makes, without loading collections (an idle wgsigc run: issue 16)
    class Item(tuple):
        """One address item: a type and an endpoint (host as text, IPv6 without brackets)."""

        __slots__ = ()

        def __new__(cls, type: int, host: str, port: int) -> Item:
            return tuple.__new__(cls, (type, host, port))

        def __getnewargs__(self) -> tuple[object, ...]:  # copy and pickle
            return tuple(self)

        def __repr__(self) -> str:
            return f"Item(type={self[0]!r}, host={self[1]!r}, port={self[2]!r})"

        type = property(lambda self: self[0])
        host = property(lambda self: self[1])
        port = property(lambda self: self[2])

    class Entry(tuple):
        """An answer entry: the slot of the record it belongs to (0-9, or REQUESTER_SLOT) and an item."""

        __slots__ = ()

        def __new__(cls, slot: int, item: Item) -> Entry:
            return tuple.__new__(cls, (slot, item))

        def __getnewargs__(self) -> tuple[object, ...]:
            return tuple(self)

        def __repr__(self) -> str:
            return f"Entry(slot={self[0]!r}, item={self[1]!r})"

        slot = property(lambda self: self[0])
        item = property(lambda self: self[1])


def extension_key(secret: bytes) -> bytes:
    """The key of every XMAC of a group: HMAC-SHA256(group secret, "wgsig extension v1")."""
    return hmac256.digest(secret, _KEY_LABEL)


# --- items -----------------------------------------------------------------------


def _xor(data: bytes, mask: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, mask, strict=True))


def encode_item(item: Item) -> bytes:
    """TYPE, LEN, VALUE of one item."""
    address = ipaddr.parse(item.host)
    if not 0 <= item.port < 1 << 16:
        raise ValueError(f"port {item.port} is out of range")
    if item.type in _EITHER_TYPES:
        six = address[0] == 6
    elif item.type in _V4_TYPES:
        six = False
    elif item.type in _V6_TYPES:
        six = True
    else:
        raise ValueError(f"unknown item type {item.type}")
    if (address[0] == 6) != six:
        raise ValueError(f"item type {item.type} does not take address {item.host}")
    packed = _xor(ipaddr.packed(address), _MASK6 if six else _MASK4)
    return bytes((item.type, len(packed) + 2)) + item.port.to_bytes(2, "big") + packed  # LEN counts PORT


def _decode_value(kind: int, value: bytes) -> Item | None:
    """The item of a known type, None for an unknown one (and for RELAY_REQ, which is no address:
    ``relay_requests``); DecodeError for a bad length."""
    if kind == ItemType.RELAY_REQ:
        if len(value) != RELAY_REQ_LEN:
            raise DecodeError(f"X1 item type {kind} has {len(value)} value bytes")
        return None
    if kind in _V4_TYPES or (kind in _EITHER_TYPES and len(value) == _V4_LEN):
        six = False
    elif kind in _V6_TYPES or kind in _EITHER_TYPES:
        six = True
    else:
        return None
    if len(value) != (_V6_LEN if six else _V4_LEN):
        raise DecodeError(f"X1 item type {kind} has {len(value)} value bytes")
    port = int.from_bytes(value[VALUE_PORT], "big")
    host = ipaddr.to_text(ipaddr.unpacked(_xor(value[VALUE_ADDRESS], _MASK6 if six else _MASK4)))
    return Item(kind, host, port)


def decode_items(body: bytes) -> list[Item]:
    """A request body: items in order, unknown types skipped."""
    items = []
    for _slot, item in _walk(body, with_slot=False):
        if item is not None:
            items.append(item)
    return items


def decode_entries(body: bytes) -> list[Entry]:
    """An answer body: entries in order, unknown types skipped."""
    return [Entry(slot, item) for slot, item in _walk(body, with_slot=True) if item is not None]


def _walk(body: bytes, with_slot: bool) -> Iterable[tuple[int, Item | None]]:
    offset, end = 0, len(body)
    head = ITEM_HEADER_SIZE + 1 if with_slot else ITEM_HEADER_SIZE
    while offset < end:
        if offset + head > end:
            raise DecodeError("X1 block body ends inside an item header")
        slot = body[offset] if with_slot else 0
        kind, size = body[offset + head - 2], body[offset + head - 1]
        start = offset + head
        if start + size > end:
            raise DecodeError("X1 block body ends inside an item value")
        if with_slot and slot >= RECORDS_PER_DATAGRAM and slot != REQUESTER_SLOT:
            raise DecodeError(f"X1 answer entry for slot {slot}")
        yield slot, _decode_value(kind, body[start : start + size])
        offset = start + size


# --- blocks ----------------------------------------------------------------------


def _block(base: bytes, xtype: int, body: bytes, xkey: bytes) -> bytes:
    signed = base + bytes((xtype, VERSION)) + _XLEN.pack(len(body)) + body
    return signed + hmac256.digest(xkey, signed)


def encode_relay_request(peer_id: bytes) -> bytes:
    """A RELAY_REQ item: TYPE 0x10, LEN 32, the peer's ID as it is (an ID is public)."""
    if len(peer_id) != RELAY_REQ_LEN:
        raise ValueError("a RELAY_REQ names a 32-byte peer ID")
    return bytes((ItemType.RELAY_REQ, RELAY_REQ_LEN)) + peer_id


def relay_requests(body: bytes) -> list[bytes]:
    """The peer IDs of the RELAY_REQ items of a request body, in order, without repeats, at most
    MAX_RELAY_REQUESTS (DecodeError as ``decode_items``)."""
    found: list[bytes] = []
    offset, end = 0, len(body)
    decode_items(body)  # the same validity rules for the whole body
    while offset + ITEM_HEADER_SIZE <= end:
        kind, size = body[offset], body[offset + 1]
        start = offset + ITEM_HEADER_SIZE
        if kind == ItemType.RELAY_REQ:
            peer = bytes(body[start : start + size])
            if peer not in found and len(found) < MAX_RELAY_REQUESTS:
                found.append(peer)
        offset = start + size
    return found


def request_body(clear: bytes) -> bytes:
    """The body of the (verified) request block of an extended request's clear payload."""
    return clear[REQUEST_SIZE + BLOCK_HEADER_SIZE : -MAC_SIZE]


def encode_request_block(request: bytes, items: Sequence[Item], xkey: bytes, relay_to: Sequence[bytes] = ()) -> bytes:
    """An 82-byte request (CLFLG with XR) followed by its block of ``items``, then a RELAY_REQ
    for each peer ID of ``relay_to``."""
    if len(request) != REQUEST_SIZE:
        raise ValueError("a request block follows an 82-byte request")
    if not int.from_bytes(request[REQUEST_CLFLG], "big") & XR:
        raise ValueError("a request with a block must say so in CLFLG (XR)")
    body = b"".join(encode_item(item) for item in items) + b"".join(encode_relay_request(p) for p in relay_to)
    if len(body) > MAX_REQUEST_BODY:
        raise ValueError(f"request block body is {len(body)} bytes, at most {MAX_REQUEST_BODY}")
    return _block(request, REQUEST_BLOCK, body, xkey)


def request_extended_size(clear: bytes) -> int | None:
    """The clear size the 82-byte request at the start of ``clear`` and its block take, read from
    the block header (4 bytes after the request); None if that header is not a request block's."""
    return _extended_size(clear, REQUEST_SIZE, REQUEST_BLOCK, MAX_REQUEST_BODY)


def open_request_block(clear: bytes, xkey: bytes) -> list[Item]:
    """The items of an extended request whose clear payload is exactly request + block.

    The caller has checked the base HMAC; a bad frame or XMAC raises DecodeError.
    """
    if request_extended_size(clear) != len(clear):
        raise DecodeError("X1 request block is missing or its length is wrong")
    return _open(clear, REQUEST_SIZE, xkey, decode_items)


def encode_answer_block(datagram: bytes, entries: Sequence[Entry], xkey: bytes) -> bytes:
    """A 540-byte answer datagram (SVEXT with XB) followed by its block of ``entries``."""
    if len(datagram) != RESPONSE_SIZE:
        raise ValueError("an answer block follows a 540-byte answer datagram")
    if not int.from_bytes(datagram[RESPONSE_SVEXT], "big") & SV_XB:
        raise ValueError("a datagram with a block must say so in SVEXT (XB)")
    body = b"".join(bytes((e.slot,)) + encode_item(e.item) for e in entries)
    return encode_answer_block_raw(datagram, body, xkey)


def encode_answer_block_raw(datagram: bytes, body: bytes, xkey: bytes) -> bytes:
    """The same from an already encoded body (the server keeps announced items encoded)."""
    if len(body) > MAX_ANSWER_BODY:
        raise ValueError(f"answer block body is {len(body)} bytes, at most {MAX_ANSWER_BODY}")
    return _block(datagram, ANSWER_BLOCK, body, xkey)


def answer_extended_size(clear: bytes) -> int | None:
    """As ``request_extended_size``, for an answer datagram and its block."""
    return _extended_size(clear, RESPONSE_SIZE, ANSWER_BLOCK, MAX_ANSWER_BODY)


def _extended_size(clear: bytes, base: int, xtype: int, max_body: int) -> int | None:
    """Base datagram plus block, from the block header at ``base``; None if it is not an ``xtype`` one."""
    if len(clear) < base + BLOCK_HEADER_SIZE:
        return None
    if clear[base + XTYPE_AT] != xtype or clear[base + XVER_AT] != VERSION:
        return None
    body = _XLEN.unpack_from(clear, base + XLEN_AT)[0]
    if body > max_body:
        return None
    return base + BLOCK_OVERHEAD + int(body)


def open_answer_block(clear: bytes, xkey: bytes) -> list[Entry]:
    """The entries of an answer datagram whose clear payload is exactly datagram + block (the
    caller has checked the base HMAC and SVEXT's XB); DecodeError otherwise."""
    if answer_extended_size(clear) != len(clear):
        raise DecodeError("X1 answer block is missing or its length is wrong")
    return _open(clear, RESPONSE_SIZE, xkey, decode_entries)


def _open(clear: bytes, base: int, xkey: bytes, decode: Callable[[bytes], list[_T]]) -> list[_T]:
    signed, tag = clear[:-MAC_SIZE], clear[-MAC_SIZE:]
    if not hmac256.verify(xkey, signed, tag):
        raise DecodeError("X1 block XMAC does not verify")
    return decode(signed[base + BLOCK_HEADER_SIZE :])
