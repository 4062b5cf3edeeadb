"""A group's record table and the answer datagrams cached from it.

The table is kept as its answer: one ``bytearray`` holding, for each answer
datagram, its ten 50-byte record slots and the 8-byte tail that follows them on
the wire (the 508 bytes the datagram's HMAC covers).  Registering a peer writes
its 50 bytes in place; an answer datagram is a copy of 508 bytes plus its HMAC,
and only datagrams whose records changed are re-authenticated, so the cost of
a request does not grow with the size of its group.  With 10,000 groups every
request touches a different group: one contiguous buffer per group is read
from memory far faster than ten record objects scattered over the heap.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence

from wgsig.events import Change
from wgsig.label import label_seconds
from wgsig.signer import Signer
from wgsig.wire import (
    EMPTY_RECORD,
    RECORD_ENDPOINT_AT,
    RECORD_LABEL,
    RECORD_LABEL_AT,
    RECORD_PEER_ID,
    RECORD_SIZE,
    RECORDS_PER_DATAGRAM,
    RECORDS_SIZE,
    RESPONSE_SIGNED,
    Record,
    decode_record,
    response_tail,
)

_NO_GROUP = -1  # tails not written yet: the table learns its group ID from answer()


def _offset(slot: int) -> int:
    """Where a slot's 50 bytes start in the buffer."""
    datagram, index = divmod(slot, RECORDS_PER_DATAGRAM)
    return datagram * RESPONSE_SIGNED + index * RECORD_SIZE


class _Answer:
    """The answer datagrams under one secret, and which of them are stale.

    ``stale`` is a bit mask of datagram indexes, not a set: one object fewer
    to fetch from memory per request.
    """

    __slots__ = ("datagrams", "secret", "signer", "stale")

    def __init__(self, secret: bytes, signer: Signer, count: int) -> None:
        self.secret = secret
        self.signer = signer
        self.datagrams = [b""] * count
        self.stale = (1 << count) - 1


class GroupTable:
    """Records of one group, in slots; at most ``max_records`` of them.

    Records keep the slot of their first registration; a full table evicts
    the least recently updated record.  Empty slots are zeros, which is also
    how the wire pads a last datagram that is not full.
    """

    __slots__ = ("_answers", "_at", "_buffer", "_count", "_free", "_group", "max_records")

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self._buffer = bytearray(RESPONSE_SIGNED)  # an empty table still answers one datagram
        self._count = 0  # slots handed out, empty ones below the highest included
        self._group = _NO_GROUP
        # Peer ID -> where its slot's 50 bytes start in the buffer (not the slot number: no
        # arithmetic per request), least recently updated first: the lookup, eviction and expiry
        # order. A plain dict keeps insertion order; moving a peer to the end is a pop and a re-insert.
        self._at: dict[bytes, int] = {}
        # Heap of the offsets of empty slots below _count (offsets sort as their slots do).
        self._free: list[int] = []
        # Cached answers, one per secret: one, or a few during a secret rollover.
        self._answers: tuple[_Answer, ...] = ()

    def __len__(self) -> int:
        return len(self._at)

    @property
    def slots(self) -> list[bytes]:
        """Every slot's 50 bytes, empty ones as zeros."""
        buffer = self._buffer
        return [bytes(buffer[o : o + RECORD_SIZE]) for o in map(_offset, range(self._count))]

    def packed_slots(self) -> bytes:
        """The slots end to end, as the state file stores them.

        The state writer thread calls this while the answering thread updates
        the table: the buffer is copied in one step (one C call under the GIL),
        so a record that moved to another slot meanwhile is never saved twice.
        """
        count = self._count  # read first: the buffer grows after it, never before
        data = bytes(self._buffer)
        if count > RECORDS_PER_DATAGRAM:  # drop the tails between the datagrams' records
            data = b"".join(data[start : start + RECORDS_SIZE] for start in range(0, len(data), RESPONSE_SIGNED))
        return data[: count * RECORD_SIZE]

    def label_of(self, peer_id: bytes) -> bytes | None:
        offset = self._at.get(peer_id)
        if offset is None:
            return None
        return bytes(self._buffer[offset + RECORD_LABEL_AT : offset + RECORD_SIZE])

    def endpoint_of(self, peer_id: bytes) -> bytes | None:
        """The 6 endpoint bytes of a peer's record, as stored (scrambled address, port)."""
        offset = self._at.get(peer_id)
        if offset is None:
            return None
        offset += RECORD_ENDPOINT_AT
        return bytes(self._buffer[offset : offset + RECORD_LABEL_AT - RECORD_ENDPOINT_AT])

    def records(self) -> Iterator[Record]:
        for data in self.slots:
            record = decode_record(data)
            if record is not None:
                yield record

    def upsert(self, peer_id: bytes, endpoint: bytes, label: bytes) -> tuple[Change, bytes | None]:
        """Insert or replace a record; returns what changed and the evicted peer ID."""
        at = self._at
        offset = at.get(peer_id)
        if offset is not None:
            at[peer_id] = at.pop(peer_id)  # now the most recently updated
            same = self._buffer[offset + RECORD_ENDPOINT_AT : offset + RECORD_LABEL_AT] == endpoint
            self._store(offset, peer_id + endpoint + label)
            return Change.UPDATED if same else Change.MOVED, None
        evicted = None
        if len(at) >= self.max_records:
            # Full: the least recently updated record leaves, and its slot is reused
            # unless a lower one is free (new records take the lowest free slot).
            evicted = next(iter(at))
            offset = at.pop(evicted)
            if self._free and self._free[0] < offset:
                self._store(offset, EMPTY_RECORD)
                offset = heapq.heappushpop(self._free, offset)
        else:
            offset = self._take_slot()
        at[peer_id] = offset
        self._store(offset, peer_id + endpoint + label)
        return Change.INSERTED, evicted

    def refresh(self, peer_id: bytes, label: bytes) -> bool:
        """Update only the label of an existing record (CLFLG 1)."""
        at = self._at
        offset = at.get(peer_id)
        if offset is None:
            return False
        at[peer_id] = at.pop(peer_id)
        self._store(offset, bytes(self._buffer[offset : offset + RECORD_LABEL_AT]) + label)
        return True

    def remove(self, peer_id: bytes) -> None:
        offset = self._at.pop(peer_id)
        self._store(offset, EMPTY_RECORD)
        heapq.heappush(self._free, offset)

    def expire(self, oldest_seconds: int) -> int:
        """Remove records whose label is older than ``oldest_seconds``."""
        buffer = self._buffer
        removed = 0
        for offset in self._at.values():
            if label_seconds(bytes(buffer[offset + RECORD_LABEL_AT : offset + RECORD_SIZE])) >= oldest_seconds:
                break
            removed += 1
        for _ in range(removed):
            self.remove(next(iter(self._at)))
        return removed

    def datagram_count(self) -> int:
        """How many datagrams ``answer`` gives now."""
        return len(self._buffer) // RESPONSE_SIGNED

    def answer(self, group: int, secret: bytes, signer: Signer | None = None) -> list[bytes]:
        """The cleartext answer datagrams, re-authenticating only stale ones.

        ``signer``, if given, is the caller's Signer for ``secret`` (saves
        memory with many groups).  The list is the cache itself: callers must
        not change it.
        """
        if group != self._group:
            self._group = group
            self._write_tails()
        for answer in self._answers:
            if answer.secret == secret:
                break
        else:
            answer = _Answer(secret, signer or Signer(secret), len(self._buffer) // RESPONSE_SIGNED)
            self._answers = (*self._answers, answer)
        stale = answer.stale
        if stale:
            buffer, datagrams, sign = self._buffer, answer.datagrams, answer.signer.digest
            while stale:
                lowest = stale & -stale
                stale ^= lowest
                index = lowest.bit_length() - 1
                start = index * RESPONSE_SIGNED
                signed = bytes(buffer[start : start + RESPONSE_SIGNED])
                datagrams[index] = signed + sign(signed)
            answer.stale = 0
        return answer.datagrams

    def load(self, slots: Sequence[bytes]) -> None:
        """Replace the table with saved slots (records ordered by label age)."""
        records = [(data[RECORD_LABEL], i, data) for i, data in enumerate(slots) if data != EMPTY_RECORD]
        records.sort()
        keep = records[-self.max_records :] if self.max_records else []
        self._count = max(i for _, i, _ in keep) + 1 if keep else 0
        self._buffer = bytearray(RESPONSE_SIGNED * self._datagram_count())
        self._write_tails()
        self._at = {}
        for _, slot, data in keep:  # oldest first: the least recently updated order
            offset = _offset(slot)
            self._buffer[offset : offset + RECORD_SIZE] = data
            self._at[bytes(data[RECORD_PEER_ID])] = offset
        used = set(self._at.values())
        self._free = [o for o in map(_offset, range(self._count)) if o not in used]  # sorted: a heap

    def _take_slot(self) -> int:
        """The offset of the lowest empty slot, the buffer grown if there is none."""
        if self._free:
            return heapq.heappop(self._free)
        slot = self._count
        self._count += 1
        if slot and slot % RECORDS_PER_DATAGRAM == 0:
            # One more datagram: N_OTHER changes in all of them.
            self._buffer.extend(bytes(RESPONSE_SIGNED))
            self._write_tails()
        return _offset(slot)

    def _datagram_count(self) -> int:
        return max(1, -(-self._count // RECORDS_PER_DATAGRAM))

    def _write_tails(self) -> None:
        """Write every datagram's tail (N_OTHER or the group changed); forgets the cached answers."""
        self._answers = ()
        if self._group == _NO_GROUP:
            return
        tail = response_tail(len(self._buffer) // RESPONSE_SIGNED - 1, self._group)
        for start in range(RECORDS_SIZE, len(self._buffer), RESPONSE_SIGNED):
            self._buffer[start : start + len(tail)] = tail

    def _store(self, offset: int, data: bytes) -> None:
        self._buffer[offset : offset + RECORD_SIZE] = data
        bit = 1 << (offset // RESPONSE_SIGNED)
        for answer in self._answers:
            answer.stale |= bit
