"""A group's record table and the answer datagrams cached from it.

Records keep the slot of their first registration; a full table evicts the
least recently updated record.  Slots hold the encoded 50-byte records, so an
answer is assembled from bytes, and only the datagram whose records changed is
re-encoded and re-authenticated: the cost of a request does not grow with the
size of its group.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from wgsig.events import Change
from wgsig.label import label_seconds
from wgsig.signer import Signer
from wgsig.wire import (
    EMPTY_RECORD,
    RECORDS_PER_DATAGRAM,
    RECORDS_SIZE,
    Record,
    decode_record,
    response_tail,
)


class _Answer:
    """The answer datagrams under one secret, and which of them are stale.

    ``stale`` is a bit mask of datagram indexes, not a set: with 10,000 groups
    every request touches a different group, and each object it touches is
    likely a cache miss.
    """

    __slots__ = ("datagrams", "group", "secret", "signer", "stale", "tail")

    def __init__(self, group: int, secret: bytes, signer: Signer, count: int) -> None:
        self.group = group
        self.secret = secret
        self.signer = signer
        self.tail = response_tail(count - 1, group)  # SVEXT, N_OTHER, GROUP: the same in every datagram
        self.datagrams = [b""] * count
        self.stale = (1 << count) - 1


class GroupTable:
    """Records of one group, in slots; at most ``max_records`` of them."""

    __slots__ = ("_answers", "_free", "_slot_of", "max_records", "slots")

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self.slots: list[bytes] = []
        # Peer ID -> slot, least recently updated first: the lookup, eviction and expiry order.
        # A plain dict keeps insertion order and is a third of an OrderedDict's size (10,000
        # groups); moving a peer to the end is a pop and a re-insert.
        self._slot_of: dict[bytes, int] = {}
        self._free: list[int] = []  # heap of empty slots below len(slots)
        # Cached answers, one per secret: one, or a few during a secret rollover.
        self._answers: tuple[_Answer, ...] = ()

    def __len__(self) -> int:
        return len(self._slot_of)

    def label_of(self, peer_id: bytes) -> bytes | None:
        slot = self._slot_of.get(peer_id)
        return None if slot is None else self.slots[slot][38:50]

    def records(self) -> Iterator[Record]:
        for data in self.slots:
            record = decode_record(data)
            if record is not None:
                yield record

    def upsert(self, peer_id: bytes, endpoint: bytes, label: bytes) -> tuple[Change, bytes | None]:
        """Insert or replace a record; returns what changed and the evicted peer ID."""
        slot_of = self._slot_of
        slot = slot_of.get(peer_id)
        if slot is not None:
            slot_of[peer_id] = slot_of.pop(peer_id)  # now the most recently updated
            change = Change.UPDATED if self.slots[slot][32:38] == endpoint else Change.MOVED
            self._store(slot, peer_id + endpoint + label)
            return change, None
        evicted = None
        if len(slot_of) >= self.max_records:
            # Full: the least recently updated record leaves, and its slot is reused
            # unless a lower one is free (new records take the lowest free slot).
            evicted = next(iter(slot_of))
            slot = slot_of.pop(evicted)
            if self._free and self._free[0] < slot:
                self._store(slot, EMPTY_RECORD)
                slot = heapq.heappushpop(self._free, slot)
        else:
            slot = self._take_slot()
        slot_of[peer_id] = slot
        self._store(slot, peer_id + endpoint + label)
        return Change.INSERTED, evicted

    def refresh(self, peer_id: bytes, label: bytes) -> bool:
        """Update only the label of an existing record (CLFLG 1)."""
        slot = self._slot_of.get(peer_id)
        if slot is None:
            return False
        self._slot_of[peer_id] = self._slot_of.pop(peer_id)
        self._store(slot, self.slots[slot][:38] + label)
        return True

    def remove(self, peer_id: bytes) -> None:
        slot = self._slot_of.pop(peer_id)
        self._store(slot, EMPTY_RECORD)
        heapq.heappush(self._free, slot)

    def expire(self, oldest_seconds: int) -> int:
        """Remove records whose label is older than ``oldest_seconds``."""
        removed = 0
        for slot in self._slot_of.values():
            if label_seconds(self.slots[slot][38:50]) >= oldest_seconds:
                break
            removed += 1
        for _ in range(removed):
            self.remove(next(iter(self._slot_of)))
        return removed

    def answer(self, group: int, secret: bytes, signer: Signer | None = None) -> list[bytes]:
        """The cleartext answer datagrams, re-encoding only stale ones.

        ``signer``, if given, is the caller's Signer for ``secret`` (saves
        memory with many groups).  The list is the cache itself: callers must
        not change it.
        """
        for answer in self._answers:
            if answer.secret == secret and answer.group == group:
                break
        else:
            answer = _Answer(group, secret, signer or Signer(secret), self._datagram_count())
            self._answers = (*(a for a in self._answers if a.secret != secret), answer)
        stale = answer.stale
        if stale:
            slots, datagrams, sign, tail = self.slots, answer.datagrams, answer.signer.digest, answer.tail
            while stale:
                lowest = stale & -stale
                stale ^= lowest
                start = (lowest.bit_length() - 1) * RECORDS_PER_DATAGRAM
                # A last datagram that is not full is padded with empty records (zeros).
                signed = b"".join(slots[start : start + RECORDS_PER_DATAGRAM]).ljust(RECORDS_SIZE, b"\0") + tail
                datagrams[start // RECORDS_PER_DATAGRAM] = signed + sign(signed)
            answer.stale = 0
        return answer.datagrams

    def invalidate(self) -> None:
        """Forget every cached datagram (group ID or secret changed)."""
        self._answers = ()

    def load(self, slots: list[bytes]) -> None:
        """Replace the table with saved slots (records ordered by label age)."""
        records = [(data[38:50], i, data) for i, data in enumerate(slots) if data != EMPTY_RECORD]
        records.sort()
        keep = records[-self.max_records :] if self.max_records else []
        self.slots = [EMPTY_RECORD] * (max(i for _, i, _ in keep) + 1 if keep else 0)
        self._slot_of = {}
        for _, slot, data in keep:  # oldest first: the least recently updated order
            self.slots[slot] = data
            self._slot_of[data[:32]] = slot
        self._free = [i for i, data in enumerate(self.slots) if data == EMPTY_RECORD]
        heapq.heapify(self._free)
        self._answers = ()

    def _take_slot(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        self.slots.append(EMPTY_RECORD)
        if len(self.slots) % RECORDS_PER_DATAGRAM == 1:
            self._answers = ()  # one more datagram: N_OTHER changes in all of them
        return len(self.slots) - 1

    def _datagram_count(self) -> int:
        return max(1, -(-len(self.slots) // RECORDS_PER_DATAGRAM))

    def _store(self, slot: int, data: bytes) -> None:
        self.slots[slot] = data
        bit = 1 << (slot // RECORDS_PER_DATAGRAM)
        for answer in self._answers:
            answer.stale |= bit
