"""The socket filter's program (wgsig/sockfilter.py) and the lengths it keeps (wgsig.server.request_shapes).

Pure code.  The byte vectors are ``struct sock_filter`` arrays written out by hand from
linux/filter.h's opcodes.  The behaviour tests run the programs in ``run_filter`` below, a small
classic-BPF interpreter of the instructions used: a fake of the kernel's, which
tests/test_shedding.py checks against the real one.
"""

from __future__ import annotations

import os
import random
import struct

import pytest

from wgsig import x1
from wgsig.client import GroupCredentials, build_request
from wgsig.label import label_from_ns
from wgsig.server import GroupConfig, RequestShapes, Server, request_shapes
from wgsig.sockfilter import (
    MAX_INSTRUCTIONS,
    MAX_STEERED_SOURCES,
    SKF_NET_OFF,
    UDP_HEADER_SIZE,
    encode,
    instructions,
    request_filter,
    source_steering,
)
from wgsig.wire import CLFLG_HIGH

SECRET = bytes(range(32))
PLAIN = GroupConfig(7, (SECRET,))
ENCRYPTED = GroupConfig(8, (SECRET,), encrypt=True)


def vector(*lines: str) -> bytes:
    return bytes.fromhex("".join(line.split("#")[0].replace(" ", "") for line in lines))


# One instruction per line: CODE (u16 LE) JT JF K (u32 LE).
PLAIN_PROGRAM = vector(
    "8000 00 00 00000000",  # ld len
    "3500 00 02 5a000000",  # jge #90 (82 + 8), else to the next range
    "2500 01 00 5a000000",  # jgt #90: next range
    "0500 00 00 0e000000",  # ja keep
    "3500 00 0c 7e000000",  # jge #126 (118 + 8), else drop
    "2500 0b 00 6e010000",  # jgt #366 (358 + 8): drop
    "3000 00 00 34000000",  # ldb [52]: CLFLG's high byte (44 + 8)
    "4500 00 09 02000000",  # jset #XR, else drop
    "3000 00 00 5a000000",  # ldb [90]: XTYPE
    "1500 00 07 51000000",  # jeq #0x51, else drop
    "3000 00 00 5b000000",  # ldb [91]: XVER
    "1500 00 05 01000000",  # jeq #1, else drop
    "8000 00 00 00000000",  # ld len
    "0700 00 00 00000000",  # tax
    "2800 00 00 5c000000",  # ldh [92]: XLEN
    "0400 00 00 7e000000",  # add #126
    "1d00 01 00 00000000",  # jeq x: keep, else drop
    "0600 00 00 00000000",  # ret #0: drop
    "0600 00 00 ffffffff",  # ret #-1: keep
)
ENCRYPTED_PROGRAM = vector(
    "8000 00 00 00000000",  # ld len
    "3500 00 01 6a000000",  # jge #106 (98 + 8), else drop
    "0500 00 00 01000000",  # ja keep
    "0600 00 00 00000000",  # ret #0
    "0600 00 00 ffffffff",  # ret #-1
)
BOTH_PROGRAM = vector(
    "8000 00 00 00000000",  # ld len
    "3500 00 02 5a000000",  # jge #90
    "2500 01 00 5a000000",  # jgt #90
    "0500 00 00 03000000",  # ja keep
    "3500 00 01 6a000000",  # jge #106
    "0500 00 00 01000000",  # ja keep
    "0600 00 00 00000000",  # ret #0
    "0600 00 00 ffffffff",  # ret #-1
)


def program_of(groups: list[GroupConfig], byteorder: str = "little") -> bytes:
    shapes = request_shapes(groups)
    return request_filter(shapes.sizes, shapes.extended, byteorder)


def test_request_shapes_of_each_kind_of_server() -> None:
    assert request_shapes([PLAIN]) == RequestShapes(((82, 82), (118, 358)), (118, 358))
    assert request_shapes([ENCRYPTED]) == RequestShapes(((98, None),), None)
    assert request_shapes([PLAIN, ENCRYPTED]) == RequestShapes(((82, 82), (98, None)), None)
    assert Server([PLAIN, ENCRYPTED], random_bytes=os.urandom).request_shapes() == request_shapes([ENCRYPTED, PLAIN])


def test_byte_vectors() -> None:
    assert program_of([PLAIN]) == PLAIN_PROGRAM
    assert program_of([ENCRYPTED]) == ENCRYPTED_PROGRAM
    assert program_of([PLAIN, ENCRYPTED]) == BOTH_PROGRAM
    # Big-endian hosts: the same fields, each in that order.
    assert program_of([ENCRYPTED], "big") == vector(
        "0080 00 00 00000000", "0035 00 01 0000006a", "0005 00 00 00000001", "0006 00 00 00000000",
        "0006 00 00 ffffffff",
    )


def test_ranges_must_be_sorted_and_disjoint() -> None:
    for bad in ([(100, 200), (150, 300)], [(100, 200), (50, 60)], [(10, 5)], [(0, 70000)], [(98, None), (200, 300)]):
        with pytest.raises(ValueError, match="sorted, disjoint"):
            instructions(bad)


def run_filter(program: bytes, payload: bytes) -> bool:
    """Whether the kernel would keep ``payload`` (a fake of its classic-BPF interpreter, for the
    instructions sockfilter.py emits; out-of-bounds loads drop, as in the kernel)."""
    return run_program(program, bytes(UDP_HEADER_SIZE) + payload) != 0


def run_program(program: bytes, data: bytes, network: bytes = b"") -> int:
    """What a classic-BPF program returns for ``data`` (what it loads at offsets from 0) with
    ``network`` as the IP header (what it loads at SKF_NET_OFF + n); an out-of-bounds load returns
    0, as in the kernel.  Only the instructions sockfilter.py emits."""
    code = [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]
    a = x = pc = 0
    while True:
        op, jt, jf, k = code[pc]
        pc += 1
        if op == 0x80:
            a = len(data)
        elif op in (0x30, 0x28, 0x20):
            size = {0x30: 1, 0x28: 2, 0x20: 4}[op]
            offset = k - (1 << 32) if k & 0x80000000 else k
            source = data
            if offset < 0:
                assert offset >= SKF_NET_OFF, "only SKF_NET_OFF loads are emitted"
                source, offset = network, offset - SKF_NET_OFF
            if offset + size > len(source):
                return 0
            a = int.from_bytes(source[offset : offset + size], "big")
        elif op == 0x07:
            x = a
        elif op == 0x04:
            a = (a + k) & 0xFFFFFFFF
        elif op == 0x54:
            a &= k
        elif op == 0x05:
            pc += k
        elif op in (0x15, 0x1D, 0x25, 0x35, 0x45):
            operand = x if op == 0x1D else k
            taken = {0x15: a == operand, 0x1D: a == operand, 0x25: a > operand, 0x35: a >= operand,
                     0x45: bool(a & operand)}[op]
            pc += jt if taken else jf
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"opcode {op:#x} not emitted by sockfilter.py")


def real_requests(credentials: GroupCredentials) -> list[bytes]:
    """Requests of every shape the client sends: base CLFLGs, X1 with 0 to 30 items, encrypted pads."""
    items = [x1.Item(x1.ItemType.HOST4, f"192.168.1.{i}", 51820) for i in range(30)]
    six = [x1.Item(x1.ItemType.HOST6, f"2001:db8::{i}", 51820) for i in range(12)]
    out = []
    for repeat in range(40 if credentials.encrypt else 1):  # encrypted: random pads of 0-32 bytes
        label = label_from_ns(1_800_000_000_000_000_000 + repeat)
        for clflg in (0, 1, 2, 3, 0x100, 0x101, 0x103):
            out.append(build_request(credentials, bytes([9]) * 32, label, clflg, os.urandom))
        for n in (0, 1, 5, 30):
            out.append(build_request(credentials, bytes([9]) * 32, label, 0x100, os.urandom, items[:n]))
        out.append(build_request(credentials, bytes([9]) * 32, label, 0x100, os.urandom, six))
    return out


def test_every_request_the_client_sends_is_kept() -> None:
    program = program_of([PLAIN])
    requests = real_requests(GroupCredentials(7, SECRET))
    assert {len(r) for r in requests} >= {82, 118, 358}
    assert all(run_filter(program, r) for r in requests)
    mixed = program_of([PLAIN, ENCRYPTED])
    encrypted = real_requests(GroupCredentials(8, SECRET, encrypt=True))
    assert max(len(r) for r in encrypted) > 358
    for data in requests + encrypted:
        assert run_filter(mixed, data)
    assert all(run_filter(program_of([ENCRYPTED]), r) for r in encrypted)


def test_impossible_datagrams_are_dropped_and_the_engine_agrees() -> None:
    """Every length 0-1,500 with random bytes: what the filter drops, the engine rejects too."""
    rng = random.Random(12)
    for groups in ([PLAIN], [ENCRYPTED], [PLAIN, ENCRYPTED]):
        program = program_of(groups)
        server = Server(groups, random_bytes=os.urandom)
        kept = set()
        for size in range(1501):
            data = bytearray(rng.randbytes(size))
            if size >= 50:
                data[46:50] = (7).to_bytes(4, "big")  # the plain group's number
            if run_filter(program, bytes(data)):
                kept.add(size)
            else:
                assert server.receive_datagram(bytes(data), ("192.0.2.1", 1), 1.8e9)[0] == []
        encrypted = any(g.encrypt for g in groups)
        plain = any(not g.encrypt for g in groups)
        assert kept == ({82} if plain else set()) | (set(range(98, 1501)) if encrypted else set())


def test_plain_x1_lengths_need_the_block_header() -> None:
    """118-358 bytes on a plain-only server: kept only with XR, XTYPE, XVER and a matching XLEN."""
    program = program_of([PLAIN])
    request = build_request(GroupCredentials(7, SECRET), bytes([9]) * 32, label_from_ns(1_800_000_000_000_000_000),
                            0x100, os.urandom, [x1.Item(x1.ItemType.HOST4, "10.0.0.1", 1)])
    assert run_filter(program, request)
    for offset, value in ((CLFLG_HIGH, 0x00), (82, 0x52), (83, 2), (85, request[85] + 1)):
        broken = bytearray(request)
        broken[offset] = value
        assert not run_filter(program, bytes(broken)), offset
    assert not run_filter(program, request + b"\0")
    assert not run_filter(program, request[:-1])


# --- the known sources' reuseport program ------------------------------------------------------

# source_steering([0x01020304, 0x0A000001], known=0, unknown=1), written out by hand.
STEERING_PROGRAM = vector(
    "3000 00 00 0000f0ff",  # ldb [SKF_NET_OFF + 0]: IP version and header length
    "5400 00 00 f0000000",  # and #0xf0
    "1500 01 00 40000000",  # jeq #0x40 (IPv4): on
    "0600 00 00 01000000",  # ret #1: not IPv4, unknown
    "2000 00 00 0c00f0ff",  # ld [SKF_NET_OFF + 12]: the source address
    "1500 02 00 04030201",  # jeq #1.2.3.4: known
    "1500 01 00 0100000a",  # jeq #10.0.0.1: known
    "0600 00 00 01000000",  # ret #1
    "0600 00 00 00000000",  # ret #0
)


def ipv4_header(source: int) -> bytes:
    return bytes([0x45, 0]) + bytes(10) + source.to_bytes(4, "big") + bytes([127, 0, 0, 1])


def ipv6_header(source: bytes) -> bytes:
    return bytes([0x60]) + bytes(7) + source + bytes(15) + b"\x01"


def test_steering_byte_vector() -> None:
    assert encode(source_steering([0x0A000001, 0x01020304, 0x01020304], 0, 1)) == STEERING_PROGRAM


def test_steering_sends_exactly_the_known_sources_to_their_socket() -> None:
    rng = random.Random(12)
    for count in (0, 1, 7, 8, 9, 17, 100, 257, 1000, MAX_STEERED_SOURCES):
        known = rng.sample(range(1 << 32), count)
        program = encode(source_steering(known, 0, 1))
        assert len(program) // 8 <= MAX_INSTRUCTIONS
        probes = known + [a + 1 for a in known] + [a - 1 for a in known] + [0, 0xFFFFFFFF]
        probes += rng.sample(range(1 << 32), 200)
        for source in probes[:3000]:
            if 0 <= source <= 0xFFFFFFFF:
                expected = 0 if source in set(known) else 1
                assert run_program(program, b"payload", ipv4_header(source)) == expected, (count, source)


def test_steering_indexes_are_the_callers() -> None:
    program = encode(source_steering([0x7F000102], known=1, unknown=0))
    assert run_program(program, b"", ipv4_header(0x7F000102)) == 1
    assert run_program(program, b"", ipv4_header(0x7F000103)) == 0


def test_ipv6_sources_are_unknown() -> None:
    program = encode(source_steering([0x7F000001, 0], 0, 1))
    assert run_program(program, b"x", ipv6_header(bytes(15) + b"\x01")) == 1
    assert run_program(program, b"x", ipv6_header(b"\x7f\x00\x00\x01" + bytes(12))) == 1


def test_steering_limits() -> None:
    with pytest.raises(ValueError, match="at most"):
        source_steering(range(MAX_STEERED_SOURCES + 1), 0, 1)
    with pytest.raises(ValueError, match="32-bit"):
        source_steering([1 << 32], 0, 1)
    with pytest.raises(ValueError, match="index"):
        source_steering([1], 0, 1 << 16)
