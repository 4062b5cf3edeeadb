"""Port mapping wire formats: NAT-PMP (RFC 6886) and PCP's MAP opcode (RFC 6887), UDP only.

Pure codecs: bytes in, values out, ``DecodeError`` (wire.DecodeError) for anything malformed.
All integers are big-endian (network order).  The sockets, the gateway and the timing are the
shell's; what to request and when is a pure decision beside ``wgsigc/plan.py``.

NAT-PMP (RFC 6886, section 3), server port 5351:
- external address request ``VER 0, OP 0`` (2 bytes); answer ``VER 0, OP 128, RESULT (2),
  EPOCH (4), ADDRESS (4)`` (12 bytes);
- UDP mapping request ``VER 0, OP 1, RESERVED (2), INTERNAL PORT (2), SUGGESTED EXTERNAL PORT (2),
  LIFETIME (4)`` (12 bytes; lifetime 0 and external port 0 delete); answer ``VER 0, OP 129,
  RESULT (2), EPOCH (4), INTERNAL PORT (2), EXTERNAL PORT (2), LIFETIME (4)`` (16 bytes);
- to a request of another version the server answers ``VER 0, OP 128 + op, RESULT 1, EPOCH``
  (8 bytes): that is how a PCP client learns that the gateway speaks NAT-PMP only.

PCP (RFC 6887, sections 7.1, 7.2, 11.1), the same port, addresses always 16 bytes (IPv4 as
``::ffff:a.b.c.d``):
- request header ``VERSION 2, R 0 | OPCODE (1), RESERVED (2), LIFETIME (4), CLIENT ADDRESS (16)``;
- response header ``VERSION 2, R 1 | OPCODE (1), RESERVED (1), RESULT (1), LIFETIME (4),
  EPOCH (4), RESERVED (12)``;
- MAP payload ``NONCE (12), PROTOCOL (1), RESERVED (3), INTERNAL PORT (2), EXTERNAL PORT (2),
  EXTERNAL ADDRESS (16)`` (suggested in a request, assigned in a response); options may follow a
  response and are skipped (ANNOUNCE and options are not used here).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from typing import NamedTuple

from wgsig.wire import DecodeError

SERVER_PORT = 5351  # NAT-PMP and PCP (RFC 6886 section 3.1, RFC 6887 section 19.1)
UDP = 17  # IANA protocol number, PCP's PROTOCOL field

# --- NAT-PMP ---------------------------------------------------------------------

NATPMP_VERSION = 0
NATPMP_OP_ADDRESS = 0
NATPMP_OP_MAP_UDP = 1
NATPMP_RESPONSE = 128  # a response's OP is 128 + the request's
_PMP_ADDRESS_REQUEST = struct.Struct(">BB")
_PMP_MAP_REQUEST = struct.Struct(">BBHHHI")
_PMP_HEADER = struct.Struct(">BBHI")  # VER OP RESULT EPOCH: every response starts so
_PMP_ADDRESS = struct.Struct(">BBHI4s")
_PMP_MAP = struct.Struct(">BBHIHHI")


class NatPmpResult(enum.IntEnum):
    """RFC 6886 section 3.5."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2  # "refused": the box supports mappings but the user turned them off
    NETWORK_FAILURE = 3  # e.g. the NAT has no external address yet
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


class NatPmpAddress(NamedTuple):
    result: int
    epoch: int  # seconds since the gateway's mapping table started
    address: str  # "0.0.0.0" unless result is SUCCESS


class NatPmpMapping(NamedTuple):
    result: int
    epoch: int
    internal_port: int
    external_port: int
    lifetime: int  # seconds granted (0: deleted)


def natpmp_address_request() -> bytes:
    return _PMP_ADDRESS_REQUEST.pack(NATPMP_VERSION, NATPMP_OP_ADDRESS)


def natpmp_map_request(internal_port: int, external_port: int, lifetime: int) -> bytes:
    """A UDP mapping request; lifetime 0 with external port 0 deletes the mapping (3.4)."""
    _check_port(internal_port)
    _check_port(external_port)
    _check_u32(lifetime)
    return _PMP_MAP_REQUEST.pack(NATPMP_VERSION, NATPMP_OP_MAP_UDP, 0, internal_port, external_port, lifetime)


def _pmp_header(data: bytes, op: int) -> tuple[int, int]:
    """RESULT and EPOCH of a NAT-PMP response to ``op``."""
    if len(data) < _PMP_HEADER.size:
        raise DecodeError(f"NAT-PMP response of {len(data)} bytes, at least {_PMP_HEADER.size}")
    version, got_op, result, epoch = _PMP_HEADER.unpack_from(data)
    if version != NATPMP_VERSION:
        raise DecodeError(f"NAT-PMP response of version {version}")
    if got_op != NATPMP_RESPONSE + op:
        raise DecodeError(f"NAT-PMP response with opcode {got_op}, expected {NATPMP_RESPONSE + op}")
    return result, epoch


def decode_natpmp_address(data: bytes) -> NatPmpAddress:
    result, epoch = _pmp_header(data, NATPMP_OP_ADDRESS)
    if result != NatPmpResult.SUCCESS and len(data) < _PMP_ADDRESS.size:
        return NatPmpAddress(result, epoch, "0.0.0.0")  # an error answer may stop after the header
    if len(data) != _PMP_ADDRESS.size:
        raise DecodeError(f"NAT-PMP address response of {len(data)} bytes, expected {_PMP_ADDRESS.size}")
    address = _PMP_ADDRESS.unpack(data)[4]
    return NatPmpAddress(result, epoch, str(ipaddress.IPv4Address(address)))


def decode_natpmp_map(data: bytes) -> NatPmpMapping:
    result, epoch = _pmp_header(data, NATPMP_OP_MAP_UDP)
    if result != NatPmpResult.SUCCESS and len(data) < _PMP_MAP.size:
        return NatPmpMapping(result, epoch, 0, 0, 0)
    if len(data) != _PMP_MAP.size:
        raise DecodeError(f"NAT-PMP mapping response of {len(data)} bytes, expected {_PMP_MAP.size}")
    _v, _op, _r, _e, internal, external, lifetime = _PMP_MAP.unpack(data)
    return NatPmpMapping(result, epoch, internal, external, lifetime)


# --- PCP -------------------------------------------------------------------------

PCP_VERSION = 2
PCP_OP_MAP = 1
PCP_RESPONSE_BIT = 0x80  # R: set in responses
PCP_MAX_SIZE = 1100  # RFC 6887 section 7: no PCP message is longer
NONCE_SIZE = 12
_PCP_REQUEST_HEADER = struct.Struct(">BBHI16s")
_PCP_RESPONSE_HEADER = struct.Struct(">BBBBII12s")
_PCP_MAP = struct.Struct(">12sB3sHH16s")
PCP_MAP_SIZE = _PCP_RESPONSE_HEADER.size + _PCP_MAP.size  # 60, request and response alike


class PcpResult(enum.IntEnum):
    """RFC 6887 section 7.4."""

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13


class PcpMapping(NamedTuple):
    result: int
    lifetime: int  # granted; on an error, how long the client should wait before retrying
    epoch: int
    nonce: bytes
    protocol: int
    internal_port: int
    external_port: int
    external_address: str  # IPv4 as "a.b.c.d", IPv6 as text


def _pcp_address(host: str) -> bytes:
    """16 bytes: IPv6 as is, IPv4 as ::ffff:a.b.c.d (RFC 6887 section 5)."""
    address = ipaddress.ip_address(host)
    if address.version == 4:
        return ipaddress.IPv6Address(f"::ffff:{address}").packed
    return address.packed


def _pcp_host(packed: bytes) -> str:
    address = ipaddress.IPv6Address(packed)
    return str(address.ipv4_mapped) if address.ipv4_mapped is not None else str(address)


def pcp_map_request(client: str, nonce: bytes, internal_port: int, external_port: int, lifetime: int,
                    external_address: str = "0.0.0.0") -> bytes:
    """A MAP request for UDP from ``client`` (this host's address towards the gateway).

    ``nonce`` (12 bytes) identifies the mapping: renewals and the deletion (lifetime 0) must
    repeat it (section 11.1).  The suggested external address 0.0.0.0 (as ::ffff:0.0.0.0) means
    "any IPv4 address"."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"a PCP mapping nonce has {NONCE_SIZE} bytes, not {len(nonce)}")
    _check_port(internal_port)
    _check_port(external_port)
    _check_u32(lifetime)
    header = _PCP_REQUEST_HEADER.pack(PCP_VERSION, PCP_OP_MAP, 0, lifetime, _pcp_address(client))
    body = _PCP_MAP.pack(nonce, UDP, bytes(3), internal_port, external_port, _pcp_address(external_address))
    return header + body


def pcp_answered_with_natpmp(data: bytes) -> bool:
    """True for a NAT-PMP server's "unsupported version" answer to a PCP request (RFC 6887
    section 9: the client then falls back to NAT-PMP)."""
    return (len(data) >= _PMP_HEADER.size and data[0] == NATPMP_VERSION
            and int.from_bytes(data[2:4], "big") == NatPmpResult.UNSUPPORTED_VERSION)


def decode_pcp_map(data: bytes) -> PcpMapping:
    """A MAP response.  DecodeError for anything that is not one (a request, another opcode,
    another version, wrong sizes); an error result with a short or absent payload is returned
    with an empty one (section 7.2: error responses need not repeat it in full)."""
    if len(data) > PCP_MAX_SIZE or len(data) % 4:
        raise DecodeError(f"PCP message of {len(data)} bytes (a multiple of 4, at most {PCP_MAX_SIZE})")
    if len(data) < _PCP_RESPONSE_HEADER.size:
        raise DecodeError(f"PCP response of {len(data)} bytes, at least {_PCP_RESPONSE_HEADER.size}")
    version, r_opcode, _reserved, result, lifetime, epoch, _tail = _PCP_RESPONSE_HEADER.unpack_from(data)
    if version != PCP_VERSION:
        raise DecodeError(f"PCP response of version {version}")
    if not r_opcode & PCP_RESPONSE_BIT:
        raise DecodeError("a PCP request, not a response (R bit clear)")
    if r_opcode & ~PCP_RESPONSE_BIT != PCP_OP_MAP:
        raise DecodeError(f"PCP response to opcode {r_opcode & ~PCP_RESPONSE_BIT}, not MAP")
    if len(data) < PCP_MAP_SIZE:
        if result == PcpResult.SUCCESS:
            raise DecodeError(f"PCP MAP response of {len(data)} bytes, at least {PCP_MAP_SIZE}")
        return PcpMapping(result, lifetime, epoch, b"", 0, 0, 0, "0.0.0.0")
    nonce, protocol, _r, internal, external, address = _PCP_MAP.unpack_from(data, _PCP_RESPONSE_HEADER.size)
    return PcpMapping(result, lifetime, epoch, nonce, protocol, internal, external, _pcp_host(address))


def _check_port(port: int) -> None:
    if not 0 <= port < 1 << 16:
        raise ValueError(f"port {port} is out of range")


def _check_u32(value: int) -> None:
    if not 0 <= value < 1 << 32:
        raise ValueError(f"lifetime {value} is out of range")
