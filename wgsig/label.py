"""Timestamp labels: ``S (8 bytes) || N (4 bytes)``, S = 2**62 + UNIX seconds.

The deployed C code adds no TAI leap-second offset, so neither do we.  Because
bit 62 is set and bit 63 clear in every valid label, comparing the 12 raw bytes
orders labels by ``(S, N)`` in full: the core keeps labels as bytes.
"""

from __future__ import annotations

import struct

LABEL_SIZE = 12
_TAI_BIT = 1 << 62
_LABEL = struct.Struct(">QI")


class LabelError(ValueError):
    """A label whose top bits are not ``01``."""


def encode_label(unix_seconds: int, nanoseconds: int) -> bytes:
    """The 12-byte label for a UNIX time."""
    if not 0 <= unix_seconds < _TAI_BIT or not 0 <= nanoseconds < 1 << 32:
        raise LabelError(f"time {unix_seconds}.{nanoseconds:09d} cannot be labelled")
    return _LABEL.pack(_TAI_BIT | unix_seconds, nanoseconds)


def label_from_ns(time_ns: int) -> bytes:
    """The label for a time given in nanoseconds since the epoch."""
    seconds, nanoseconds = divmod(time_ns, 1_000_000_000)
    return encode_label(seconds, nanoseconds)


def is_valid_label(label: bytes) -> bool:
    """Bit 62 set and bit 63 clear, as the C server requires."""
    return len(label) == LABEL_SIZE and label[0] & 0xC0 == 0x40


def decode_label(label: bytes) -> tuple[int, int]:
    """``(unix_seconds, nanoseconds)`` of a valid label."""
    if not is_valid_label(label):
        raise LabelError(f"invalid timestamp label {label.hex()}")
    tai, nanoseconds = _LABEL.unpack(label)
    return tai ^ _TAI_BIT, nanoseconds


def label_seconds(label: bytes) -> int:
    """UNIX seconds of a label known to be valid (no checks: hot path)."""
    return int.from_bytes(label[:8], "big") ^ _TAI_BIT
