"""The server's saved tables: a self-checking binary snapshot of record slots.

Layout: ``MAGIC || count(4) || {group(4) || slots(4) || slots*50 bytes}* ||
SHA-256 of everything before``.  Records are stored exactly as on the wire, so
saving is a join of bytes the tables already hold (``GroupTable.packed_slots``);
loading gives each group's slots as a list.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

from wgsig.wire import RECORD_SIZE

MAGIC = b"WGSIGST1"
_COUNT = struct.Struct(">I")
_GROUP = struct.Struct(">II")
_DIGEST = 32


class StateFileError(ValueError):
    """A state file that is truncated, corrupt or of another format."""


def encode_state(tables: Mapping[int, bytes]) -> bytes:
    """A state file from each group's slots, end to end (a multiple of 50 bytes)."""
    parts = [MAGIC, _COUNT.pack(len(tables))]
    for group_id, packed in tables.items():
        count, rest = divmod(len(packed), RECORD_SIZE)
        if rest:
            raise ValueError(f"group {group_id}: {len(packed)} bytes is not a whole number of slots")
        parts.append(_GROUP.pack(group_id, count))
        parts.append(packed)
    body = b"".join(parts)
    return body + hashlib.sha256(body).digest()


def decode_state(data: bytes) -> dict[int, list[bytes]]:
    if len(data) < len(MAGIC) + _COUNT.size + _DIGEST or not data.startswith(MAGIC):
        raise StateFileError("not a wgsigd state file (bad header)")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise StateFileError("checksum mismatch (truncated or corrupt)")
    (count,) = _COUNT.unpack_from(body, len(MAGIC))
    offset = len(MAGIC) + _COUNT.size
    tables: dict[int, list[bytes]] = {}
    for _ in range(count):
        if offset + _GROUP.size > len(body):
            raise StateFileError("truncated group header")
        group_id, slots = _GROUP.unpack_from(body, offset)
        offset += _GROUP.size
        end = offset + slots * RECORD_SIZE
        if end > len(body):
            raise StateFileError(f"truncated records of group {group_id}")
        tables[group_id] = [body[i : i + RECORD_SIZE] for i in range(offset, end, RECORD_SIZE)]
        offset = end
    if offset != len(body):
        raise StateFileError("trailing bytes after the last group")
    return tables
