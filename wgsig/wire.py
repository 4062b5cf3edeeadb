"""Wire layout and codec: requests, responses and records, with their HMACs.

This module is the one home of the base layout: the sizes, the named fields (``REQUEST_*``,
``RECORD_*``, ``RESPONSE_*``) and the CLFLG rule (``CLFLG_UPDATE``).  Sizes and offsets are the
C programs' (github alex14fr/wgsig); every integer is big-endian.  X1's blocks, which follow the
base datagrams, are laid out in ``wgsig/x1.py``; the encryption envelope around them in
``wgsig/envelope.py``.

Two codecs share that layout:

- the reference codec, ``encode_request``/``decode_request``, ``encode_responses``/
  ``decode_response`` and ``Record``: one field at a time, readable; the client uses it, and the
  tests compare the server's answers with it;
- the server's hot path, which does not build these objects: ``wgsig/server.py`` reads a request's
  fields straight from the datagram with the slices below, and ``wgsig/table.py`` keeps each group
  as its encoded answer (``encode_endpoint``, ``response_tail``, ``encode_slot_answer``).

Encoding and decoding are pure; authentication uses HMAC-SHA256 (``wgsig/hmac256.py``) compared in
constant time.
"""

from __future__ import annotations

import struct

from wgsig import hmac256, ipaddr
from wgsig.label import LABEL_SIZE, is_valid_label
from wgsig.plainclass import dataclass

TYPE_CHECKING = False  # not typing's: an idle wgsigc run loads no typing module (issue 16)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

KEY_SIZE = 32
SECRET_SIZE = 32
MAC_SIZE = 32

# Request: PEER_ID (32) LABEL (12) CLFLG (2) GROUP (4) HMAC (32).
REQUEST_SIZE = 82
REQUEST_SIGNED = 50  # bytes covered by the request HMAC
REQUEST_PEER_ID = slice(0, 32)
REQUEST_LABEL = slice(32, 44)
REQUEST_CLFLG_AT = 44
REQUEST_CLFLG = slice(44, 46)
CLFLG_HIGH = REQUEST_CLFLG_AT  # big-endian: the byte of X1's bits (x1.XA_BYTE, x1.XR_BYTE)
CLFLG_LOW = REQUEST_CLFLG_AT + 1  # the byte of the base bits: the only one the C programs read
REQUEST_GROUP = slice(46, 50)
REQUEST_TAG = slice(50, 82)

# Record: PEER_ID (32) ENDPOINT (6: IPv4 address XORed with IP_MASK, port) LABEL (12).
RECORD_SIZE = 50
RECORD_ENDPOINT_AT = 32
RECORD_LABEL_AT = 38
RECORD_PEER_ID = slice(0, RECORD_ENDPOINT_AT)
RECORD_ENDPOINT = slice(RECORD_ENDPOINT_AT, RECORD_LABEL_AT)
RECORD_LABEL = slice(RECORD_LABEL_AT, RECORD_SIZE)

# Response datagram: 10 RECORDS (500) SVEXT (2) N_OTHER (2) GROUP (4) HMAC (32).
RECORDS_PER_DATAGRAM = 10
RECORDS_SIZE = RECORD_SIZE * RECORDS_PER_DATAGRAM
RESPONSE_SIZE = 540
RESPONSE_SIGNED = 508  # bytes covered by the response HMAC
RESPONSE_SVEXT = slice(500, 502)

# CLFLG's base bits (the low two; X1 adds bits in the high byte, see wgsig/x1.py).
NO_ENDPOINT_UPDATE = 1
NO_LABEL_UPDATE = 2
CLFLG_BASE = NO_ENDPOINT_UPDATE | NO_LABEL_UPDATE


# What a request asks of its group's table (the values of CLFLG_UPDATE).  Plain ints, not an
# enum: the server compares one per request, and an enum member lookup costs more than the compare.
STORE_ENDPOINT = 0  # store the source endpoint and the label
STORE_LABEL = 1  # store only the label of a known peer
STORE_NOTHING = 2  # store nothing: no label is stored, so the request's replays are answered too

# The CLFLG rule, as the C server applies it: CLFLG_UPDATE[peer known][clflg & CLFLG_BASE].
# 0 stores endpoint and label; 2 ("keep label, move endpoint") is treated as 0; 1 stores the label
# of a known peer and nothing for an unknown one; 3 stores nothing.  A table, not a function: the
# server reads it once per request.
CLFLG_UPDATE: tuple[tuple[int, ...], tuple[int, ...]] = (
    (STORE_ENDPOINT, STORE_NOTHING, STORE_ENDPOINT, STORE_NOTHING),  # peer not in the table
    (STORE_ENDPOINT, STORE_LABEL, STORE_ENDPOINT, STORE_NOTHING),  # peer in the table
)


# IPv4 addresses travel XORed with this mask, byte for byte.
IP_MASK = 0x322DCCAC

EMPTY_RECORD = bytes(RECORD_SIZE)
ZERO_KEY = bytes(KEY_SIZE)

_REQUEST_TAIL = struct.Struct(">HI")  # CLFLG, GROUP
_RESPONSE_TAIL = struct.Struct(">HHI")  # SVEXT, N_OTHER, GROUP
_ENDPOINT = struct.Struct(">IH")


class DecodeError(ValueError):
    """A datagram that is not a well-formed, authentic protocol message."""


def mac(secret: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` under ``secret``."""
    return hmac256.digest(secret, data)


def mac_ok(secret: bytes, signed: bytes, tag: bytes) -> bool:
    """Constant-time check of an HMAC tag."""
    return hmac256.verify(secret, signed, tag)


# --- requests ---------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A decoded 82-byte request (its HMAC is checked separately)."""

    peer_id: bytes
    label: bytes
    clflg: int
    group: int
    tag: bytes


def encode_request(peer_id: bytes, label: bytes, clflg: int, group: int, secret: bytes) -> bytes:
    """The 82-byte cleartext request, HMAC included."""
    if len(peer_id) != KEY_SIZE or len(label) != LABEL_SIZE:
        raise ValueError("peer ID must be 32 bytes and label 12 bytes")
    signed = peer_id + label + _REQUEST_TAIL.pack(clflg, group)
    return signed + mac(secret, signed)


def decode_request(data: bytes) -> Request:
    """Split an 82-byte request into its fields (no authentication)."""
    if len(data) != REQUEST_SIZE:
        raise DecodeError(f"request is {len(data)} bytes, expected {REQUEST_SIZE}")
    clflg, group = _REQUEST_TAIL.unpack_from(data, REQUEST_CLFLG_AT)
    return Request(data[REQUEST_PEER_ID], data[REQUEST_LABEL], clflg, group, data[REQUEST_TAG])


# --- records ----------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One peer's entry in a group table."""

    peer_id: bytes
    ip: str
    port: int
    label: bytes

    @property
    def endpoint(self) -> str:
        return f"{self.ip}:{self.port}"


def encode_endpoint(ip_packed: bytes, port: int) -> bytes:
    """The 6 endpoint bytes of a record: scrambled IPv4 address, then port."""
    return _ENDPOINT.pack(int.from_bytes(ip_packed, "big") ^ IP_MASK, port)


def encode_record(record: Record) -> bytes:
    """The 50 bytes of a record."""
    version, value = ipaddr.parse(record.ip)
    if version != 4:
        raise ValueError(f"a record holds an IPv4 address, not {record.ip!r}")
    return record.peer_id + _ENDPOINT.pack(value ^ IP_MASK, record.port) + record.label


def decode_record(data: bytes) -> Record | None:
    """A record, or None for an empty (all-zero) slot."""
    if data == EMPTY_RECORD:
        return None
    scrambled, port = _ENDPOINT.unpack_from(data, RECORD_ENDPOINT_AT)
    ip = ipaddr.to_text((4, scrambled ^ IP_MASK))
    return Record(bytes(data[RECORD_PEER_ID]), ip, port, bytes(data[RECORD_LABEL]))


# --- responses --------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """A decoded, authenticated 540-byte response datagram."""

    records: tuple[Record | None, ...]
    svext: int
    n_other: int
    group: int


def encode_response(records_bytes: bytes, n_other: int, group: int, secret: bytes, svext: int = 0) -> bytes:
    """One 540-byte response datagram from 500 bytes of records (SVEXT 0 unless X1 was asked for)."""
    if len(records_bytes) != RECORDS_SIZE:
        raise ValueError("a response carries exactly ten records")
    signed = records_bytes + _RESPONSE_TAIL.pack(svext, n_other, group)
    return signed + mac(secret, signed)


def response_tail(n_other: int, group: int, svext: int = 0) -> bytes:
    """SVEXT, N_OTHER and GROUP: the 8 bytes after the records of a response."""
    return _RESPONSE_TAIL.pack(svext, n_other, group)


def encode_responses(records: Sequence[Record | None], group: int, secret: bytes) -> list[bytes]:
    """A whole answer: ten records per datagram, at least one datagram."""
    slots = [EMPTY_RECORD if r is None else encode_record(r) for r in records]
    return encode_slot_answer(slots, group, secret)


def encode_slot_answer(slots: Sequence[bytes], group: int, secret: bytes) -> list[bytes]:
    """Answer datagrams for a table given as encoded 50-byte slots."""
    count = max(1, -(-len(slots) // RECORDS_PER_DATAGRAM))
    return [encode_chunk(slots, i, count - 1, group, secret) for i in range(count)]


def encode_chunk(slots: Sequence[bytes], index: int, n_other: int, group: int, secret: bytes) -> bytes:
    """Datagram ``index`` of an answer: slots ``10*index`` to ``10*index+9``."""
    start = index * RECORDS_PER_DATAGRAM
    chunk = list(slots[start : start + RECORDS_PER_DATAGRAM])
    chunk.extend([EMPTY_RECORD] * (RECORDS_PER_DATAGRAM - len(chunk)))
    return encode_response(b"".join(chunk), n_other, group, secret)


def decode_response(data: bytes, secrets: Iterable[bytes]) -> Response:
    """Authenticate and decode a 540-byte response under any of ``secrets``."""
    if len(data) != RESPONSE_SIZE:
        raise DecodeError(f"response is {len(data)} bytes, expected {RESPONSE_SIZE}")
    signed, tag = data[:RESPONSE_SIGNED], data[RESPONSE_SIGNED:]
    if not any(mac_ok(secret, signed, tag) for secret in secrets):
        raise DecodeError("response HMAC does not verify")
    svext, n_other, group = _RESPONSE_TAIL.unpack_from(data, RECORDS_SIZE)
    records = []
    for offset in range(0, RECORDS_SIZE, RECORD_SIZE):
        record = decode_record(data[offset : offset + RECORD_SIZE])
        if record is not None and not is_valid_label(record.label):
            raise DecodeError(f"record with invalid label {record.label.hex()}")
        records.append(record)
    return Response(tuple(records), svext, n_other, group)
