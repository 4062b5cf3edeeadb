"""A group's record table and the answer datagrams cached from it.

Records keep the slot of their first registration; a full table evicts the
least recently updated record.  Slots hold the encoded 50-byte records, so an
answer is assembled from bytes, and only the datagram whose records changed is
re-encoded and re-authenticated.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterator

from wgsig.label import label_seconds
from wgsig.wire import (
    EMPTY_RECORD,
    RECORDS_PER_DATAGRAM,
    Record,
    decode_record,
    encode_chunk,
)


class GroupTable:
    """Records of one group, in slots; at most ``max_records`` of them."""

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self.slots: list[bytes] = []
        self._slot_of: dict[bytes, int] = {}
        # Peer IDs, least recently updated first: the eviction and expiry order.
        self._lru: OrderedDict[bytes, None] = OrderedDict()
        self._free: list[int] = []  # heap of empty slots below len(slots)
        # Cleartext answer datagrams, None where records changed since encoding.
        self._answer: list[bytes | None] = [None]

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

    def upsert(self, peer_id: bytes, endpoint: bytes, label: bytes) -> tuple[bool, bytes | None]:
        """Insert or replace a record; returns (inserted, evicted peer ID)."""
        slot = self._slot_of.get(peer_id)
        inserted = slot is None
        evicted = None
        if slot is None:
            if len(self._slot_of) >= self.max_records:
                evicted = next(iter(self._lru))
                self.remove(evicted)
            slot = self._take_slot()
            self._slot_of[peer_id] = slot
            self._lru[peer_id] = None
        else:
            self._lru.move_to_end(peer_id)
        self._store(slot, peer_id + endpoint + label)
        return inserted, evicted

    def refresh(self, peer_id: bytes, label: bytes) -> bool:
        """Update only the label of an existing record (CLFLG 1)."""
        slot = self._slot_of.get(peer_id)
        if slot is None:
            return False
        self._lru.move_to_end(peer_id)
        self._store(slot, self.slots[slot][:38] + label)
        return True

    def remove(self, peer_id: bytes) -> None:
        slot = self._slot_of.pop(peer_id)
        del self._lru[peer_id]
        self._store(slot, EMPTY_RECORD)
        heapq.heappush(self._free, slot)

    def expire(self, oldest_seconds: int) -> int:
        """Remove records whose label is older than ``oldest_seconds``."""
        removed = 0
        while self._lru:
            peer_id = next(iter(self._lru))
            if label_seconds(self.slots[self._slot_of[peer_id]][38:50]) >= oldest_seconds:
                break
            self.remove(peer_id)
            removed += 1
        return removed

    def answer(self, group: int, secret: bytes) -> list[bytes]:
        """The cleartext answer datagrams, re-encoding only stale ones."""
        answer = self._answer
        if None in answer:
            n_other = len(answer) - 1
            for index, datagram in enumerate(answer):
                if datagram is None:
                    answer[index] = encode_chunk(self.slots, index, n_other, group, secret)
        return answer  # type: ignore[return-value]

    def invalidate(self) -> None:
        """Forget every cached datagram (group ID or secret changed)."""
        self._answer = [None] * len(self._answer)

    def load(self, slots: list[bytes]) -> None:
        """Replace the table with saved slots (records ordered by label age)."""
        records = [(data[38:50], i, data) for i, data in enumerate(slots) if data != EMPTY_RECORD]
        records.sort()
        keep = records[-self.max_records :] if self.max_records else []
        self.__init__(self.max_records)  # type: ignore[misc]
        self.slots = [EMPTY_RECORD] * (max(i for _, i, _ in keep) + 1 if keep else 0)
        for _, slot, data in keep:
            self.slots[slot] = data
            self._slot_of[data[:32]] = slot
            self._lru[data[:32]] = None
        self._free = [i for i, data in enumerate(self.slots) if data == EMPTY_RECORD]
        heapq.heapify(self._free)
        self._answer = [None] * self._datagram_count()

    def _take_slot(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        self.slots.append(EMPTY_RECORD)
        return len(self.slots) - 1

    def _datagram_count(self) -> int:
        return max(1, -(-len(self.slots) // RECORDS_PER_DATAGRAM))

    def _store(self, slot: int, data: bytes) -> None:
        self.slots[slot] = data
        count = self._datagram_count()
        if count != len(self._answer):
            # N_OTHER changed: every datagram carries it.
            self._answer = [None] * count
        else:
            self._answer[slot // RECORDS_PER_DATAGRAM] = None
