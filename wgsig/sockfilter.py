"""Classic BPF socket filters that keep only datagrams shaped like a request.

A program built here is attached to the server's UDP socket with ``SO_ATTACH_FILTER`` (by
``wgsigd/shedding.py``); the kernel then drops a datagram of an impossible length before it is
queued, so a flood of them costs the server no receive-buffer room and no Python work.  Which
lengths are possible is the engine's rule (``wgsig.server.request_shapes``); this module turns it
into instructions (``struct sock_filter``, linux/filter.h).  Within the lengths of a plain X1
request the program also checks what the engine checks first (CLFLG's XR bit, the request
block's XTYPE and XVER, and that XLEN gives exactly the datagram's length, ``wgsig/x1.py``), so
random bytes of those lengths are dropped in the kernel too.

A second kind of program, ``source_steering``, is a reuseport program (``SO_ATTACH_REUSEPORT_CBPF``)
for a server with two sockets on one port: it returns the index, in the port's ``SO_REUSEPORT``
group, of the socket a datagram goes to, by its source address (known sources first).

Everything here is pure: ranges or addresses in, program bytes out.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from wgsig import x1
from wgsig.wire import CLFLG_HIGH, REQUEST_SIZE

# A UDP socket's filter sees the datagram from its UDP header on: the length it loads (BPF_LEN)
# is the payload's plus 8, and payload byte N is at offset N + 8 (measured on Linux 6.x; it is
# what udp_queue_rcv_one_skb's sk_filter_trim_cap(sk, skb, sizeof(struct udphdr)) implies).
UDP_HEADER_SIZE = 8
MAX_PAYLOAD = 0xFFFF - UDP_HEADER_SIZE  # the UDP length field counts the header too
MAX_INSTRUCTIONS = 4096  # BPF_MAXINSNS

# Opcodes (linux/bpf_common.h): class | size | mode, or class | operation | source.
LD_LEN = 0x00 | 0x00 | 0x80  # BPF_LD | BPF_W | BPF_LEN: A = length
LDB_ABS = 0x00 | 0x10 | 0x20  # BPF_LD | BPF_B | BPF_ABS: A = byte at k
LDH_ABS = 0x00 | 0x08 | 0x20  # BPF_LD | BPF_H | BPF_ABS: A = big-endian half-word at k
LDW_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS: A = big-endian word at k
AND_K = 0x04 | 0x50 | 0x00  # BPF_ALU | BPF_AND | BPF_K: A &= k
TAX = 0x07 | 0x00  # BPF_MISC | BPF_TAX: X = A
ADD_K = 0x04 | 0x00 | 0x00  # BPF_ALU | BPF_ADD | BPF_K: A += k
JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K: A == k ? jt : jf
JEQ_X = 0x05 | 0x10 | 0x08  # BPF_JMP | BPF_JEQ | BPF_X: A == X ? jt : jf
JA = 0x05 | 0x00  # BPF_JMP | BPF_JA: skip k instructions
JGT_K = 0x05 | 0x20 | 0x00  # A > k ? jt : jf
JGE_K = 0x05 | 0x30 | 0x00  # A >= k ? jt : jf
JSET_K = 0x05 | 0x40 | 0x00  # A & k ? jt : jf
RET_K = 0x06 | 0x00  # BPF_RET | BPF_K: keep k bytes (0: drop)
# A negative offset from SKF_NET_OFF (linux/filter.h) loads from the network header (the IP header)
# wherever the program's data starts: a reuseport program's data starts after the UDP header
# (reuseport_select_sock's run_bpf_filter pulls it), so the source address is only reachable so.
SKF_NET_OFF = -0x100000
KEEP_ALL = 0xFFFFFFFF
DROP = 0

# One instruction: CODE (u16) JT (u8) JF (u8) K (u32), in the host's byte order.
_INSTRUCTION = {"little": struct.Struct("<HBBI"), "big": struct.Struct(">HBBI")}
INSTRUCTION_SIZE = 8

SizeRange = tuple[int, int | None]  # payload lengths lo..hi, both included; hi None: no upper bound
Instruction = tuple[int, int, int, int]  # code, jt, jf, k

_KEEP, _DROP, _NEXT = "keep", "drop", "next"  # jump targets, resolved by _assemble
_Symbolic = tuple[int, int | str, int | str, int | str]


def instructions(sizes: Sequence[SizeRange], extended: SizeRange | None = None) -> list[Instruction]:
    """The program keeping datagrams whose payload length is in one of ``sizes``, dropping the rest.

    ``sizes`` must be sorted and disjoint.  If one of them is ``extended`` (the lengths only a
    plain X1 request has), a datagram of those lengths is kept only if CLFLG has XR, the request
    block's XTYPE and XVER are right and 118 + XLEN is its length.
    """
    _check(sizes)
    program: list[_Symbolic] = [(LD_LEN, 0, 0, 0)]
    for lo, hi in sizes:
        block: list[_Symbolic] = [(JGE_K, 0, _NEXT, lo + UDP_HEADER_SIZE)]
        if hi is not None:
            block.append((JGT_K, _NEXT, 0, hi + UDP_HEADER_SIZE))
        if (lo, hi) == extended:
            block.extend(_plain_extended_checks())
        else:
            block.append((JA, 0, 0, _KEEP))
        program.extend(_resolve_next(block))
    program.append((RET_K, 0, 0, DROP))
    program.append((RET_K, 0, 0, KEEP_ALL))
    if len(program) > MAX_INSTRUCTIONS:
        raise ValueError(f"a filter of {len(sizes)} ranges exceeds {MAX_INSTRUCTIONS} instructions")
    return _assemble(program)


def _plain_extended_checks() -> list[_Symbolic]:
    """What Server._plain_extended reads: XR in CLFLG, then the block header's type, version and length."""
    at = UDP_HEADER_SIZE + REQUEST_SIZE
    return [
        (LDB_ABS, 0, 0, UDP_HEADER_SIZE + CLFLG_HIGH),
        (JSET_K, 0, _DROP, x1.XR_BYTE),
        (LDB_ABS, 0, 0, at + x1.XTYPE_AT),
        (JEQ_K, 0, _DROP, x1.REQUEST_BLOCK),
        (LDB_ABS, 0, 0, at + x1.XVER_AT),
        (JEQ_K, 0, _DROP, x1.VERSION),
        (LD_LEN, 0, 0, 0),
        (TAX, 0, 0, 0),
        (LDH_ABS, 0, 0, at + x1.XLEN_AT),
        (ADD_K, 0, 0, UDP_HEADER_SIZE + REQUEST_SIZE + x1.BLOCK_OVERHEAD),
        (JEQ_X, _KEEP, _DROP, 0),
    ]


def _resolve_next(block: list[_Symbolic]) -> list[_Symbolic]:
    """Turn ``next`` (the instruction after this block) into relative offsets."""
    out: list[_Symbolic] = []
    for i, (code, jt, jf, k) in enumerate(block):
        to_next = len(block) - i - 1
        out.append((code, to_next if jt == _NEXT else jt, to_next if jf == _NEXT else jf, k))
    return out


def _assemble(program: list[_Symbolic]) -> list[Instruction]:
    """Resolve ``drop`` and ``keep`` to the last two instructions (``ret drop``, ``ret keep``)."""
    drop_at, keep_at = len(program) - 2, len(program) - 1
    out: list[Instruction] = []
    for i, (code, jt, jf, k) in enumerate(program):
        targets = {_DROP: drop_at - i - 1, _KEEP: keep_at - i - 1}
        t = targets[jt] if isinstance(jt, str) else jt
        f = targets[jf] if isinstance(jf, str) else jf
        if max(t, f) > 0xFF:
            raise ValueError("filter too long for 8-bit jump offsets")
        out.append((code, t, f, targets[k] if isinstance(k, str) else k))
    return out


def encode(program: Sequence[Instruction], byteorder: str = "little") -> bytes:
    """The ``struct sock_filter`` array of ``program`` (``byteorder``: the host's, sys.byteorder)."""
    layout = _INSTRUCTION[byteorder]
    return b"".join(layout.pack(*instruction) for instruction in program)


def request_filter(sizes: Sequence[SizeRange], extended: SizeRange | None = None, byteorder: str = "little") -> bytes:
    """The encoded program of ``instructions(sizes, extended)``."""
    return encode(instructions(sizes, extended), byteorder)


def _check(sizes: Sequence[SizeRange]) -> None:
    previous = -1
    for lo, hi in sizes:
        if lo <= previous or (hi is not None and hi < lo) or max(lo, hi or 0) > MAX_PAYLOAD:
            raise ValueError(f"length ranges must be sorted, disjoint and within 0-{MAX_PAYLOAD}: {list(sizes)}")
        previous = MAX_PAYLOAD if hi is None else hi


# --- known sources first: the reuseport program --------------------------------------------------

IPV4_VERSION_AT, IPV4_SOURCE_AT = 0, 12  # in the IPv4 header: version (high nibble), source address
# Sorted addresses are searched in a binary tree whose leaves compare up to this many one by one
# (about 1.4 instructions per address: 2,779 for 2,000; about 8 + 2 log2(N / 8) run per datagram).
STEERING_LEAF = 8
# The most addresses one program holds (BPF_MAXINSNS is 4,096): the server keeps the most
# recently seen when it knows more.
MAX_STEERED_SOURCES = 2000


def source_steering(addresses: Sequence[int], known: int, unknown: int) -> list[Instruction]:
    """The reuseport program returning ``known`` for a datagram from an IPv4 source in ``addresses``
    (32-bit numbers, as ``int.from_bytes(inet_aton(ip), "big")``), ``unknown`` for any other.

    An IPv6 datagram (on a dual-stack socket) is from an unknown source; an IPv4 one arriving at an
    IPv6 socket has its IPv4 header: the program reads the IP header, not the socket's address.
    """
    if max(known, unknown) > 0xFFFF or min(known, unknown) < 0:
        raise ValueError("a socket index is 0..65535")
    unique = sorted(set(addresses))
    if unique and (unique[0] < 0 or unique[-1] > 0xFFFFFFFF):
        raise ValueError("IPv4 addresses are 32-bit numbers")
    if len(unique) > MAX_STEERED_SOURCES:
        raise ValueError(f"at most {MAX_STEERED_SOURCES} addresses fit in one program, not {len(unique)}")
    head: list[Instruction] = [
        (LDB_ABS, 0, 0, _net(IPV4_VERSION_AT)),
        (AND_K, 0, 0, 0xF0),
        (JEQ_K, 1, 0, 0x40),  # IPv4: on to the search
        (RET_K, 0, 0, unknown),
        (LDW_ABS, 0, 0, _net(IPV4_SOURCE_AT)),
    ]
    program = head + _search(unique, known, unknown)
    if len(program) > MAX_INSTRUCTIONS:  # not reached with MAX_STEERED_SOURCES; a guard
        raise ValueError(f"a steering program of {len(unique)} addresses exceeds {MAX_INSTRUCTIONS} instructions")
    return program


def _net(offset: int) -> int:
    """The 32-bit k of a load ``offset`` bytes into the network header."""
    return (SKF_NET_OFF + offset) & 0xFFFFFFFF


def _search(addresses: list[int], known: int, unknown: int) -> list[Instruction]:
    """A subtree with A holding the source: returns locally, never jumps out of itself."""
    if len(addresses) <= STEERING_LEAF:
        # jeq a1, known; ... jeq aN, known; ret unknown; ret known
        count = len(addresses)
        leaf: list[Instruction] = [(JEQ_K, count - i, 0, a) for i, a in enumerate(addresses)]
        return [*leaf, (RET_K, 0, 0, unknown), (RET_K, 0, 0, known)]
    middle = len(addresses) // 2
    left = _search(addresses[:middle], known, unknown)
    right = _search(addresses[middle:], known, unknown)
    if len(left) <= 0xFF:
        return [(JGE_K, len(left), 0, addresses[middle]), *left, *right]
    # too far for an 8-bit offset: jge to a ja over the left subtree
    return [(JGE_K, 0, 1, addresses[middle]), (JA, 0, 0, len(left)), *left, *right]
