"""The NAT-PMP and PCP codecs (wgsig/portmap.py): byte vectors from the RFCs' layouts, round
trips, and malformed input. Pure code, no fakes needed.

Every vector is written out field by field from RFC 6886 section 3 and RFC 6887 sections 7 and
11.1, so a codec that drifted from the RFC's layout fails here.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wgsig import portmap
from wgsig.wire import DecodeError

NONCE = bytes.fromhex("0102030405060708090a0b0c")


def test_natpmp_address_request_is_version_0_opcode_0() -> None:
    assert portmap.natpmp_address_request() == bytes.fromhex("00 00")  # VER 0, OP 0 (3.2)


def test_natpmp_address_response() -> None:
    data = bytes.fromhex(
        "00"  # VER 0
        "80"  # OP 128 + 0
        "0000"  # RESULT 0 (success)
        "00000e10"  # EPOCH 3600 s since the table started
        "c633640b"  # external address 198.51.100.11
    )
    assert portmap.decode_natpmp_address(data) == portmap.NatPmpAddress(0, 3600, "198.51.100.11")


def test_natpmp_udp_mapping_request() -> None:
    assert portmap.natpmp_map_request(51820, 51820, 7200) == bytes.fromhex(
        "00"  # VER 0
        "01"  # OP 1: map UDP
        "0000"  # reserved
        "ca6c"  # internal port 51820
        "ca6c"  # suggested external port 51820
        "00001c20"  # requested lifetime 7200 s (the RFC's recommendation)
    )


def test_natpmp_delete_request_has_lifetime_and_external_port_0() -> None:
    assert portmap.natpmp_map_request(51820, 0, 0) == bytes.fromhex("00 01 0000 ca6c 0000 00000000")


def test_natpmp_udp_mapping_response() -> None:
    data = bytes.fromhex(
        "00"  # VER 0
        "81"  # OP 128 + 1
        "0000"  # RESULT 0
        "0000003c"  # EPOCH 60
        "ca6c"  # internal port 51820
        "9c40"  # mapped external port 40000
        "00000e10"  # lifetime granted 3600 s
    )
    assert portmap.decode_natpmp_map(data) == portmap.NatPmpMapping(0, 60, 51820, 40000, 3600)


def test_natpmp_error_response_may_stop_after_the_header() -> None:
    # RESULT 2: not authorized / refused; only VER OP RESULT EPOCH
    mapping = portmap.decode_natpmp_map(bytes.fromhex("00 81 0002 0000003c"))
    assert mapping.result == portmap.NatPmpResult.NOT_AUTHORIZED and mapping.lifetime == 0


def test_pcp_map_request_for_udp_from_an_ipv4_client() -> None:
    request = portmap.pcp_map_request("10.1.0.2", NONCE, 51820, 51820, 7200)
    assert request == bytes.fromhex(
        "02"  # VERSION 2
        "01"  # R 0, OPCODE 1 (MAP)
        "0000"  # reserved
        "00001c20"  # requested lifetime 7200
        "00000000000000000000ffff0a010002"  # client address ::ffff:10.1.0.2
        "0102030405060708090a0b0c"  # mapping nonce
        "11"  # protocol 17 (UDP)
        "000000"  # reserved
        "ca6c"  # internal port 51820
        "ca6c"  # suggested external port 51820
        "00000000000000000000ffff00000000"  # suggested external address ::ffff:0.0.0.0 (any IPv4)
    )
    assert len(request) == 60


def test_pcp_map_response() -> None:
    data = bytes.fromhex(
        "02"  # VERSION 2
        "81"  # R 1, OPCODE 1
        "00"  # reserved
        "00"  # RESULT 0 (SUCCESS)
        "00000014"  # lifetime granted 20 s
        "00000064"  # epoch 100
        "000000000000000000000000"  # reserved (96 bits)
        "0102030405060708090a0b0c"  # nonce, as sent
        "11" "000000"  # UDP, reserved
        "ca6c"  # internal port 51820
        "9c41"  # assigned external port 40001
        "00000000000000000000ffffc000020b"  # assigned external address ::ffff:192.0.2.11
    )
    assert portmap.decode_pcp_map(data) == portmap.PcpMapping(0, 20, 100, NONCE, 17, 51820, 40001, "192.0.2.11")


def test_pcp_error_response_without_payload() -> None:
    data = bytes.fromhex("02 81 00 08 0000001e 00000064") + bytes(12)  # NO_RESOURCES, retry after 30 s
    mapping = portmap.decode_pcp_map(data)
    assert mapping.result == portmap.PcpResult.NO_RESOURCES and mapping.lifetime == 30


def test_natpmp_server_answer_to_a_pcp_request_is_recognised() -> None:
    # RFC 6886 3.5 / RFC 6887 9: VER 0, OP 128 + 1, RESULT 1 (unsupported version), EPOCH
    answer = bytes.fromhex("00 81 0001 00000005")
    assert portmap.pcp_answered_with_natpmp(answer)
    with pytest.raises(DecodeError):
        portmap.decode_pcp_map(answer)
    assert not portmap.pcp_answered_with_natpmp(bytes.fromhex("02 81 00 00 00000014 00000064") + bytes(12))


@pytest.mark.parametrize("data", [
    b"", b"\x00", bytes.fromhex("01 80 0000 00000000 c633640b"),  # NAT-PMP version 1
    bytes.fromhex("00 81 0000 00000000 ca6c ca6c 00001c20"),  # a mapping answer to the address request
    bytes.fromhex("00 80 0000 00000000 c63364"),  # cut short
])
def test_malformed_natpmp_address_responses(data: bytes) -> None:
    with pytest.raises(DecodeError):
        portmap.decode_natpmp_address(data)


@pytest.mark.parametrize("data", [
    portmap.pcp_map_request("10.1.0.2", NONCE, 1, 1, 1),  # a request (R bit clear)
    bytes.fromhex("02 82 00 00 00000014 00000064") + bytes(48),  # PEER opcode
    bytes.fromhex("03 81 00 00 00000014 00000064") + bytes(48),  # version 3
    bytes.fromhex("02 81 00 00 00000014 00000064") + bytes(12),  # success without payload
    bytes(1104), bytes(62),  # too long; not a multiple of 4
])
def test_malformed_pcp_responses(data: bytes) -> None:
    with pytest.raises(DecodeError):
        portmap.decode_pcp_map(data)


ports = st.integers(0, 65535)
lifetimes = st.integers(0, (1 << 32) - 1)


@given(ports, ports, lifetimes, st.integers(0, (1 << 32) - 1), st.integers(0, 5))
def test_natpmp_mapping_round_trip(internal: int, external: int, lifetime: int, epoch: int, result: int) -> None:
    request = portmap.natpmp_map_request(internal, external, lifetime)
    # a server's answer: OP + 128, RESULT and EPOCH in place of RESERVED
    answer = bytes((0, 129)) + result.to_bytes(2, "big") + epoch.to_bytes(4, "big") + request[4:]
    assert portmap.decode_natpmp_map(answer) == portmap.NatPmpMapping(result, epoch, internal, external, lifetime)


@given(st.binary(min_size=12, max_size=12), ports, ports, lifetimes, st.ip_addresses(v=4))
def test_pcp_map_round_trip(nonce: bytes, internal: int, external: int, lifetime: int, address: object) -> None:
    request = portmap.pcp_map_request("10.1.0.2", nonce, internal, external, lifetime, str(address))
    answer = bytes((2, 0x81, 0, 0)) + request[4:8] + bytes(4) + bytes(12) + request[24:]
    mapping = portmap.decode_pcp_map(answer)
    assert (mapping.nonce, mapping.internal_port, mapping.external_port, mapping.lifetime,
            mapping.external_address) == (nonce, internal, external, lifetime, str(address))


@given(st.binary(max_size=1200))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    for decode in (portmap.decode_natpmp_address, portmap.decode_natpmp_map, portmap.decode_pcp_map):
        try:
            decode(data)
        except DecodeError:
            pass
    portmap.pcp_answered_with_natpmp(data)
