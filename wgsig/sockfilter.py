"""Classic BPF socket filters that keep only datagrams shaped like a request.

A program built here is attached to the server's UDP socket with ``SO_ATTACH_FILTER`` (by
``wgsigd/shedding.py``); the kernel then drops a datagram of an impossible length before it is
queued, so a flood of them costs the server no receive-buffer room and no Python work.  Which
lengths are possible is the engine's rule (``wgsig.server.request_shapes``); this module turns it
into instructions (``struct sock_filter``, linux/filter.h).  Within the lengths of a plain X1
request the program also checks what the engine checks first (CLFLG's XR bit, the request
block's XTYPE and XVER, and that XLEN gives exactly the datagram's length, ``wgsig/x1.py``), so
random bytes of those lengths are dropped in the kernel too.

Everything here is pure: ranges in, program bytes out.
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
TAX = 0x07 | 0x00  # BPF_MISC | BPF_TAX: X = A
ADD_K = 0x04 | 0x00 | 0x00  # BPF_ALU | BPF_ADD | BPF_K: A += k
JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K: A == k ? jt : jf
JEQ_X = 0x05 | 0x10 | 0x08  # BPF_JMP | BPF_JEQ | BPF_X: A == X ? jt : jf
JA = 0x05 | 0x00  # BPF_JMP | BPF_JA: skip k instructions
JGT_K = 0x05 | 0x20 | 0x00  # A > k ? jt : jf
JGE_K = 0x05 | 0x30 | 0x00  # A >= k ? jt : jf
JSET_K = 0x05 | 0x40 | 0x00  # A & k ? jt : jf
RET_K = 0x06 | 0x00  # BPF_RET | BPF_K: keep k bytes (0: drop)
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
